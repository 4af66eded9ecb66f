"""A corpus of hostile and careless inputs, made here (nothing downloaded), for tests and benchmarks.

``make_corpus(folder, face_bgr)`` writes every file into ``folder`` and returns what a user should
see for each: ``"face"`` (at least one face found), ``"no face"``, ``"error"`` (a one-line refusal)
or ``"any"`` (a face, no face or an error are all fair; what matters is no crash, hang or blow-up).

Run as a script, it answers for one path of Moodify, so a test or a benchmark can run it in a
subprocess with a timeout and measure its memory::

    python tests/bad_inputs.py api FILE...      # moodify.Recognizer().analyze: one JSON line per file
    python tests/bad_inputs.py video FILE...    # moodify.analyze_video(...).run(): one JSON line per file
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

NON_UTF8_NAME = b"caf\xe9.jpg"  # Latin-1 "café.jpg": not valid UTF-8


def png_bomb(path: Path, width: int, height: int, *, color_type: int = 0) -> Path:
    """A valid all-black 8-bit PNG that declares ``width`` x ``height``: under a megabyte on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    channels = {0: 1, 2: 3, 6: 4}[color_type]
    packer, row = zlib.compressobj(9), bytes(width * channels + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def make_corpus(folder: Path, face_bgr: np.ndarray) -> dict[str, str]:
    """Write the corpus into ``folder`` (made if needed); {file name (str, as os.listdir gives it): expected}."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY)
    expected: dict[str, str] = {}

    def put(name: str, outcome: str) -> Path:
        expected[name] = outcome
        return folder / name

    cv2.imwrite(str(put("face.jpg", "face")), face_bgr)
    jpeg = (folder / "face.jpg").read_bytes()
    put("empty.jpg", "error").write_bytes(b"")
    put("truncated.jpg", "error").write_bytes(jpeg[:2000])
    cv2.imwrite(str(folder / "whole.png"), gray)
    put("truncated.png", "error").write_bytes((folder / "whole.png").read_bytes()[:3000])
    (folder / "whole.png").unlink()
    put("text.png", "error").write_text("this is text, not a PNG")
    Image.new("L", (1, 1), 128).save(put("1x1.png", "no face"))
    cv2.imwrite(str(put("16-bit.png", "face")), gray.astype(np.uint16) * 257)
    Image.fromarray(np.dstack([rgb, np.full(gray.shape, 200, np.uint8)])).save(put("rgba.png", "face"))
    Image.fromarray(rgb).convert("CMYK").save(put("cmyk.jpg", "face"))
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(put("palette.png", "face"),
                                                                           transparency=0)
    frames = [Image.fromarray(rgb), Image.fromarray(rgb[:, ::-1].copy())]
    frames[0].save(put("animated.gif", "face"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(put("exif-rotated.jpg", "face"), exif=exif)
    png_bomb(put("bomb-30000x30000.png", "error"), 30000, 30000)
    png_bomb(put("bomb-rgb-20000x20000.png", "error"), 20000, 20000, color_type=2)
    cv2.imwrite(str(put("strip-1x1300.png", "no face")), np.full((1300, 1), 90, np.uint8))
    cv2.imwrite(str(put("strip-5000x2.jpg", "no face")), np.full((2, 5000, 3), 90, np.uint8))
    Image.new("F", (8000, 6000), 0.5).save(put("float-8000x6000.tif", "no face"), compression="tiff_deflate")
    os.mkfifo(put("fifo.jpg", "error"))
    put("folder.jpg", "error").mkdir()
    os.symlink("loop.jpg", put("loop.jpg", "error"))  # a link to itself
    with open(os.path.join(os.fsencode(folder), NON_UTF8_NAME), "wb") as fh:
        fh.write(jpeg)
    expected[os.fsdecode(NON_UTF8_NAME)] = "face"
    return expected


# Runs ARGV and writes its peak resident memory (KB, it and its children) to PEAK_FILE. It exists because
# a child's ru_maxrss starts from its parent's high-water mark (fork copies the address space, exec
# keeps the old one's peak): measured straight from pytest, a 60 MB run reads as big as pytest ever got.
_MEASURE = """
import os, subprocess, sys
peak_file, *argv = sys.argv[1:]
proc = subprocess.Popen(argv)
_, status, usage = os.wait4(proc.pid, 0)
with open(peak_file, "w") as fh:
    fh.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):  # die the same way, so the caller sees the signal
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(argv: list, *, timeout: float, env: dict | None = None,
                 cwd: Path | None = None) -> tuple[int, str, str, float]:
    """Run ``argv``; (exit status, stdout, stderr, peak resident memory in MB of it and its children).

    The peak is the run's own, whatever the calling process holds. A run past ``timeout`` seconds
    is killed with everything it started and raises ``TimeoutError``: a hang fails, never blocks.
    """
    import signal
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        proc = subprocess.Popen([sys.executable, "-c", _MEASURE, peak.name, *map(str, argv)], stdout=out,
                                stderr=err, cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"{list(argv)[:4]}... ran past {timeout} s") from None
        out.seek(0)
        err.seek(0)
        return (status, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                int(peak.read() or 0) / 1024)


def _api(paths: list[str]) -> None:
    import moodify

    recognizer = moodify.Recognizer()
    for path in paths:
        try:
            faces = recognizer.analyze(path)
            outcome = {"faces": len(faces)}
        except moodify.ImageError as exc:
            outcome = {"error": str(exc)}
        _emit(path, outcome)


def _video(paths: list[str]) -> None:
    import moodify
    from moodify.video import VideoError, analyze_video

    recognizer = moodify.Recognizer()
    for path in paths:
        try:
            analysis = analyze_video(path, recognizer=recognizer, progress=False, max_frames=5).run()
            outcome = {"frames": analysis.frames_read}
        except VideoError as exc:
            outcome = {"error": str(exc)}
        _emit(path, outcome)


def _emit(path: str, outcome: dict) -> None:
    print(json.dumps({"path": path, **outcome}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    {"api": _api, "video": _video}[sys.argv[1]](sys.argv[2:])
