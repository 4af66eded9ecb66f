"""Calibration and the shippable model: the temperature (and flip TTA) fitted on PublicTest."""

from __future__ import annotations

import json
from pathlib import Path

from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.torch_backend import EmotionModel
from .data import FaceSet
from .evaluate import validate
from .metrics import classification_report, fit_temperature, softmax


def calibrate(model: EmotionModel, val: FaceSet, *, tta: str = "auto") -> dict:
    """Flip TTA and the temperature for ``model``, chosen and fitted on ``val`` (PublicTest).

    ``tta``: "auto" turns flip TTA on where it is more accurate on ``val``; "on"/"off" force it.
    Returns {"tta", "temperature", "report" (val metrics, calibrated), "tta_choice" (accuracy of each)}.
    """
    choice = {}
    for flip in (False, True):
        _, logits = validate(model.net, val, model.preprocessing, tta=flip)
        temperature = fit_temperature(logits, val.labels)
        choice[flip] = (classification_report(softmax(logits, temperature), val.labels), temperature)
    use_tta = {"on": True, "off": False}.get(tta, choice[True][0]["accuracy"] > choice[False][0]["accuracy"])
    report, temperature = choice[use_tta]
    return {"tta": use_tta, "temperature": temperature, "report": report,
            "tta_choice": {("on" if flip else "off"): round(v[0]["accuracy"], 6) for flip, v in choice.items()}}


def public_metrics(report: dict) -> dict:
    """The figures a model records for a split."""
    return {k: report[k] for k in ("n", "accuracy", "macro_f1", "nll", "ece")}


def finalize(best_path: Path, val: FaceSet, out_path: Path, *, tta: str = "auto",
             provenance: dict | None = None) -> dict:
    """Fit the temperature on PublicTest, write the shippable model.

    ``tta``: "auto" turns flip TTA on where it is more accurate on PublicTest; "on"/"off" force it
    (off halves the cost of ``predict``, for a model that must be fast). ``provenance``: the run's
    first command and every resume, recorded in the model (the best epoch may predate a resume).
    """
    checkpoint = load_checkpoint(best_path)
    # The one loader (format, labels and values checked), whose inference network gives the same
    # logits as the trained one (BatchNorm folded).
    fitted = calibrate(EmotionModel(checkpoint, name=str(best_path)), val, tta=tta)
    checkpoint["temperature"] = fitted["temperature"]
    checkpoint["tta"] = fitted["tta"]
    if provenance is not None:
        checkpoint["training"].update(command=provenance["command"], resumes=provenance["resumes"])
    checkpoint["training"]["tta_choice"] = fitted["tta_choice"]
    checkpoint["metrics"] = {"PublicTest": public_metrics(fitted["report"])}
    save_checkpoint(checkpoint, out_path)
    print(json.dumps({"model": str(out_path), "tta": fitted["tta"], "temperature": round(fitted["temperature"], 4),
                      **checkpoint["metrics"]["PublicTest"]}), flush=True)
    return checkpoint["metrics"]
