"""``moodify video``: a video file annotated, with a CSV timeline and a per-person summary."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Iterator

from ..errors import VideoError
from ..pipeline.detect import DETECT_MAX_SIDE, YUNET_MAX_SIDE
from ..video.io import CODECS
from ..video.job import VideoAnalysis, analyze_video
from ..video.tracking import MAX_MISSED, SMOOTHING
from .options import add_detector_arguments, build_recognizer

DESCRIPTION = ("Annotate a video: faces tracked per person, smoothed emotions, a CSV timeline "
               "(one row per face per frame) and a per-person summary.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file (MP4, MKV, AVI, MOV, WebM, ...) or stream URL")
    p.add_argument("-o", "--output", default=None, help="write the annotated video here (.mp4)")
    p.add_argument("--csv", default=None, help="write the timeline here: one row per face per processed frame")
    p.add_argument("--every", type=int, default=1, help="analyse every N-th frame (the video keeps all frames)")
    add_tracking_arguments(p, detect_every=1, detect_side=None, coast=0)
    p.add_argument("--codec", default="auto", choices=CODECS,
                   help="annotated video codec: h264 plays in browsers; mp4v is OpenCV's fallback")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")
    add_detector_arguments(p)


def add_tracking_arguments(p: argparse.ArgumentParser, *, detect_every: int, detect_side: int | None,
                           coast: int) -> None:
    """Tracking, smoothing and speed options shared by ``moodify video`` and ``moodify live``."""
    p.add_argument("--smoothing", type=float, default=SMOOTHING,
                   help="temporal smoothing of each person's probabilities, 0 (off) to <1 (steadier, slower to react)")
    p.add_argument("--detect-every", type=int, default=detect_every,
                   help="run the face detector on every k-th frame; the tracker carries the boxes in between")
    own = (f"; default: the detector's own, {YUNET_MAX_SIDE} for YuNet, {DETECT_MAX_SIDE} for Haar"
           if detect_side is None else "")
    p.add_argument("--detect-side", type=int, default=detect_side,
                   help=f"detect faces on a copy scaled down to this long side in pixels (0: full size{own})")
    p.add_argument("--max-missed", type=int, default=MAX_MISSED,
                   help="detections in a row a face may be missed and still keep its id")
    p.add_argument("--coast", type=int, default=coast,
                   help="missed detections during which a face is still shown where the tracker expects it")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the classifier; 1 leaves a core to video decoding and encoding")


def check_tracking_arguments(args: argparse.Namespace) -> None:
    """Raise ``VideoError`` naming the first out-of-range tracking option."""
    problem = None
    if not 0 <= args.smoothing < 1:
        problem = f"--smoothing must be in [0, 1), got {args.smoothing}"
    elif args.detect_every < 1:
        problem = f"--detect-every must be >= 1, got {args.detect_every}"
    elif args.detect_side is not None and (args.detect_side < 0 or 0 < args.detect_side < 64):
        problem = f"--detect-side must be 0 or at least 64 pixels, got {args.detect_side}"
    elif args.max_missed < 0 or args.coast < 0:
        problem = f"--max-missed and --coast must be >= 0, got {args.max_missed} and {args.coast}"
    elif args.threads < 1:
        problem = f"--threads must be >= 1, got {args.threads}"
    if problem:
        raise VideoError(problem)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the classifier on ``n`` CPU threads, restoring the previous number afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(args: argparse.Namespace) -> int:
    """Analyse the video; raises ``VideoError`` (exit status 2) for a bad option or a video that
    cannot be read or written; 1 when the input was damaged (the outputs cover what was read)."""
    check_tracking_arguments(args)
    if args.every < 1:
        raise VideoError(f"--every must be >= 1, got {args.every}")
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    recognizer = build_recognizer(args)
    analysis = analyze_video(args.input, recognizer=recognizer, output=args.output, csv_path=args.csv,
                             every=args.every, detect_every=args.detect_every, detect_side=args.detect_side,
                             smoothing=args.smoothing, max_missed=args.max_missed, coast=args.coast,
                             codec=args.codec,
                             # A bar only on a terminal: in a log or a pipe it is junk lines.
                             progress=not args.no_progress and sys.stderr.isatty(), max_frames=args.max_frames)
    start = time.perf_counter()
    interrupted = False
    try:
        analysis.run()
    except KeyboardInterrupt:
        interrupted = True  # the outputs were closed on the way out and hold the frames so far
    seconds = time.perf_counter() - start
    print(analysis.summary.format())
    print(_outputs_line(analysis, seconds))
    if interrupted:
        print(f"moodify video: interrupted after {analysis.frames_read} frames; the outputs hold those",
              file=sys.stderr)
        return 130
    if analysis.damage:
        print(f"moodify video: warning: {args.input}: {analysis.damage}; the outputs cover the "
              f"{analysis.frames_read} frames read", file=sys.stderr)
        return 1
    return 0


def _outputs_line(analysis: VideoAnalysis, seconds: float) -> str:
    fps = analysis.frames_read / seconds if seconds > 0 else 0.0
    parts = [f"{analysis.frames_read} frames read, {analysis.frames_processed} analysed in {seconds:.1f} s "
             f"({fps:.1f} frames/s)"]
    if analysis.writer is not None:
        writer = analysis.writer
        parts.append(f"video: {writer.path} ({writer.codec}, {writer.frames_written} frames)")
    if analysis.timeline is not None:
        parts.append(f"timeline: {analysis.timeline.path} ({analysis.timeline.rows} rows)")
    return "; ".join(parts)
