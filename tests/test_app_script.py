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
    testing = pytest.importorskip("streamlit.testing.v1", reason="Streamlit's AppTest runs the app script")
    at = testing.AppTest.from_file(str(PROJECT / "app.py"), default_timeout=APP_TIMEOUT_S)
    at.run()
    assert not at.exception, at.exception
    return at


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
