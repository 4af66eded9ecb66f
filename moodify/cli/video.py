"""``moodify video``: a video file annotated, with a CSV timeline and a per-person summary."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import VideoError
from ..names import printable
from ..video.io import CODECS
from ..video.job import VideoAnalysis, analyze_video
from .options import (add_detector_arguments, add_reference_arguments, add_tracking_arguments, build_recognizer,
                      check_tracking_arguments, parse_span, torch_threads)

DESCRIPTION = ("Annotate a video: faces tracked per person, smoothed emotions, a CSV timeline "
               "(one row per face per frame) and a per-person summary.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file (MP4, MKV, AVI, MOV, WebM, ...) or stream URL")
    p.add_argument("-o", "--output", default=None, help="write the annotated video here (.mp4)")
    p.add_argument("--csv", default=None, help="write the timeline here: one row per face per processed frame")
    p.add_argument("--every", type=int, default=1, help="analyse every N-th frame (the video keeps all frames)")
    add_tracking_arguments(p, detect_every=1, detect_side=None, coast=0)
    add_reference_arguments(p, span=True)
    p.add_argument("--codec", default="auto", choices=CODECS,
                   help="annotated video codec: h264 plays in browsers; mp4v is OpenCV's fallback")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")
    add_detector_arguments(p)


def main(args: argparse.Namespace) -> int:
    """Analyse the video; raises ``VideoError`` (exit status 2) for a bad option or a video that
    cannot be read or written; 1 when the input was damaged (the outputs cover what was read)."""
    check_tracking_arguments(args)
    if args.every < 1:
        raise VideoError(f"--every must be >= 1, got {args.every}")
    parse_span(args.reference_seconds)
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    recognizer = build_recognizer(args)
    analysis = analyze_video(args.input, recognizer=recognizer, output=args.output, csv_path=args.csv,
                             every=args.every, detect_every=args.detect_every, detect_side=args.detect_side,
                             smoothing=args.smoothing, max_missed=args.max_missed, coast=args.coast,
                             codec=args.codec, reference_span=parse_span(args.reference_seconds),
                             auto_reference=args.auto_reference,
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
    if analysis.reference_span is not None:
        print(analysis.reference_note())
    print(_outputs_line(analysis, seconds))
    if interrupted:
        print(f"moodify video: interrupted after {analysis.frames_read} frames; the outputs hold those",
              file=sys.stderr)
        return 130
    if analysis.damage:
        print(f"moodify video: warning: {printable(args.input)}: {analysis.damage}; the outputs cover the "
              f"{analysis.frames_read} frames read", file=sys.stderr)
        return 1
    return 0


def _outputs_line(analysis: VideoAnalysis, seconds: float) -> str:
    fps = analysis.frames_read / seconds if seconds > 0 else 0.0
    parts = [f"{analysis.frames_read} frames read, {analysis.frames_processed} analysed in {seconds:.1f} s "
             f"({fps:.1f} frames/s)"]
    reader = analysis.reader
    if reader.scaled_to is not None:
        parts.append(f"frames scaled from {reader.width}x{reader.height} to {reader.scaled_to[0]}x{reader.scaled_to[1]} "
                     "(boxes and the video in those pixels)")
    if analysis.writer is not None:
        writer = analysis.writer
        parts.append(f"video: {printable(str(writer.path))} ({writer.codec}, {writer.frames_written} frames)")
    if analysis.timeline is not None:
        parts.append(f"timeline: {printable(str(analysis.timeline.path))} ({analysis.timeline.rows} rows)")
    return "; ".join(parts)
