"""Running the real Streamlit app and Debian's Chromium for the browser tests (tests/test_app_browser.py).

The recipe (../shared/RECIPES.md): Playwright drives the system Chromium (never ``playwright install``),
a Y4M file stands in for the webcam, and live WebRTC runs in a loopback-only network namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT / "test-artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
APP_START_TIMEOUT_S = 90  # a cold start imports torch and streamlit on a busy 2-core machine


def find_chromium() -> str | None:
    """The system Chromium: ``$MOODIFY_CHROMIUM`` or a Debian/Ubuntu install path."""
    candidates = [os.environ.get("MOODIFY_CHROMIUM", "")] + list(CHROMIUM_CANDIDATES)
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nice(cmd: list[str]) -> list[str]:
    # The project's CI and dev boxes share 2 cores with training; the app must not starve it.
    return ["nice", "-n", "19", *cmd] if shutil.which("nice") else cmd


@contextmanager
def running_app(*, netns: str | None = None, env: dict[str, str] | None = None,
                log_path: Path | None = None) -> Iterator[str]:
    """Start ``streamlit run app.py`` on 127.0.0.1 at a free port; yield its URL; stop it afterwards."""
    port = free_port()
    cmd = _nice([sys.executable, "-m", "streamlit", "run", str(PROJECT / "app.py"),
                 "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"])
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    log_path = log_path or ARTIFACTS / f"streamlit-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=PROJECT, env={**os.environ, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, netns=netns, log_path=log_path)
        yield url
    finally:
        _stop(proc)
        log.close()


def _wait_healthy(url: str, proc: subprocess.Popen, *, netns: str | None, log_path: Path) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()[-2000:]}")
        if _healthy(url, netns):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer {url}/_stcore/health in {APP_START_TIMEOUT_S} s; see {log_path}")


def _healthy(url: str, netns: str | None) -> bool:
    if netns:  # the app's 127.0.0.1 is the namespace's own loopback: ask from inside it
        probe = ["ip", "netns", "exec", netns, sys.executable, "-c",
                 f"import urllib.request; urllib.request.urlopen('{url}/_stcore/health', timeout=2)"]
        return subprocess.run(probe, capture_output=True).returncode == 0
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop the app and whatever it started (its own session), politely first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def netns_available() -> str | None:
    """Why a loopback-only network namespace cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    name = f"moodify-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return None


@contextmanager
def loopback_netns() -> Iterator[str]:
    """A network namespace with only ``lo`` (up); deleted afterwards."""
    name = f"moodify-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def browser_wrapper(chromium: str, directory: Path, *, netns: str | None = None) -> str:
    """An executable that starts Chromium at the lowest CPU priority, inside ``netns`` if given.

    Chromium, run as root, raises its own processes' priority (nice -8); under SCHED_IDLE that
    has no effect, so the browser cannot crowd out other work on a shared machine. Playwright
    talks to it over a pipe, not TCP, so it also works from inside a network namespace.
    """
    path = directory / ("chromium-in-netns" if netns else "chromium-low-priority")
    prefix = f"ip netns exec {netns} " if netns else ""
    idle = "chrt --idle 0 " if shutil.which("chrt") else ""
    path.write_text(f'#!/bin/sh\nexec {prefix}nice -n 19 {idle}{chromium} "$@"\n')
    path.chmod(0o755)
    return str(path)


def chromium_args(fake_video: Path | None = None) -> list[str]:
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection"]
    if fake_video is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_video}")
    return args


def face_canvas(face_bgr: np.ndarray, *, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """The photo centred on a gray canvas of ``size`` (width, height), the webcam frame layout."""
    width, height = size
    canvas = np.full((height, width, 3), 90, np.uint8)
    scale = min(width / face_bgr.shape[1], height / face_bgr.shape[0], 1.0)
    img = cv2.resize(face_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else face_bgr
    y, x = (height - img.shape[0]) // 2, (width - img.shape[1]) // 2
    canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    return canvas


def write_y4m(path: Path, frame_bgr: np.ndarray, *, frames: int = 30, fps: int = 15) -> Path:
    """A still picture as a Y4M video, which Chromium plays as its fake webcam (on a loop)."""
    height, width = frame_bgr.shape[:2]
    yuv = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + yuv)
    return path


def write_mp4(path: Path, frames: list[np.ndarray], *, fps: int = 10) -> Path:
    """A short video file (MPEG-4 part 2 in .mp4, which OpenCV writes without extra codecs)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
