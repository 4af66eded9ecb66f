"""``moodify live``: a webcam, video file or stream with live, tracked emotion labels."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2

from ..errors import VideoError
from ..files import check_outputs
from ..names import printable
from ..video.frames import LIVE_SETTINGS, FrameAnalyzer
from ..video.live import LiveSession, gui_problem, open_source, run_headless, run_window
from .options import (add_detector_arguments, add_reference_arguments, add_tracking_arguments, build_recognizer,
                      check_tracking_arguments, torch_threads)

DESCRIPTION = ("Live emotions from a webcam, video file or stream, tracked per person: in a window "
               "(q quit, s snapshot, r record, space pause), or headless with --no-window.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, default=0, help="webcam index")
    src.add_argument("--source", default=None, help="a video file or stream URL (rtsp://, http://) instead of a webcam")
    p.add_argument("--no-window", action="store_true",
                   help="headless: print when people appear, change emotion or leave; no window")
    p.add_argument("--jsonl", action="store_true", help="with --no-window: print one JSON line per frame instead")
    p.add_argument("--csv", default=None, help="write the timeline CSV (the columns of `moodify video --csv`)")
    p.add_argument("--record", default=None, help="record the annotated stream to this .mp4 from the start")
    p.add_argument("--out-dir", default=".", help="folder for snapshots (s) and recordings (r)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: until the end or q)")
    p.add_argument("--width", type=int, default=640, help="camera frame width to ask for")
    p.add_argument("--height", type=int, default=480, help="camera frame height to ask for")
    add_tracking_arguments(p, **LIVE_SETTINGS)
    add_reference_arguments(p)
    add_detector_arguments(p)


def main(args: argparse.Namespace) -> int:
    """Run live; raises ``VideoError`` (exit status 2) for a bad option, no window to open, or a
    source that cannot be opened; 1 when a file source was damaged."""
    check_tracking_arguments(args)
    problem = None if args.no_window else gui_problem()
    if problem:
        raise VideoError(problem)
    if not Path(args.out_dir).is_dir():
        raise VideoError(f"--out-dir {args.out_dir}: no such folder")
    check_outputs({"--csv": args.csv, "--record": args.record}, [args.source])
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    recognizer = build_recognizer(args)
    reader = open_source(camera=args.camera, source=args.source, width=args.width, height=args.height)
    analyzer = FrameAnalyzer(recognizer, detect_every=args.detect_every, detect_side=args.detect_side,
                             smoothing=args.smoothing, max_missed=args.max_missed, coast=args.coast,
                             auto_reference=args.auto_reference)
    report = "jsonl" if args.jsonl else "events"
    try:
        session = LiveSession(analyzer, fps_hint=reader.fps, out_dir=args.out_dir, record=args.record,
                              csv_path=args.csv, report=report)
    except VideoError:
        reader.close()
        raise
    interrupted = False
    start = time.perf_counter()
    try:
        if args.no_window:
            run_headless(session, reader, max_frames=args.max_frames)
        else:
            run_window(session, reader, max_frames=args.max_frames)
    except KeyboardInterrupt:
        interrupted = True  # Ctrl+C is how a headless camera run ends; the outputs get closed below
    except BrokenPipeError:
        # The reader of our output left (`moodify live --jsonl | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        session.close()
        reader.close()
        if not args.no_window:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - start
    out = sys.stderr if args.jsonl else sys.stdout
    print(session.summary.format(), file=out)
    print(f"{session.frames} frames in {seconds:.1f} s ({session.frames / max(seconds, 1e-9):.1f} frames/s)", file=out)
    if reader.damage and not (reader.is_live and interrupted):
        print(f"moodify live: warning: {printable(reader.name)}: {reader.damage}", file=sys.stderr)
        return 1
    return 0
