"""One row schema for faces: how faces are numbered and what their columns are called, everywhere.

``moodify batch`` (CSV, JSONL, Parquet), ``moodify classify --json``, the ``moodify video`` /
``moodify live`` timeline and the web app's tables and downloads all describe a face with
``FACE_COLUMNS``: ``face`` (its number in its image or frame, from 1, in the recognizer's order:
largest first, as the picture labels them), the box ``x, y, w, h`` in pixels, ``emotion`` and
``confidence`` (the top of that row's probabilities) and the seven probabilities in EMOTIONS
order. Where landmarks are given they are ``LANDMARK_COLUMNS`` (pixels, empty without them).
"""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

import numpy as np

from ..labels import EMOTIONS
from .detect import LANDMARKS

FIRST_FACE = 1  # faces are numbered 1, 2, ... as the app, the picture labels and `moodify classify` show them
BOX_COLUMNS: tuple[str, ...] = ("x", "y", "w", "h")
FACE_COLUMNS: tuple[str, ...] = ("face", *BOX_COLUMNS, "emotion", "confidence", *EMOTIONS)
# The five YuNet landmarks in pixels (empty with Haar): right_eye_x, right_eye_y, ..., mouth_left_y.
LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"{name}_{axis}" for name in LANDMARKS for axis in "xy")

# Decimals of a probability in every file Moodify writes (batch CSV, the video timeline, the app's
# downloads, evaluate's predictions.csv): 1e-6 is far below any difference that matters.
PROBABILITY_DECIMALS = 6

# How every percentage is written for people: one decimal, "93.3%" and "0.8%" alike. The same
# spec means the same in Python's format() and in d3-format, which Altair's tooltips use.
PERCENT_FORMAT = ".1%"

T = TypeVar("T")


def numbered(faces: Iterable[T]) -> Iterator[tuple[int, T]]:
    """``(number, face)`` pairs with the numbering every output uses (from ``FIRST_FACE``)."""
    return enumerate(faces, start=FIRST_FACE)


def top_emotion(probabilities) -> tuple[str, float]:
    """``(emotion, confidence)``: the largest of seven probabilities in EMOTIONS order."""
    p = np.asarray(probabilities, dtype=np.float64)
    top = int(np.argmax(p))
    return EMOTIONS[top], float(p[top])


def face_row(number: int, box, probabilities) -> tuple:
    """The ``FACE_COLUMNS`` values of one face: number, box, top emotion and confidence, 7 probabilities."""
    emotion, confidence = top_emotion(probabilities)
    return (number, *(int(v) for v in box), emotion, confidence, *(float(v) for v in probabilities))


def landmark_values(points) -> tuple:
    """The ``LANDMARK_COLUMNS`` values: five (x, y) points to a tenth of a pixel, or all None."""
    if points is None:
        return (None,) * len(LANDMARK_COLUMNS)
    return tuple(round(float(v), 1) for point in points for v in point)


def percent(p: float) -> str:
    """``0.9328`` -> ``"93.3%"``: a probability written as every table, chart and label writes it."""
    return format(float(p), PERCENT_FORMAT)
