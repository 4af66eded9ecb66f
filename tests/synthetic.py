"""Small self-made FER2013-format data sets: each class is a bright bar at its own angle on noise.

Learnable in a few epochs, so a tiny training run can prove the loop learns without real data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np

from moodify.labels import EMOTIONS


def synthetic_faces(n_per_class: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(len(EMOTIONS)):
        angle = np.pi * label / len(EMOTIONS)
        for _ in range(n_per_class):
            img = rng.normal(90, 25, (48, 48))
            c = 24 + rng.normal(0, 2, 2)
            d = np.array([np.cos(angle), np.sin(angle)]) * 16
            cv2.line(img, tuple(int(v) for v in c - d), tuple(int(v) for v in c + d), 230, 5)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels)


def write_fer2013_csv(path: Path, splits: dict[str, int], *, seed: int = 0, gz: bool = True,
                      shift_labels: dict[str, int] | None = None) -> Path:
    """A FER2013-format CSV with ``splits[name]`` faces per class in each split.

    ``shift_labels[split]``: label that split's faces (class + shift) mod 7, a consistently wrong view.
    """
    rows = ["emotion,pixels,Usage"]
    for i, (split, per_class) in enumerate(splits.items()):
        images, labels = synthetic_faces(per_class, seed=seed + i)
        labels = (labels + (shift_labels or {}).get(split, 0)) % 7
        order = np.random.default_rng(seed + 100 + i).permutation(len(labels))
        for j in order:
            rows.append(f"{labels[j]},{' '.join(map(str, images[j].ravel()))},{split}")
    text = "\n".join(rows) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path
