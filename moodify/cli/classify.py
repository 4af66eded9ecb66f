"""``moodify classify``: the faces in a few images and their emotions, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ImageError
from ..labels import EMOTIONS
from ..names import printable
from ..pipeline.rows import numbered, percent
from .options import add_detector_arguments, build_recognizer, no_face_hint

DESCRIPTION = "find faces in images and print their emotions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, TIFF, BMP, ...)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.add_argument("--reference", action="append", default=None, metavar="NEUTRAL_PHOTO",
                   help="a photo of the same person with a neutral face (repeat for several: averaged); "
                        "each face is then read relative to it, and the raw reading is shown too")
    add_detector_arguments(p)


def main(args: argparse.Namespace) -> int:
    """Classify each image; an unreadable one is reported on stderr, the rest still run, and the
    exit status is 1."""
    recognizer = build_recognizer(args)
    reference = recognizer.reference(args.reference) if args.reference else None
    results, failed = [], 0
    for path in args.images:
        try:
            faces = recognizer.analyze(path, reference=reference)
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
        lines.append(f"  face {number}  box x={x} y={y} w={w} h={h}  {face.emotion} {percent(face.confidence)}")
        lines.append("          " + "  ".join(f"{e} {percent(face.probabilities[e])}" for e in EMOTIONS))
        if face.raw_probabilities is not None:
            raw = max(face.raw_probabilities, key=face.raw_probabilities.get)
            lines.append(f"          (relative to the reference; without it: {raw} {percent(face.raw_probabilities[raw])})")
    return "\n".join(lines)
