"""Where the network's crop should sit on a detected face, measured.

``python -m moodify.training.framing --photos labels.csv --where split=train --detector yunet`` runs the
detector on labelled real photos, crops every face over a grid of framings (box-anchored, and
eye-anchored with the eyes levelled where the detector gives landmarks), scores the model on
each, and picks the best cell of the smoothed grid; ``--check-where`` reports the pick on photos
it was not chosen on, and ``--record`` stores it in checkpoints, per detector. This is how the
shipped framings were chosen (the model cards give the commands and figures).

``python -m moodify.training.framing --data ../shared/data --detector haar`` (no ``--photos``) is the older
measurement: the Haar box on upscaled FER2013 training faces, inverted
(``moodify.pipeline.preprocess.FER2013_FRAMING``). With ``--detector yunet`` it is YuNet's landmarks on
the same faces, as an eye-anchored framing. Both describe the training data; neither carried over to
real photos (the model cards give the figures), which is why photo framings are measured on photos.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from ..cli.options import HelpFormatter
from ..pipeline.detect import HaarDetector
from ..pipeline.preprocess import FACE_SIZE, Framing, eyes_and_mouth
from .data import DataError, load_dataset

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


# YuNet misses faces that fill the frame edge to edge (it was trained on faces in scenes), so each
# upscaled FER2013 face is searched on a canvas twice its size, its border pixels replicated outwards.
# At 4x its landmarks drift on loosely framed faces: round trips of crops of known framing (the test)
# read 2.8x as 3.25x; from 6x up they come back within 3%.
LANDMARK_UPSCALE = 6  # 48 px faces searched at 288 px
LANDMARK_PAD = 0.5  # canvas border on each side, as a fraction of the upscaled face


def landmarks_in_fer_face(face: np.ndarray, detector) -> tuple[tuple, np.ndarray] | None:
    """YuNet's largest box and its 5 landmarks in an upscaled 48x48 face, in 48x48 pixel units, or None."""
    up = LANDMARK_UPSCALE
    side = FACE_SIZE * up
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = int(side * LANDMARK_PAD)
    canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    found = detector.detect_faces(canvas)
    if not found or found[0].landmarks is None:
        return None
    x, y, w, h = found[0].box
    box = ((x - pad) / up, (y - pad) / up, w / up, h / up)
    return box, (np.asarray(found[0].landmarks, dtype=np.float64) - pad) / up


def framing_from_landmarks(landmarks: np.ndarray) -> Framing:
    """The eye-anchored Framing that maps the (median) landmarks back to the full 48x48 frame.

    ``landmarks``: (N, 5, 2) in 48x48 pixel units, YuNet's order (right eye, left eye, nose, mouth corners).
    """
    eyes, mouth = eyes_and_mouth(np.median(np.asarray(landmarks, dtype=np.float64), axis=0))
    ref = float(np.hypot(*(mouth - eyes)))
    centre = FACE_SIZE / 2
    return Framing(scale=round(FACE_SIZE / ref, 3), shift_x=round(float((centre - eyes[0]) / ref), 3),
                   shift_y=round(float((centre - eyes[1]) / ref), 3), anchor="eyes")


def measure_landmark_framing(faces: np.ndarray, detector=None) -> dict:
    """YuNet on each face: the eye-anchored and the box Framing that describe how FER2013 is framed."""
    from ..pipeline.detect import YuNetDetector

    detector = detector or YuNetDetector(max_side=0)  # no downscaling: the canvas is small already
    found = [r for r in (landmarks_in_fer_face(f, detector) for f in faces) if r is not None]
    if not found:
        raise RuntimeError("the detector found no face in any of the given images")
    boxes = np.array([b for b, _ in found])
    points = np.array([p for _, p in found])
    eye_mouth = [float(np.hypot(*(mouth - eyes))) for eyes, mouth in map(eyes_and_mouth, points)]
    return {"detector": "yunet", "framing": framing_from_landmarks(points).to_dict(),
            "box_framing": framing_from_boxes(boxes).to_dict(), "faces": len(faces), "detected": len(found),
            "eye_mouth_quartiles_48px": np.percentile(eye_mouth, [25, 50, 75]).round(2).tolist()}


