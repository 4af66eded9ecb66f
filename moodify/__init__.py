"""Moodify: local-first facial emotion recognition.

>>> import moodify
>>> faces = moodify.Recognizer().analyze("photo.jpg")
>>> faces[0].emotion, faces[0].confidence, faces[0].box

``moodify.load_model()`` gives the shipped network alone: ``predict(faces)`` takes uint8
(N, 48, 48) FER2013-framed grayscale faces and returns calibrated (N, 7) probabilities in
``moodify.EMOTIONS`` order; ``moodify.available_models()`` names the shipped ones.

The package's rooms: ``pipeline`` (images, detection, the crop, ``Recognizer``), ``model``
(network, checkpoints, backends, registry, export), ``training``, ``video``, ``batch``,
``app_support`` (the web app's computations) and ``cli`` (the ``moodify`` command).
"""

from . import _moved
from .errors import DetectorError, ImageError, ModelError, MoodifyError
from .labels import EMOTIONS
from .model.base import EmotionClassifier
from .model.registry import available_models, load_model
from .model.torch_backend import EmotionModel
from .pipeline.detect import HaarDetector, YuNetDetector, make_detector
from .pipeline.images import load_image
from .pipeline.recognizer import Face, Recognizer

__version__ = "0.1.0"

_moved.install()  # the module paths from before the folders (moodify.weights, ...) still import, warned

__all__ = [
    "EMOTIONS", "DetectorError", "EmotionClassifier", "EmotionModel", "Face", "HaarDetector", "ImageError",
    "ModelError", "MoodifyError", "Recognizer", "YuNetDetector", "available_models", "load_image", "load_model",
    "make_detector", "__version__",
]
