"""Drawing results onto images: boxes and numbered labels (BGR, OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .recognizer import Face
from .rows import percent

# One BGR colour per emotion, in EMOTIONS order; picked to stay distinct for common colour blindness.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 60),
    "fear": (150, 60, 150),
    "happy": (0, 200, 255),
    "sad": (200, 120, 30),
    "surprise": (230, 200, 0),
    "neutral": (170, 170, 170),
}


# The height of a label's capital letters where a viewer sees the picture, in screen pixels: 12 px
# is small print that still reads on a laptop.
LEGIBLE_TEXT_PX = 12
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CAP_PX_AT_SCALE_1 = 22  # cv2.getTextSize's height of "1" in _FONT at scale 1.0


def face_label(face: Face, number: int | None = None) -> str:
    """``"1 happy 93.3%"``: the number shown on the picture and in tables, the top emotion, confidence."""
    prefix = f"{number} " if number is not None else ""
    return f"{prefix}{face.emotion} {percent(face.confidence)}"


@dataclass(frozen=True)
class Label:
    """One face's label as drawn: its text and the filled tag behind it (x, y, w, h in picture pixels)."""

    text: str
    rect: tuple[int, int, int, int]
    scale: float  # the font scale

    @property
    def cap_px(self) -> float:
        """The height of its capital letters and digits, in picture pixels."""
        return _CAP_PX_AT_SCALE_1 * self.scale


def annotate(bgr: np.ndarray, faces: Sequence[Face], *, numbers: Sequence[int] | None = None,
             shown_width: int | None = None) -> np.ndarray:
    """A copy of ``bgr`` with each face boxed and labelled (``label_layout``): ``number emotion
    confidence`` where every face's label fits beside its face, else the number alone (the app
    gives each number's details beside the picture). ``numbers`` default to 1, 2, ... in order;
    ``shown_width`` is how many pixels wide the picture will be seen (None: its own width)."""
    return _annotate_into(bgr.copy(), faces, numbers=numbers, shown_width=shown_width)


def label_layout(shape: tuple[int, ...], faces: Sequence[Face], *, numbers: Sequence[int] | None = None,
                 shown_width: int | None = None) -> list[Label]:
    """Where each face's label goes on a picture of ``shape``, so that it can be read and hides nothing.

    No label covers another face's box or another label, and none lies inside its own face's box
    or in the chin band below it (box-height/3, where a viewer looks at chin and neck): it sits
    above the box, right or left of it, or below the chin band: the first of these inside the
    picture that is free. Its capital letters are at least ``LEGIBLE_TEXT_PX`` high once the
    picture is shrunk to ``shown_width`` pixels. Where the full labels do not all fit (a group photo,
    a picture shown small), every face gets its number alone; a number with no free place at all
    goes in the top-left corner of its own box.
    """
    numbers = list(numbers) if numbers is not None else list(range(1, len(faces) + 1))
    scale = _text_scale(shape, shown_width)
    full = _place([face_label(f, n) for f, n in zip(faces, numbers)], [f.box for f in faces], shape, scale)
    if all(label is not None for label in full):
        return full
    placed = _place([str(n) for n in numbers], [f.box for f in faces], shape, scale)
    return [label or _inside_box(str(n), face.box, scale) for label, n, face in zip(placed, numbers, faces)]


def _text_scale(shape: tuple[int, ...], shown_width: int | None) -> float:
    """The font scale: one that reads at the picture's own size, larger when it is shown shrunk."""
    scale = max(0.4, min(1.2, max(shape[:2]) / 1000))
    if shown_width and shown_width < shape[1]:
        scale = max(scale, LEGIBLE_TEXT_PX * shape[1] / shown_width / _CAP_PX_AT_SCALE_1)
    return scale


def _thickness(scale: float) -> int:
    return max(1, int(round(scale * 2)))


def _tag_size(text: str, scale: float) -> tuple[int, int]:
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, _thickness(scale))
    pad = max(2, int(round(3 * scale)))
    return tw + 2 * pad, th + base + 2 * pad


def _place(texts: Sequence[str], boxes: Sequence[tuple[int, int, int, int]], shape: tuple[int, ...],
           scale: float) -> list[Label | None]:
    """Each text's tag at the first free candidate place around its box (None where none is free)."""
    H, W = shape[:2]
    gap = _thickness(scale) + 2
    taken = [tuple(int(v) for v in box) for box in boxes]  # every face; labels join as they are placed
    labels: list[Label | None] = []
    for i, (text, box) in enumerate(zip(texts, boxes)):
        width, height = _tag_size(text, scale)
        x, y, w, h = box
        left = min(max(x, 0), max(W - width, 0))
        side_top = min(max(y, 0), max(H - height, 0))
        candidates = [(left, y - gap - height), (x + w + gap, side_top), (x - gap - width, side_top),
                      (left, y + h + h // 3 + gap)]
        others = taken[:i] + taken[i + 1:]  # its own box is not in the way of places around it
        free = next(((cx, cy) for cx, cy in candidates
                     if cx >= 0 and cy >= 0 and cx + width <= W and cy + height <= H
                     and not any(_overlap((cx, cy, width, height), r) for r in others)), None)
        if free is None:
            labels.append(None)
            continue
        labels.append(Label(text, (*free, width, height), scale))
        taken.append((*free, width, height))
    return labels


def _inside_box(text: str, box: tuple[int, int, int, int], scale: float) -> Label:
    width, height = _tag_size(text, scale)
    return Label(text, (int(box[0]), int(box[1]), width, height), scale)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _annotate_into(out: np.ndarray, faces: Sequence[Face], *, numbers: Sequence[int] | None,
                   shown_width: int | None = None) -> np.ndarray:
    labels = label_layout(out.shape, faces, numbers=numbers, shown_width=shown_width)
    for face, label in zip(faces, labels):
        x, y, w, h = face.box
        color = EMOTION_COLORS[face.emotion]
        thick = _thickness(label.scale)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick + 1)
        lx, ly, lw, lh = label.rect
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), color, cv2.FILLED)
        pad = max(2, int(round(3 * label.scale)))
        (_, th), _ = cv2.getTextSize(label.text, _FONT, label.scale, thick)
        cv2.putText(out, label.text, (lx + pad, ly + pad + th), _FONT, label.scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def annotate_tracks(bgr: np.ndarray, faces: Sequence[Face], *, fps: float | None = None,
                    status: Sequence[str] = (), copy: bool = True) -> np.ndarray:
    """Video frames: like ``annotate`` but each face is numbered by its ``track_id`` (stable
    across frames), with an optional FPS counter and status lines (``"REC"``, ``"PAUSED"``) in
    the top-left corner. ``copy=False`` draws in place, which live video can afford."""
    numbers = [getattr(face, "track_id", i) for i, face in enumerate(faces, start=1)]
    out = _annotate_into(bgr.copy() if copy else bgr, faces, numbers=numbers)
    lines = ([f"{fps:.1f} fps"] if fps is not None else []) + list(status)
    if lines:
        draw_overlay(out, lines)
    return out


def draw_overlay(img: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` in the top-left corner of ``img`` (in place), white on a dark band."""
    scale = max(0.45, min(1.0, max(img.shape[:2]) / 1000))
    thick = max(1, int(round(scale * 2)))
    y = 4
    for text in lines:
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(img, (4, y), (4 + tw + 8, y + th + base + 6), (30, 30, 30), cv2.FILLED)
        color = (60, 60, 255) if text.startswith("REC") else (255, 255, 255)
        cv2.putText(img, text, (8, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
        y += th + base + 8
    return img