# The framings tried on labelled photos: box-anchored (any detector) and, where the detector gives
# landmarks, anchored on the eyes and turned so they are level. Steps are coarse on purpose: a
# framing is picked from a smoothed grid, so one lucky cell on one data set does not decide it.
BOX_GRID = {"scale": np.round(np.arange(0.8, 1.51, 0.1), 3), "shift_y": np.round(np.arange(-0.2, 0.11, 0.05), 3)}
EYES_GRID = {"scale": np.round(np.arange(1.75, 3.01, 0.25), 3), "shift_y": np.round(np.arange(-0.1, 0.61, 0.1), 3)}


FAMILIES = ("box", "box+rotate", "eyes", "eyes+rotate")  # all but "box" need landmarks


def _grid_of(family: str) -> dict:
    return BOX_GRID if family.startswith("box") else EYES_GRID


def framing_grid(family: str) -> tuple[list[Framing], tuple[int, int]]:
    """Every framing of one family (``FAMILIES``), row-major over (scale, shift_y), and the grid shape."""
    anchor, _, rotate = family.partition("+")
    grid = _grid_of(family)
    framings = [Framing(scale=float(sc), shift_y=float(sy) + 0.0, anchor=anchor, rotate=bool(rotate))
                for sc in grid["scale"] for sy in grid["shift_y"]]
    return framings, (len(grid["scale"]), len(grid["shift_y"]))


def smooth_grid(values: np.ndarray) -> np.ndarray:
    """Each cell replaced by the mean of itself and its (up to 8) neighbours."""
    padded = np.pad(values.astype(float), 1, constant_values=np.nan)
    stack = [padded[1 + dy:1 + dy + values.shape[0], 1 + dx:1 + dx + values.shape[1]]
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.nanmean(np.stack(stack), axis=0)


def detect_photos(photos, detector, *, progress: bool = True) -> list:
    """(gray image, largest Detection or None) per photo; unreadable photos count as no face."""
    from tqdm import tqdm

    from ..pipeline.images import ImageError, load_image

    out = []
    for photo in tqdm(photos, unit="photo", disable=not progress, leave=False, desc="detecting"):
        try:
            bgr = load_image(photo.path)
        except ImageError:
            out.append((None, None))
            continue
        found = detector.detect_faces(bgr)
        out.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), found[0] if found else None))
    return out


def framing_accuracy(model, detected, labels: np.ndarray, framings: list[Framing]) -> np.ndarray:
    """Accuracy of ``model`` on the photos for each framing (a photo without a face counts as wrong)."""
    from ..pipeline.preprocess import crop_face

    size = model.preprocessing.input_size
    has_face = np.array([d is not None for _, d in detected])
    scores = []
    for framing in framings:
        crops = np.zeros((len(detected), size, size), dtype=np.uint8)
        for i, (gray, d) in enumerate(detected):
            if d is not None:
                crops[i] = crop_face(gray, d.box, framing, size=size, landmarks=d.landmarks)
        predicted = model.predict(crops).argmax(axis=1) if len(crops) else np.zeros(0, int)
        scores.append(float(np.mean((predicted == labels) & has_face)))
    return np.array(scores)


