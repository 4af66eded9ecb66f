"""What the web app (app.py) shows, computed and tested here without a browser: upload checks
(``uploads``), result tables and downloads (``results``), charts (``charts``), the per-session
recognizer and the model choices (``session``), the live hand-over (``live``) and video uploads
(``video``). app.py lays these out; it computes nothing itself.
"""
