"""Command-line options shared by every command, and the one place they become objects:
``detector_spec(args)`` (keyword arguments for ``make_detector``, picklable for batch workers) and
``build_recognizer(args)``. The CLI, batch, video, live and evaluate use these; the web app calls
``make_detector`` with the same keywords. ``add_tracking_arguments`` are ``moodify video``'s and
``moodify live``'s tracking options; ``HelpFormatter`` is every command's help layout.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Iterator

from ..errors import VideoError
from ..pipeline.detect import (DEFAULT_CASCADE, DEFAULT_DETECTOR, DETECT_MAX_SIDE, DETECTORS, HAAR_CASCADES,
                               YUNET_MAX_SIDE, HaarDetector, YuNetDetector)
from ..video.tracking import MAX_MISSED, SMOOTHING


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, or an on/off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.nargs == 0 or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


# The option of each detector that finds more faces when lowered (the web app's sidebar names the same).
DETECTOR_TUNING = {"yunet": "--score-threshold", "haar": "--min-neighbors"}


def no_face_hint(kind: str) -> str:
    """What to try when a picture has no face, naming the options of the detector in use."""
    tuning = DETECTOR_TUNING.get(kind)
    return "try a larger or more frontal face" + (f", or a lower {tuning} or --min-size" if tuning else
                                                  ", or a lower --min-size")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="registry name, checkpoint path, or a .onnx file from `moodify export` (run by onnxruntime "
                        "whatever --backend says) (default: the shipped model)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="inference engine: PyTorch, or onnxruntime (the model exported once and cached)")


def add_detector_arguments(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """Model and face-detector options."""
    if model:
        add_model_arguments(p)
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS),
                   help="face detector: YuNet (a small CNN shipped in models/yunet, finds turned and small faces, "
                        "gives landmarks) or OpenCV's Haar cascade")
    p.add_argument("--score-threshold", type=float, default=YuNetDetector.score_threshold,
                   help="YuNet: lowest face score kept (lower finds more faces and more false ones)")
    p.add_argument("--yunet-model", default=None,
                   help="YuNet: a .onnx file of your own instead of the shipped one (never downloaded)")
    p.add_argument("--cascade", default=DEFAULT_CASCADE, choices=list(HAAR_CASCADES),
                   help="Haar: which of OpenCV's frontal-face cascades (frontalface_default, OpenCV's usual one, "
                        "sees far more false faces; see the README)")
    p.add_argument("--scale-factor", type=float, default=HaarDetector.scale_factor,
                   help="Haar: image-pyramid step (larger is faster and finds fewer faces; see the README)")
    p.add_argument("--min-neighbors", type=int, default=HaarDetector.min_neighbors,
                   help="Haar: hits a face needs (lower finds more faces and more false ones)")
    p.add_argument("--min-size", type=int, default=HaarDetector.min_size, help="smallest face side to detect, in pixels")


def detector_spec(args: argparse.Namespace) -> dict:
    """Keyword arguments for ``moodify.pipeline.detect.make_detector`` from the options above."""
    if args.detector == "haar":
        return {"kind": "haar", "scale_factor": args.scale_factor, "min_neighbors": args.min_neighbors,
                "min_size": args.min_size, "cascade": HAAR_CASCADES[args.cascade]}
    return {"kind": args.detector, "model_path": args.yunet_model, "score_threshold": args.score_threshold,
            "min_size": args.min_size}


def build_recognizer(args: argparse.Namespace):
    """The ``Recognizer`` the options describe (model, backend, detector)."""
    from ..pipeline.detect import make_detector
    from ..pipeline.recognizer import Recognizer
    from ..model.registry import load_model

    return Recognizer(model=load_model(args.model, backend=args.backend), detector=make_detector(**detector_spec(args)))


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


def add_reference_arguments(p: argparse.ArgumentParser, *, span: bool = False) -> None:
    """A person's neutral face as their reference (``moodify.pipeline.reference``), for video and live."""
    if span:
        p.add_argument("--reference-seconds", default=None, metavar="A-B",
                       help="the people in view from second A to B hold a neutral face: each one's frames there become "
                            "their reference, and from B on their emotions are read relative to it")
    p.add_argument("--auto-reference", action="store_true",
                   help="read each person relative to the median of their own earlier frames until calibrated "
                        "(measured on KDEF: see the model card)")


def parse_span(text: str | None) -> tuple[float, float] | None:
    """``"2-4.5"`` -> ``(2.0, 4.5)``; one clear error for anything else."""
    if text is None:
        return None
    start, sep, end = text.partition("-")
    try:
        span = (float(start), float(end))
    except ValueError:
        span = None
    if not sep or span is None or not (0 <= span[0] < span[1] < float("inf")):
        raise ValueError(f"--reference-seconds takes A-B, seconds with 0 <= A < B (e.g. 0-2), got {text!r}")
    return span


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
