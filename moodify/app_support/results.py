"""The web app's result tables and downloads for recognised faces: rows, CSV, JSON and PNG.

The columns are the one face schema (``moodify.pipeline.rows``) that ``moodify batch`` and
``moodify classify --json`` write, after the ``path`` of the picture (an upload's file name):
face number ``k`` is the ``k``-th face in the order the recognizer returned them (largest first),
the numbering the picture labels use. Every function here takes faces in that order and never
re-sorts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterable, Sequence

import cv2
import numpy as np
import pandas as pd

from ..labels import EMOTIONS
from ..names import csv_cell
from ..pipeline.recognizer import Face
from ..pipeline.rows import BOX_COLUMNS, FACE_COLUMNS, PERCENT_FORMAT, face_row, numbered, percent, top_emotion

__all__ = ["NO_FACE", "PERCENT_FORMAT", "PICTURE_SHOWN_PX", "TABLE_COLUMNS", "encode_png", "face_thumbnail", "faces_table",
           "fit_for_display", "percent", "probabilities_table", "records_json", "results_records", "results_table",
           "styled_table", "table_csv", "without_name"]

# Columns of every per-face table, in order: the picture, the face as every output describes it,
# and why a picture has no face row (it could not be read), as ``moodify batch``'s ``error`` column.
TABLE_COLUMNS: tuple[str, ...] = ("path", *FACE_COLUMNS, "error")
NO_FACE = "no face"  # the emotion column of the row for an image in which no face was found
PERCENT_COLUMNS: tuple[str, ...] = ("confidence", *EMOTIONS)  # probabilities, shown as percentages
# How wide (pixels) the app's picture column can be: ~310 px on a 1024-pixel-wide browser window
# with the sidebar open, the smallest window it is laid out for (285 px measured where the issue was
# filed). Labels are drawn to be read there: a number alone where the full labels do not fit.
PICTURE_SHOWN_PX = 285

# One analysed image: its display name and its faces in recognizer order (or an error message).
ImageResult = tuple[str, Sequence[Face]]


def faces_table(faces: Sequence[Face], *, image: str = "") -> pd.DataFrame:
    """One row per face of one image: ``face`` (1, 2, ... as drawn), emotion, box and probabilities;
    a picture without a face gives its one "no face" row (see ``results_table``)."""
    return results_table([(image, faces)])


def results_table(results: Iterable[ImageResult], *, errors: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per face across several images; face numbers restart at 1 in each image.

    Every image gets at least one row, as in ``moodify batch``, so a table of several photos names
    every one of them: an image in which no face was found has no ``face`` number (faces are
    numbered from 1 everywhere, and this row is no face), emotion ``"no face"`` (``NO_FACE``), an
    empty box and empty probabilities; an image that could not be read (``errors``: name -> message)
    has its reason in ``error`` and nothing else. ``face`` and the box columns are pandas' nullable
    ``Int64`` and the probabilities ``float`` with NaN, so the table still sorts, filters and
    averages like one of faces only.
    """
    rows = []
    for image, faces in results:
        if not faces:
            rows.append({"path": image, "face": pd.NA, "emotion": NO_FACE})
        for number, face in numbered(faces):
            values = face_row(number, face.box, [face.probabilities[e] for e in EMOTIONS])
            rows.append({"path": image, **dict(zip(FACE_COLUMNS, values))})
    rows += [{"path": image, "emotion": "", "error": without_name(message, image)}
             for image, message in (errors or {}).items()]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    # An empty table keeps usable dtypes, so callers can filter and sort it like a full one.
    return table.astype({"path": str, "face": "Int64", "emotion": str, "confidence": float,
                         **{c: "Int64" for c in BOX_COLUMNS}, **{e: float for e in EMOTIONS}}).assign(
        error=table["error"].astype(object).fillna("").astype(str))


_SHOWN_MISSING = -1  # no face number, box coordinate, time or probability is negative


def styled_table(table: pd.DataFrame):
    """``table`` for ``st.dataframe``: every probability written by ``percent`` (as the cards, the
    picture and the CLI write it; Streamlit's own "percent" format truncated 96.15% to 96.1%),
    times with one decimal, missing values as empty cells, and the numbers kept, so columns
    still sort. Streamlit writes "None" in a cell whose value is missing, whatever the styler
    says, so the copy shown holds -1 there and writes it as an empty cell; downloads keep ``table``."""
    numeric = list(table.select_dtypes("number").columns)
    shown = table.fillna({c: _SHOWN_MISSING for c in numeric})

    def written(fmt):
        return lambda v: "" if v == _SHOWN_MISSING else fmt(v)

    formats = {c: written(percent if c in PERCENT_COLUMNS else
                          str if pd.api.types.is_integer_dtype(table[c]) else "{:.1f}".format) for c in numeric}
    return shown.style.format(formats)


