"""Looking at FER2013 and at a model's results: the computations behind ``notebooks/``.

Everything here is a function of arrays or ``{split: FaceSet}`` dicts (as ``moodify.training.data.load_dataset``
returns them) and gives back arrays or pandas tables, so the notebooks only draw and every number
they show is tested in ``tests/test_explore.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..labels import EMOTIONS
from .data import DATA_ENV, FERPLUS_CSV_NAMES, FaceSet, read_ferplus_votes

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# An image whose pixels vary by less than this (std, grey levels) shows nothing: FER2013 has 12
# all-black images and one nearly uniform one (std 0.64); the next-flattest real face has std 4.1.
BLANK_MAX_STD = 2.0
NO_MAJORITY = "none"  # FER+ column for faces whose votes all went to contempt, unknown or not-a-face


def default_data_root() -> Path:
    """``$MOODIFY_DATA``, else ``../shared/data`` beside the project root (where the notebooks look)."""
    return Path(os.environ.get(DATA_ENV) or PROJECT_ROOT.parent / "shared" / "data")


def subsample(sets: Mapping[str, FaceSet], limit: int | None, *, seed: int = 0) -> dict[str, FaceSet]:
    """At most ``limit`` faces per split, a seeded random choice kept in file order (None keeps all)."""
    if limit is None:
        return dict(sets)
    rng = np.random.default_rng(seed)
    out = {}
    for split, fs in sets.items():
        keep = np.sort(rng.permutation(len(fs))[:limit]) if len(fs) > limit else np.arange(len(fs))
        out[split] = FaceSet(fs.images[keep], fs.labels[keep], None if fs.soft is None else fs.soft[keep],
                             None if fs.rows is None else fs.rows[keep])
    return out


def class_balance(sets: Mapping[str, FaceSet]) -> pd.DataFrame:
    """Faces per class (columns, EMOTIONS order) in each split (rows), plus an ``All`` row."""
    counts = {split: np.bincount(fs.labels, minlength=len(EMOTIONS)) for split, fs in sets.items()}
    table = pd.DataFrame.from_dict(counts, orient="index", columns=list(EMOTIONS))
    table.loc["All"] = table.sum()
    table.index.name = "split"
    return table


def sample_indices(labels: np.ndarray, *, per_class: int = 8, seed: int = 0) -> np.ndarray:
    """(7, per_class) indices into ``labels``: a seeded random pick of each class, -1 where a class runs out."""
    rng = np.random.default_rng(seed)
    out = np.full((len(EMOTIONS), per_class), -1, dtype=np.int64)
    for k in range(len(EMOTIONS)):
        members = np.flatnonzero(labels == k)
        chosen = rng.permutation(members)[:per_class]
        out[k, :len(chosen)] = chosen
    return out


def face_grid(images: np.ndarray, indices: np.ndarray | Sequence[int], *, ncols: int | None = None,
              pad: int = 2, fill: float = 255) -> np.ndarray:
    """One mosaic image of ``images[indices]``, laid out as ``indices`` (2-D) or in rows of ``ncols``.

    An index of -1 leaves its tile filled with ``fill``; tiles are ``pad`` pixels apart. The result
    has the dtype of ``images``, so mean faces (float) and raw faces (uint8) both work.
    """
    grid = np.asarray(indices, dtype=np.int64)
    if grid.ndim == 1:
        ncols = ncols or len(grid) or 1
        rows = -(-len(grid) // ncols)
        grid = np.concatenate([grid, np.full(rows * ncols - len(grid), -1)]).reshape(rows, ncols)
    h, w = images.shape[1:3]
    out = np.full((grid.shape[0] * (h + pad) - pad, grid.shape[1] * (w + pad) - pad), fill, dtype=images.dtype)
    for (r, c), i in np.ndenumerate(grid):
        if i >= 0:
            out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[i]
    return out


def mean_faces(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(7, H, W) float32 mean image of each class (NaN for a class with no faces)."""
    out = np.full((len(EMOTIONS),) + images.shape[1:], np.nan, dtype=np.float32)
    for k in range(len(EMOTIONS)):
        members = images[labels == k]
        if len(members):
            out[k] = members.mean(axis=0, dtype=np.float64)
    return out


def image_stats(images: np.ndarray, *, chunk: int = 2048) -> pd.DataFrame:
    """Per image: ``brightness`` (mean grey level) and ``contrast`` (std of grey levels), 0..255 scale."""
    flat = images.reshape(len(images), -1)
    brightness = np.empty(len(images))
    contrast = np.empty(len(images))
    # In chunks: a float copy of all of FER2013 would be 530 MB.
    for start in range(0, len(images), chunk):
        block = flat[start:start + chunk].astype(np.float32)
        brightness[start:start + chunk] = block.mean(axis=1, dtype=np.float64)
        contrast[start:start + chunk] = block.std(axis=1, dtype=np.float64)
    return pd.DataFrame({"brightness": brightness, "contrast": contrast})


