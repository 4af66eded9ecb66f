"""How a face becomes network input: one definition, used by training and by inference.

Two steps, both described by values stored in every checkpoint:

* framing: where the 48x48 crop sits relative to a face detector's box. FER2013 faces are
  framed looser than a Haar box (forehead, chin and some background show), so a crop that is
  just the detector box would look unlike anything the network was trained on. The constants
  below were measured, not guessed: ``python -m moodify.framing --data ../shared/data`` runs the
  Haar detector on upscaled FER2013 faces and reports where its box falls inside the frame.
* normalisation: uint8 pixels -> float, minus the training-set mean, over its std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

FACE_SIZE = 48  # pixels


@dataclass(frozen=True)
class Framing:
    """A crop square around a detector box (x, y, w, h).

    The square's side is ``scale * w`` and its centre is the box centre moved by
    ``(shift_x * w, shift_y * w)``: a positive ``shift_y`` moves the crop down.
    """

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def square(self, box: tuple[float, float, float, float]) -> tuple[float, float, float]:
        """(centre x, centre y, side) of the crop square for a detector box."""
        x, y, w, h = box
        side = self.scale * w
        return x + w / 2 + self.shift_x * w, y + h / 2 + self.shift_y * w, side


# Measured with `python -m moodify.framing --data ../shared/data` (moodify/framing.py): on 1,620
# of 3,000 upscaled FER2013 training faces the Haar detector (its default settings) found a face;
# its median box is 41.0 px wide at (3.75, 3.5) inside the 48 px frame, so FER2013 shows ~17%
# more than a Haar box, centred. (The settings move this by a pixel or so: OpenCV's
# frontalface_default at 1.1 / 5 neighbours gave 40.25 px, 1.193.)
# Each checkpoint stores the framing its training data had; this is the FER2013 one.
FER2013_FRAMING = Framing(scale=1.171, shift_x=-0.006, shift_y=0.0)


@dataclass(frozen=True)
class Preprocessing:
    """Everything that turns a face into network input; saved in the checkpoint."""

    input_size: int = FACE_SIZE
    mean: float = 0.5  # of pixel/255 over the training set
    std: float = 0.25
    framing: Framing = FER2013_FRAMING

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(input_size=int(d["input_size"]), mean=float(d["mean"]), std=float(d["std"]),
                   framing=Framing(**d["framing"]))


def normalize(faces: np.ndarray | torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 faces (N, H, W) or (N, 1, H, W) -> float32 tensor (N, 1, H, W), normalised."""
    t = torch.as_tensor(faces)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return (t.float() / 255.0 - prep.mean) / prep.std


def crop_face(gray: np.ndarray, box: tuple[float, float, float, float], framing: Framing,
              *, size: int = FACE_SIZE) -> np.ndarray:
    """Cut the face at ``box`` out of a grayscale uint8 image, framed like FER2013, as size x size.

    Parts of the square that fall outside the image are filled by replicating the border, the
    way a face at the edge of a photo still yields a whole crop. Area interpolation when
    shrinking keeps a large face from aliasing.
    """
    cx, cy, side = framing.square(box)
    scale = size / side
    # Affine map taking the square's top-left corner to (0, 0) and its side to `size` pixels.
    matrix = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], dtype=np.float64)
    if scale < 1:
        # Shrink by area first so a big face averages its pixels rather than sampling them.
        x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
        x1 = int(min(cx + side / 2 + 1, gray.shape[1]))
        y1 = int(min(cy + side / 2 + 1, gray.shape[0]))
        region = gray[y0:y1, x0:x1]
        if region.size:
            factor = max(1, int(1 / scale))
            small = cv2.resize(region, (max(1, region.shape[1] // factor), max(1, region.shape[0] // factor)),
                               interpolation=cv2.INTER_AREA)
            fx, fy = region.shape[1] / small.shape[1], region.shape[0] / small.shape[0]
            matrix = matrix @ np.array([[fx, 0, x0], [0, fy, y0], [0, 0, 1]], dtype=np.float64)
            gray = small
    return cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(gray: np.ndarray, boxes, prep: Preprocessing) -> np.ndarray:
    """``crop_face`` for every box: the network inputs (N, size, size) uint8, framed as ``prep`` says."""
    size = prep.input_size
    out = np.zeros((len(boxes), size, size), dtype=np.uint8)
    for i, box in enumerate(boxes):
        out[i] = crop_face(gray, box, prep.framing, size=size)
    return out
