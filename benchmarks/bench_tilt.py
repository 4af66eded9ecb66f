"""Tilted heads: accuracy on labelled photos turned by known angles, per way of levelling the crop.

    python benchmarks/bench_tilt.py --data ../shared/data                          # KDEF val, straight photos
    python benchmarks/bench_tilt.py --data ../shared/data --where split=train --where angle=S

Each photo is turned about its centre by each angle (border pixels replicated, so no black corners
for the detector to see), YuNet runs on it, and the largest face is cropped three ways: with the
model's stored framing (which turns the crop upright once the eyes tilt by more than its
``level_beyond`` degrees), never turned, and always levelled. A photo with no face counts as
wrong. KDEF's heads are upright, so angle 0 is the photos as they are; the turned copies stand in
for a tilted head or camera, which KDEF does not have. The median eye-line tilt YuNet reads is
printed per angle (its sign is the opposite of the turn's): its landmarks lag a turned head.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

ANGLES = (0, 15, -15, 30, -30, 45, -45)  # degrees, positive counter-clockwise


def main() -> None:
    from tqdm import tqdm

    from moodify.model.registry import load_model
    from moodify.pipeline.detect import make_detector
    from moodify.pipeline.images import ImageError, load_image
    from moodify.pipeline.preprocess import crop_face, eye_tilt
    from moodify.training.photos import load_photos

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("MOODIFY_DATA", str(PROJECT.parent / "shared" / "data")))
    p.add_argument("--photos", default=None, help="labelled photos CSV (default: $DATA/kdef/meta.csv)")
    p.add_argument("--where", action="append", default=None, help="CSV rows to use (default: split=val, angle=S)")
    p.add_argument("--angles", default=",".join(map(str, ANGLES)), help="comma-separated degrees")
    p.add_argument("--model", default=None, help="registry name or checkpoint (default: the shipped model)")
    args = p.parse_args()

    where = args.where or ["split=val", "angle=S"]
    photos = load_photos(args.photos or Path(args.data) / "kdef" / "meta.csv", where=where)
    model = load_model(args.model)
    detector = make_detector("yunet")
    stored = model.preprocessing.framing_for("yunet")
    ways = {"stored framing": stored, "never turned": replace(stored, rotate=False, level_beyond=None),
            "always levelled": replace(stored, rotate=True)}
    labels = np.array([ph.label for ph in photos])
    images = []
    for ph in photos:
        try:
            images.append(load_image(ph.path))
        except ImageError:
            images.append(None)
    print(f"{model.name} + YuNet on {len(photos)} photos ({' '.join(where)}); stored framing: {stored}")
    print("| turned by | faces found | eye tilt read (median) | " + " | ".join(ways) + " |")
    print("| --- | --- | --- |" + " --- |" * len(ways))
    means = {w: [] for w in ways}
    for angle in (int(a) for a in args.angles.split(",")):
        crops = {w: np.zeros((len(photos), 48, 48), np.uint8) for w in ways}
        found = np.zeros(len(photos), bool)
        tilts = []
        for i, image in enumerate(tqdm(images, leave=False, desc=f"{angle:+d} deg", disable=not sys.stderr.isatty())):
            if image is None:
                continue
            h, w = image.shape[:2]
            turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            # Detected on the colour picture and cropped from its gray copy, as the pipeline does.
            turned = cv2.warpAffine(image, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            faces = detector.detect_faces(turned)
            if not faces or faces[0].landmarks is None:
                continue
            found[i] = True
            tilts.append(np.degrees(eye_tilt(faces[0].landmarks)))
            gray = cv2.cvtColor(turned, cv2.COLOR_BGR2GRAY)
            for way, framing in ways.items():
                crops[way][i] = crop_face(gray, faces[0].box, framing, landmarks=faces[0].landmarks)
        accuracy = {w: float(np.mean((model.predict(c).argmax(axis=1) == labels) & found)) for w, c in crops.items()}
        if angle:
            for w in ways:
                means[w].append(accuracy[w])
        print(f"| {angle:+d} deg | {found.sum()} | {np.median(tilts) if tilts else float('nan'):+.1f} | "
              + " | ".join(f"{accuracy[w]:.2%}" for w in ways) + " |", flush=True)
    if any(means.values()):
        print("| mean of the turned | | | " + " | ".join(f"{np.mean(means[w]):.2%}" for w in ways) + " |")

if __name__ == "__main__":
    main()