def pixel_stats(sets: Mapping[str, FaceSet]) -> pd.DataFrame:
    """Per split: faces, mean and std of all pixels (on the 0..1 scale networks see), the median
    per-image brightness and contrast (grey levels), and how many images are blank."""
    rows = {}
    levels = np.arange(256) / 255.0
    for split, fs in sets.items():
        # Exact moments from the 256-bin histogram, without a float copy of every pixel.
        counts = np.bincount(fs.images.ravel(), minlength=256)
        mean = counts @ levels / max(counts.sum(), 1)
        std = np.sqrt(counts @ (levels - mean) ** 2 / max(counts.sum(), 1))
        per_image = image_stats(fs.images)
        rows[split] = {"faces": len(fs), "pixel_mean": mean, "pixel_std": std,
                       "median_brightness": per_image["brightness"].median(),
                       "median_contrast": per_image["contrast"].median(),
                       "blank": int(np.sum(per_image["contrast"] < BLANK_MAX_STD))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "split"
    return table


def find_blank(images: np.ndarray, *, max_std: float = BLANK_MAX_STD) -> np.ndarray:
    """Indices of images that show nothing: pixel std below ``max_std`` grey levels."""
    return np.flatnonzero(image_stats(images)["contrast"].to_numpy() < max_std)


def blank_table(sets: Mapping[str, FaceSet], *, max_std: float = BLANK_MAX_STD) -> pd.DataFrame:
    """One row per blank image: its ``split``, source ``row``, ``label`` and ``contrast`` (std)."""
    images, labels, splits, rows = combine_splits(sets)
    found = find_blank(images, max_std=max_std)
    contrast = image_stats(images[found])["contrast"].to_numpy()
    return pd.DataFrame({"split": splits[found], "row": rows[found],
                         "label": [EMOTIONS[k] for k in labels[found]], "contrast": contrast})


def _digests(images: np.ndarray) -> list[bytes]:
    """One 128-bit digest per image's bytes: a chance collision among 35,887 images is ~1e-29."""
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in np.ascontiguousarray(images)]


def find_duplicates(images: np.ndarray) -> list[np.ndarray]:
    """Groups of indices of byte-identical images (each group sorted, two or more members),
    largest group first. Exact copies only: a face re-encoded or shifted by a pixel is not caught."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, digest in enumerate(_digests(images)):
        groups[digest].append(i)
    found = [np.array(g) for g in groups.values() if len(g) > 1]
    return sorted(found, key=lambda g: (-len(g), g[0]))


def duplicate_table(sets: Mapping[str, FaceSet]) -> pd.DataFrame:
    """One row per group of identical images across all splits.

    Columns: ``size``, ``rows`` (source-file rows, or positions when unknown), ``splits`` and
    ``labels`` (per member), ``cross_split`` (the same picture sits in two splits, so a test
    score partly measures memory), ``labels_agree`` and ``blank``.
    """
    images, labels, splits, rows = combine_splits(sets)
    records = []
    for group in find_duplicates(images):
        records.append({
            "size": len(group),
            "rows": rows[group].tolist(),
            "splits": splits[group].tolist(),
            "labels": [EMOTIONS[k] for k in labels[group]],
            "cross_split": len(set(splits[group])) > 1,
            "labels_agree": len(set(labels[group])) == 1,
            "blank": len(find_blank(images[group[:1]])) == 1,
        })
    columns = ["size", "rows", "splits", "labels", "cross_split", "labels_agree", "blank"]
    return pd.DataFrame.from_records(records, columns=columns)


def split_overlap(sets: Mapping[str, FaceSet]) -> pd.DataFrame:
    """How many faces of each split (rows) have an identical copy in another split (columns).

    Blank images are left out: a black square carries no identity, so it does not leak.
    """
    images, _, splits, _ = combine_splits(sets)
    names = list(sets)
    table = pd.DataFrame(0, index=pd.Index(names, name="split"), columns=names)
    blank = set(find_blank(images).tolist())
    for group in find_duplicates(images):
        if group[0] in blank:
            continue
        present = set(splits[group])
        for i in group:
            for other in present - {splits[i]}:
                table.loc[splits[i], other] += 1
    return table


def copies_of(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Boolean mask over ``images``: True where the same picture (byte-identical, not blank) is in
    ``reference``. FER2013's PrivateTest holds 288 copies of Training faces, which measure memory."""
    seen = set(_digests(reference))
    mask = np.array([digest in seen for digest in _digests(images)], dtype=bool)
    if mask.any():
        mask[find_blank(images)] = False  # a black square carries no identity (as in split_overlap)
    return mask


