"""Ensembles (issue 13): several networks load and answer as one model, in torch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import moodify
from moodify.cli import main as cli
from moodify.errors import ModelError
from moodify.model.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from moodify.model.ensemble import make_ensemble_checkpoint
from moodify.model.network import EmotionNet, NetConfig
from moodify.model.torch_backend import EmotionModel
from moodify.pipeline.preprocess import Preprocessing

from synthetic import synthetic_faces, write_fer2013_csv

# Two architectures, each with its own normalisation and temperature, as real members would have.
MEMBERS = [(NetConfig(widths=[8, 16], hidden=32), Preprocessing(mean=0.50, std=0.25), 0.8),
           (NetConfig(widths=[8, 16, 32], hidden=16, convs_per_block=1), Preprocessing(mean=0.45, std=0.30), 1.7)]


def _member(config: NetConfig, prep: Preprocessing, temperature: float, seed: int) -> dict:
    torch.manual_seed(seed)
    net = EmotionNet(config)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding them is tested
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return make_checkpoint(net.eval(), config, prep, temperature=temperature, training={"seed": seed})


@pytest.fixture(scope="module")
def members() -> list[dict]:
    return [_member(*spec, seed=i) for i, spec in enumerate(MEMBERS)]


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return synthetic_faces(3, seed=9)[0]


@pytest.fixture
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOODIFY_CACHE", str(tmp_path / "cache"))


def test_an_ensemble_averages_its_members_calibrated_logits(members, faces):
    ensemble = EmotionModel(make_ensemble_checkpoint(members, temperature=1.3), name="ens")
    singles = [EmotionModel(m) for m in members]
    for tta in (False, True):
        expected = np.mean([m.logits(faces, tta=tta) / m.temperature for m in singles], axis=0)
        np.testing.assert_allclose(ensemble.logits(faces, tta=tta), expected, rtol=1e-4, atol=1e-5)
    probs = ensemble.predict(faces)
    expected = torch.softmax(torch.as_tensor(ensemble.logits(faces)) / 1.3, dim=1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert len(ensemble.members) == 2 and ensemble.config is None
    # Two copies of one network, left at temperature 1 (their logits are calibrated already), answer as it does.
    twin = EmotionModel(make_ensemble_checkpoint([members[0], members[0]], temperature=1.0))
    np.testing.assert_allclose(twin.predict(faces), singles[0].predict(faces), rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("_private_cache")
def test_an_ensemble_file_loads_like_any_model_in_torch_and_onnx(members, faces, tmp_path, astronaut_jpg):
    path = tmp_path / "ensemble.pt"
    save_checkpoint(make_ensemble_checkpoint(members, temperature=1.1, tta=True), path)
    torch_model = moodify.load_model(path)
    onnx_model = moodify.load_model(path, backend="onnx")
    assert onnx_model.tta is True and onnx_model.temperature == pytest.approx(1.1)
    np.testing.assert_allclose(onnx_model.predict(faces), torch_model.predict(faces), atol=1e-4)
    # The whole pipeline runs on it: a face found in a real photo gets 7 probabilities that sum to 1.
    (face,) = moodify.Recognizer(model=torch_model).analyze(astronaut_jpg)
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert set(face.probabilities) == set(moodify.EMOTIONS)


def test_a_damaged_ensemble_is_refused_in_one_line(members):
    bad_members = make_ensemble_checkpoint(members)
    bad_members["members"] = "not a list"
    other_size = _member(NetConfig(widths=[8, 16], hidden=32, input_size=64), Preprocessing(input_size=64), 1.0, 5)
    broken_member = make_ensemble_checkpoint(members)
    broken_member["members"][1] = {**members[1], "labels": list(reversed(moodify.EMOTIONS))}
    cases = {"not a list of checkpoints": bad_members,
             "member 2 takes 64-pixel faces": make_ensemble_checkpoint([members[0], other_size]),
             "member 2: label order": broken_member}
    for message, checkpoint in cases.items():
        with pytest.raises(ModelError, match=message) as info:
            EmotionModel(checkpoint, name="ens")
        assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="not another ensemble"):
        make_ensemble_checkpoint([make_ensemble_checkpoint(members)])


@pytest.mark.usefixtures("_private_cache")
def test_moodify_ensemble_calibrates_on_publictest_and_the_result_evaluates(members, tmp_path, capsys):
    data = tmp_path / "data"
    write_fer2013_csv(data / "fer2013" / "fer2013.csv.gz", {"Training": 2, "PublicTest": 6, "PrivateTest": 3})
    paths = []
    for i, member in enumerate(members):
        paths.append(tmp_path / f"member{i}.pt")
        save_checkpoint(member, paths[-1])
    out = tmp_path / "ens.pt"
    assert cli(["ensemble", *map(str, paths), "-o", str(out), "--data", str(data), "--tta", "off"]) == 0
    saved = load_checkpoint(out)
    assert saved["kind"] == "ensemble" and len(saved["members"]) == 2 and saved["tta"] is False
    assert saved["metrics"]["PublicTest"]["n"] == 42  # 6 faces x 7 classes: PublicTest, not PrivateTest
    assert saved["temperature"] > 0 and saved["temperature"] != 1.0  # fitted, not left at the default
    assert saved["training"]["command"].startswith("moodify ensemble ")
    assert [s["seed"] for s in saved["training"]["members"]] == [0, 1]
    assert cli(["evaluate", "--model", str(out), "--data", str(data), "--split", "PrivateTest"]) == 0
    # An ensemble given as a member brings its members: it grows by one network.
    grown = tmp_path / "grown.pt"
    assert cli(["ensemble", str(out), str(paths[0]), "-o", str(grown), "--data", str(data), "--tta", "off"]) == 0
    assert [s["seed"] for s in load_checkpoint(grown)["training"]["members"]] == [0, 1, 0]
    # The crop is the first model's own: an ensemble whose framing was re-measured keeps it as it grows.
    saved["preprocessing"]["mean"] = 0.4321
    save_checkpoint(saved, out)
    assert cli(["ensemble", str(out), str(paths[1]), "-o", str(grown), "--data", str(data), "--tta", "off"]) == 0
    assert load_checkpoint(grown)["preprocessing"]["mean"] == 0.4321
    capsys.readouterr()
    # One member is not an ensemble; a missing file is one line, before any data is read.
    assert cli(["ensemble", str(paths[0]), "-o", str(out), "--data", str(data)]) == 2
    assert "two or more members" in capsys.readouterr().err
    assert cli(["ensemble", str(paths[0]), str(tmp_path / "nope.pt"), "-o", str(out), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and len(err.strip().splitlines()) == 1


def test_a_half_precision_ensemble_is_half_the_file_and_answers_the_same(members, faces, tmp_path):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(make_ensemble_checkpoint(members), full)
    save_checkpoint(make_ensemble_checkpoint(members, half=True), half)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    a, b = moodify.load_model(full), moodify.load_model(half)
    np.testing.assert_allclose(b.predict(faces), a.predict(faces), atol=2e-3)
    assert (b.predict(faces).argmax(1) == a.predict(faces).argmax(1)).mean() > 0.95
