"""Readers for FER2013 (CSV), the common folder layout, and the FER+ crowd votes.

Every reader returns ``{split: FaceSet}`` with the FER2013 split names
``Training`` / ``PublicTest`` / ``PrivateTest`` so training and evaluation code never
cares where the faces came from.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import EMOTIONS, label_index
from ..pipeline.preprocess import FACE_SIZE, resize_face  # FER2013 faces are 48x48 grayscale

SPLITS = ("Training", "PublicTest", "PrivateTest")
DATA_ENV = "MOODIFY_DATA"
FER2013_CSV_NAMES = ("fer2013/fer2013.csv.gz", "fer2013/fer2013.csv", "fer2013.csv.gz", "fer2013.csv")
FERPLUS_CSV_NAMES = ("ferplus/fer2013new.csv", "fer2013new.csv")
# FER+ vote columns, by FER2013 label; contempt, unknown and NF are dropped.
_FERPLUS_COLUMNS = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# The longest line a data CSV may hold: a FER2013 row is ~9 KB (2,304 pixel values), so 1 MiB is
# ample; a longer one (a 1 GiB line in a 1 MB .csv.gz) is refused when reached, never read whole.
MAX_LINE_CHARS = 1 << 20
# Folder names for the three splits in the common "train/ test/" layout.
_FOLDER_SPLITS = {"Training": ("train", "training"), "PublicTest": ("val", "valid", "validation", "publictest"),
                  "PrivateTest": ("test", "privatetest")}



@dataclass
class FaceSet:
    """Faces of one split: ``images`` uint8 (N, 48, 48), ``labels`` int64 (N,) and optionally
    ``soft`` float32 (N, 7) label distributions (FER+ votes)."""

    images: np.ndarray
    labels: np.ndarray
    soft: np.ndarray | None = None
    rows: np.ndarray | None = None  # row index in the source file, for tracing a face back

    def __len__(self) -> int:
        return len(self.labels)


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """The data path from the argument, else ``$MOODIFY_DATA``; raises DataError when missing."""
    chosen = path if path is not None else os.environ.get(DATA_ENV)
    if not chosen:
        raise DataError(f"no data path given: pass --data PATH or set {DATA_ENV}")
    resolved = Path(chosen).expanduser()
    if not resolved.exists():
        raise DataError(f"data path does not exist: {resolved}")
    return resolved


def load_dataset(path: str | os.PathLike | None = None, *, labels: str = "fer2013") -> dict[str, FaceSet]:
    """Load faces from a FER2013 CSV, a data root holding one, or a train/test folder layout.

    ``labels``: ``fer2013`` (the original labels), ``ferplus`` (FER+ majority vote) or
    ``ferplus-soft`` (majority vote plus the vote distribution in ``FaceSet.soft``). FER+ labels
    drop the faces that no annotator put in one of the 7 classes.
    """
    root = resolve_data_path(path)
    if labels not in ("fer2013", "ferplus", "ferplus-soft"):
        raise DataError(f"unknown label source {labels!r}: use fer2013, ferplus or ferplus-soft")
    csv_path = _find(root, FER2013_CSV_NAMES)
    if csv_path is None:
        if labels != "fer2013":
            raise DataError(f"FER+ labels need the FER2013 CSV, not found under {root}")
        return read_folder_layout(root)
    images, fer_labels, usage = read_fer2013_csv(csv_path)
    soft = None
    if labels != "fer2013":
        votes_path = _find(root if root.is_dir() else root.parent, FERPLUS_CSV_NAMES)
        if votes_path is None:
            raise DataError(f"FER+ votes (fer2013new.csv) not found under {root}")
        votes = read_ferplus_votes(votes_path, expected_rows=len(fer_labels))
        totals = votes.sum(axis=1)
        keep = totals > 0
        soft = np.zeros_like(votes, dtype=np.float32)
        soft[keep] = votes[keep] / totals[keep, None]
        fer_labels = np.where(keep, votes.argmax(axis=1), -1)
        if labels == "ferplus":
            soft = None
    sets = {}
    for split in SPLITS:
        mask = usage == split
        if labels != "fer2013":
            mask &= fer_labels >= 0
        rows = np.flatnonzero(mask)
        sets[split] = FaceSet(images[rows], fer_labels[rows].astype(np.int64),
                              None if soft is None else soft[rows], rows)
    return sets


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    if root.is_file():  # a file given directly is used whatever its name, if it is a CSV
        return root if root.name.endswith((".csv", ".csv.gz")) else None
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def bounded_lines(fh, path: str | os.PathLike, *, limit: int = MAX_LINE_CHARS):
    """The lines of text file ``fh``, each read with at most ``limit`` characters held in memory;
    ``DataError`` names the first line that is longer."""
    number = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            raise DataError(f"{path}: line {number:,} is longer than {limit:,} characters; "
                            "not a data CSV, or a damaged one")
        yield line


def read_fer2013_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse the FER2013 CSV (plain or gzip) into images (N, 48, 48) uint8, labels, usage.

    The parsed arrays are cached as .npz beside the user's cache (``$MOODIFY_CACHE`` or
    ``~/.cache/moodify``) keyed by the file's size and mtime: parsing 35,887 rows of text takes
    ~10 s, loading the cache a fraction of that.
    """
    path = Path(path)
    cache = _cache_file(path)
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as z:
                return z["images"], z["labels"], z["usage"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a broken cache (e.g. cut short) is rebuilt below
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as fh:
            reader = csv.reader(bounded_lines(fh, path))
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
                raise DataError(f"{path}: not a FER2013 CSV (expected header emotion,pixels,Usage, got {header})")
            labels, usage, pixels = [], [], []
            for line_no, row in enumerate(reader, start=2):
                if len(row) != 3:
                    raise DataError(f"{path}:{line_no}: expected 3 fields, got {len(row)}")
                labels.append(row[0])
                pixels.append(row[1])
                usage.append(row[2])
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    try:
        label_arr = np.array(labels, dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric label ({exc})") from exc
    n, side = len(labels), FACE_SIZE * FACE_SIZE
    if n and (label_arr.min() < 0 or label_arr.max() >= len(EMOTIONS)):
        raise DataError(f"{path}: emotion labels must be 0..{len(EMOTIONS) - 1}")
    # Row by row into one uint8 array: splitting the whole column into Python strings at once
    # peaked at 7.3 GB; this keeps the parse under 0.5 GB and takes ~2 s.
    images = np.empty((n, side), np.uint8)
    with warnings.catch_warnings():
        # Text that is not a number: NumPy 2 raises ValueError, older ones warn and stop early
        # (the count below catches that).
        warnings.simplefilter("ignore", DeprecationWarning)
        for i, text in enumerate(pixels):
            try:
                values = np.fromstring(text, dtype=np.int32, sep=" ")
            except ValueError:
                values = np.empty(0, np.int32)
            if values.size != side or values.min(initial=0) < 0 or values.max(initial=0) > 255:
                raise DataError(f"{path}: row {i + 1}: every row needs {side} pixel values in 0..255")
            images[i] = values
    images = images.reshape(n, FACE_SIZE, FACE_SIZE)
    usage_arr = np.array(usage)
    unknown = set(np.unique(usage_arr)) - set(SPLITS)
    if unknown:
        raise DataError(f"{path}: unknown Usage values {sorted(unknown)}")
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            # One temporary file per process: several processes (torchrun, parallel runs) may parse at once.
            tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, images=images, labels=label_arr, usage=usage_arr)
            os.replace(tmp, cache)
        except OSError:
            pass  # caching is an optimisation; a read-only home must not break loading
    return images, label_arr, usage_arr


def _cache_file(path: Path) -> Path | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    base = Path(os.environ.get("MOODIFY_CACHE", Path.home() / ".cache" / "moodify"))
    return base / f"fer2013-{key}.npz"


def read_ferplus_votes(path: str | os.PathLike, *, expected_rows: int | None = None) -> np.ndarray:
    """FER+ votes (N, 7) float32 in EMOTIONS order, one row per FER2013 row (joined by position)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(bounded_lines(fh, path))
            missing = set(_FERPLUS_COLUMNS.values()) - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: not a FER+ votes file (missing columns {sorted(missing)})")
            votes = [[float(row[_FERPLUS_COLUMNS[e]] or 0) for e in EMOTIONS] for row in reader]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read FER+ votes ({exc})") from None
    if expected_rows is not None and len(votes) != expected_rows:
        raise DataError(f"{path}: {len(votes)} rows, but the FER2013 CSV has {expected_rows}; "
                        "they are joined by row position and must match")
    return np.array(votes, dtype=np.float32).reshape(-1, len(EMOTIONS))


def read_folder_layout(root: str | os.PathLike, *, val_fraction: float = 0.1, seed: int = 0) -> dict[str, FaceSet]:
    """Read ``root/train/<label>/*.png`` and ``root/test/<label>/*.png`` (optionally ``val/``).

    Class folders are named by label (``angry`` ... or ``0``..``6``). Images are read as grayscale
    and resized to 48x48. Without a ``val/`` folder, a seeded ``val_fraction`` of train becomes
    PublicTest, so model selection never looks at the test folder.
    """
    from ..errors import ImageError
    from ..pipeline.images import load_gray

    root = Path(root)
    found: dict[str, Path] = {}
    for split, names in _FOLDER_SPLITS.items():
        for child in root.iterdir() if root.is_dir() else []:
            if child.is_dir() and child.name.lower() in names:
                found[split] = child
    if "Training" not in found:
        raise DataError(f"{root}: no FER2013 CSV and no train/ folder with one sub-folder per emotion")
    sets = {}
    for split, folder in found.items():
        images, labels = [], []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            label = label_index(class_dir.name)
            if label is None:
                raise DataError(f"{class_dir}: folder name is not an emotion ({', '.join(EMOTIONS)} or 0-6)")
            for file in sorted(class_dir.rglob("*")):
                if file.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                try:  # checked first: a FIFO, a folder or a device named *.png is refused, never read
                    gray = load_gray(file)
                except ImageError as exc:
                    raise DataError(str(exc)) from None
                images.append(resize_face(gray, FACE_SIZE))  # as moodify batch --pre-cropped does
                labels.append(label)
        if not images:
            raise DataError(f"{folder}: no images found")
        sets[split] = FaceSet(np.stack(images), np.array(labels, dtype=np.int64))
    if "PublicTest" not in sets:
        train = sets["Training"]
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = max(1, int(len(train) * val_fraction))
        val, keep = np.sort(order[:n_val]), np.sort(order[n_val:])
        sets["PublicTest"] = FaceSet(train.images[val], train.labels[val])
        sets["Training"] = FaceSet(train.images[keep], train.labels[keep])
    return sets

