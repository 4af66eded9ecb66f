"""Moodify: local-first facial emotion recognition.

>>> import moodify
>>> faces = moodify.Recognizer().analyze("photo.jpg")
>>> faces[0].emotion, faces[0].confidence, faces[0].box

``moodify.load_model()`` gives the shipped network alone: ``predict(faces)`` takes uint8
(N, 48, 48) FER2013-framed grayscale faces and returns calibrated (N, 7) probabilities in
``moodify.EMOTIONS`` order.
"""

from .detect import HaarDetector, YuNetDetector, make_detector
from .images import ImageError, load_image
from .labels import EMOTIONS
from .recognizer import Face, Recognizer
from .weights import EmotionModel, ModelError, load_model

__version__ = "0.1.0"

__all__ = [
    "EMOTIONS", "EmotionModel", "Face", "HaarDetector", "ImageError", "ModelError", "Recognizer",
    "YuNetDetector", "load_image", "load_model", "make_detector", "__version__",
]
