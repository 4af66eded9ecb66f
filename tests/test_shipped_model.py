"""The shipped model's headline figures, re-measured on FER2013 PrivateTest (skipped without the data)."""

from __future__ import annotations

import pytest

from moodify.evaluate import evaluate_model

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def private_report(model, fer2013):
    test = fer2013["PrivateTest"]
    return evaluate_model(model, test.images, test.labels)


def test_private_test_accuracy_beats_the_fer_package(private_report):
    # fer's mini-Xception scores about 66% on PrivateTest; the Core issue asks for at least 68%.
    assert private_report["n"] == 3589
    assert private_report["accuracy"] >= 0.68
    assert private_report["macro_f1"] >= 0.6


def test_probabilities_are_calibrated(private_report):
    # Temperature fitted on PublicTest; the card reports the figure this re-measures.
    assert private_report["ece"] <= 0.03
    assert private_report["ece"] < private_report["ece_uncalibrated"] or private_report["ece_uncalibrated"] < 0.03


def test_recorded_metrics_match_a_fresh_evaluation(model, private_report):
    recorded = model.metrics["PrivateTest"]
    assert recorded["accuracy"] == pytest.approx(private_report["accuracy"], abs=1e-6)
    assert recorded["ece"] == pytest.approx(private_report["ece"], abs=1e-6)
    assert model.metrics["PublicTest"]["accuracy"] > 0.6


def test_no_class_is_hidden_behind_accuracy(private_report):
    recall = {k: v["recall"] for k, v in private_report["per_class"].items()}
    assert recall["happy"] > 0.8
    assert all(r > 0.2 for r in recall.values()), recall  # disgust and fear included
