"""What every emotion model is: the protocol the pipeline, batch, video and the app program against.

A model is anything with its label order, its preprocessing (face size, mean/std, how faces are
cropped), a calibration temperature, uncalibrated ``logits(faces)`` and calibrated
``predict(faces)``. The torch ``EmotionModel`` (``moodify.model.torch_backend``) and the
onnxruntime ``OnnxEmotionModel`` (``moodify.model.onnx_backend``) satisfy it; so can an ensemble
(the mean of several networks' logits with one temperature: ``calibrated(mean_logits, T)``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ModelError
from ..labels import EMOTIONS
from ..pipeline.preprocess import Preprocessing


@runtime_checkable
class EmotionClassifier(Protocol):
    """The model protocol: labels, preprocessing, temperature, ``logits`` and ``predict``."""

    name: str
    labels: tuple[str, ...]  # EMOTIONS order, checked on load
    preprocessing: Preprocessing  # how a face is cropped, resized and normalised for this model
    temperature: float  # calibration: probabilities = softmax(logits / temperature)
    tta: bool  # whether predict averages each face with its mirror image by default
    metrics: dict  # recorded evaluation figures, e.g. metrics["PrivateTest"]["accuracy"]

    def logits(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Uncalibrated logits (N, 7) for uint8 faces (N, size, size)."""
        ...

    def predict(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Calibrated probabilities (N, 7) in EMOTIONS order for uint8 faces (N, size, size)."""
        ...


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, in the logits' own dtype: the one softmax of
    training, evaluation and the numpy backends."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (N, 7) from logits divided by the calibration temperature, in float64."""
    return softmax(np.asarray(logits, dtype=np.float64), temperature)


# Calibration temperatures a checkpoint may hold: fitted ones are ~1-2; far outside this range
# softmax(logits / T) is all one class or NaN (T = 1e-300 gave "nan%").
TEMPERATURE_RANGE = (1e-2, 1e2)


def read_temperature(value, *, name: str) -> float:
    """A checkpoint's (or ONNX metadata's) calibration temperature, type- and range-checked."""
    try:
        temperature = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"{name}: temperature {str(value)[:40]!r} is not a number; the checkpoint is damaged") from None
    low, high = TEMPERATURE_RANGE
    if isinstance(value, bool) or not low <= temperature <= high:  # NaN fails this too
        raise ModelError(f"{name}: temperature {temperature} is outside [{low}, {high}]; the checkpoint is damaged")
    return temperature


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def check_settings(prep: Preprocessing, temperature: float, *, name: str) -> None:
    """Refuse preprocessing or a calibration temperature that would make every prediction wrong or NaN."""
    numbers = {"temperature": temperature, "mean": prep.mean, "std": prep.std, "framing scale": prep.framing.scale,
               "framing shift_x": prep.framing.shift_x, "framing shift_y": prep.framing.shift_y}
    for what, value in numbers.items():
        if not np.isfinite(value):
            raise ModelError(f"{name}: {what} is {value}; the checkpoint is damaged")
    for what in ("temperature", "std", "framing scale"):
        if numbers[what] <= 0:
            raise ModelError(f"{name}: {what} must be positive, got {numbers[what]}; the checkpoint is damaged")
    if prep.input_size < 8:
        raise ModelError(f"{name}: input_size {prep.input_size} is not a usable face size; the checkpoint is damaged")


def check_faces(faces: np.ndarray, size: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.ndim != 3 or faces.shape[1:] != (size, size):
        raise ValueError(f"faces must be a uint8 array of shape (N, {size}, {size}), got {faces.shape}")
    if faces.dtype != np.uint8:
        raise ValueError(f"faces must be uint8 (0..255), got {faces.dtype}")
    return faces


