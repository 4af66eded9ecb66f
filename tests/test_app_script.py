"""The app's script run by Streamlit's own test runner (AppTest: no browser, no server): what the
sidebar offers and what the page tells a user, in seconds."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parent.parent
APP_TIMEOUT_S = 180  # the first run loads torch and the model; a busy 2-core machine is slow at it


@pytest.fixture()
def app():
    import torch

    testing = pytest.importorskip("streamlit.testing.v1", reason="Streamlit's AppTest runs the app script")
    threads = torch.get_num_threads()  # the app sets them for its process, which is this one here
    torch.set_num_threads(2)  # as a fresh process on two cores starts (the test workers run on one each)
    at = testing.AppTest.from_file(str(PROJECT / "app.py"), default_timeout=APP_TIMEOUT_S)
    try:
        at.run()
        assert not at.exception, at.exception
        yield at
    finally:
        torch.set_num_threads(threads)


def test_the_app_runs_torch_on_one_thread_as_moodify_video_does(app):
    """Unpinned, torch took both cores and fought the video decoder and encoder: the Video mode ran
    several times slower than `moodify video` (benchmarks/bench_video.py)."""
    import threading

    import torch

    # Asked from a fresh thread, as the app's next script run or a webcam callback would: torch
    # keeps a thread's count once that thread has used it, and this test's thread used it before.
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [1]


def test_streamlit_run_app_watches_no_files():
    """`streamlit run app.py` from the project folder, as the README says, reads .streamlit/config.toml
    and starts no file watcher (nothing to watch in a local tool; see the comment there)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=PROJECT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    settings = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert 'fileWatcherType = "none"' in settings, done.stdout[-2000:]


def _png(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".png", bgr)[1].tobytes()


@pytest.mark.parametrize("detector, other", [("yunet", "haar"), ("haar", "yunet")])
def test_no_face_hint_names_the_sliders_the_sidebar_shows(app, detector, other):
    app.radio(key="detector_kind").set_value(detector).run()
    shown = [slider.label for slider in app.sidebar.slider]
    app.file_uploader[0].set_value(("sky.png", _png(np.full((200, 300, 3), (235, 206, 135), np.uint8)),
                                    "image/png")).run()
    assert not app.exception, app.exception
    (warning,) = [w.value for w in app.warning]
    assert warning.startswith("No face found in sky.png.")
    named = re.findall(r"\*\*(.+?)\*\*", warning)
    # Every control the hint tells the user to lower is one the sidebar shows now, by its label.
    assert len(named) == 2 and all(name in shown for name in named), (named, shown)
    app.radio(key="detector_kind").set_value(other).run()
    assert not set(named[:1]) & {slider.label for slider in app.sidebar.slider}  # the other detector's is gone
