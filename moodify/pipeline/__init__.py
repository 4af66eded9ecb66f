"""The recognition pipeline: ``images`` (decoding) -> ``detect`` (faces and landmarks) ->
``preprocess`` (the one crop, resize and normalisation) -> ``recognizer`` (``Recognizer``: the
steps together, used by the API, batch workers, video, live and the app); ``rows`` is the one
schema of a face in every output, ``draw`` the boxes and labels on pictures.

Nothing here imports the commands, video, batch, training or the app.
"""
