"""``moodify export`` and the onnxruntime backend: the same calibrated probabilities as torch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import moodify
from moodify import EMOTIONS
from moodify.cli import main as cli
from moodify.model.onnx_backend import OnnxEmotionModel, export_onnx

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "moodify.onnx"
    assert cli(["export", "--format", "onnx", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def faces(recognizer, astronaut_bgr) -> np.ndarray:
    """Real face crops (the astronaut, framed as in serving, and its mirror) plus random ones."""
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    real = recognizer.crops(gray, [(177, 66, 95, 95), (170, 60, 110, 110)])
    rng = np.random.default_rng(0)
    return np.concatenate([real, real[:, :, ::-1], rng.integers(0, 256, (60, 48, 48), dtype=np.uint8)])


def test_onnx_probabilities_match_torch(exported, model, faces):
    onnx_model = OnnxEmotionModel(exported)
    for tta in (False, True):
        assert np.abs(onnx_model.predict(faces, tta=tta) - model.predict(faces, tta=tta)).max() < TOLERANCE
        assert np.abs(onnx_model.logits(faces, tta=tta) - model.logits(faces, tta=tta)).max() < 1e-3
    # The default (the model's own TTA setting) and a batch split across calls agree too.
    assert np.abs(onnx_model.predict(faces, batch_size=7) - model.predict(faces)).max() < TOLERANCE


def test_onnx_file_carries_labels_and_preprocessing(exported, model):
    from moodify.model.base import EmotionClassifier

    onnx_model = OnnxEmotionModel(exported)
    assert isinstance(onnx_model, EmotionClassifier)  # the model protocol the pipeline programs against
    assert onnx_model.labels == EMOTIONS
    assert onnx_model.preprocessing == model.preprocessing
    assert onnx_model.temperature == pytest.approx(model.temperature)
    assert onnx_model.tta == model.tta
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(meta["moodify.labels"]) == list(EMOTIONS)
    assert json.loads(meta["moodify.preprocessing"])["mean"] == model.preprocessing.mean
    assert len(meta["moodify.source_sha256"]) == 64


@pytest.mark.slow  # two exports
def test_exported_file_is_readable_as_the_umask_allows(tmp_path):
    """Not private to its writer: a 0600 export would stop another user (a service account) from
    loading a model shared in a common folder."""
    import os

    previous = os.umask(0o022)
    try:
        assert cli(["export", "--format", "onnx", "-o", str(tmp_path / "shared.onnx")]) == 0
        os.umask(0o027)
        assert cli(["export", "--format", "onnx", "-o", str(tmp_path / "group.onnx")]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "group.onnx").stat().st_mode & 0o777 == 0o640


def test_classify_runs_an_exported_onnx_file(exported, astronaut_jpg, capsys):
    """The README's `moodify export ... -o moodify.onnx`, then `--model moodify.onnx`, with or without
    --backend onnx: torch cannot read a .onnx file, so it runs through onnxruntime either way."""
    assert cli(["classify", "--json", str(astronaut_jpg)]) == 0
    expected = json.loads(capsys.readouterr().out)[0]["faces"][0]
    for backend in ([], ["--backend", "onnx"]):
        assert cli(["classify", "--json", "--model", str(exported), *backend, str(astronaut_jpg)]) == 0
        captured = capsys.readouterr()
        face = json.loads(captured.out)[0]["faces"][0]
        assert face["box"] == expected["box"] and face["emotion"] == expected["emotion"], captured.err
        assert max(abs(face["probabilities"][e] - expected["probabilities"][e]) for e in EMOTIONS) < TOLERANCE
    assert isinstance(moodify.load_model(exported), OnnxEmotionModel)


def test_load_model_onnx_backend_caches_by_checkpoint_hash(tmp_path, monkeypatch, model, faces):
    monkeypatch.setenv("MOODIFY_CACHE", str(tmp_path))
    first = moodify.load_model(backend="onnx")
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    assert cached.stem == first.source_sha256
    mtime = cached.stat().st_mtime_ns
    second = moodify.load_model(backend="onnx")
    assert cached.stat().st_mtime_ns == mtime  # reused, not exported again
    assert np.abs(second.predict(faces) - model.predict(faces)).max() < TOLERANCE
    direct = moodify.load_model(str(cached), backend="onnx")  # a .onnx path is used as it is
    assert direct.path == cached and direct.source_sha256 == first.source_sha256
    with pytest.raises(moodify.ModelError, match="unknown backend"):
        moodify.load_model(backend="tensorflow")


def test_not_a_moodify_onnx_file_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(moodify.ModelError, match="not a readable ONNX model"):
        OnnxEmotionModel(bad)
    with pytest.raises(moodify.ModelError, match="not found"):
        OnnxEmotionModel(tmp_path / "missing.onnx")


def test_wrong_label_order_is_refused(tmp_path, model):
    import onnx

    from moodify.model.onnx_backend import set_metadata

    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    set_metadata(proto, {"moodify.labels": json.dumps(list(reversed(EMOTIONS)))})
    onnx.save(proto, str(path))
    with pytest.raises(moodify.ModelError, match="label order"):
        OnnxEmotionModel(path)


def test_batch_with_onnx_backend_matches_torch(tmp_path, astronaut_jpg, monkeypatch):
    monkeypatch.setenv("MOODIFY_CACHE", str(tmp_path / "cache"))
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.csv"
        assert cli(["batch", str(astronaut_jpg), "-o", str(out), "--backend", backend, "--workers", "1",
                    "--quiet"]) == 0
        with open(out, newline="") as fh:
            rows[backend] = list(csv.DictReader(fh))
    (t,), (o,) = rows["torch"], rows["onnx"]
    assert [t[k] for k in ("face", "x", "y", "w", "h", "emotion")] == [o[k] for k in ("face", "x", "y", "w", "h", "emotion")]
    assert max(abs(float(t[e]) - float(o[e])) for e in EMOTIONS) < TOLERANCE


def test_int8_quantization_gives_a_working_model(exported, model, faces, tmp_path):
    from moodify.cli.export import quantize_int8

    rng = np.random.default_rng(1)
    calibration = np.concatenate([faces, rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)])
    path = quantize_int8(exported, tmp_path / "int8.onnx", calibration, model.preprocessing)
    int8 = OnnxEmotionModel(path)
    assert int8.quantization.startswith("int8") and int8.labels == EMOTIONS
    probs = int8.predict(faces)
    assert probs.shape == (len(faces), 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # int8 rounding moves probabilities a little, not a lot.
    assert np.abs(probs - model.predict(faces)).max() < 0.1


def test_onnx_backend_refuses_a_device_it_cannot_use(exported):
    import moodify

    with pytest.raises(moodify.ModelError, match="CPU only"):
        moodify.load_model(exported, backend="onnx", device="cuda")
    assert moodify.load_model(exported, backend="onnx", device="cpu").predict(
        np.zeros((1, 48, 48), np.uint8)).shape == (1, 7)
