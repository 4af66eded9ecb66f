"""Drawing results onto images: boxes, numbered labels and probability bars (BGR, OpenCV)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..labels import EMOTIONS
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


def face_label(face: Face, number: int | None = None) -> str:
    """``"1 happy 93.3%"``: the number shown on the picture and in tables, the top emotion, confidence."""
    prefix = f"{number} " if number is not None else ""
    return f"{prefix}{face.emotion} {percent(face.confidence)}"


def annotate(bgr: np.ndarray, faces: Sequence[Face], *, numbers: Sequence[int] | None = None,
             bars: bool = True) -> np.ndarray:
    """A copy of ``bgr`` with each face boxed, labelled ``number emotion confidence`` and, when
    ``bars``, a small bar per emotion under the label. ``numbers`` default to 1, 2, ... in order.

    The label and its bars never cover the face: they sit above the box, or beside it when the
    face is too near the top of the picture, and never in the box or just below it (the chin and
    neck a viewer looks at; a dark panel there hid them).
    """
    return _annotate_into(bgr.copy(), faces, numbers=numbers, bars=bars)


def _annotate_into(out: np.ndarray, faces: Sequence[Face], *, numbers: Sequence[int] | None,
                   bars: bool) -> np.ndarray:
    numbers = list(numbers) if numbers is not None else list(range(1, len(faces) + 1))
    scale = max(0.4, min(1.2, max(out.shape[:2]) / 1000))  # text size that reads at any resolution
    thick = max(1, int(round(scale * 2)))
    taken = [tuple(face.box) for face in faces]  # no label covers a face, nor another label
    for face, number in zip(faces, numbers):
        x, y, w, h = face.box
        color = EMOTION_COLORS[face.emotion]
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick + 1)
        text = face_label(face, number)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        label_h, bar_h = th + base + 4, max(3, th // 2)
        width, height = tw + 4, th + base + 4 + (len(EMOTIONS) * (bar_h + 1) if bars else 0)
        left, top = _label_place(out.shape[:2], face.box, (width, height), gap=thick + 2, taken=taken)
        taken.append((left, top, width, height))
        cv2.rectangle(out, (left, top), (left + width - 1, top + label_h - 1), color, cv2.FILLED)
        cv2.putText(out, text, (left + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
        if bars:
            _draw_bars(out, face, left, top + label_h + 1, width - 1, bar_h)
    return out


def _label_place(shape: tuple[int, int], box: tuple[int, int, int, int], size: tuple[int, int], *,
                 gap: int, taken: Sequence[tuple[int, int, int, int]] = ()) -> tuple[int, int]:
    """Top-left corner for a ``size`` (width, height) label block: above the box, else to its right,
    else to its left, else below the chin band (box-height/3 under the box); the first of these
    inside the picture that covers none of the ``taken`` rectangles (x, y, w, h: the faces and the
    labels placed so far), else the first inside the picture. Only a face that leaves no room at
    all gets its label over the box."""
    H, W = shape
    x, y, w, h = box
    width, height = size
    left = min(max(x, 0), max(W - width, 0))
    side_top = min(max(y, 0), max(H - height, 0))
    candidates = [(left, y - gap - height), (x + w + gap, side_top), (x - gap - width, side_top),
                  (left, y + h + h // 3 + gap)]
    inside = [(cx, cy) for cx, cy in candidates if cx >= 0 and cy >= 0 and cx + width <= W and cy + height <= H]
    for cx, cy in inside:
        if not any(cx < tx + tw and tx < cx + width and cy < ty + th and ty < cy + height
                   for tx, ty, tw, th in taken):
            return cx, cy
    return inside[0] if inside else (left, 0)


def _draw_bars(img: np.ndarray, face: Face, x: int, y: int, width: int, bar_h: int) -> None:
    for i, emotion in enumerate(EMOTIONS):
        top = y + i * (bar_h + 1)
        if top + bar_h >= img.shape[0]:
            break
        length = int(round(face.probabilities[emotion] * width))
        cv2.rectangle(img, (x, top), (x + width, top + bar_h - 1), (60, 60, 60), cv2.FILLED)
        if length:
            cv2.rectangle(img, (x, top), (x + length, top + bar_h - 1), EMOTION_COLORS[emotion], cv2.FILLED)


def annotate_tracks(bgr: np.ndarray, faces: Sequence[Face], *, fps: float | None = None,
                    status: Sequence[str] = (), bars: bool = True, copy: bool = True) -> np.ndarray:
    """Video frames: like ``annotate`` but each face is numbered by its ``track_id`` (stable
    across frames), with an optional FPS counter and status lines (``"REC"``, ``"PAUSED"``) in
    the top-left corner. ``copy=False`` draws in place, which live video can afford."""
    numbers = [getattr(face, "track_id", i) for i, face in enumerate(faces, start=1)]
    out = _annotate_into(bgr.copy() if copy else bgr, faces, numbers=numbers, bars=bars)
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
