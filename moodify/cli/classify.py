"""``moodify classify``: the faces in a few images and their emotions, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ImageError
from ..labels import EMOTIONS
from ..names import printable
from ..pipeline.rows import numbered
from .options import add_detector_arguments, build_recognizer, no_face_hint

DESCRIPTION = "find faces in images and print their emotions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, TIFF, BMP, ...)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    add_detector_arguments(p)


def main(args: argparse.Namespace) -> int:
    """Classify each image; an unreadable one is reported on stderr, the rest still run, and the
    exit status is 1."""
    recognizer = build_recognizer(args)
    results, failed = [], 0
    for path in args.images:
        try:
            faces = recognizer.analyze(path)
        except ImageError as exc:
            failed += 1
            print(f"moodify: error: {printable(str(exc))}", file=sys.stderr)
            results.append({"path": path, "error": str(exc)})
            continue
        results.append({"path": path,
                        "faces": [{"face": number, **face.to_dict()} for number, face in numbered(faces)]})
        if not args.json:
            print(_format_faces(path, faces, hint=no_face_hint(args.detector)), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _format_faces(path: str, faces, *, hint: str) -> str:
    path = printable(path)
    if not faces:
        return f"{path}: no face found ({hint})"
    lines = [f"{path}: {len(faces)} face{'s' if len(faces) > 1 else ''}"]
    for number, face in numbered(faces):
        x, y, w, h = face.box
        lines.append(f"  face {number}  box x={x} y={y} w={w} h={h}  {face.emotion} {face.confidence:.1%}")
        lines.append("          " + "  ".join(f"{e} {face.probabilities[e]:.1%}" for e in EMOTIONS))
    return "\n".join(lines)
