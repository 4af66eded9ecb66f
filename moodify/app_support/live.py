"""The web app's Live mode, apart from its widgets: the hand-over between the webcam callback and
the page, what to say while the camera connects, and a test-only switch for loopback WebRTC."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..labels import EMOTIONS
from ..pipeline.recognizer import Face

# Test-only: set to 1 to make aiortc offer only 127.0.0.1 ICE candidates, which is what lets a
# headless browser in a loopback-only network namespace reach the live-webcam stream.
LOOPBACK_ICE_ENV = "MOODIFY_TEST_LOOPBACK_ICE"


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

    START once did nothing visible for 72 s, and the cause was not found: so the message says
    which step is under way, the browser and the app still negotiating the WebRTC connection
    (``signalling`` without ``playing``) or connected with no picture yet, and the warning after
    ``LIVE_CONNECT_TIMEOUT_S`` names the step that stalled. ``new_frames`` counts frames analysed
    since this wait began, ``waited_s`` its length in seconds.
    """
    if not (playing or signalling) or new_frames > 0:
        return None
    step = live_connection_step(playing=playing)
    if waited_s < LIVE_CONNECT_TIMEOUT_S:
        return "info", f"Connecting to your camera: {step}... (allow the camera if your browser asks)"
    return "warning", (f"No picture has come from your camera after {waited_s:.0f} s ({step}). Check that the "
                       "browser may use the camera and no other program holds it, then press **STOP** and "
                       "**START** again, or reload the page.")


def live_connection_step(*, playing: bool) -> str:
    """The step a Live connection is at, in words: negotiating, or connected with no picture yet."""
    return ("connected, waiting for the first picture" if playing
            else "the browser and this app are setting up the video connection")


def webrtc_connection_details(ctx) -> str:
    """The server side of a Live connection for the app's log: whether the SDP answer went back to
    the browser, and aiortc's ICE gathering, ICE connection and peer-connection states.

    Written where START waited past ``LIVE_CONNECT_TIMEOUT_S``, so that a stall names its step (no
    answer; ICE never connecting; ICE done but DTLS never finishing). These are streamlit-webrtc's
    private attributes (0.79): anything missing reads "unknown", and this never raises.
    """
    def read(get):
        try:
            value = get()
        except Exception:  # diagnostics must never break the page
            return "unknown"
        return "unknown" if value is None else value

    answer = read(lambda: ctx._is_sdp_answer_sent)
    pc = read(lambda: ctx._get_worker().pc)
    states = {name: read(lambda name=name: getattr(pc, name))  # "unknown".iceConnectionState raises: "unknown"
              for name in ("iceGatheringState", "iceConnectionState", "connectionState")}
    answer = {True: "sent", False: "not sent"}.get(answer, "unknown")
    return (f"SDP answer {answer}; ICE gathering {states['iceGatheringState']}, ICE connection "
            f"{states['iceConnectionState']}, peer connection {states['connectionState']}")
