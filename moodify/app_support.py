"""Pieces of the web app (app.py) that are not UI: upload checks, the live hand-over, a test-only switch.

Kept out of app.py so they are unit-tested, and out of the core modules because only the app uses them.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .images import ImageError, load_image
from .labels import EMOTIONS
from .recognizer import Face

# Uploads larger than this are refused before decoding: a 50-megapixel photo already takes ~150 MB
# decoded, and detection runs on a 640-pixel copy anyway, so nothing is gained beyond it.
MAX_UPLOAD_PIXELS = 50_000_000

# Torch threads for the whole app process. Every browser session's script and webcam callback runs
# on its own thread of one process, so the number is set for the process (a per-call context
# manager, like ``moodify video --threads``, would race between sessions). One, as ``moodify video``
# and ``moodify live`` use: the network classifies a face in ~1 ms on one thread, and torch's
# default (one per core) only fights the video decoder and encoder, and the other sessions, for
# the CPU. With another process busy on one of 2 cores, a 4 s clip took the Video mode 24.5 s
# unpinned, 6.3 s pinned, and ``moodify video`` 5.3 s (benchmarks/bench_video.py --busy 1): torch's
# threads wait for each other at every layer while one of them is descheduled.
APP_TORCH_THREADS = 1

# Test-only: set to 1 to make aiortc offer only 127.0.0.1 ICE candidates, which is what lets a
# headless browser in a loopback-only network namespace reach the live-webcam stream.
LOOPBACK_ICE_ENV = "MOODIFY_TEST_LOOPBACK_ICE"


def read_image_upload(data: bytes, name: str, *, max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """An uploaded file's bytes -> BGR uint8, or ``ImageError`` with a one-line message for people.

    The picture's size is read from its header first, so a huge image is refused without decoding it.
    """
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or a format Pillow cannot read "
                         "(try a JPEG, PNG, WebP, BMP or TIFF file)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: the image is too large to open safely; downscale it first") from None
    except Exception:  # a broken header: load_image below words the error
        width = height = 0
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more than "
                         f"the app accepts ({max_pixels / 1e6:.0f} megapixels); downscale the photo first")
    return load_image(data, name=name)


def pin_torch_threads(n: int = APP_TORCH_THREADS) -> None:
    """Make torch use ``n`` CPU threads in this process (see ``APP_TORCH_THREADS``)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def loopback_ice_requested() -> bool:
    """Whether the test-only loopback ICE switch (``MOODIFY_TEST_LOOPBACK_ICE=1``) is on."""
    return os.environ.get(LOOPBACK_ICE_ENV, "") == "1"


def patch_loopback_ice() -> None:
    """Make aioice gather only 127.0.0.1 host candidates (it skips loopback by default).

    For browser tests only: headless Chromium and the app run in a network namespace that has
    nothing but ``lo``, where aioice would otherwise offer no candidate at all.
    """
    import aioice.ice

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only


@dataclass(frozen=True)
class LiveSnapshot:
    """What the UI thread reads: frames analysed so far, the faces of the latest frame, the timeline."""

    frames: int
    faces: list[tuple[int, Face]]  # (face number / track id, face), as drawn on the latest frame
    timeline: pd.DataFrame  # one row per face per frame over the last ``history_s`` seconds


class LiveResults:
    """The hand-over between the webcam frame callback (another thread) and the Streamlit script.

    The callback calls ``publish`` for every analysed frame and never touches ``st.*``; the script
    polls ``read`` to redraw its charts. One lock guards both, so a read never sees half a frame.
    """

    def __init__(self, *, history_s: float = 30.0):
        self.history_s = history_s
        self._lock = threading.Lock()
        self._frames = 0
        self._faces: list[tuple[int, Face]] = []
        self._rows: deque[dict] = deque()
        self._t0: float | None = None

    def publish(self, faces: Sequence[tuple[int, Face]], *, t: float | None = None) -> None:
        """Record one analysed frame taken at ``t`` seconds (monotonic clock by default)."""
        t = time.monotonic() if t is None else t
        rows = [{"face": number, "emotion": face.emotion, "confidence": face.confidence, **face.probabilities}
                for number, face in faces]
        with self._lock:
            if self._t0 is None:
                self._t0 = t
            self._frames += 1
            self._faces = list(faces)
            for row in rows:
                self._rows.append({"time_s": t - self._t0, **row})
            while self._rows and self._rows[0]["time_s"] < t - self._t0 - self.history_s:
                self._rows.popleft()

    def read(self) -> LiveSnapshot:
        with self._lock:
            frames, faces, rows = self._frames, list(self._faces), list(self._rows)
        columns = ["time_s", "face", "emotion", "confidence", *EMOTIONS]
        return LiveSnapshot(frames, faces, pd.DataFrame(rows, columns=columns))


# How long the Live mode waits for the first webcam frame after START before saying something is wrong.
LIVE_CONNECT_TIMEOUT_S = 15.0


def live_connection_message(*, playing: bool, signalling: bool, new_frames: int,
                            waited_s: float) -> tuple[str, str] | None:
    """What the Live mode tells a user while the webcam connection is made: ``(kind, text)`` with
    kind ``"info"`` or ``"warning"``, or None once frames arrive (or before START).

    START once did nothing visible for 72 s: the browser and the app were still negotiating the
    WebRTC connection, or connected without a frame. ``new_frames`` counts frames analysed since
    this wait began, ``waited_s`` its length in seconds.
    """
    if not (playing or signalling) or new_frames > 0:
        return None
    if waited_s < LIVE_CONNECT_TIMEOUT_S:
        return "info", "Connecting to your camera... (allow the camera if your browser asks)"
    return "warning", (f"No picture has come from your camera after {waited_s:.0f} s. Check that the browser "
                       "may use the camera and no other program holds it, then press **STOP** and "
                       "**START** again, or reload the page.")
