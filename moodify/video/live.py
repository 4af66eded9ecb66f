"""``moodify live``: a webcam (or a video file or stream) with live, tracked emotion labels.

In a window: a box per face with its track id, smoothed emotion and confidence, a bar per
emotion, and an FPS counter. Keys: ``q``/Esc quit, ``s`` snapshot (PNG), ``r`` start/stop
recording the annotated stream (MP4), ``space`` pause.

``--no-window`` runs headless (over SSH, in tests): it prints when a person appears, changes
emotion or leaves (or, with ``--jsonl``, one JSON line per frame), can write the CSV timeline
and a recording, and ends with the per-person summary of ``moodify video``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import VideoError
from ..names import printable
from ..pipeline.draw import annotate_tracks
from ..pipeline.rows import percent
from .frames import FpsMeter, FrameAnalyzer, FrameResult
from .io import VideoFrame, VideoReader, VideoWriter
from .timeline import EmotionSummary, TimelineWriter

WINDOW = "moodify live (q quit, s snapshot, r record, space pause)"
CAMERA_WARMUP_S = 5.0  # how long a camera that opened may take to deliver its first frame
NO_GUI = "no GUI support in this OpenCV build: use --no-window or install opencv-python"
NO_DISPLAY = "no display to open a window on (DISPLAY is not set): use --no-window, or ssh -X"
KEY_QUIT = {ord("q"), ord("Q"), 27}  # 27: Esc
KEY_SNAPSHOT = {ord("s"), ord("S")}
KEY_RECORD = {ord("r"), ord("R")}
KEY_PAUSE = {ord(" ")}
KEY_CALIBRATE = {ord("c"), ord("C")}  # the people in view hold a neutral face: ~1 s of it becomes their reference


# --------------------------------------------------------------------------- sources

class CameraReader:
    """Frames from a webcam through OpenCV, timed by the wall clock.

    Raises ``VideoError`` naming what was tried when the camera cannot be opened or gives no
    frame.
    """

    is_live = True

    def __init__(self, index: int, *, width: int = 640, height: int = 480):
        self.name = f"camera {index}"
        self.damage: str | None = None
        self.frames_read = 0
        # OpenCV prints its own warnings for a missing device; we print one clear message instead.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            self._cap = cv2.VideoCapture(index)
            opened = self._cap.isOpened()
            first = None
            if opened:
                self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of stale ones
                deadline = time.monotonic() + CAMERA_WARMUP_S
                while first is None and time.monotonic() < deadline:
                    ok, frame = self._cap.read()
                    first = frame if ok else None
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not opened:
            self._cap.release()
            raise VideoError(f"cannot open camera {index}: {_camera_hint(index)}")
        if first is None:
            self._cap.release()
            raise VideoError(f"camera {index} opened but gave no frame in {CAMERA_WARMUP_S:.0f} s "
                             "(in use by another program?)")
        self._first = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 30.0
        self.width, self.height = first.shape[1], first.shape[0]

    def __iter__(self) -> Iterator[VideoFrame]:
        t0 = time.monotonic()
        frame = self._first
        while True:
            yield VideoFrame(self.frames_read, time.monotonic() - t0, frame)
            self.frames_read += 1
            ok, frame = self._cap.read()
            if not ok:
                self.damage = f"the camera stopped delivering frames after {self.frames_read}"
                return

    def close(self) -> None:
        self._cap.release()


def _camera_hint(index: int) -> str:
    """What was tried and what exists, so the user knows which index to try next."""
    tried = f"tried OpenCV's default capture backend for index {index}"
    if sys.platform.startswith("linux"):
        devices = sorted(glob.glob("/dev/video*"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
        tried += f" (/dev/video{index})"
        found = f"video devices here: {', '.join(devices)}" if devices else "no /dev/video* device exists here"
        return f"{tried}; {found}. Use --camera N, or --source FILE_OR_URL for a video"
    return f"{tried}. Use --camera N for another camera, or --source FILE_OR_URL for a video"


def open_source(*, camera: int = 0, source: str | None = None, width: int = 640, height: int = 480):
    """A ``VideoReader`` for a file or URL, or a ``CameraReader`` for a webcam index."""
    if source is not None:
        return VideoReader(source)
    return CameraReader(camera, width=width, height=height)


def gui_problem() -> str | None:
    """Why an OpenCV window cannot open here, or None when one can."""
    m = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if m and m.group(1).upper() == "NONE":
        return NO_GUI  # the opencv-python-headless wheels
    if sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return NO_DISPLAY
        # OpenCV's Qt aborts the whole process (no exception) when the display cannot be reached,
        # so the first window is opened in a throwaway child process.
        probe = subprocess.run([sys.executable, "-c", f"import cv2; cv2.namedWindow({WINDOW!r}); cv2.destroyAllWindows()"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            lines = [line for line in probe.stderr.splitlines() if line.strip()]
            return f"cannot open a window ({lines[0].strip() if lines else 'unknown reason'}): use --no-window"
        return None
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        return f"cannot open a window ({reason}): no display? use --no-window"
    return None


# --------------------------------------------------------------------------- the session

class LiveSession:
    """One live run: analysis, drawing, FPS, snapshots, recording, pause, headless reporting.

    The key handling (``handle_key``) and the per-frame step (``step``) do not need a window, so
    the window mode's behaviour is tested headless.
    """

    def __init__(self, analyzer: FrameAnalyzer, *, fps_hint: float, out_dir: str | Path = ".",
                 record: str | Path | None = None, csv_path: str | Path | None = None,
                 report: str = "events", stream=None):
        self.analyzer = analyzer
        self.fps_hint = fps_hint
        self.out_dir = Path(out_dir)
        self.meter = FpsMeter()
        self.summary = EmotionSummary()
        self.timeline = TimelineWriter(csv_path) if csv_path else None
        self.recorder: VideoWriter | None = None
        self.paused = False
        self.snapshots: list[Path] = []
        self.recordings: list[Path] = []
        self.report = report  # "events", "jsonl" or "none"
        self.stream = stream if stream is not None else sys.stdout
        self.frames = 0
        self._labels: dict[int, str] = {}  # track id -> label, of the faces in the latest frame
        self._seen: set[int] = set()
        self._calibrating = False
        self.last: np.ndarray | None = None  # the latest annotated frame
        if record:
            self.start_recording(record)

    def step(self, frame: VideoFrame) -> np.ndarray:
        """Analyse, report, draw and record one frame; returns the annotated frame."""
        result = self.analyzer.process(frame.bgr, time_s=frame.time)
        result.index = frame.index
        fps = self.meter.tick()
        self.summary.add(result)
        if self.timeline is not None:
            self.timeline.write(result)
        self._report(result)
        calibrated = sum(f.track_id in self.analyzer.references for f in result.faces)
        if self._calibrating and not self.analyzer.calibrating:
            self._say(f"calibrated {calibrated} person(s): their emotions are now read relative to their neutral face")
        self._calibrating = self.analyzer.calibrating
        status = (["REC"] if self.recorder is not None else []) + (["CALIBRATING"] if self._calibrating else [])
        self.last = annotate_tracks(frame.bgr, result.faces, fps=fps, status=status, copy=False)
        if self.recorder is not None:
            self.recorder.write(self.last)
        self.frames += 1
        return self.last

    def handle_key(self, key: int) -> bool:
        """React to a key code from ``cv2.waitKey``; True means quit."""
        if key in KEY_QUIT:
            return True
        if key in KEY_SNAPSHOT and self.last is not None:
            path = self._new_path("snapshot", ".png")
            if cv2.imwrite(str(path), self.last):
                self.snapshots.append(path)
                self._say(f"snapshot saved: {path}")
            else:
                self._say(f"could not save the snapshot to {path}")
        elif key in KEY_RECORD:
            if self.recorder is None:
                self.start_recording(self._new_path("recording", ".mp4"))
            else:
                self.stop_recording()
        elif key in KEY_PAUSE:
            self.paused = not self.paused
        elif key in KEY_CALIBRATE:
            from ..pipeline.reference import ReferenceError

            try:
                self.analyzer.calibrate()
            except ReferenceError as exc:  # a model with no measured setting: said, and the session goes on
                self._say(f"cannot calibrate: {exc}")
            else:
                self._say("calibrating: hold a neutral face for a second")
        return False

    def start_recording(self, path: str | Path) -> None:
        # The recording plays at the rate frames are processed, which is what the viewer saw.
        fps = self.meter.fps if self.meter.fps >= 1 else self.fps_hint
        self.recorder = VideoWriter(path, fps=fps, preset="ultrafast")
        self.recordings.append(Path(path))
        self._say(f"recording to {path} ({self.recorder.codec})")

    def stop_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self._say(f"recording saved: {self.recorder.path} ({self.recorder.frames_written} frames)")
            self.recorder = None

    def close(self) -> None:
        self.stop_recording()
        if self.timeline is not None:
            self.timeline.close()

    def _new_path(self, kind: str, suffix: str) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.out_dir / f"moodify-{kind}-{stamp}{suffix}"
        n = 1
        while path.exists() or path in self.snapshots or path in self.recordings:
            n += 1
            path = self.out_dir / f"moodify-{kind}-{stamp}-{n}{suffix}"
        return path

    def _say(self, text: str) -> None:
        text = printable(text)  # it names files: their control characters are escaped
        if self.report != "jsonl":  # keep JSON lines machine-readable
            print(text, file=self.stream, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def _report(self, result: FrameResult) -> None:
        if self.report == "jsonl":
            print(json.dumps(result.to_dict()), file=self.stream, flush=True)
            return
        now = {f.track_id: f for f in result.faces}
        lines = []
        for tid, face in now.items():
            before = self._labels.get(tid)
            if before is None:
                x, y, w, h = face.box
                verb = "back in sight" if tid in self._seen else "appears"
                lines.append(f"{result.time:7.2f}s  person {tid} {verb}: {face.emotion} {percent(face.confidence)} "
                             f"at x={x} y={y} w={w} h={h}")
                self._seen.add(tid)
            elif before != face.emotion:
                lines.append(f"{result.time:7.2f}s  person {tid}: {before} -> {face.emotion} {percent(face.confidence)}")
        for tid in [t for t in self._labels if t not in now]:
            lines.append(f"{result.time:7.2f}s  person {tid} out of sight")
        self._labels = {tid: f.emotion for tid, f in now.items()}
        if lines and self.report == "events":
            print("\n".join(lines), file=self.stream, flush=True)


# --------------------------------------------------------------------------- running

def run_headless(session: LiveSession, reader, *, max_frames: int) -> None:
    for frame in reader:
        if max_frames and frame.index >= max_frames:
            break
        session.step(frame)


def run_window(session: LiveSession, reader, *, max_frames: int) -> None:
    pace = not reader.is_live  # a file plays at its own speed, not as fast as we can decode it
    t0 = time.monotonic()
    for frame in reader:
        if max_frames and frame.index >= max_frames:
            break
        if pace:
            delay = frame.time - (time.monotonic() - t0)
            if delay > 0:
                time.sleep(delay)
        cv2.imshow(WINDOW, session.step(frame))
        if session.handle_key(cv2.waitKey(1) & 0xFF) or _window_closed():
            return
        paused_at = time.monotonic()
        while session.paused:
            cv2.imshow(WINDOW, annotate_tracks(session.last, [], status=["PAUSED: space resumes"]))
            if session.handle_key(cv2.waitKey(30) & 0xFF) or _window_closed():
                return
        t0 += time.monotonic() - paused_at  # a paused file resumes where it stopped


def _window_closed() -> bool:
    """The user closed the window with its close button (which sends no key)."""
    try:
        return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
    except cv2.error:
        return True
