"""Face detectors: the shipped YuNet file (checked on load), its landmarks, Haar still selectable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import moodify
from moodify.cli import main as cli
from moodify.pipeline import detect
from moodify.pipeline.detect import DetectorError, HaarDetector, YuNetDetector, make_detector


@pytest.fixture(scope="module")
def chelsea_bgr() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the test picture: pip install scikit-image")
    return cv2.cvtColor(skdata.chelsea(), cv2.COLOR_RGB2BGR)


def test_yunet_is_the_default_and_loads_the_shipped_file():
    detector = make_detector()
    assert isinstance(detector, YuNetDetector) and detector.kind == "yunet"
    assert detect.YUNET_FILE.is_file() and (detect.YUNET_FILE.parent / "LICENSE").is_file()
    assert "MIT License" in (detect.YUNET_FILE.parent / "LICENSE").read_text()
    assert isinstance(moodify.Recognizer(model=moodify.load_model()).detector, YuNetDetector)


def test_a_replaced_yunet_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "face_detection_yunet_2023mar.onnx"
    data = bytearray(detect.YUNET_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(detect, "YUNET_FILE", bad)
    with pytest.raises(DetectorError, match="sha256 .* is not the shipped YuNet model"):
        YuNetDetector()
    monkeypatch.setattr(detect, "YUNET_FILE", tmp_path / "missing.onnx")
    with pytest.raises(DetectorError, match="not found"):
        YuNetDetector()


def test_the_cli_says_in_one_line_when_a_yunet_file_is_unusable(tmp_path, astronaut_jpg, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert cli(["classify", "--yunet-model", str(junk), str(astronaut_jpg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moodify classify: error:") and "not a YuNet model" in err and "\n" not in err


def test_astronaut_has_one_face_with_five_landmarks_inside_its_box(astronaut_bgr):
    (face,) = make_detector().detect_faces(astronaut_bgr)
    x, y, w, h = face.box
    assert 0.6 < face.score <= 1
    assert len(face.landmarks) == 5
    for px, py in face.landmarks:
        assert x <= px <= x + w and y <= py <= y + h
    right_eye, left_eye, nose, mouth_right, mouth_left = face.landmarks
    # The subject's right eye is on the picture's left; eyes above the nose, the nose above the mouth.
    assert right_eye[0] < left_eye[0] and mouth_right[0] < mouth_left[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_the_cat_has_no_face(chelsea_bgr):
    assert make_detector().detect_faces(chelsea_bgr) == []
    assert moodify.Recognizer(model=moodify.load_model()).analyze(chelsea_bgr) == []


def test_a_big_photo_is_searched_downscaled_and_mapped_back(astronaut_bgr):
    detector = make_detector()
    (small,) = detector.detect_faces(astronaut_bgr)
    big = cv2.resize(astronaut_bgr, (2048, 2048), interpolation=cv2.INTER_CUBIC)  # face ~360 px wide
    (found,) = detector.detect_faces(big)
    # Same face, in the big photo's pixels: box and landmarks four times the small photo's (within
    # what YuNet's own estimate moves between a 90 px and a 114 px face: a few % of the face).
    tolerance = 0.08 * found.box[2]
    assert np.allclose(found.box, np.array(small.box) * 4, atol=tolerance)
    assert np.allclose(found.landmarks, np.array(small.landmarks) * 4, atol=tolerance)


def test_haar_stays_selectable_with_no_landmarks(astronaut_bgr):
    (face,) = make_detector("haar").detect_faces(astronaut_bgr)
    assert face.landmarks is None and face.score is None
    assert isinstance(make_detector("haar", min_neighbors=4, score_threshold=0.5), HaarDetector)  # others ignored
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector("mtcnn")


def test_detectors_return_boxes_largest_first(astronaut_bgr):
    canvas = np.full((600, 900, 3), 128, np.uint8)
    canvas[50:562, 0:512] = astronaut_bgr
    face = cv2.resize(astronaut_bgr[40:220, 130:310], (90, 90), interpolation=cv2.INTER_AREA)
    canvas[400:490, 700:790] = face
    for kind in ("yunet", "haar"):
        boxes = make_detector(kind).detect(canvas)
        assert len(boxes) >= 2, kind
        areas = [w * h for _, _, w, h in boxes]
        assert areas == sorted(areas, reverse=True), kind


def test_one_recognizer_is_safe_from_several_threads(astronaut_bgr, model):
    from concurrent.futures import ThreadPoolExecutor

    recognizer = moodify.Recognizer(model=model)
    expected = recognizer.analyze(astronaut_bgr)[0].box

    def boxes(_):
        return [f.box for f in recognizer.analyze(astronaut_bgr)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(boxes, range(80)))
    assert all(r == [expected] for r in results)


def test_a_custom_detector_with_only_detect_still_works(astronaut_bgr, model):
    class Fixed:
        def detect(self, image):
            return [(177, 66, 95, 95)]

    (face,) = moodify.Recognizer(model=model, detector=Fixed()).analyze(astronaut_bgr)
    assert face.box == (177, 66, 95, 95) and face.landmarks is None and face.crop.shape == (48, 48)


def test_the_shipped_file_is_the_one_shared_models_holds():
    shared = detect.YUNET_FILE.parents[2].parent / "shared" / "models" / "yunet" / detect.YUNET_FILE.name
    if not shared.exists():
        pytest.skip(f"{shared} not present")
    assert shared.read_bytes() == detect.YUNET_FILE.read_bytes()


def test_pictures_narrower_than_a_face_have_no_face_every_time():
    rng = np.random.default_rng(0)
    for shape in ((1300, 1, 3), (2, 5000, 3), (29, 400, 3)):
        strip = rng.integers(0, 256, shape, dtype=np.uint8)
        for kind in ("yunet", "haar"):
            detector = make_detector(kind)
            assert all(detector.detect_faces(strip) == [] for _ in range(10)), (kind, shape)
