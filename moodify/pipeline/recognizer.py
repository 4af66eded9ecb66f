"""The recognition pipeline shared by the CLI, batch workers, video, live, the web app and the API.

image -> BGR uint8 -> detections (box + landmarks) -> 48x48 grayscale crops framed as the model's
checkpoint says for that detector -> one batched ``predict`` -> one ``Face`` per detection.

``Recognizer`` is the one object that runs these steps; callers use the step they need:
``analyze`` (all of them), ``detect_and_crop`` (batch workers, which classify elsewhere),
``detect``, ``crops`` and ``predict`` (video and live, where a tracker sits between detection and
cropping), ``faces`` (assembling ``Face`` objects from the steps' results).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..labels import EMOTIONS
from .detect import LANDMARKS, Box, Detection, Detector, find_faces, make_detector
from .images import decode_image
from .preprocess import Preprocessing, crop_faces

if TYPE_CHECKING:
    from ..model.base import EmotionClassifier


@dataclass
class Face:
    """One detected face: its box (x, y, w, h) in the original image's pixels and its emotions."""

    box: Box
    probabilities: dict[str, float]
    crop: np.ndarray | None = field(default=None, repr=False)  # the 48x48 grayscale network input
    # Five (x, y) points in the original image's pixels, in moodify.pipeline.detect.LANDMARKS order
    # (right eye, left eye, nose, right and left mouth corner); None where the detector gives none (Haar).
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def emotion(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.emotion]

    def to_dict(self) -> dict:
        x, y, w, h = self.box
        out = {"box": {"x": x, "y": y, "w": w, "h": h}, "emotion": self.emotion,
               "confidence": round(self.confidence, 6),
               "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}
        if self.landmarks is not None:
            out["landmarks"] = {name: [round(px, 1), round(py, 1)] for name, (px, py) in zip(LANDMARKS, self.landmarks)}
        return out


class Recognizer:
    """Finds faces in an image and gives each one calibrated probabilities for the 7 emotions.

    ``model``: any ``moodify.model.base.EmotionClassifier`` (``load_model``'s torch or onnx
    models), a registry name or a checkpoint path (default: the shipped model). ``detector``: a
    ``moodify.YuNetDetector`` (the default) or ``HaarDetector``, or anything with
    ``detect(image) -> boxes``; its ``kind`` picks the crop framing stored with the model.

    Thread-safe: one Recognizer can serve many threads (a web server's). OpenCV's detectors are
    not (two threads in one cascade return wrong boxes or raise), so each thread detects with its
    own copy of ``detector``, rebuilt from its settings (``dataclasses.replace``); a detector that
    is not a dataclass cannot be copied that way and is shared, one detection at a time.
    """

    def __init__(self, model: "EmotionClassifier | str | os.PathLike | None" = None, detector: Detector | None = None):
        # Any model that satisfies moodify.model.base.EmotionClassifier works (torch, onnxruntime, ...).
        if model is None or isinstance(model, (str, os.PathLike)):
            from ..model.registry import load_model

            model = load_model(model)
        self.model = model
        self._preprocessing: Preprocessing | None = None  # set by for_cropping, where there is no model
        self.detector = detector if detector is not None else make_detector()
        self._owner = threading.get_ident()  # this thread uses ``detector`` itself; others get copies
        self._local = threading.local()
        self._shared_lock = threading.Lock()

    @classmethod
    def for_cropping(cls, preprocessing: Preprocessing, detector: Detector) -> "Recognizer":
        """A pipeline that detects and crops as ``preprocessing`` says, with no model (batch workers,
        whose faces are classified in one batch elsewhere): ``predict`` and ``analyze`` refuse."""
        recognizer = cls(_NO_MODEL, detector)
        recognizer._preprocessing = preprocessing
        return recognizer

    def with_detector(self, detector: Detector) -> "Recognizer":
        """The same model with another detector (e.g. one searching smaller copies, for live video)."""
        recognizer = Recognizer(self.model, detector)
        recognizer._preprocessing = self._preprocessing
        return recognizer

    @property
    def preprocessing(self) -> Preprocessing:
        """How faces are cropped and resized for the model (its checkpoint's, or for_cropping's)."""
        return self._preprocessing if self._preprocessing is not None else self.model.preprocessing

    def analyze(self, image) -> list[Face]:
        """Faces in ``image`` (a path, bytes, PIL image, or BGR/grayscale numpy array), largest first.

        Raises ``moodify.ImageError`` for input that is not a readable image. Boxes are in the
        picture's own pixels, also for a large JPEG decoded at reduced scale.
        """
        detections, crops = self.find_and_crop(image)
        return self.faces(detections, crops, self.predict(crops))

    def find_and_crop(self, image) -> tuple[list[Detection], np.ndarray]:
        """``detect_and_crop`` for any image input (a path, bytes, ...): a JPEG over the pixel limit
        is decoded reduced (``moodify.pipeline.images.decode_image``), its boxes mapped back."""
        bgr, scale = decode_image(image)
        detections, crops = self.detect_and_crop(bgr)
        return [d.scaled(scale) for d in detections], crops

    def analyze_bgr(self, bgr: np.ndarray) -> list[Face]:
        """Like ``analyze`` on an already-decoded BGR (or grayscale) uint8 image."""
        detections, crops = self.detect_and_crop(bgr)
        return self.faces(detections, crops, self.predict(crops))

    def analyze_gray(self, gray: np.ndarray, boxes: list[Box] | None = None) -> list[Face]:
        """Like ``analyze`` on a grayscale uint8 image; ``boxes`` skips detection (faces get no landmarks)."""
        detections = self.detect(gray) if boxes is None else [Detection(tuple(int(v) for v in b)) for b in boxes]
        return self.classify(gray, detections)

    def detect_and_crop(self, image: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """The faces of a BGR (or grayscale) uint8 image, largest first, and their network inputs
        (N, 48, 48) uint8: detected on the colour image, cropped from its grayscale copy."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        detections = self.detect(image)
        return detections, self.crops(gray, detections)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The detector's faces in a BGR or grayscale uint8 image, largest first, with this thread's detector."""
        detector = self.detector
        if not dataclasses.is_dataclass(detector):
            with self._shared_lock:
                return find_faces(detector, image)
        if threading.get_ident() == self._owner:
            return find_faces(detector, image)
        local = self._local
        if getattr(local, "template", None) is not detector:  # first use here, or ``detector`` was replaced
            local.template, local.detector = detector, dataclasses.replace(detector)
        return find_faces(local.detector, image)

    def crops(self, gray: np.ndarray, faces) -> np.ndarray:
        """The network inputs (N, 48, 48) uint8 for ``faces`` (detections or boxes), framed for this detector."""
        return crop_faces(gray, faces, self.preprocessing, kind=getattr(self.detector, "kind", None))

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, 7) for the crops, in one batched pass of the model."""
        if self.model is _NO_MODEL:
            raise RuntimeError("this Recognizer only detects and crops (Recognizer.for_cropping)")
        return self.model.predict(crops) if len(crops) else np.zeros((0, len(EMOTIONS)))

    def classify(self, gray: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Crop and classify ``detections`` of ``gray`` in one batched ``predict``: one ``Face`` each."""
        crops = self.crops(gray, detections)
        return self.faces(detections, crops, self.predict(crops))

    @staticmethod
    def faces(detections: list[Detection], crops: np.ndarray, probs: np.ndarray) -> list[Face]:
        """One ``Face`` per detection, from its crop and probabilities."""
        return [Face(tuple(int(v) for v in d.box), dict(zip(EMOTIONS, map(float, p))), crop, d.landmarks)
                for d, p, crop in zip(detections, probs, crops)]


_NO_MODEL = object()  # the model of a Recognizer.for_cropping
