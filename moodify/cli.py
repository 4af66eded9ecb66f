"""The ``moodify`` command (also ``python -m moodify``): one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from . import evaluate as evaluate_mod
from . import train as train_mod
from .argparsing import HelpFormatter
from .data import DataError
from .detect import DetectorError
from .images import ImageError
from .labels import EMOTIONS
from .options import add_detector_arguments, build_recognizer, no_face_hint
from .weights import ModelError

_FORMATTER = HelpFormatter


def _classify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, TIFF, BMP, ...)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    add_detector_arguments(p)


def run_classify(args: argparse.Namespace) -> int:
    """Classify each image; an unreadable one is reported on stderr and the rest still run."""
    recognizer = build_recognizer(args)
    results, failed = [], 0
    for path in args.images:
        try:
            faces = recognizer.analyze(path)
        except ImageError as exc:
            failed += 1
            print(f"moodify: error: {exc}", file=sys.stderr)
            results.append({"path": path, "error": str(exc)})
            continue
        results.append({"path": path, "faces": [f.to_dict() for f in faces]})
        if not args.json:
            print(_format_faces(path, faces, hint=no_face_hint(args.detector)), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _format_faces(path: str, faces, *, hint: str) -> str:
    if not faces:
        return f"{path}: no face found ({hint})"
    lines = [f"{path}: {len(faces)} face{'s' if len(faces) > 1 else ''}"]
    for i, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        lines.append(f"  face {i}  box x={x} y={y} w={w} h={h}  {face.emotion} {face.confidence:.1%}")
        lines.append("          " + "  ".join(f"{e} {face.probabilities[e]:.1%}" for e in EMOTIONS))
    return "\n".join(lines)


# Commands that live in their own module: each has DESCRIPTION, add_arguments(parser) and
# main(args) -> exit status. Imported only to build the parser, so `moodify classify` never pays
# for the web app's or the exporter's imports at run time beyond their module headers.
MODULE_COMMANDS = {
    "batch": "moodify.batch",
    "merge": "moodify.batch_merge",
    "live": "moodify.live",
    "video": "moodify.video",
    "export": "moodify.export",
}

# name -> (help, add_arguments, run)
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "classify": ("find faces in images and print their emotions", _classify_arguments, run_classify),
    "train": (train_mod.DESCRIPTION, train_mod.add_arguments, lambda a: train_mod.main(a) and 0),
    "evaluate": (evaluate_mod.DESCRIPTION, evaluate_mod.add_arguments, lambda a: evaluate_mod.main(a) and 0),
}


def _all_commands() -> dict[str, tuple[str, Callable, Callable]]:
    import importlib
    import importlib.util

    commands = dict(COMMANDS)
    for name, module_name in MODULE_COMMANDS.items():
        if importlib.util.find_spec(module_name) is None:
            continue  # a feature not built yet
        module = importlib.import_module(module_name)
        commands[name] = (module.DESCRIPTION, module.add_arguments, module.main)
    return commands


def get_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="moodify", formatter_class=_FORMATTER,
                                     description="Local-first facial emotion recognition.")
    parser.add_argument("--version", action="version", version=f"moodify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in _all_commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_FORMATTER)
        add_arguments(p)
        p.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    # A file name that is not valid UTF-8 must not stop a run where stdout is strict UTF-8
    # (PYTHONIOENCODING=utf-8, a pipe in some locales): its odd bytes are printed as \udcXX escapes.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    try:
        return int(args.func(args) or 0)
    except (ModelError, DataError, ImageError, DetectorError, FileNotFoundError, ValueError) as exc:
        print(f"moodify {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moodify {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
