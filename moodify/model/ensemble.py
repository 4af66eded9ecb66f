"""Ensembles: several trained networks that answer as one model.

An ensemble's logits are the mean of its members' calibrated logits (each member's logits over its
own temperature, i.e. the mean of their log-probabilities up to a constant), and one temperature,
fitted on PublicTest for the ensemble as a whole, calibrates the average. Members keep their own
normalisation (mean/std) and may differ in architecture; they must agree on labels and face size.
The pipeline crops a face once for the whole model, as the ensemble's own preprocessing says
(the first model's listed when built; ``python -m moodify.training.framing --record`` measures and
records it like any model's).

The ensemble is a network like any other (``EnsembleNet``), so the torch backend, flip TTA, the
onnxruntime export and every caller of ``load_model`` use it unchanged.

Checkpoint (a plain dict, as for one network)::

    {"format_version": 1, "kind": "ensemble", "members": [member checkpoint, ...],
     "labels": [...], "preprocessing": {...}, "temperature": T, "tta": bool, "metrics": {...},
     "training": {"members": [each member's training record], ...}}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..labels import EMOTIONS
from ..pipeline.preprocess import Preprocessing
from .checkpoint import FORMAT_VERSION

KIND = "ensemble"


class EnsembleNet(nn.Module):
    """Mean of the members' logits over their temperatures, for faces normalised the ensemble's way.

    ``nets``: eval-mode member networks; ``preps``: their preprocessing; ``prep``: the ensemble's
    (what its input was normalised with); ``temperatures``: the members' own calibration.
    """

    def __init__(self, nets: list[nn.Module], preps: list[Preprocessing], temperatures: list[float],
                 prep: Preprocessing):
        super().__init__()
        self.members = nn.ModuleList(nets)
        # Member i sees (pixel - mean_i) / std_i; from the ensemble's normalised x that is x * a_i + b_i.
        scale = [prep.std / p.std for p in preps]
        shift = [(prep.mean - p.mean) / p.std for p in preps]
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))
        self.register_buffer("inverse_temperature", torch.tensor([1.0 / t for t in temperatures],
                                                                 dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0
        for i, net in enumerate(self.members):
            total = total + net(x * self.scale[i] + self.shift[i]).float() * self.inverse_temperature[i]
        return total / len(self.members)


def is_ensemble(checkpoint: dict[str, Any]) -> bool:
    return checkpoint.get("kind") == KIND


def make_ensemble_checkpoint(members: list[dict[str, Any]], *, temperature: float = 1.0, tta: bool = False,
                             metrics: dict | None = None, training: dict | None = None,
                             half: bool = False, preprocessing: dict | None = None) -> dict[str, Any]:
    """The checkpoint dict of an ensemble of member checkpoints (each a network's own checkpoint).

    ``preprocessing``: how the ensemble crops a face (a ``Preprocessing.to_dict()``); default, the
    first member's.

    ``half``: store the members' float weights as float16, half the file; they are float32 again
    once loaded (the network computes as before, on weights rounded to 3 significant digits).
    """
    if not members:
        raise ModelError("an ensemble needs at least one member")
    if any(is_ensemble(m) for m in members):
        raise ModelError("an ensemble member must be one network, not another ensemble")
    if half:
        members = [{**m, "state_dict": {k: v.half() if v.dtype == torch.float32 else v
                                        for k, v in m["state_dict"].items()}} for m in members]
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "members": list(members),
        "labels": list(EMOTIONS),
        "preprocessing": dict(preprocessing or members[0]["preprocessing"]),
        "temperature": float(temperature),
        "tta": bool(tta),
        "metrics": metrics or {},
        "training": {**(training or {}), "members": [m.get("training", {}) for m in members]},
    }


def build_ensemble_net(members: list, prep: Preprocessing, *, name: str) -> EnsembleNet:
    """The ``EnsembleNet`` of loaded member models (``EmotionModel``), refusing a member that takes
    another face size than the ensemble."""
    if not members:
        raise ModelError(f"{name}: an ensemble with no members; the checkpoint is damaged")
    for i, member in enumerate(members, start=1):
        if member.preprocessing.input_size != prep.input_size:
            raise ModelError(f"{name}: member {i} takes {member.preprocessing.input_size}-pixel faces, the "
                             f"ensemble {prep.input_size}; members must take the same face size")
    return EnsembleNet([m.net for m in members], [m.preprocessing for m in members],
                       [m.temperature for m in members], prep).eval()

