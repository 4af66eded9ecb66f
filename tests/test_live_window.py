"""`moodify live` with its OpenCV window, on a virtual X display (Xvfb), keys pressed with xdotool.

The window loop is what a user at a desk sees; tests/test_live.py covers the same session headless.
"""

from __future__ import annotations

import os
import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from moodify.video.live import NO_GUI
from test_video import decoded_frames, moving_face_frames, write_avi

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
pytestmark = pytest.mark.slow  # the fast subset (README) leaves it out


def _require(tools: list[str]) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    reason = ""
    if missing:
        reason = f"the live window test needs {' and '.join(missing)} (apt-get install xvfb xdotool)"
    elif re.search(r"^\s*GUI:\s*NONE", cv2.getBuildInformation(), re.MULTILINE):
        reason = "this OpenCV build has no GUI (opencv-python-headless): the window cannot open"
    if reason:
        if IN_CI:
            pytest.fail(f"{reason}; under CI it must run (.ci/install-system.sh installs them)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def display(tmp_path_factory):
    """A private Xvfb display, e.g. ':3'; Xvfb picks a free number and writes it to a pipe."""
    _require(["Xvfb", "xdotool"])
    read_end, write_end = os.pipe()
    log = tmp_path_factory.mktemp("xvfb") / "xvfb.log"
    errors = open(log, "wb")
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=errors)
    os.close(write_end)
    # Read up to the newline, and keep our end open while Xvfb runs: it writes the number and the
    # newline separately, and a closed pipe makes the second write fatal.
    number, deadline = b"", time.monotonic() + 30
    while not number.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([read_end], [], [], 1)
        if ready:
            chunk = os.read(read_end, 64)
            if not chunk:
                break
            number += chunk
    if not number.strip():
        server.kill()
        os.close(read_end)
        errors.close()
        pytest.fail("Xvfb did not start within 30 s: " + log.read_text(errors="replace")[-2000:])
    yield f":{number.decode().strip()}"
    os.close(read_end)
    server.terminate()
    server.wait(10)
    errors.close()


class Lines:
    """The child's output, line by line, read on a thread so the test can wait for a line."""

    def __init__(self, stream):
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        pytest.fail(f"no line matching {pattern!r} within {timeout} s; output so far:\n" + "\n".join(self.seen))


def _xdotool(display: str, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_window_shows_the_video_and_its_keys_save_a_snapshot_and_a_recording(display, astronaut_bgr, tmp_path):
    # 40 s of a face moving to and fro, played at its own 15 frames/s: longer than the test needs.
    clip = write_avi(tmp_path / "clip.avi", moving_face_frames(astronaut_bgr) * 25)
    env = {**os.environ, "DISPLAY": display, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "moodify", "live", "--source", str(clip), "--out-dir", str(tmp_path),
                              "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = Lines(child.stdout)
        out.wait_for(r"person 1 appears: \w+ \d+\.\d%")  # the first frame has been analysed and shown
        window = _xdotool(display, "search", "--sync", "--name", "moodify live").split()[0]
        _xdotool(display, "windowfocus", "--sync", window)
        assert _xdotool(display, "getwindowname", window).startswith("moodify live (q quit, s snapshot")

        _xdotool(display, "key", "s")
        snapshot = Path(out.wait_for(r"snapshot saved: (.+\.png)$").group(1))
        _xdotool(display, "key", "r")
        out.wait_for(r"recording to (.+\.mp4)")
        time.sleep(1.5)
        _xdotool(display, "key", "r")
        recording = out.wait_for(r"recording saved: (.+\.mp4) \((\d+) frames\)")
        _xdotool(display, "key", "q")
        assert child.wait(timeout=60) == 0, "\n".join(out.seen)
    finally:
        if child.poll() is None:
            child.kill()

    shown = cv2.imread(str(snapshot))
    assert shown is not None and shown.shape == (480, 640, 3)  # the annotated frame, at the video's size
    assert snapshot.parent == tmp_path and Path(recording.group(1)).parent == tmp_path
    codec, frames = decoded_frames(Path(recording.group(1)))
    assert len(frames) == int(recording.group(2)) >= 3 and frames[0].shape == (480, 640, 3)
    summary = out.wait_for(r"^\d+ frames in [\d.]+ s")
    assert any(line.split()[:1] == ["1"] and "mostly" in line for line in out.seen), out.seen  # per-person table
    assert int(summary.group(0).split()[0]) < 600  # q ended it before the clip did


def test_live_without_a_display_says_so_instead_of_crashing(tmp_path):
    # OpenCV's Qt aborts the process when it cannot reach a display; live checks first.
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-m", "moodify", "live", "--camera", "0"], env=env, capture_output=True,
                          text=True, timeout=120)
    if "no GUI support" in done.stderr:
        assert NO_GUI in done.stderr
    else:
        assert "no display to open a window on" in done.stderr and "--no-window" in done.stderr
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_live_with_an_unreachable_display_says_so_instead_of_crashing(display):
    env = {**os.environ, "DISPLAY": display + "9"}  # a display number nobody serves
    done = subprocess.run([sys.executable, "-m", "moodify", "live", "--camera", "0"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot open a window" in done.stderr and "--no-window" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
