"""Face detectors: OpenCV's Haar cascade (default, ships with opencv) and YuNet from a user's file.

Both take a grayscale or BGR uint8 image and return boxes (x, y, w, h) in that image's pixels,
largest first. Large images are searched on a downscaled copy and the boxes mapped back, which
is what keeps a 12-megapixel photo from taking seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h in pixels
DETECT_MAX_SIDE = 640  # pixels: larger images are downscaled to this for detection
# OpenCV's frontal-face cascades by the names the CLI takes; HaarDetector's docstring says why alt2 leads.
HAAR_CASCADES = {"frontalface_alt2": "haarcascade_frontalface_alt2.xml",
                 "frontalface_default": "haarcascade_frontalface_default.xml",
                 "frontalface_alt": "haarcascade_frontalface_alt.xml"}
DEFAULT_CASCADE = "frontalface_alt2"


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Box]: ...


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    factor = max(h, w) / max_side if max_side and max(h, w) > max_side else 1.0
    if factor > 1.0:
        # max(1, ...): a 1x1300 strip must not shrink to zero pixels (OpenCV refuses an empty size).
        image = cv2.resize(image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return image, factor


def _scale_boxes(boxes: list[tuple[float, float, float, float]], factor: float) -> list[Box]:
    out = [tuple(int(round(v * factor)) for v in box) for box in boxes]
    return sorted(out, key=lambda b: b[2] * b[3], reverse=True)


@dataclass
class HaarDetector:
    """A frontal-face Haar cascade that ships with OpenCV (``cv2.data.haarcascades``); nothing is downloaded.

    ``scale_factor``: image-pyramid step, smaller finds more faces and runs slower.
    ``min_neighbors``: overlapping hits a face needs; higher means fewer false faces (sensitivity).
    ``min_size``: smallest face side in the original image's pixels.
    ``max_side``: images larger than this are searched downscaled (pixels; 0 disables).
    ``cascade``: a file in ``cv2.data.haarcascades``.

    The defaults (alt2 cascade, step 1.2, 3 neighbours) were chosen on real faces pasted into
    256x256 pictures (``benchmarks/bench_detect.py``; the README has the table). Against OpenCV's
    usual frontalface_default at 1.1 / 5 they find fewer 64-160 px faces (68.8% vs 73.1%) and more
    32-63 px ones (61.3% vs 56.8%), see a fifth of the false faces (52 vs 287), and take 14 rather
    than 31 ms per picture. 2 neighbours would find more faces (72.4%, 65.7%), and more false ones:
    7x as many in face-free pictures, and one on the spacesuit in a JPEG of skimage's astronaut.
    """

    scale_factor: float = 1.2
    min_neighbors: int = 3
    min_size: int = 30
    max_side: int = DETECT_MAX_SIDE
    cascade: str = HAAR_CASCADES[DEFAULT_CASCADE]

    def __post_init__(self) -> None:
        path = Path(cv2.data.haarcascades) / self.cascade
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}")

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small, factor = _downscale(gray, self.max_side)
        min_side = max(12, int(round(self.min_size / factor)))
        found = self._classifier.detectMultiScale(small, scaleFactor=self.scale_factor,
                                                  minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        return _scale_boxes([tuple(map(float, b)) for b in np.asarray(found).reshape(-1, 4)], factor)


@dataclass
class YuNetDetector:
    """OpenCV's YuNet CNN detector (``cv2.FaceDetectorYN``), from a .onnx file the user gives.

    More accurate than Haar on turned and small faces. Its model file is not shipped with any pip
    package and Moodify never downloads one: pass the path of a file you have.
    """

    model_path: str | os.PathLike
    score_threshold: float = 0.7
    min_size: int = 30
    max_side: int = DETECT_MAX_SIDE

    def __post_init__(self) -> None:
        path = Path(self.model_path)
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model file not found: {path}")
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.score_threshold)

    def detect(self, image: np.ndarray) -> list[Box]:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        small, factor = _downscale(bgr, self.max_side)
        self._net.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self._net.detect(small)
        boxes = [] if faces is None else [tuple(map(float, f[:4])) for f in faces]
        boxes = [b for b in boxes if min(b[2], b[3]) * factor >= self.min_size]
        return _scale_boxes(boxes, factor)


def make_detector(kind: str = "haar", *, model_path: str | None = None, **options) -> Detector:
    """A detector by name: ``haar`` (default) or ``yunet`` (needs ``model_path``)."""
    if kind == "haar":
        return HaarDetector(**options)
    if kind == "yunet":
        if not model_path:
            raise ValueError("the yunet detector needs the path of its .onnx model file")
        return YuNetDetector(model_path, **options)
    raise ValueError(f"unknown detector {kind!r}: use haar or yunet")
