"""What each detector setting costs and finds: the numbers behind the detector defaults.

    python benchmarks/bench_detect.py --data ../shared/data                 # ~10 minutes on 2 cores
    python benchmarks/bench_detect.py --data ../shared/data --faces 300     # a quick look

Three measurements, one table each:

1. KDEF (``$DATA/kdef``, real studio photos of 70 people, 5 angles; skipped if absent): per
   setting, photos where a face is found, per angle (S straight, HL/HR half profiles, FL/FR full
   profiles), extra boxes (each photo shows one face), and ms per photo.
2. Image size (the ``max_side`` cap): KDEF's straight ``val`` photos as a close-up (the face
   ~650 px wide in a 1024x1024 picture, as in a phone selfie) and as a small face (~40 px) in a
   1920x1080 face-free picture: found, per cap.
3. Pasted FER2013 faces, as below, and face-free pictures (false faces).

For (3) the scenes are built from real faces: FER2013 PublicTest
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
# (name, make_detector keywords): YuNet at several score thresholds (0.6, the default, first),
# Moodify's Haar setting, and OpenCV's usual Haar setting.
SETTINGS = (("yunet 0.6 (default)", {"kind": "yunet", "score_threshold": 0.6}),
            ("yunet 0.5", {"kind": "yunet", "score_threshold": 0.5}),
            ("yunet 0.7", {"kind": "yunet", "score_threshold": 0.7}),
            ("yunet 0.8", {"kind": "yunet", "score_threshold": 0.8}),
            ("yunet 0.9", {"kind": "yunet", "score_threshold": 0.9}),
            ("haar alt2 1.2 / 3", {"kind": "haar"}),
            ("haar default 1.1 / 5", {"kind": "haar", "cascade": "haarcascade_frontalface_default.xml",
                                      "scale_factor": 1.1, "min_neighbors": 5}))
CAPS = (320, 480, 640, 960, 1280, 0)  # YuNet max_side values tried (0: full size)
ANGLES = ("S", "HL", "HR", "FL", "FR")
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
    from moodify.pipeline.preprocess import crop_faces

    found, false_in_scenes, crops, crop_labels = 0, 0, [], []
    start = time.perf_counter()
    all_faces = [detector.detect_faces(scene) for scene in scenes]
    ms = (time.perf_counter() - start) / len(scenes) * 1000
    for scene, faces, t, label in zip(scenes, all_faces, truth, labels):
        hits = [f for f in faces if on_face(f.box, t)]
        false_in_scenes += len(faces) - len(hits)
        if hits:
            found += 1
            crops.append(crop_faces(scene, hits[:1], model.preprocessing, kind=detector.kind)[0])
            crop_labels.append(label)
    accuracy = float((model.predict(np.stack(crops)).argmax(1) == np.array(crop_labels)).mean()) if crops else float("nan")
    false_in_negatives = sum(len(detector.detect(n)) for n in negatives)
    return {"ms": ms, "found": found / len(scenes), "accuracy": accuracy, "false_scenes": false_in_scenes,
            "false_negatives": false_in_negatives}


def kdef_photos(kdef: Path) -> list[dict]:
    import csv

    with open(kdef / "meta.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def measure_kdef(detector, kdef: Path, rows: list[dict]) -> dict:
    """Per angle: share of photos with a face found and extra boxes; ms per photo (decode excluded)."""
    found = {a: [0, 0] for a in ANGLES}
    extra, seconds = 0, 0.0
    for row in rows:
        bgr = cv2.imread(str(kdef / row["path"]))
        start = time.perf_counter()
        faces = detector.detect_faces(bgr)
        seconds += time.perf_counter() - start
        found[row["angle"]][0] += bool(faces)
        found[row["angle"]][1] += 1
        extra += max(len(faces) - 1, 0)
    return {"found": {a: k / n for a, (k, n) in found.items() if n}, "extra": extra, "ms": 1000 * seconds / len(rows)}


def size_sets(kdef: Path, rows: list[dict], pictures: list[np.ndarray]) -> tuple[list, list]:
    """KDEF val straight photos as 1024x1024 close-ups and as ~40 px faces in 1920x1080 pictures."""
    from moodify.pipeline.detect import make_detector

    finder = make_detector("yunet")
    close, small = [], []
    for i, row in enumerate(r for r in rows if r["split"] == "val" and r["angle"] == "S"):
        bgr = cv2.imread(str(kdef / row["path"]))
        (face,) = finder.detect_faces(bgr)[:1] or [None]
        if face is None:
            continue
        x, y, w, h = face.box
        cx, cy, side = x + w / 2, y + h / 2, int(w / 0.62)
        square = cv2.copyMakeBorder(bgr, side, side, side, side, cv2.BORDER_REPLICATE)
        crop = square[int(cy) + side - side // 2:int(cy) + side + side // 2, int(cx) + side - side // 2:int(cx) + side + side // 2]
        close.append(cv2.resize(crop, (1024, 1024), interpolation=cv2.INTER_CUBIC))
        factor = 40 / w
        tiny = cv2.resize(bgr, (max(1, round(bgr.shape[1] * factor)), max(1, round(bgr.shape[0] * factor))),
                          interpolation=cv2.INTER_AREA)
        background = cv2.resize(random_view(pictures, 70_000 + i), (1920, 1080), interpolation=cv2.INTER_LINEAR)
        background = cv2.cvtColor(background, cv2.COLOR_GRAY2BGR)
        rng = np.random.default_rng(i)
        px, py = int(rng.integers(0, 1920 - tiny.shape[1])), int(rng.integers(0, 1080 - tiny.shape[0]))
        background[py:py + tiny.shape[0], px:px + tiny.shape[1]] = tiny
        small.append(background)
    return close, small


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("MOODIFY_DATA"), help="data path holding fer2013/ and kdef/ "
                   "(default: $MOODIFY_DATA)")
    p.add_argument("--faces", type=int, default=1000, help="PublicTest faces to paste into scenes (evenly spaced)")
    p.add_argument("--negatives", type=int, default=300, help="face-free 256x256 pictures")
    p.add_argument("--skip", nargs="*", default=(), choices=["kdef", "sizes", "scenes"], help="tables to leave out")
    args = p.parse_args()

    from moodify import load_model
    from moodify.pipeline.detect import make_detector
    from moodify.training.data import load_dataset, resolve_data_path

    cv2.setNumThreads(1)
    pictures = backgrounds()
    root = resolve_data_path(args.data)
    kdef = root / "kdef"
    print(f"one thread; load average {os.getloadavg()[0]:.2f}")
    if (kdef / "meta.csv").exists() and "kdef" not in args.skip:
        rows = kdef_photos(kdef)
        print(f"\nKDEF: {len(rows)} photos, one face each; found = photos with at least one box")
        print("| setting | S | HL | HR | FL | FR | extra boxes | ms / photo |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, spec in SETTINGS:
            r = measure_kdef(make_detector(**spec), kdef, rows)
            print(f"| {name} | " + " | ".join(f"{r['found'][a]:.1%}" for a in ANGLES)
                  + f" | {r['extra']} | {r['ms']:.1f} |", flush=True)
    if (kdef / "meta.csv").exists() and "sizes" not in args.skip:
        close, small = size_sets(kdef, kdef_photos(kdef), pictures)
        print(f"\nImage size: {len(close)} close-ups (1024x1024, face ~650 px) and {len(small)} small faces "
              "(~40 px in 1920x1080); YuNet 0.6 at each max_side cap")
        print("| max_side | close-ups found | small faces found | ms / 1920x1080 picture |")
        print("| --- | --- | --- | --- |")
        for cap in CAPS:
            detector = make_detector("yunet", max_side=cap)
            found_close = np.mean([bool(detector.detect_faces(img)) for img in close])
            start = time.perf_counter()
            found_small = np.mean([bool(detector.detect_faces(img)) for img in small])
            ms = 1000 * (time.perf_counter() - start) / len(small)
            print(f"| {cap or 'full size'} | {found_close:.1%} | {found_small:.1%} | {ms:.1f} |", flush=True)
    if "scenes" in args.skip:
        return
    val = load_dataset(root)["PublicTest"]
    idx = np.linspace(0, len(val) - 1, min(args.faces, len(val))).astype(int)
    scenes, truth = make_scenes(val.images[idx], pictures)
    negatives = [random_view(pictures, 50_000 + i) for i in range(args.negatives)]
    model = load_model(backend="onnx")
    small_scenes, small_truth = make_scenes(val.images[idx], pictures, SMALL, seed=20_000)
    print(f"\n{len(scenes)} scenes with one PublicTest face each (and as many with a small one), {len(negatives)} "
          f"face-free pictures; model {model.name}")
    print("| setting | ms / scene | found: large | small | accuracy on large found | false faces in scenes | "
          "in face-free pictures |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, spec in SETTINGS:
        detector = make_detector(**spec)
        r = measure(detector, model, scenes, truth, val.labels[idx], negatives)
        small = measure(detector, model, small_scenes, small_truth, val.labels[idx], [])
        print(f"| {name} | {r['ms']:.1f} | {r['found']:.1%} | {small['found']:.1%} | "
              f"{r['accuracy']:.1%} | {r['false_scenes'] + small['false_scenes']} | {r['false_negatives']} |", flush=True)


if __name__ == "__main__":
    main()
