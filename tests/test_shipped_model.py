"""The shipped models' headline figures, re-measured on FER2013 PrivateTest (skipped without the data)."""

from __future__ import annotations

import pytest

from moodify.model.registry import REGISTRY, load_model
from moodify.training.evaluate import evaluate_model

pytestmark = [pytest.mark.data, pytest.mark.slow]

# Floors each shipped file must keep on PrivateTest; the model cards give the measured figures
# (default 67.6% / ECE 2.66%, accurate, an ensemble, 69.1% / ECE 2.5%). fer's mini-Xception scores about 66%.
# The issue "Model v2" asks for ECE <= 2.5%: default's 2.66% misses it (within the ~2% 15-bin noise);
# its floor is the shipped figure, not the target.
FLOORS = {
    "default": {"accuracy": 0.675, "macro_f1": 0.62, "ece": 0.027},
    "accurate": {"accuracy": 0.69, "macro_f1": 0.62, "ece": 0.026},
}


def test_every_shipped_model_has_floors():
    assert set(FLOORS) == set(REGISTRY)


@pytest.fixture(scope="module", params=sorted(FLOORS))
def shipped(request, fer2013):
    model = load_model(request.param)
    test = fer2013["PrivateTest"]
    return request.param, model, evaluate_model(model, test.images, test.labels)


def test_private_test_accuracy_beats_the_fer_package(shipped):
    name, _, report = shipped
    assert report["n"] == 3589
    assert report["accuracy"] >= FLOORS[name]["accuracy"]
    assert report["macro_f1"] >= FLOORS[name]["macro_f1"]


def test_probabilities_are_calibrated(shipped):
    # Temperature fitted on PublicTest; the card reports the figure this re-measures.
    name, _, report = shipped
    assert report["ece"] <= FLOORS[name]["ece"]
    # The fitted temperature never makes calibration worse than the 15-bin noise (~2% on 3,589 faces);
    # an ensemble averages calibrated members, so its raw logits are calibrated already (T = 0.98).
    assert report["ece"] <= report["ece_uncalibrated"] + 0.005


def test_recorded_metrics_match_a_fresh_evaluation(shipped):
    _, model, report = shipped
    recorded = model.metrics["PrivateTest"]
    assert recorded["accuracy"] == pytest.approx(report["accuracy"], abs=1e-6)
    assert recorded["ece"] == pytest.approx(report["ece"], abs=1e-6)
    assert model.metrics["PublicTest"]["accuracy"] > 0.65


def test_no_class_is_hidden_behind_accuracy(shipped):
    _, _, report = shipped
    recall = {k: v["recall"] for k, v in report["per_class"].items()}
    assert recall["happy"] > 0.85
    # Disgust and fear included. PrivateTest has 55 disgust faces, so one face is 1.8 points of recall:
    # default finds 16 (0.291), accurate 13 (0.236; its first network alone found 14).
    assert all(r > 0.2 for r in recall.values()), recall
    assert recall["fear"] > 0.35


def test_privatetest_without_its_copies_of_training_faces(data_root, capsys):
    from moodify.cli import main as cli

    assert cli(["evaluate", "--model", "default", "--data", str(data_root), "--split", "PrivateTest",
                "--without-training-copies"]) == 0
    out = capsys.readouterr().out
    assert "PrivateTest without its 288 copies of Training faces" in out
    assert "3,301" in out or "3301" in out
