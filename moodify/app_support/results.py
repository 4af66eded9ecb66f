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
from ..pipeline.rows import BOX_COLUMNS, FACE_COLUMNS, PERCENT_FORMAT, face_row, numbered, percent

__all__ = ["NO_FACE", "PERCENT_FORMAT", "TABLE_COLUMNS", "encode_png", "face_thumbnail", "faces_table",
           "fit_for_display", "percent", "probabilities_table", "records_json", "results_records", "results_table",
           "table_csv"]

# Columns of every per-face table, in order: the picture, then the face as every output describes it.
TABLE_COLUMNS: tuple[str, ...] = ("path", *FACE_COLUMNS)
NO_FACE = "no face"  # the emotion column of the row for an image in which no face was found

# One analysed image: its display name and its faces in recognizer order (or an error message).
ImageResult = tuple[str, Sequence[Face]]


def faces_table(faces: Sequence[Face], *, image: str = "") -> pd.DataFrame:
    """One row per face of one image: ``face`` (1, 2, ... as drawn), emotion, box and probabilities.

    A picture without a face gives a table with no rows (the app says "no face found" beside it).
    """
    return results_table([(image, faces)], no_face_rows=False)


def results_table(results: Iterable[ImageResult], *, no_face_rows: bool = True) -> pd.DataFrame:
    """One row per face across several images; face numbers restart at 1 in each image.

    An image in which no face was found still gets a row (``no_face_rows``), so a table of several
    photos names every one of them: no ``face`` number (faces are numbered from 1 everywhere, and
    this row is no face: empty, as in ``moodify batch``'s row with ``faces=0``), emotion ``"no face"``
    (``NO_FACE``), an empty box and empty probabilities. ``face`` and the box columns are then
    pandas' nullable ``Int64`` and the probabilities ``float`` with NaN, so the table still sorts,
    filters and averages like one of faces only.
    """
    rows = []
    for image, faces in results:
        if not faces and no_face_rows:
            rows.append({"path": image, "face": pd.NA, "emotion": NO_FACE})
        for number, face in numbered(faces):
            values = face_row(number, face.box, [face.probabilities[e] for e in EMOTIONS])
            rows.append({"path": image, **dict(zip(FACE_COLUMNS, values))})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    # An empty table keeps usable dtypes, so callers can filter and sort it like a full one.
    return table.astype({"path": str, "face": "Int64", "emotion": str, "confidence": float,
                         **{c: "Int64" for c in BOX_COLUMNS}, **{e: float for e in EMOTIONS}})


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
    ``{"path", "error"}`` when ``errors`` names them.
    """
    records = [{"path": image, "faces": [{"face": k, **f.to_dict()} for k, f in numbered(faces)]}
               for image, faces in results]
    records += [{"path": image, "error": message} for image, message in (errors or {}).items()]
    return records


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