def measure_photo_framing(model, detector, photos, *, check=None, progress: bool = True) -> dict:
    """Pick the framing for ``detector``'s faces that classifies the labelled ``photos`` best.

    Every framing family the detector supports (``FAMILIES``: box- or eye-anchored, eyes levelled
    or not) is scored over its grid; each grid is smoothed (``smooth_grid``) and its best smoothed
    cell is that family's pick; the best family wins. The best plain box framing is also kept, for
    faces that come without landmarks.
    ``check``: other labelled photos (e.g. held-out subjects) scored with the picks, never used to choose.
    """
    labels = np.array([p.label for p in photos])
    detected = detect_photos(photos, detector, progress=progress)
    has_landmarks = any(d is not None and d.landmarks is not None for _, d in detected)
    families = FAMILIES if has_landmarks else ("box",)
    result: dict = {"detector": detector.kind, "photos": len(photos),
                    "faces_found": int(sum(d is not None for _, d in detected)), "families": {}}
    for family in families:
        framings, shape = framing_grid(family)
        raw = framing_accuracy(model, detected, labels, framings).reshape(shape)
        smooth = smooth_grid(raw)
        best = int(np.argmax(smooth))
        result["families"][family] = {"framing": framings[best].to_dict(), "accuracy": float(raw.flat[best]),
                                      "smoothed_accuracy": float(smooth.flat[best]),
                                      "grid": {"scale": _grid_of(family)["scale"].tolist(),
                                               "shift_y": _grid_of(family)["shift_y"].tolist(),
                                               "accuracy": raw.round(4).tolist()}}
    winner = max(result["families"], key=lambda f: result["families"][f]["smoothed_accuracy"])
    result["framing"] = result["families"][winner]["framing"]
    result["box_framing"] = result["families"]["box"]["framing"]
    if check:
        check_labels = np.array([p.label for p in check])
        check_detected = detect_photos(check, detector, progress=progress)
        for family, entry in result["families"].items():
            entry["check_accuracy"] = float(framing_accuracy(model, check_detected, check_labels,
                                                             [Framing(**entry["framing"])])[0])
    return result


def record_photo_framing(name_or_path: str, kind: str, framing: Framing, box_framing: Framing) -> None:
    """Store the framings for detector ``kind`` in a checkpoint (its sha256 changes: update the registry)."""
    from ..model.registry import rewrite_checkpoint

    def update(ckpt: dict) -> None:
        framings = ckpt["preprocessing"].setdefault("framings", {})
        framings[kind] = framing.to_dict()
        if framing.needs_landmarks:
            framings[f"{kind}:box"] = box_framing.to_dict()
        else:
            framings.pop(f"{kind}:box", None)

    path = rewrite_checkpoint(name_or_path, update)
    print(f"recorded the {kind} framing {framing} in {path} (new sha256: update the registry if it is a shipped model)")


def copy_photo_framings(source: str, targets: list[str]) -> None:
    """Store ``source``'s photo framings (all detectors) in each of ``targets`` (their sha256 change)."""
    from ..errors import ModelError
    from ..model.registry import load_model, rewrite_checkpoint

    framings = {kind: framing.to_dict() for kind, framing in load_model(source).preprocessing.framings.items()}
    if not framings:
        raise ModelError(f"{source}: no photo framings stored to copy (measure them with --photos)")
    for name in targets:
        path = rewrite_checkpoint(name, lambda ckpt: ckpt["preprocessing"].update(framings=dict(framings)))
        print(f"recorded the framings of {source} ({', '.join(sorted(framings))}) in {path} "
              f"(new sha256: update the registry if it is a shipped model)")


def record_level_beyond(degrees: float | None, targets: list[str]) -> None:
    """Set ``level_beyond`` on every landmark framing stored in ``targets`` (their sha256 change)."""
    from dataclasses import replace

    from ..errors import ModelError
    from ..model.registry import rewrite_checkpoint

    def update(ckpt: dict) -> None:
        framings = {k: Framing(**f) for k, f in (ckpt["preprocessing"].get("framings") or {}).items()}
        with_landmarks = [k for k, f in framings.items() if f.anchor == "eyes"]
        if not with_landmarks:
            raise ModelError("no eye-anchored photo framing stored to level (measure them with --photos)")
        for k in with_landmarks:
            framings[k] = replace(framings[k], level_beyond=degrees)
        ckpt["preprocessing"]["framings"] = {k: f.to_dict() for k, f in framings.items()}

    for name in targets:
        path = rewrite_checkpoint(name, update)
        print(f"recorded level_beyond={degrees} in {path}'s eye-anchored framings "
              f"(new sha256: update the registry if it is a shipped model)")


