"""What the web app (app.py) shows, computed and tested here without a browser: upload checks
(``uploads``), result tables and downloads (``results``), charts (``charts``), the per-session
recognizer and the model choices (``session``), the live hand-over (``live``), video uploads
(``video``) and the Grad-CAM overlays of the Explain toggle (``explain``). app.py lays these out;
it computes nothing itself.
"""


def __getattr__(name: str):
    """The other names of the module this package was (before the folders), from their new homes."""
    from .._moved import moved_attribute

    return moved_attribute(__name__, name, ("moodify.app_support.uploads", "moodify.app_support.live"))
