"""Shared fixtures: a real photo with one smiling face, the shipped model, the FER2013 data."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("MOODIFY_DATA", PROJECT.parent / "shared" / "data"))
FER2013_CSV = DATA_ROOT / "fer2013" / "fer2013.csv.gz"

# pytest-xdist's workers share the machine: each gets its share of the cores for torch's and OpenCV's
# thread pools, which otherwise size themselves to the whole machine. Unpinned, two workers on two
# cores ran four busy threads, and two KDEF photo tests side by side took 62 s each instead of 25.
# The environment carries the share into the processes tests start (the CLI, the web app, Ray).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ.setdefault(_var, str(max(1, _CORES // _WORKERS)))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cv2.setNumThreads(int(os.environ["OPENCV_FOR_THREADS_NUM"]))


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """NASA portrait of Eileen Collins (public domain, shipped by scikit-image): one smiling face."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the test photo: pip install scikit-image")
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def astronaut_jpg(astronaut_bgr, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    cv2.imwrite(str(path), astronaut_bgr)
    return path


@pytest.fixture(scope="session")
def model():
    import moodify

    return moodify.load_model()


@pytest.fixture(scope="session")
def recognizer(model):
    import moodify

    return moodify.Recognizer(model=model)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not FER2013_CSV.exists():
        pytest.skip(f"FER2013 data not found at {FER2013_CSV} (set MOODIFY_DATA to the folder holding fer2013/)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def fer2013(data_root):
    from moodify.training.data import load_dataset

    return load_dataset(data_root)