def load_ferplus_votes(root: str | os.PathLike) -> np.ndarray:
    """The FER+ vote counts (rows of the FER2013 CSV, 7 classes in EMOTIONS order) under a data root."""
    root = Path(root)
    for name in FERPLUS_CSV_NAMES:
        if (root / name).is_file():
            return read_ferplus_votes(root / name)
    raise FileNotFoundError(f"FER+ votes not found under {root} (looked for {', '.join(FERPLUS_CSV_NAMES)})")


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FER+ majority class per face (ties go to the earlier class, as ``load_dataset`` does), -1 without votes."""
    return np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)


def ferplus_agreement(fer_labels: np.ndarray, votes: np.ndarray) -> pd.DataFrame:
    """Cross-table of FER2013 labels (rows) against the FER+ majority vote (columns), counts.

    The extra column ``none`` counts faces whose votes all went to contempt, unknown or
    not-a-face; rows and columns follow EMOTIONS order.
    """
    majority = ferplus_majority(votes)
    columns = list(EMOTIONS) + [NO_MAJORITY]
    counts = np.zeros((len(EMOTIONS), len(columns)), dtype=np.int64)
    np.add.at(counts, (fer_labels, np.where(majority >= 0, majority, len(EMOTIONS))), 1)
    return pd.DataFrame(counts, index=pd.Index(EMOTIONS, name="FER2013"), columns=pd.Index(columns, name="FER+"))


def ferplus_support(fer_labels: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Per face, the share of its 7-class FER+ votes that went to its FER2013 label (NaN without votes)."""
    totals = votes.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, votes[np.arange(len(fer_labels)), fer_labels] / totals, np.nan)


def ferplus_summary(fer_labels: np.ndarray, votes: np.ndarray) -> pd.DataFrame:
    """Per FER2013 class: faces, how often the FER+ majority agrees, and the mean share of votes
    that the FER2013 label gets (faces without 7-class votes count as disagreeing)."""
    majority = ferplus_majority(votes)
    support = np.nan_to_num(ferplus_support(fer_labels, votes))
    rows = {}
    for k, name in enumerate(EMOTIONS):
        members = fer_labels == k
        rows[name] = {"faces": int(members.sum()),
                      "majority_agrees": float((majority[members] == k).mean()) if members.any() else np.nan,
                      "mean_vote_share": float(support[members].mean()) if members.any() else np.nan}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "FER2013"
    return table


def read_training_log(path: str | os.PathLike) -> pd.DataFrame:
    """The per-epoch JSON lines that ``moodify train`` writes, as a table indexed by epoch.

    A half-written last line (a run still in progress) is skipped; any other bad line is an error.
    """
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from exc
    if not records:
        raise ValueError(f"{path}: no epochs logged yet")
    return pd.DataFrame.from_records(records).set_index("epoch")


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, *, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence, most confident first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = np.argsort(-probs[wrong, pred[wrong]], kind="stable")
    return wrong[order[:k]]


def plot_faces(images: np.ndarray | Sequence[np.ndarray], titles: Sequence[str] | None = None, *, ncols: int = 8,
               size: float = 1.3, cmap: str | None = "gray"):
    """A matplotlib figure with one small panel per image: grayscale faces (H, W) or RGB (H, W, 3)
    pictures such as Grad-CAM overlays, mixed freely, on the 0..255 scale."""
    import matplotlib.pyplot as plt

    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.3)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=None if images[i].ndim == 3 else cmap, vmin=0, vmax=255)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def combine_splits(sets: Mapping[str, FaceSet]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All faces of all splits in one set of arrays: images, labels, split name per face, and
    source row (the position within its split where ``rows`` is unknown)."""
    images = np.concatenate([fs.images for fs in sets.values()])
    labels = np.concatenate([fs.labels for fs in sets.values()])
    splits = np.concatenate([np.full(len(fs), split, dtype=object) for split, fs in sets.items()])
    rows = np.concatenate([fs.rows if fs.rows is not None else np.arange(len(fs)) for fs in sets.values()])
    return images, labels, splits, rows


def training_log_path(model: str | None = None) -> Path:
    """The per-epoch training log shipped beside a model file (``NAME.log.jsonl`` for ``NAME.pt``)."""
    from ..model.registry import resolve_model_path

    path, _, _ = resolve_model_path(model)
    return path.with_name(path.stem + ".log.jsonl")


__all__ = [
    "BLANK_MAX_STD", "blank_table", "class_balance", "combine_splits", "confident_mistakes", "default_data_root", "duplicate_table",
    "face_grid", "ferplus_agreement", "ferplus_majority", "ferplus_summary", "ferplus_support", "find_blank",
    "find_duplicates", "image_stats", "load_ferplus_votes", "mean_faces", "pixel_stats", "plot_faces",
    "read_training_log", "sample_indices", "split_overlap", "subsample", "training_log_path",
]