def main(argv: list[str] | None = None) -> None:
    from ..cli.options import add_detector_arguments

    p = argparse.ArgumentParser(prog="python -m moodify.training.framing", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--photos", default=None,
                   help="labelled photos (a CSV with path,label or a folder per class): pick the crop for real "
                        "photos over a grid of framings, for --detector")
    p.add_argument("--where", action="append", default=None, metavar="COLUMN=VALUE[,VALUE]",
                   help="with --photos: the CSV rows to choose on (repeatable)")
    p.add_argument("--check-where", action="append", default=None, metavar="COLUMN=VALUE[,VALUE]",
                   help="with --photos: other rows to report the picked framing on, never to choose it")
    add_detector_arguments(p)
    p.add_argument("--data", help="FER2013 data path (default: $MOODIFY_DATA)")
    p.add_argument("--n", type=int, default=3000, help="without --photos: FER2013 training faces to measure")
    p.add_argument("--record", nargs="+", metavar="CHECKPOINT", default=None,
                   help="write the measured framing into these checkpoints (it moves only how real photos are "
                        "cropped, never the network or its FER2013 metrics)")
    p.add_argument("--copy-from", metavar="MODEL", default=None,
                   help="measure nothing: write the photo framings stored in MODEL (every detector's) into the "
                        "--record checkpoints, e.g. for a retrained network that keeps its predecessor's crop")
    p.add_argument("--level-beyond", type=float, metavar="DEGREES", default=None,
                   help="measure nothing: make the eye-anchored framings in the --record checkpoints turn a face "
                        "upright when its eyes tilt by more than DEGREES (benchmarks/bench_tilt.py measures it)")
    args = p.parse_args(argv)
    if args.level_beyond is not None:
        if not args.record or args.photos or args.copy_from:
            p.error("--level-beyond goes with --record alone: the checkpoints whose framings it changes")
        from ..errors import MoodifyError

        try:
            record_level_beyond(args.level_beyond, args.record)
        except (MoodifyError, ValueError) as exc:
            p.exit(2, f"{p.prog}: error: {exc}\n")
        return
    if args.copy_from:
        if not args.record:
            p.error("--copy-from needs --record: the checkpoints to write the framings into")
        from ..errors import MoodifyError

        try:
            copy_photo_framings(args.copy_from, args.record)
        except MoodifyError as exc:
            p.exit(2, f"{p.prog}: error: {exc}\n")
        return
    if args.photos:
        from ..pipeline.detect import make_detector
        from ..cli.options import detector_spec
        from .photos import load_photos
        from ..model.registry import load_model

        model = load_model(args.model, backend=args.backend)
        detector = make_detector(**detector_spec(args))
        photos = load_photos(args.photos, where=args.where)
        check = load_photos(args.photos, where=args.check_where) if args.check_where else None
        result = measure_photo_framing(model, detector, photos, check=check)
        print(json.dumps({k: v for k, v in result.items() if k != "families"}
                         | {"families": {f: {k: v for k, v in e.items() if k != "grid"}
                                         for f, e in result["families"].items()}}, indent=2))
        for name in args.record or ():
            record_photo_framing(name, detector.kind, Framing(**result["framing"]), Framing(**result["box_framing"]))
        return
    if args.detector == "yunet" and args.record:
        p.error("--record with --data stores the Haar box measurement (--detector haar); YuNet's FER2013 framing "
                "is reported for comparison, and photo framings are measured with --photos")
    try:
        train = load_dataset(args.data)["Training"]
    except DataError as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
    faces = train.images[np.linspace(0, len(train) - 1, min(args.n, len(train))).astype(int)]
    if args.detector == "haar":
        result = measure_framing(faces)
    else:
        from ..cli.options import detector_spec
        from ..pipeline.detect import make_detector

        # The options given (score threshold, model file), but no downscaling: the canvas is small already.
        result = measure_landmark_framing(faces, make_detector(**detector_spec(args), max_side=0))
    print(json.dumps(result, indent=2))
    for name in args.record or ():
        record_framing(name, Framing(**result["framing"]))


def record_framing(name_or_path: str, framing: Framing) -> None:
    """Store the FER2013 framing (Haar box on the training faces) in a checkpoint's preprocessing."""
    from ..model.registry import rewrite_checkpoint

    path = rewrite_checkpoint(name_or_path, lambda ckpt: ckpt["preprocessing"].update(framing=framing.to_dict()))
    print(f"recorded framing {framing} in {path} (new sha256: update the registry if it is a shipped model)")


if __name__ == "__main__":
    main()
