"""The recognition pipeline on a real photo and on every odd input a user can hand it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import moodify
from moodify.model.registry import ModelError, load_checkpoint, resolve_model_path
from moodify.pipeline.preprocess import FER2013_FRAMING, Framing, crop_face

ASTRONAUT_FACE = (177, 66, 95, 95)  # x, y, w, h of the Haar box on skimage's astronaut


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def test_emotions_are_in_fer2013_order():
    assert moodify.EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_predict_returns_probabilities_in_batches(model):
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    probs = model.predict(faces)
    assert probs.shape == (5, 7) and probs.dtype.kind == "f"
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(model.predict(faces[2:3]), probs[2:3], atol=1e-5)  # batching changes nothing
    assert not model.net.training
    with pytest.raises(ValueError, match="48, 48"):
        model.predict(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((2, 48, 48), np.float32))


def test_smiling_astronaut_is_happy(recognizer, astronaut_bgr):
    faces = recognizer.analyze(astronaut_bgr)
    assert len(faces) == 1
    face = faces[0]
    assert _iou(face.box, ASTRONAUT_FACE) > 0.7
    assert face.emotion == "happy"
    assert face.confidence == max(face.probabilities.values()) > 0.5
    assert list(face.probabilities) == list(moodify.EMOTIONS)
    assert sum(face.probabilities.values()) == pytest.approx(1, abs=1e-5)


def test_every_input_type_gives_the_same_face(recognizer, astronaut_bgr, astronaut_jpg, tmp_path):
    rgb = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    rgba = Image.fromarray(rgb).convert("RGBA")
    png16 = tmp_path / "gray16.png"
    cv2.imwrite(str(png16), gray.astype(np.uint16) * 257)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    inputs = {
        "path": astronaut_jpg, "str path": str(astronaut_jpg), "bytes": astronaut_jpg.read_bytes(),
        "PIL RGB": Image.fromarray(rgb), "PIL RGBA": rgba, "PIL palette": palette, "PIL L": Image.fromarray(gray),
        "gray array": gray, "16-bit PNG": png16, "BGRA array": cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA),
        "float array": astronaut_bgr.astype(np.float32) / 255,
    }
    for name, source in inputs.items():
        faces = recognizer.analyze(source)
        assert len(faces) == 1, name
        assert _iou(faces[0].box, ASTRONAUT_FACE) > 0.7, name


def test_exif_orientation_is_respected(recognizer, astronaut_bgr, tmp_path):
    # Store the photo rotated on its side with an EXIF tag saying "rotate 90 CW to view": a viewer
    # (and Moodify) shows it upright, so the face is found at the upright position.
    rgb = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB)
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=1)))  # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    path = tmp_path / "sideways.jpg"
    sideways.save(path, exif=exif, quality=95)
    faces = recognizer.analyze(path)
    assert len(faces) == 1 and _iou(faces[0].box, ASTRONAUT_FACE) > 0.7


def test_huge_image_is_detected_on_a_downscaled_copy_with_boxes_in_original_pixels(recognizer, astronaut_bgr):
    big = cv2.resize(astronaut_bgr, (4096, 4096), interpolation=cv2.INTER_LINEAR)  # 16.8 megapixels
    faces = recognizer.analyze(big)
    assert len(faces) == 1
    scaled = tuple(v * 8 for v in ASTRONAUT_FACE)
    assert _iou(faces[0].box, scaled) > 0.7


def test_no_face_and_many_faces(recognizer, astronaut_bgr):
    assert recognizer.analyze(np.full((300, 400, 3), 127, np.uint8)) == []
    canvas = np.full((600, 1600, 3), 255, np.uint8)
    for i in range(3):
        canvas[44:556, 20 + i * 520:532 + i * 520] = astronaut_bgr
    faces = recognizer.analyze(canvas)
    assert len(faces) == 3
    assert sorted(f.box[0] // 520 for f in faces) == [0, 1, 2]


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is not an image", "not an image"),
    (None, "corrupt or truncated"),
])
def test_bad_files_raise_a_clear_image_error(recognizer, astronaut_jpg, tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content if content is not None else astronaut_jpg.read_bytes()[:3000])
    with pytest.raises(moodify.ImageError, match=message) as info:
        recognizer.analyze(path)
    assert "bad.jpg" in str(info.value)


def test_missing_file_and_wrong_arrays_raise_image_error(recognizer, tmp_path):
    with pytest.raises(moodify.ImageError, match="no such file"):
        recognizer.analyze(tmp_path / "nope.png")
    with pytest.raises(moodify.ImageError, match="shape"):
        recognizer.analyze(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(moodify.ImageError, match="unsupported input"):
        recognizer.analyze(12345)


def test_crop_uses_the_framing_stored_with_the_model_for_its_detector(recognizer, astronaut_bgr):
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    prep = recognizer.model.preprocessing
    assert recognizer.detector.kind == "yunet"
    yunet, haar = prep.framing_for("yunet"), prep.framing_for("haar")
    # Measured on labelled photos (python -m moodify.training.framing --photos; models/MODEL_CARD.md): YuNet
    # faces are framed from their landmarks, with a box framing for faces that come without them.
    assert yunet.anchor == "eyes" and prep.framing_for("yunet", landmarks=False).anchor == "box"
    assert yunet != haar and haar != FER2013_FRAMING
    face = recognizer.analyze(astronaut_bgr)[0]
    assert np.array_equal(face.crop, crop_face(gray, face.box, yunet, landmarks=face.landmarks))
    # Haar boxes get the framing measured for Haar boxes.
    haar_recognizer = moodify.Recognizer(model=recognizer.model, detector=moodify.HaarDetector())
    haar_face = haar_recognizer.analyze(astronaut_bgr)[0]
    assert haar_face.landmarks is None
    assert np.array_equal(haar_face.crop, crop_face(gray, haar_face.box, haar))


def test_label_order_and_checksum_are_checked_on_load(tmp_path):
    path, _, sha = resolve_model_path(None)
    ckpt = load_checkpoint(path, expected_sha256=sha)
    swapped = dict(ckpt, labels=["happy", "angry", "disgust", "fear", "sad", "surprise", "neutral"])
    torch.save(swapped, tmp_path / "swapped.pt")
    with pytest.raises(ModelError, match="label order"):
        moodify.load_model(tmp_path / "swapped.pt")
    with pytest.raises(ModelError, match="sha256"):
        load_checkpoint(tmp_path / "swapped.pt", expected_sha256=sha)
    with pytest.raises(ModelError, match="unknown model"):
        moodify.load_model("no-such-model")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        moodify.load_model(tmp_path / "junk.pt")


def test_shipped_model_matches_its_registry_checksum():
    path, name, sha = resolve_model_path(None)
    assert sha, "the default model must have a sha256 in moodify.model.registry.REGISTRY"
    moodify.load_model()  # raises on a mismatch



def test_batch_workers_crop_with_the_same_pipeline(recognizer, astronaut_bgr, model):
    """Recognizer.for_cropping (what each batch worker holds) finds and crops exactly what analyze
    classifies, and refuses to classify without a model."""
    from moodify import Recognizer

    cropper = Recognizer.for_cropping(model.preprocessing, recognizer.detector)
    detections, crops = cropper.detect_and_crop(astronaut_bgr)
    faces = recognizer.analyze(astronaut_bgr)
    assert [d.box for d in detections] == [f.box for f in faces]
    assert np.array_equal(crops, np.stack([f.crop for f in faces]))
    with pytest.raises(RuntimeError, match="only detects and crops"):
        cropper.predict(crops)


def _turned(bgr: np.ndarray, degrees: float) -> np.ndarray:
    h, w = bgr.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(bgr, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_a_crop_is_levelled_only_when_the_eyes_tilt_beyond_what_fer2013_shows(recognizer, astronaut_bgr):
    """The shipped framing turns a face upright past 15 degrees of tilt, and leaves a slight tilt alone.

    (tests/test_photos.py measures what that does for tilted heads on KDEF; the astronaut is no use
    there: YuNet reads her head as level however far it is turned.)
    """
    from dataclasses import replace

    framing = recognizer.model.preprocessing.framing_for("yunet")
    assert framing.level_beyond == 15.0 and not framing.rotate  # benchmarks/bench_tilt.py; models/MODEL_CARD.md
    eyes = np.array([[100.0, 100.0], [140.0, 100.0]])
    for degrees, turned in ((10, False), (-14, False), (20, True), (-40, True)):
        t = np.radians(degrees)
        turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        points = np.vstack([eyes, [[120, 120], [105, 140], [135, 140]]]) @ turn.T
        angle = framing.placement((80, 70, 80, 90), points)[3]
        assert angle == (pytest.approx(t) if turned else 0.0), degrees
    # A face tilted 5 degrees is cropped exactly as without the threshold.
    slight = _turned(astronaut_bgr, 5)
    face = recognizer.analyze(slight)[0]
    gray = cv2.cvtColor(slight, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(face.crop, crop_face(gray, face.box, replace(framing, level_beyond=None),
                                               landmarks=face.landmarks))


def test_a_framing_refuses_a_tilt_threshold_that_is_not_an_angle():
    for bad in (-1.0, float("nan"), 180.0):
        with pytest.raises(ValueError, match="level_beyond"):
            Framing(anchor="eyes", level_beyond=bad)
    assert Framing(level_beyond=0.0).needs_landmarks
