"""What each Haar setting costs and finds: the numbers behind the detector defaults.

    python benchmarks/bench_detect.py --data ../shared/data                 # ~8 minutes on 2 cores
    python benchmarks/bench_detect.py --data ../shared/data --faces 300     # a quick look

We have no labelled real photos, so the scenes are built from real faces: FER2013 PublicTest
faces (the validation split; never PrivateTest), resized and pasted at a random place into a
256x256 crop of a face-free picture shipped with scikit-image, once at 64-160 px ("large") and
once at 32-63 px ("small"). For each setting:

- CPU ms per 256x256 scene (one thread: what a batch worker spends per photo on detection);
- found: scenes where a box lands on the pasted face (centre inside it, side 0.4-1.3x its side);
- accuracy: the shipped model's emotion accuracy on the large faces found, detected and cropped
  with the model's framing exactly as ``moodify batch`` does (the model alone scores ~67% here);
- false faces: boxes elsewhere in the scenes, and boxes in 300 face-free 256x256 pictures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

SCENE = 256  # pixels
BACKGROUNDS = ("coffee", "rocket", "coins", "moon", "page", "text", "brick", "grass", "gravel", "hubble_deep_field",
               "immunohistochemistry", "retina")  # scikit-image pictures with no human face
# (cascade, scale factor, min neighbours); the first is Moodify's default, the last OpenCV's usual one.
SETTINGS = (("alt2", 1.2, 3), ("alt2", 1.2, 2), ("alt2", 1.3, 2), ("alt2", 1.1, 3), ("alt2", 1.1, 5),
            ("default", 1.1, 5))
LARGE, SMALL = (64, 161), (32, 64)  # pasted face sides in pixels, [low, high)


def backgrounds() -> list[np.ndarray]:
    from skimage import data

    pictures = (getattr(data, name)() for name in BACKGROUNDS)
    grays = [cv2.cvtColor(p[..., :3], cv2.COLOR_RGB2GRAY) if p.ndim == 3 else p for p in pictures]
    return [g if g.dtype == np.uint8 else cv2.normalize(g, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
            for g in grays if min(g.shape) >= SCENE]


def random_view(pictures: list[np.ndarray], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picture = pictures[seed % len(pictures)]
    y, x = rng.integers(0, picture.shape[0] - SCENE + 1), rng.integers(0, picture.shape[1] - SCENE + 1)
    return picture[y:y + SCENE, x:x + SCENE].copy()


def make_scenes(faces: np.ndarray, pictures: list[np.ndarray], sides: tuple[int, int] = LARGE,
                seed: int = 10_000) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    scenes, truth = [], []
    for i, face in enumerate(faces):
        rng = np.random.default_rng(seed + i)
        side = int(rng.integers(*sides))
        x, y = (int(v) for v in rng.integers(0, SCENE - side, size=2))
        scene = random_view(pictures, i)
        interpolation = cv2.INTER_AREA if side < face.shape[0] else cv2.INTER_CUBIC
        scene[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=interpolation)
        scenes.append(scene)
        truth.append((x, y, side))
    return scenes, truth


def on_face(box, truth) -> bool:
    x, y, w, h = box
    tx, ty, side = truth
    return tx <= x + w / 2 <= tx + side and ty <= y + h / 2 <= ty + side and 0.4 * side <= w <= 1.3 * side


def measure(detector, model, scenes, truth, labels, negatives) -> dict:
    from moodify.preprocess import crop_faces

    found, false_in_scenes, crops, crop_labels = 0, 0, [], []
    start = time.perf_counter()
    all_boxes = [detector.detect(scene) for scene in scenes]
    ms = (time.perf_counter() - start) / len(scenes) * 1000
    for scene, boxes, t, label in zip(scenes, all_boxes, truth, labels):
        hits = [b for b in boxes if on_face(b, t)]
        false_in_scenes += len(boxes) - len(hits)
        if hits:
            found += 1
            crops.append(crop_faces(scene, hits[:1], model.preprocessing)[0])
            crop_labels.append(label)
    accuracy = float((model.predict(np.stack(crops)).argmax(1) == np.array(crop_labels)).mean()) if crops else float("nan")
    false_in_negatives = sum(len(detector.detect(n)) for n in negatives)
    return {"ms": ms, "found": found / len(scenes), "accuracy": accuracy, "false_scenes": false_in_scenes,
            "false_negatives": false_in_negatives}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("MOODIFY_DATA"), help="FER2013 data path (default: $MOODIFY_DATA)")
    p.add_argument("--faces", type=int, default=1000, help="PublicTest faces to paste into scenes (evenly spaced)")
    p.add_argument("--negatives", type=int, default=300, help="face-free 256x256 pictures")
    args = p.parse_args()

    from moodify import load_model
    from moodify.data import load_dataset
    from moodify.detect import HaarDetector

    cv2.setNumThreads(1)
    val = load_dataset(args.data)["PublicTest"]
    idx = np.linspace(0, len(val) - 1, min(args.faces, len(val))).astype(int)
    pictures = backgrounds()
    scenes, truth = make_scenes(val.images[idx], pictures)
    negatives = [random_view(pictures, 50_000 + i) for i in range(args.negatives)]
    model = load_model(backend="onnx")
    small_scenes, small_truth = make_scenes(val.images[idx], pictures, SMALL, seed=20_000)
    print(f"{len(scenes)} scenes with one PublicTest face each (and as many with a small one), {len(negatives)} "
          f"face-free pictures; model {model.name}; load average {os.getloadavg()[0]:.2f}")
    print("| --cascade frontalface_ | --scale-factor | --min-neighbors | ms / scene | found: large | small | "
          "accuracy on large found | false faces in scenes | in face-free pictures |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for cascade, scale_factor, min_neighbors in SETTINGS:
        detector = HaarDetector(scale_factor=scale_factor, min_neighbors=min_neighbors,
                                cascade=f"haarcascade_frontalface_{cascade}.xml")
        r = measure(detector, model, scenes, truth, val.labels[idx], negatives)
        small = measure(detector, model, small_scenes, small_truth, val.labels[idx], [])
        print(f"| {cascade} | {scale_factor} | {min_neighbors} | {r['ms']:.1f} | {r['found']:.1%} | {small['found']:.1%} | "
              f"{r['accuracy']:.1%} | {r['false_scenes'] + small['false_scenes']} | {r['false_negatives']} |", flush=True)

if __name__ == "__main__":
    main()
