"""Face detectors: YuNet (default, a small CNN shipped in ``models/yunet/``) and OpenCV's Haar cascade.

Both take a BGR or grayscale uint8 image and return ``Detection``s (box, score and, for YuNet, five
landmarks) in that image's pixels, largest first. Large images are searched on a downscaled copy
and the results mapped back, which keeps a 12-megapixel photo from taking seconds and keeps faces
in the size range the detector was trained for.

``make_detector(kind, **options)`` is the one place a detector is built from options: the CLI,
batch workers and the web app all call it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import DetectorError

Box = tuple[int, int, int, int]  # x, y, w, h in pixels
Point = tuple[float, float]  # x, y in pixels
DETECT_MAX_SIDE = 640  # pixels: larger images are downscaled to this for Haar detection
# YuNet finds faces from ~10 px up and close-ups of 650 px at any cap, so the cap only trades small
# faces for time: ~40 px faces in 1920x1080 pictures were found 90.7% of the time at 640, 100% at
# 960, at 17 vs 31 ms (benchmarks/bench_detect.py, "Image size").
YUNET_MAX_SIDE = 960  # pixels
# OpenCV's frontal-face cascades by the names the CLI takes; HaarDetector's docstring says why alt2 leads.
HAAR_CASCADES = {"frontalface_alt2": "haarcascade_frontalface_alt2.xml",
                 "frontalface_default": "haarcascade_frontalface_default.xml",
                 "frontalface_alt": "haarcascade_frontalface_alt.xml"}
DEFAULT_CASCADE = "frontalface_alt2"
DETECTORS = ("yunet", "haar")  # the first is the default
DEFAULT_DETECTOR = DETECTORS[0]
# YuNet's model file (MIT, Shiqi Yu; models/yunet/LICENSE), checked on load like the emotion models.
YUNET_FILE = Path(__file__).resolve().parent.parent.parent / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")  # the subject's right and left



@dataclass(frozen=True)
class Detection:
    """One face a detector found: its box, a score (None for Haar) and five landmarks (YuNet only)."""

    box: Box
    score: float | None = None
    landmarks: tuple[Point, ...] | None = None  # in LANDMARKS order

    def scaled(self, factor: float) -> "Detection":
        """This face in a picture ``factor`` times larger (a large JPEG's faces, found on its reduced decode)."""
        if factor == 1:
            return self
        points = None if self.landmarks is None else tuple((x * factor, y * factor) for x, y in self.landmarks)
        return Detection(tuple(int(round(v * factor)) for v in self.box), self.score, points)


class Detector(Protocol):
    kind: str  # which framing of the model's preprocessing applies to this detector's boxes

    def detect_faces(self, image: np.ndarray) -> list[Detection]: ...

    def detect(self, image: np.ndarray) -> list[Box]: ...


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    factor = max(h, w) / max_side if max_side and max(h, w) > max_side else 1.0
    if factor > 1.0:
        # max(1, ...): a 1x1300 strip must stay an image, not become a 0-pixel one.
        size = (max(1, round(w / factor)), max(1, round(h / factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, factor


def _largest_first(found: list[Detection]) -> list[Detection]:
    return sorted(found, key=lambda d: d.box[2] * d.box[3], reverse=True)


def checked_detection(box, score=None, landmarks=None, *, shape: tuple[int, ...]) -> Detection | None:
    """A detector's raw box (x, y, w, h floats) as a ``Detection``, or None when it is no face: a
    coordinate that is not finite (YuNet answered a photo from the wild with infinite ones), no
    width or height, or no pixel inside the picture. A box that only crosses the edge is kept as
    it is (the crop fills the outside). Landmarks or a score that are not finite are dropped."""
    height, width = shape[:2]
    values = np.asarray(box, dtype=np.float64)
    if values.shape != (4,) or not np.isfinite(values).all():
        return None
    x, y, w, h = values
    if w < 1 or h < 1 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None
    kept = (int(round(x)), int(round(y)), int(round(w)), int(round(h)))
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=np.float64)
        landmarks = (tuple((float(px), float(py)) for px, py in points)
                     if points.ndim == 2 and points.shape[1] == 2 and np.isfinite(points).all() else None)
    if score is not None and not np.isfinite(score):
        score = None
    return Detection(kept, None if score is None else float(score), landmarks)


class _BoxesMixin:
    def detect(self, image: np.ndarray) -> list[Box]:
        """Just the boxes of ``detect_faces``, largest first."""
        return [d.box for d in self.detect_faces(image)]


@dataclass
class HaarDetector(_BoxesMixin):
    """A frontal-face Haar cascade that ships with OpenCV (``cv2.data.haarcascades``); nothing is downloaded.

    ``scale_factor``: image-pyramid step, smaller finds more faces and runs slower.
    ``min_neighbors``: overlapping hits a face needs; higher means fewer false faces (and fewer faces).
    ``min_size``: smallest face side in the original image's pixels.
    ``max_side``: images larger than this are searched downscaled (pixels; 0 disables).
    ``cascade``: a file in ``cv2.data.haarcascades``.

    The settings (alt2 cascade, step 1.2, 3 neighbours) were chosen on real faces pasted into
    256x256 pictures (``benchmarks/bench_detect.py``; the README has the table). Against OpenCV's
    usual frontalface_default at 1.1 / 5 they see a fifth of the false faces and take half the time.
    Not safe to call from two threads at once (``Recognizer`` keeps one per thread).
    """

    scale_factor: float = 1.2
    min_neighbors: int = 3
    min_size: int = 30
    max_side: int = DETECT_MAX_SIDE
    cascade: str = HAAR_CASCADES[DEFAULT_CASCADE]
    kind = "haar"

    def __post_init__(self) -> None:
        path = Path(cv2.data.haarcascades) / self.cascade
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise DetectorError(f"cannot load the Haar cascade {path}")

    def detect_faces(self, image: np.ndarray) -> list[Detection]:
        if min(image.shape[:2]) < self.min_size:
            return []  # no face of min_size fits (and a strip a pixel or two high is no picture of one)
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small, factor = _downscale(gray, self.max_side)
        min_side = max(12, int(round(self.min_size / factor)))
        found = self._classifier.detectMultiScale(small, scaleFactor=self.scale_factor,
                                                  minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        boxes = (checked_detection(b * factor, shape=gray.shape) for b in np.asarray(found, dtype=float).reshape(-1, 4))
        return _largest_first([d for d in boxes if d is not None])


_VERIFIED: dict[tuple[str, float, int], bool] = {}
_VERIFIED_LOCK = threading.Lock()


def _verify_yunet_file(path: Path) -> None:
    """The shipped YuNet file must hash to ``YUNET_SHA256`` (checked once per file version)."""
    if not path.is_file():
        raise DetectorError(f"YuNet model file not found: {path}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime, stat.st_size)
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != YUNET_SHA256:
        raise DetectorError(f"{path}: sha256 {digest[:16]}... is not the shipped YuNet model's "
                            f"({YUNET_SHA256[:16]}...); the file is corrupt or was replaced")
    with _VERIFIED_LOCK:
        _VERIFIED[key] = True


@dataclass
class YuNetDetector(_BoxesMixin):
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``) with five landmarks per face.

    ``model_path``: None for the shipped file (sha256 checked), or a YuNet .onnx file of your own
    (used as it is). ``score_threshold``: the lowest face score kept (lower finds more faces and
    more false ones). ``min_size``: smallest face side in the original image's pixels.
    ``max_side``: images larger than this are searched downscaled, which keeps a face that fills
    a big photo inside the 10-300 px YuNet was trained on (pixels; 0 disables).

    The defaults were chosen by measurement (``benchmarks/bench_detect.py``; the README has the
    table). Not safe to call from two threads at once (``Recognizer`` keeps one per thread).
    """

    model_path: str | os.PathLike | None = None
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    min_size: int = 30
    max_side: int = YUNET_MAX_SIDE
    kind = "yunet"

    def __post_init__(self) -> None:
        if not 0.0 < self.score_threshold < 1.0:
            raise DetectorError(f"the YuNet score threshold must be between 0 and 1, got {self.score_threshold}")
        path = YUNET_FILE if self.model_path is None else Path(self.model_path)
        if self.model_path is None:
            _verify_yunet_file(path)
        elif not path.is_file():
            raise DetectorError(f"YuNet model file not found: {path}")
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.score_threshold,
                                                  self.nms_threshold, 5000)
            if self.model_path is not None:
                # OpenCV loads any ONNX graph (the emotion model, say) and fails only at the first
                # picture; one blank picture now turns that into this one-line refusal.
                self._net.setInputSize((64, 64))
                _, probe = self._net.detect(np.zeros((64, 64, 3), np.uint8))
                if probe is not None and (probe.ndim != 2 or probe.shape[1] != 15):
                    raise cv2.error(f"its output has shape {probe.shape}, not YuNet's (faces, 15)")
        except cv2.error as exc:
            raise DetectorError(f"{path}: not a YuNet model OpenCV can load ({str(exc).strip().splitlines()[-1]})") from None

    def detect_faces(self, image: np.ndarray) -> list[Detection]:
        if min(image.shape[:2]) < self.min_size:
            # No face of min_size fits; and on a strip a pixel or two high YuNet's output is not
            # even repeatable (it found "faces" in 1x1300 and 5000x2 pictures about 1 run in 3).
            return []
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        small, factor = _downscale(bgr, self.max_side)
        self._net.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self._net.detect(small)
        found = []
        for f in () if faces is None else np.asarray(faces, dtype=np.float64):
            detection = checked_detection(f[:4] * factor, f[14], (f[4:14] * factor).reshape(5, 2), shape=image.shape)
            if detection is not None and min(detection.box[2:]) >= self.min_size:
                found.append(detection)
        return _largest_first(found)


def find_faces(detector, image: np.ndarray) -> list[Detection]:
    """``detector.detect_faces(image)``; a detector of your own with only ``detect(image) -> boxes``
    works too (its faces get no score and no landmarks)."""
    if hasattr(detector, "detect_faces"):
        found = [checked_detection(d.box, d.score, d.landmarks, shape=image.shape) for d in detector.detect_faces(image)]
    else:
        found = [checked_detection(box, shape=image.shape) for box in detector.detect(image)]
    return [d for d in found if d is not None]


def make_detector(kind: str = DEFAULT_DETECTOR, **options) -> Detector:
    """A detector by name: ``yunet`` (default) or ``haar``; ``options`` are its dataclass fields.

    Options that belong to the other detector (e.g. ``min_neighbors`` for YuNet) are ignored, so
    one set of command-line options can build either.
    """
    classes = {"yunet": YuNetDetector, "haar": HaarDetector}
    if kind not in classes:
        raise DetectorError(f"unknown detector {kind!r}: use one of {', '.join(DETECTORS)}")
    cls = classes[kind]
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in options.items() if k in fields and v is not None})
