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
from .reference import AMBIGUOUS_FACE_AREA, Reference, ReferenceError, adjust, reference_setting

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
    # With a reference (``Recognizer.analyze(..., reference=...)``): ``probabilities`` are relative to
    # that person's neutral face and these are the model's own reading; None without a reference.
    raw_probabilities: dict[str, float] | None = None
    relative_to_reference: bool = False

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
        if self.relative_to_reference:
            out["relative_to_reference"] = True
            out["raw_probabilities"] = {k: round(v, 6) for k, v in self.raw_probabilities.items()}
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

    def analyze(self, image, *, reference: Reference | None = None) -> list[Face]:
        """Faces in ``image`` (a path, bytes, PIL image, or BGR/grayscale numpy array), largest first.

        ``reference`` (from ``Recognizer.reference``): each face's ``probabilities`` are read relative
        to that person's neutral face, and ``raw_probabilities`` keep the model's own reading.
        Raises ``moodify.ImageError`` for input that is not a readable image. Boxes are in the
        picture's own pixels, also for a large JPEG decoded at reduced scale.
        """
        detections, crops = self.find_and_crop(image)
        return self.faces(detections, crops, self.predict(crops), reference=reference)

    def find_and_crop(self, image) -> tuple[list[Detection], np.ndarray]:
        """``detect_and_crop`` for any image input (a path, bytes, ...): a JPEG over the pixel limit
        is decoded reduced (``moodify.pipeline.images.decode_image``), its boxes mapped back."""
        bgr, scale = decode_image(image)
        detections, crops = self.detect_and_crop(bgr)
        return [d.scaled(scale) for d in detections], crops

    def analyze_bgr(self, bgr: np.ndarray, *, reference: Reference | None = None) -> list[Face]:
        """Like ``analyze`` on an already-decoded BGR (or grayscale) uint8 image."""
        detections, crops = self.detect_and_crop(bgr)
        return self.faces(detections, crops, self.predict(crops), reference=reference)

    def reference(self, images, *, names: list[str] | None = None) -> Reference:
        """One person's neutral face, from one or more photos or frames of them (their largest face each).

        ``images``: a path, array, bytes or PIL image, or a list of them; several are averaged;
        ``names``: what to call each in messages (default: the path, or "reference image N"). Raises
        ``moodify.pipeline.reference.ReferenceError`` (one line) where an image has no face or shows
        several faces of similar size (whose neutral face would it be?), ``ImageError`` where one is
        unreadable. The cost is one forward pass per image.
        """
        reference_setting(self.model)  # a model with no measured setting is refused before any work
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ReferenceError("a reference needs at least one photo of the person's neutral face")
        probs, sources = [], []
        for i, item in enumerate(items):
            name = (names[i] if names and i < len(names) else
                    str(item) if isinstance(item, (str, os.PathLike)) else f"reference image {i + 1}")
            detections, crops = self.find_and_crop(item)
            if not detections:
                raise ReferenceError(f"{name}: no face found; a reference needs a photo of the person's neutral face")
            areas = [d.box[2] * d.box[3] for d in detections]
            similar = sum(a >= AMBIGUOUS_FACE_AREA * areas[0] for a in areas)
            if similar > 1:
                raise ReferenceError(f"{name}: {similar} faces of similar size; a reference is one person's "
                                     "neutral face: use a photo of that person alone")
            probs.append(self.predict(crops[:1])[0])
            sources.append(name)
        return Reference.from_probabilities(np.stack(probs), sources=sources)

    def relative(self, probs: np.ndarray, reference: Reference) -> np.ndarray:
        """Probabilities (N, 7) read relative to ``reference``, as this model's stored setting says."""
        return adjust(probs, reference, reference_setting(self.model))

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

    def classify(self, gray: np.ndarray, detections: list[Detection], *, reference: Reference | None = None) -> list[Face]:
        """Crop and classify ``detections`` of ``gray`` in one batched ``predict``: one ``Face`` each."""
        crops = self.crops(gray, detections)
        return self.faces(detections, crops, self.predict(crops), reference=reference)

    def faces(self, detections: list[Detection], crops: np.ndarray, probs: np.ndarray, *,
              reference: Reference | None = None) -> list[Face]:
        """One ``Face`` per detection, from its crop and probabilities (relative to ``reference``, if given)."""
        if reference is None or not len(probs):
            return [Face(tuple(int(v) for v in d.box), dict(zip(EMOTIONS, map(float, p))), crop, d.landmarks)
                    for d, p, crop in zip(detections, probs, crops)]
        adjusted = self.relative(probs, reference)
        return [Face(tuple(int(v) for v in d.box), dict(zip(EMOTIONS, map(float, a))), crop, d.landmarks,
                     raw_probabilities=dict(zip(EMOTIONS, map(float, p))), relative_to_reference=True)
                for d, p, a, crop in zip(detections, probs, adjusted, crops)]


_NO_MODEL = object()  # the model of a Recognizer.for_cropping
