"""One model protocol: the torch and onnxruntime models satisfy it, and so does an ensemble, which
the whole pipeline then runs like any other model."""

from __future__ import annotations

import numpy as np
import pytest

import moodify
from moodify.model.base import EmotionClassifier, calibrated


class MeanOfLogits:
    """An ensemble as issue 13 plans it: the mean of several networks' logits, one temperature."""

    def __init__(self, models, *, temperature: float):
        self.models = models
        first = models[0]
        self.name, self.labels, self.preprocessing = "ensemble", first.labels, first.preprocessing
        self.temperature, self.tta, self.metrics = temperature, False, {}

    def logits(self, faces, *, tta=None, batch_size=512):
        return np.mean([m.logits(faces, tta=tta, batch_size=batch_size) for m in self.models], axis=0)

    def predict(self, faces, *, tta=None, batch_size=512):
        return calibrated(self.logits(faces, tta=tta, batch_size=batch_size), self.temperature)


def test_the_shipped_torch_model_satisfies_the_protocol(model):
    assert isinstance(model, EmotionClassifier) and isinstance(model, moodify.EmotionClassifier)


def test_an_ensemble_runs_through_the_pipeline_like_one_model(model, astronaut_bgr):
    ensemble = MeanOfLogits([model, model], temperature=model.temperature)
    assert isinstance(ensemble, EmotionClassifier)
    alone = moodify.Recognizer(model=model).analyze(astronaut_bgr)
    together = moodify.Recognizer(model=ensemble).analyze(astronaut_bgr)
    assert [f.box for f in together] == [f.box for f in alone] and len(alone) == 1
    assert together[0].emotion == alone[0].emotion == "happy"
    np.testing.assert_allclose(list(together[0].probabilities.values()), list(alone[0].probabilities.values()),
                               atol=1e-5)


def test_available_models_are_the_registry_and_load(model):
    assert moodify.available_models() == ["default", "accurate"]
    assert model.name == moodify.available_models()[0]


def test_every_error_is_a_moodify_error_and_a_command_prints_it_in_one_line(capsys, astronaut_jpg):
    from moodify import cli
    from moodify.errors import BatchError, DataError, TrainError, VideoError

    for kind in (moodify.ImageError, moodify.ModelError, moodify.DetectorError, DataError, VideoError, TrainError,
                 BatchError):
        assert issubclass(kind, moodify.MoodifyError) and kind.exit_status == 2
    with pytest.raises(moodify.ModelError):
        moodify.load_model("no-such-model")
    assert cli.main(["classify", "--model", "no-such-model", str(astronaut_jpg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moodify classify: error: unknown model 'no-such-model'") and err.count("\n") == 1
