"""The recognition pipeline shared by the CLI, the web app and the Python API.

image -> BGR uint8 -> detector boxes -> FER2013-framed 48x48 grayscale crops -> one batched
``predict`` -> one ``Face`` per box.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import Box, Detector, HaarDetector
from .images import load_image
from .labels import EMOTIONS
from .preprocess import crop_faces
from .weights import EmotionModel, load_model


@dataclass
class Face:
    """One detected face: its box (x, y, w, h) in the original image's pixels and its emotions."""

    box: Box
    probabilities: dict[str, float]
    crop: np.ndarray | None = field(default=None, repr=False)  # the 48x48 grayscale network input

    @property
    def emotion(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.emotion]

    def to_dict(self) -> dict:
        x, y, w, h = self.box
        return {"box": {"x": x, "y": y, "w": w, "h": h}, "emotion": self.emotion,
                "confidence": round(self.confidence, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}


class Recognizer:
    """Finds faces in an image and gives each one calibrated probabilities for the 7 emotions.

    ``model``: an ``EmotionModel``, a registry name or a checkpoint path (default: the shipped
    model). ``detector``: anything with ``detect(image) -> boxes`` (default: Haar).

    Thread-safe: one Recognizer can serve many threads (a web server's). OpenCV's detectors are
    not (two threads in one cascade return wrong boxes or raise), so each thread detects with its
    own copy of ``detector``, rebuilt from its settings (``dataclasses.replace``); a detector that
    is not a dataclass cannot be copied that way and is shared, one ``detect`` at a time.
    """

    def __init__(self, model: EmotionModel | str | os.PathLike | None = None, detector: Detector | None = None):
        # Any object with predict() and preprocessing works (e.g. the onnxruntime backend's model).
        self.model = load_model(model) if model is None or isinstance(model, (str, os.PathLike)) else model
        self.detector = detector if detector is not None else HaarDetector()
        self._owner = threading.get_ident()  # this thread uses ``detector`` itself; others get copies
        self._local = threading.local()
        self._shared_lock = threading.Lock()

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Face boxes in a grayscale uint8 image, largest first, with this thread's detector."""
        detector = self.detector
        if not dataclasses.is_dataclass(detector):
            with self._shared_lock:
                return detector.detect(gray)
        if threading.get_ident() == self._owner:
            return detector.detect(gray)
        local = self._local
        if getattr(local, "template", None) is not detector:  # first use here, or ``detector`` was replaced
            local.template, local.detector = detector, dataclasses.replace(detector)
        return local.detector.detect(gray)

    def analyze(self, image) -> list[Face]:
        """Faces in ``image`` (a path, bytes, PIL image, or BGR/grayscale numpy array), largest first.

        Raises ``moodify.ImageError`` for input that is not a readable image.
        """
        bgr = load_image(image)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        return self.analyze_gray(gray)

    def analyze_gray(self, gray: np.ndarray, boxes: list[Box] | None = None) -> list[Face]:
        """Like ``analyze`` on an already-decoded grayscale uint8 image; ``boxes`` skips detection."""
        if boxes is None:
            boxes = self.detect(gray)
        crops = self.crops(gray, boxes)
        probs = self.model.predict(crops) if len(boxes) else np.zeros((0, len(EMOTIONS)))
        return [Face(tuple(int(v) for v in box), dict(zip(EMOTIONS, map(float, p))), crop)
                for box, p, crop in zip(boxes, probs, crops)]

    def crops(self, gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """The network inputs (N, 48, 48) uint8 for ``boxes``, framed as the model's training data."""
        return crop_faces(gray, boxes, self.model.preprocessing)