def without_name(message: str, name: str) -> str:
    """moodify's error messages start with the input's name; a row or a page that shows the name
    already gives the rest, as ``moodify batch``'s ``error`` column does."""
    return message[len(name) + 2:] if message.startswith(f"{name}: ") else message


def table_csv(table: pd.DataFrame) -> bytes:
    """The table as UTF-8 CSV bytes, ready for a download button: text cells safe for spreadsheets
    (``moodify.names.csv_cell``, as ``moodify batch`` writes them), a name holding a carriage return
    quoted (CRLF row ends make the writer quote it, as RFC 4180's CSV has them)."""
    text = table.select_dtypes(include=["object", "string"]).columns
    safe = table.assign(**{c: table[c].map(csv_cell, na_action="ignore") for c in text})
    return safe.to_csv(index=False, float_format="%.6f", lineterminator="\r\n").encode("utf-8", "backslashreplace")


def results_records(results: Iterable[ImageResult], *, errors: dict[str, str] | None = None) -> list[dict]:
    """JSON-ready records, one per image: ``{"path", "faces": [{"face": k, box, emotion, ...}]}``,
    the document ``moodify classify --json`` prints; images that failed appear as
    ``{"path", "error"}`` when ``errors`` names them (the reason, as in ``results_table``).
    """
    records = [{"path": image, "faces": [{"face": k, **f.to_dict()} for k, f in numbered(faces)]}
               for image, faces in results]
    records += [{"path": image, "error": without_name(message, image)} for image, message in (errors or {}).items()]
    return records


def reference_note(face: Face) -> str | None:
    """For a face read relative to a person's neutral face: that, in words, with the reading without
    it (``raw_probabilities``); None for a face read as it is."""
    if not face.relative_to_reference or not face.raw_probabilities:
        return None
    emotion, p = top_emotion([face.raw_probabilities[e] for e in EMOTIONS])
    return f"relative to this person's neutral face; without it: {emotion} ({percent(p)})"


def records_json(records: list[dict]) -> bytes:
    """Pretty-printed UTF-8 JSON bytes."""
    return json.dumps(records, indent=2).encode("utf-8")


def probabilities_table(face: Face) -> pd.DataFrame:
    """The 7 probabilities of one face as an ``emotion`` / ``probability`` table, in EMOTIONS order."""
    return pd.DataFrame({"emotion": list(EMOTIONS), "probability": [float(face.probabilities[e]) for e in EMOTIONS]})


def encode_png(bgr: np.ndarray) -> bytes:
    """A BGR (or grayscale) uint8 image as PNG bytes."""
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {bgr.shape} as PNG")
    return buf.tobytes()


def face_thumbnail(bgr: np.ndarray, box: tuple[int, int, int, int], *, margin: float = 0.2,
                   size: int = 160) -> np.ndarray:
    """A square colour crop around ``box`` (with ``margin`` of its side on each edge) for display.

    Parts of the margin outside the picture are filled by replicating its border, so a face at the
    edge still comes out centred and square.
    """
    x, y, w, h = box
    side = max(w, h)
    pad = int(round(side * margin))
    cx, cy = x + w / 2, y + h / 2
    half = side / 2 + pad
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    H, W = bgr.shape[:2]
    crop = bgr[max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)]
    crop = cv2.copyMakeBorder(crop, max(-y0, 0), max(y1 - H, 0), max(-x0, 0), max(x1 - W, 0), cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def fit_for_display(bgr: np.ndarray, faces: Sequence[Face], *, max_side: int) -> tuple[np.ndarray, list[Face]]:
    """A copy of ``bgr`` no larger than ``max_side`` pixels and the faces with boxes scaled to it.

    Drawing on a 40-megapixel photo and sending it to a browser is slow and pointless; the tables
    keep the original boxes, only the picture is shrunk.
    """
    h, w = bgr.shape[:2]
    factor = max(h, w) / max_side
    if factor <= 1:
        return bgr, list(faces)
    small = cv2.resize(bgr, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    scaled = [replace(f, box=tuple(int(round(v / factor)) for v in f.box)) for f in faces]
    return small, scaled
