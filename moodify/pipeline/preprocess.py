"""How a face becomes network input: one definition, used by training and by inference.

Two steps, both described by values stored in every checkpoint:

* framing: where the 48x48 crop sits on a detected face (``Framing``), one per detector, since a
  YuNet box and a Haar box sit differently on a face. The framings are measured, not guessed:
  ``python -m moodify.training.framing --photos`` scores the model on labelled real photos over a grid of
  framings and records the best (the model cards give the commands and figures);
  ``python -m moodify.training.framing --data --detector haar`` measured how FER2013 itself frames a face (a Haar box on
  upscaled training faces), which is kept as the training data's own framing.
* normalisation: uint8 pixels -> float, minus the training-set mean, over its std.

``crop_face`` is the one crop every path uses (API, batch, video, live, the web app, evaluation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from .reference import ReferenceSetting

FACE_SIZE = 48  # pixels
MAX_INPUT_SIZE = 512  # pixels: the largest face side a checkpoint may ask for (Moodify's networks take 48)


def eyes_and_mouth(landmarks) -> tuple[np.ndarray, np.ndarray]:
    """The midpoints of the eyes and of the mouth corners, from 5 landmarks in YuNet's order."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2


def eye_tilt(landmarks) -> float:
    """How far the eye line is turned from level, in radians (positive: the left eye lower in the image)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return float(np.arctan2(pts[1, 1] - pts[0, 1], pts[1, 0] - pts[0, 0]))


@dataclass(frozen=True)
class Framing:
    """Where the network's square crop sits on a detected face.

    ``anchor="box"``: the reference length is the detector box's width and the anchor point is
    the box centre. ``anchor="eyes"``: the reference length is the distance from the eyes'
    midpoint to the mouth's (it shrinks far less than the eye distance when a face turns) and the
    anchor point is the eyes' midpoint; this needs the detector's landmarks.
    The square's side is ``scale`` reference lengths; its centre is the anchor moved by
    ``(shift_x, shift_y)`` reference lengths (positive ``shift_y``: towards the chin).
    ``rotate``: turn the crop so the eyes are level (needs landmarks).
    ``level_beyond``: turn it so only when the eyes tilt by more than this many degrees (needs
    landmarks; None: never, unless ``rotate``). FER2013's faces tilt by up to 16 degrees in 95 of
    100, so a face within that is cropped as it is and a head tilted further is shown upright
    (``benchmarks/bench_tilt.py``; the model cards give the figures).
    """

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    anchor: str = "box"
    rotate: bool = False
    level_beyond: float | None = None  # degrees

    def __post_init__(self) -> None:
        if self.anchor not in ("box", "eyes"):
            raise ValueError(f"framing anchor must be 'box' or 'eyes', got {self.anchor!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"framing scale must be a positive number, got {self.scale}")
        if not (np.isfinite(self.shift_x) and np.isfinite(self.shift_y)):
            raise ValueError(f"framing shifts must be numbers, got {self.shift_x}, {self.shift_y}")
        if self.level_beyond is not None and not (np.isfinite(self.level_beyond) and 0 <= self.level_beyond < 180):
            raise ValueError(f"framing level_beyond must be degrees from 0 to 180, got {self.level_beyond}")

    @property
    def needs_landmarks(self) -> bool:
        return self.anchor == "eyes" or self.rotate or self.level_beyond is not None

    def placement(self, box, landmarks=None) -> tuple[float, float, float, float]:
        """(centre x, centre y, side, angle in radians) of the crop square for one face."""
        x, y, w, h = (float(v) for v in box)
        angle = 0.0
        if self.needs_landmarks:
            if landmarks is None:
                raise ValueError("this framing needs the detector's landmarks")
            tilt = eye_tilt(landmarks)
            if self.rotate or (self.level_beyond is not None and abs(np.degrees(tilt)) > self.level_beyond):
                angle = tilt
        # The face's own axes: across (eye line) and down (towards the chin).
        across = np.array([np.cos(angle), np.sin(angle)])
        down = np.array([-np.sin(angle), np.cos(angle)])
        if self.anchor == "eyes":
            eyes, mouth = eyes_and_mouth(landmarks)
            ref = max(float(np.hypot(*(mouth - eyes))), 1.0)
            anchor = eyes
        else:
            ref, anchor = w, np.array([x + w / 2, y + h / 2])
        centre = anchor + ref * (self.shift_x * across + self.shift_y * down)
        return float(centre[0]), float(centre[1]), self.scale * ref, angle

    def to_dict(self) -> dict:
        return asdict(self)


# Measured with `python -m moodify.training.framing --data ../shared/data --detector haar` (moodify/training/framing.py): on 1,620
# of 3,000 upscaled FER2013 training faces the Haar detector (its default settings) found a face;
# its median box is 41.0 px wide at (3.75, 3.5) inside the 48 px frame, so FER2013 shows ~17%
# more than a Haar box, centred. Real photos are framed by measurement on labelled photos
# instead (``python -m moodify.training.framing --photos``), per detector, and stored in each checkpoint;
# this is the fallback for a checkpoint that has none.
FER2013_FRAMING = Framing(scale=1.171, shift_x=-0.006, shift_y=0.0)


@dataclass(frozen=True)
class Preprocessing:
    """Everything that turns a face into network input; saved in the checkpoint.

    ``framings``: one ``Framing`` per detector kind ("yunet", "haar"), because a YuNet box and a
    Haar box sit differently on a face; ``"<kind>:box"`` is the box-only framing used when a face
    comes without landmarks (a box given by hand, or one a video tracker carried).
    ``reference``: how this model's probabilities are read relative to a person's neutral face
    (``moodify.pipeline.reference``); measured per model and kept here, beside the framings, so it
    travels with the weights into checkpoints and ONNX files. None: not measured for this model.
    """

    input_size: int = FACE_SIZE
    mean: float = 0.5  # of pixel/255 over the training set
    std: float = 0.25
    framing: Framing = FER2013_FRAMING  # the training data's own framing (a Haar box on FER2013)
    framings: dict = field(default_factory=dict)
    reference: ReferenceSetting | None = None

    def framing_for(self, kind: str | None, *, landmarks: bool = True) -> Framing:
        """The framing for faces from detector ``kind``; with ``landmarks=False`` one that needs none."""
        for key in ((kind,) if landmarks else ()) + (f"{kind}:box", kind):
            framing = self.framings.get(key)
            if framing is not None and (landmarks or not framing.needs_landmarks):
                return framing
        return self.framings.get("haar", self.framing)

    def to_dict(self) -> dict:
        out = {"input_size": self.input_size, "mean": self.mean, "std": self.std,
               "framing": self.framing.to_dict(), "framings": {k: f.to_dict() for k, f in self.framings.items()}}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """The preprocessing a checkpoint (or an ONNX file's metadata) stores, every field type- and
        range-checked: ``ValueError`` names the first field that is missing, of the wrong type or
        out of range (a native crash, an overflow or NaN probabilities otherwise)."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing is a {type(d).__name__}, not a mapping")
        size = _number(d, "input_size", integer=True)
        if not 8 <= size <= MAX_INPUT_SIZE:
            raise ValueError(f"preprocessing.input_size must be 8 to {MAX_INPUT_SIZE} pixels, got {size}")
        mean, std = _number(d, "mean"), _number(d, "std")
        if not -1e3 <= mean <= 1e3:  # of pixel/255: anything outside is no image's mean
            raise ValueError(f"preprocessing.mean must be within [-1000, 1000], got {mean}")
        if not 1e-3 <= std <= 1e3:
            raise ValueError(f"preprocessing.std must be within [0.001, 1000], got {std}")
        framings = d.get("framings") or {}
        if not isinstance(framings, dict):
            raise ValueError(f"preprocessing.framings is a {type(framings).__name__}, not a mapping of detector "
                             "to framing")
        return cls(input_size=size, mean=mean, std=std, framing=_framing(d.get("framing"), "preprocessing.framing"),
                   framings={str(k): _framing(f, f"preprocessing.framings.{k}") for k, f in framings.items()},
                   reference=_reference(d.get("reference")))


