"""The web app's Live mode, apart from its widgets: the hand-over between the webcam callback and
the page, what to say while the camera connects, and a test-only switch for loopback WebRTC."""

from __future__ import annotations

import csv
import io
import os
import threading
from collections import deque
from dataclasses import dataclass

import pandas as pd

from ..labels import EMOTIONS
from ..pipeline.recognizer import Face
from ..video.frames import FrameResult
from ..video.timeline import CSV_COLUMNS, SUMMARY_COLUMNS, EmotionSummary, timeline_rows

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


# Rows of the session's timeline CSV kept in memory: over 2 hours of one face at 10 analysed frames
# a second. Past that the oldest rows go, so a webcam left running cannot fill the server's memory.
MAX_TIMELINE_ROWS = 100_000


@dataclass(frozen=True)
class LiveSnapshot:
    """What the UI thread reads: frames analysed in this session, the faces of the latest frame,
    the recent timeline for the chart and the session's per-person summary."""

    frames: int
    faces: list[tuple[int, Face]]  # (face number / track id, face), as drawn on the latest frame
    timeline: pd.DataFrame  # one row per face per frame over the last ``history_s`` seconds
    summary: pd.DataFrame  # one row per person since START: ``EmotionSummary.rows()``, as `moodify live` prints


class LiveResults:
    """The hand-over between the webcam frame callback (another thread) and the Streamlit script.

    The callback calls ``publish`` for every analysed frame and never touches ``st.*``; the script
    polls ``read`` to redraw its charts, and after STOP still finds the last session there: its
    summary and its timeline CSV (``timeline_csv``, the columns of ``moodify live --csv``) until
    ``new_session`` at the next START. One lock guards it all, so a read never sees half a frame.
    """

    def __init__(self, *, history_s: float = 30.0, max_rows: int = MAX_TIMELINE_ROWS):
        self.history_s = history_s
        self._lock = threading.Lock()
        self._max_rows = max_rows
        self.new_session()

    def new_session(self) -> None:
        """Forget the last session (called at START)."""
        with self._lock:
            self._frames = 0
            self._faces: list[tuple[int, Face]] = []
            self._rows: deque[dict] = deque()
            self._csv_rows: deque[list] = deque(maxlen=self._max_rows)
            self._summary = EmotionSummary()

    def publish(self, result: FrameResult) -> None:
        """Record one analysed frame (``result.time``: seconds since the session's first frame)."""
        t = result.time
        faces = [(face.track_id, face) for face in result.faces]
        rows = [{"time_s": t, "face": number, "emotion": face.emotion, "confidence": face.confidence,
                 **face.probabilities} for number, face in faces]
        csv_rows = timeline_rows(result)
        with self._lock:
            self._frames += 1
            self._faces = faces
            self._rows.extend(rows)
            while self._rows and self._rows[0]["time_s"] < t - self.history_s:
                self._rows.popleft()
            self._csv_rows.extend(csv_rows)
            self._summary.add(result)

    def read(self) -> LiveSnapshot:
        with self._lock:
            frames, faces, rows, summary = self._frames, list(self._faces), list(self._rows), self._summary.rows()
        columns = ["time_s", "face", "emotion", "confidence", *EMOTIONS]
        return LiveSnapshot(frames, faces, pd.DataFrame(rows, columns=columns),
                            pd.DataFrame(summary, columns=SUMMARY_COLUMNS))

    def timeline_csv(self) -> bytes:
        """The session's timeline as CSV bytes (``CSV_COLUMNS``), ready for a download button."""
        with self._lock:
            rows = list(self._csv_rows)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8")


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
