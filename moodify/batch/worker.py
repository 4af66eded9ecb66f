"""The per-input work of a batch job, in worker processes: decode, detect and crop each face.

Each worker holds one ``Recognizer`` (the same pipeline as the API, video and the app) built
for cropping; with the onnx backend it also classifies its own faces.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class _Analyzed:
    """What a worker sends back for one input: boxes and 48x48 crops, or why it failed."""

    path: str
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    crops: np.ndarray | None = None
    landmarks: list = field(default_factory=list)  # per box: 5 (x, y) points or None
    error: str | None = None
    probs: np.ndarray | None = None  # (faces, 7) calibrated probabilities, once classified


def _has_faces(item: _Analyzed) -> bool:
    return item.error is None and bool(item.boxes)


def _classify(items: list[_Analyzed], model, batch_size: int) -> None:
    """Fill in ``probs`` for the items with faces that have none yet, in one batched ``predict``."""
    todo = [it for it in items if _has_faces(it) and it.probs is None]
    if not todo:
        return
    probs = model.predict(np.concatenate([it.crops for it in todo]), batch_size=batch_size)
    at = 0
    for item in todo:
        item.probs, at = probs[at:at + len(item.boxes)], at + len(item.boxes)


_WORKER: dict = {}  # per-process state set by _init_worker: the cropping pipeline, mode, model


def _init_worker(detector_spec: dict | None, prep, pre_cropped: bool, in_pool: bool,
                 onnx_path: str | None = None, parent_pid: int | None = None) -> None:
    """Per-process set-up; ``onnx_path``: the worker classifies too, with this exported model;
    ``parent_pid``: the main process, whose death (kill -9 included) ends this worker."""
    from ..model.onnx_backend import OnnxEmotionModel
    from ..pipeline.detect import make_detector
    from ..pipeline.recognizer import Recognizer

    if parent_pid is not None:
        _die_with(parent_pid)
    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
        cv2.setNumThreads(1)  # one process per core already; more threads only contend
    _WORKER.update(prep=prep, pre_cropped=pre_cropped,
                   pipeline=None if pre_cropped else Recognizer.for_cropping(prep, make_detector(**detector_spec)),
                   model=None if onnx_path is None else OnnxEmotionModel(onnx_path, threads=1))


WATCHDOG_PERIOD_S = 1.0  # how often a worker checks that the main process is still there


def _die_with(parent_pid: int) -> None:
    """End this worker when ``parent_pid`` dies, however it dies.

    A main process killed with SIGKILL cannot stop its workers, and a worker busy on a big
    image (or blocked) would otherwise live on, holding its memory. On Linux the kernel sends
    SIGKILL when the process that forked this one exits (the forkserver, which exits with the main
    process); a watchdog thread covers other systems and a worker stuck between checks of the pipe.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # no prctl (an unusual libc): the watchdog alone
    forked_by = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != forked_by or not _alive(parent_pid):
                os._exit(1)
            time.sleep(WATCHDOG_PERIOD_S)

    threading.Thread(target=watch, name="moodify-watchdog", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks; PermissionError would still mean it exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _ping(_: int) -> int:
    return os.getpid()


def _analyze_many(paths: list[str]) -> list[_Analyzed]:
    """``_analyze`` each path, then classify all their faces at once where this worker holds the model."""
    items = [_analyze(path) for path in paths]
    if _WORKER.get("model") is not None:
        _classify(items, _WORKER["model"], batch_size=len(paths))
        for item in items:
            item.crops = None  # classified: no need to send the pixels back
    return items


def _analyze(path: str) -> _Analyzed:
    """Decode one image and cut out its faces; any failure becomes a one-line error, never a crash."""
    from ..errors import ImageError
    from ..pipeline.images import load_gray, load_image
    from ..pipeline.preprocess import resize_face

    try:
        if _WORKER["pre_cropped"]:
            gray = load_gray(path)
            h, w = gray.shape
            return _Analyzed(path, [(0, 0, w, h)], resize_face(gray, _WORKER["prep"].input_size)[None], [None])
        found, crops = _WORKER["pipeline"].detect_and_crop(load_image(path))
        return _Analyzed(path, [d.box for d in found], crops, [d.landmarks for d in found])
    except ImageError as exc:
        message = str(exc)
        return _Analyzed(path, error=message[len(path) + 2:] if message.startswith(path + ": ") else message)
    except Exception as exc:  # a decoder or detector failure on one file must not stop a million-file job
        return _Analyzed(path, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))