def _number(d: dict, key: str, *, integer: bool = False):
    """``d[key]`` as a finite float (or an int), or ValueError naming ``preprocessing.key``."""
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"preprocessing.{key} is {'missing' if value is None else repr(value)[:40]}, not a number")
    if integer:
        if isinstance(value, float) and not (np.isfinite(value) and value == int(value)):
            raise ValueError(f"preprocessing.{key} must be a whole number, got {value!r}")
        return int(value)
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"preprocessing.{key} is too large for a float") from None
    if not np.isfinite(number):
        raise ValueError(f"preprocessing.{key} is {number}, not a finite number")
    return number


def _reference(value) -> ReferenceSetting | None:
    try:
        return ReferenceSetting.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"preprocessing.reference: {exc}") from None


def _framing(value, where: str) -> Framing:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is {'missing' if value is None else 'a ' + type(value).__name__}, not a mapping")
    unknown = sorted(set(map(str, value)) - set(Framing.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(unknown)}")
    for key in ("scale", "shift_x", "shift_y", "level_beyond"):
        if key not in value or (key == "level_beyond" and value[key] is None):
            continue
        number = value[key]
        ok = isinstance(number, (int, float)) and not isinstance(number, bool)
        try:
            ok = ok and abs(float(number)) <= 1e6  # NaN fails this too
        except OverflowError:
            ok = False
        if not ok:
            raise ValueError(f"{where}.{key} is {str(number)[:40]}, not a number within +-1e6")
    if not isinstance(value.get("anchor", "box"), str) or not isinstance(value.get("rotate", False), bool):
        raise ValueError(f"{where}: anchor must be text and rotate true or false")
    try:
        return Framing(**value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def normalize_array(faces: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 faces (N, H, W) or (N, 1, H, W) -> float32 array (N, 1, H, W): /255, minus mean, over std.

    The one normalisation: the torch path (``normalize``), onnxruntime and the int8 calibration
    all call it, so every backend sees the same numbers.
    """
    x = np.asarray(faces)
    if x.ndim == 3:
        x = x[:, None]
    return (x.astype(np.float32) / np.float32(255.0) - np.float32(prep.mean)) / np.float32(prep.std)


def normalize(faces: np.ndarray | torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 faces (N, H, W) or (N, 1, H, W) -> float32 tensor (N, 1, H, W), normalised (``normalize_array``)."""
    if isinstance(faces, torch.Tensor):
        faces = faces.cpu().numpy()
    return torch.from_numpy(normalize_array(faces, prep))


def crop_face(gray: np.ndarray, box, framing: Framing, *, size: int = FACE_SIZE, landmarks=None) -> np.ndarray:
    """Cut one face out of a grayscale uint8 image as ``size`` x ``size``, placed as ``framing`` says.

    The one crop every path uses (API, batch, video, live, app, evaluation). Parts of the square
    outside the image are filled by replicating the border, so a face at the edge of a photo
    still yields a whole crop. Shrinking is antialiased: the region is first reduced by area
    (``INTER_AREA``, a whole factor) so a big face averages its pixels rather than sampling
    them, and only the remaining factor below 2 is left to the bilinear warp.
    """
    cx, cy, side, angle = framing.placement(box, landmarks)
    scale = size / max(side, 1e-6)
    cos, sin = np.cos(angle), np.sin(angle)
    # Affine map from image pixels to crop pixels: centre to the origin, turn by -angle, scale,
    # then to the crop's centre.
    matrix = np.array([[scale * cos, scale * sin, 0.0], [-scale * sin, scale * cos, 0.0], [0.0, 0.0, 1.0]])
    matrix[:2, 2] = np.array([size / 2, size / 2]) - matrix[:2, :2] @ np.array([cx, cy])
    factor = int(1 / scale) if scale < 1 else 1
    if factor > 1:
        # Only the region the (possibly turned) square covers is shrunk.
        half = side / 2 * (abs(cos) + abs(sin)) + factor
        x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
        x1, y1 = int(min(cx + half + 1, gray.shape[1])), int(min(cy + half + 1, gray.shape[0]))
        region = gray[y0:y1, x0:x1]
        if region.size:
            small = cv2.resize(region, (max(1, region.shape[1] // factor), max(1, region.shape[0] // factor)),
                               interpolation=cv2.INTER_AREA)
            fx, fy = region.shape[1] / small.shape[1], region.shape[0] / small.shape[0]
            matrix = matrix @ np.array([[fx, 0, x0], [0, fy, y0], [0, 0, 1]], dtype=np.float64)
            gray = small
    return cv2.warpAffine(gray, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def resize_face(face: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """A pre-cropped grayscale face as ``size`` x ``size``: area interpolation shrinking, bilinear
    enlarging, as ``moodify.training.data`` prepares FER2013 faces for training."""
    h, w = face.shape[:2]
    if (h, w) == (size, size):
        return face
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR)


def crop_faces(gray: np.ndarray, faces, prep: Preprocessing, *, kind: str | None = None) -> np.ndarray:
    """The network inputs (N, size, size) uint8 for ``faces`` (``Detection``s or plain boxes).

    ``kind``: the detector that found them, which picks the framing stored for it in ``prep``.
    """
    size = prep.input_size
    out = np.zeros((len(faces), size, size), dtype=np.uint8)
    for i, face in enumerate(faces):
        box, landmarks = (face.box, face.landmarks) if hasattr(face, "box") else (face, None)
        framing = prep.framing_for(kind, landmarks=landmarks is not None)
        out[i] = crop_face(gray, box, framing, size=size, landmarks=landmarks)
    return out
