"""Measure how FER2013 frames its faces, relative to the detector Moodify uses on real photos.

``python -m moodify.framing --data ../shared/data`` upscales FER2013 training faces, runs the Haar
detector on them, and reports where its box falls inside the 48x48 frame. Inverting the median
box gives the ``Framing`` that crops a real photo the way FER2013 was cropped
(``moodify.preprocess.FER2013_FRAMING``).
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from .argparsing import HelpFormatter
from .data import load_dataset
from .detect import HaarDetector
from .preprocess import FACE_SIZE, Framing

UPSCALE = 4  # FER2013 faces are upscaled 4x (to 192 px) so Haar sees them at a size it handles well


def detect_in_fer_face(face: np.ndarray, detector: HaarDetector) -> tuple[float, float, float, float] | None:
    """The largest detector box in an upscaled 48x48 face, in 48x48 pixel units, or None."""
    big = cv2.resize(face, (FACE_SIZE * UPSCALE, FACE_SIZE * UPSCALE), interpolation=cv2.INTER_CUBIC)
    boxes = detector.detect(big)
    if not boxes:
        return None
    return tuple(v / UPSCALE for v in boxes[0])


def framing_from_boxes(boxes: np.ndarray) -> Framing:
    """The Framing that maps a detector box back to the full 48x48 frame (median over boxes)."""
    x, y, w, h = np.median(boxes, axis=0)
    centre = FACE_SIZE / 2
    return Framing(scale=round(float(FACE_SIZE / w), 3), shift_x=round(float((centre - (x + w / 2)) / w), 3),
                   shift_y=round(float((centre - (y + h / 2)) / w), 3))


def measurement_detector() -> HaarDetector:
    # No downscaling, and a minimum face of a third of the frame so that an eye or a mouth
    # mistaken for a face does not count; otherwise the settings Moodify detects with.
    return HaarDetector(min_size=FACE_SIZE * UPSCALE // 3, max_side=0)


def measure_framing(faces: np.ndarray) -> dict:
    """Detect on each face; return the Framing, the detection rate, and the box spread."""
    detector = measurement_detector()
    boxes = [b for b in (detect_in_fer_face(f, detector) for f in faces) if b is not None]
    if not boxes:
        raise RuntimeError("the detector found no face in any of the given images")
    arr = np.array(boxes)
    framing = framing_from_boxes(arr)
    q = np.percentile(arr, [25, 50, 75], axis=0)
    return {"framing": framing.__dict__, "faces": len(faces), "detected": len(boxes),
            "box_quartiles_48px": {name: q[:, i].round(2).tolist() for i, name in enumerate("xywh")}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m moodify.framing", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--data", help="FER2013 data path (default: $MOODIFY_DATA)")
    p.add_argument("--n", type=int, default=3000, help="training faces to measure (evenly spaced)")
    p.add_argument("--record", nargs="+", metavar="CHECKPOINT", default=None,
                   help="write the measured framing into these checkpoints (after a detector change: it moves "
                        "only how real photos are cropped, never the network or its FER2013 metrics)")
    args = p.parse_args(argv)
    train = load_dataset(args.data)["Training"]
    idx = np.linspace(0, len(train) - 1, min(args.n, len(train))).astype(int)
    result = measure_framing(train.images[idx])
    print(json.dumps(result, indent=2))
    for name in args.record or ():
        record_framing(name, Framing(**result["framing"]))


def record_framing(name_or_path: str, framing: Framing) -> None:
    """Store ``framing`` in a checkpoint's preprocessing (its sha256 changes: update the registry)."""
    from .weights import rewrite_checkpoint

    path = rewrite_checkpoint(name_or_path, lambda ckpt: ckpt["preprocessing"].update(framing=dict(framing.__dict__)))
    print(f"recorded framing {framing} in {path} (new sha256: update the registry if it is a shipped model)")


if __name__ == "__main__":
    main()
