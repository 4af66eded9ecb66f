"""The PyTorch backend: ``EmotionModel``, a checked checkpoint turned into a network ready to predict."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from ..labels import EMOTIONS
from ..pipeline.preprocess import Preprocessing, normalize
from .base import check_batch_size, check_faces, check_settings, read_temperature
from .checkpoint import FORMAT_VERSION, clean_state_dict, net_config
from .network import EmotionNet, fold_batchnorm


class EmotionModel:
    """A loaded network, or ensemble of networks, with its preprocessing, label order and
    calibration temperature.

    ``members``: for an ensemble checkpoint (``moodify.model.ensemble``), its member models;
    ``[]`` for one network. ``config``: one network's ``NetConfig``; None for an ensemble.
    """

    def __init__(self, checkpoint: dict[str, Any], *, name: str = "custom", device: str | torch.device = "cpu"):
        from .ensemble import build_ensemble_net, is_ensemble

        if checkpoint.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{name}: checkpoint format {checkpoint.get('format_version')!r}, "
                             f"this Moodify reads {FORMAT_VERSION}")
        labels = tuple(checkpoint.get("labels", ()))
        if labels != EMOTIONS:
            raise ModelError(f"{name}: label order {labels} differs from {EMOTIONS}; refusing to swap classes silently")
        self.name = name
        try:
            self.preprocessing = Preprocessing.from_dict(checkpoint.get("preprocessing"))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{name}: {exc}; the checkpoint is damaged") from None
        self.temperature = read_temperature(checkpoint.get("temperature", 1.0), name=name)
        check_settings(self.preprocessing, self.temperature, name=name)
        for field, kind in (("tta", bool), ("metrics", dict), ("training", dict)):
            if field in checkpoint and not isinstance(checkpoint[field], kind):
                raise ModelError(f"{name}: {field} is a {type(checkpoint[field]).__name__}, not a {kind.__name__}; "
                                 "the checkpoint is damaged")
        self.tta = bool(checkpoint.get("tta", False))
        self.metrics: dict = checkpoint.get("metrics", {})
        self.training: dict = checkpoint.get("training", {})
        self.labels = labels
        self.device = torch.device(device)
        if is_ensemble(checkpoint):
            members = checkpoint.get("members")
            if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
                raise ModelError(f"{name}: the ensemble's members are not a list of checkpoints; "
                                 "the checkpoint is damaged")
            self.config = None
            self.members = [EmotionModel(m, name=f"{name} member {i}") for i, m in enumerate(members, start=1)]
            net = build_ensemble_net(self.members, self.preprocessing, name=name)
        else:
            self.config = net_config(checkpoint.get("config"), name=name)
            self.members = []
            net = self._network(checkpoint, name=name)
        self.net = net.to(self.device, memory_format=torch.channels_last)

    def _network(self, checkpoint: dict[str, Any], *, name: str) -> torch.nn.Module:
        """The checkpoint's one network, its weights checked, BatchNorm folded for inference."""
        if self.preprocessing.input_size != self.config.input_size:
            raise ModelError(f"{name}: preprocessing makes {self.preprocessing.input_size}-pixel faces, the network "
                             f"takes {self.config.input_size}; the checkpoint is damaged")
        net = EmotionNet(self.config)
        state = checkpoint.get("state_dict")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(f"{name}: the state_dict is not a dict of tensors; the checkpoint is damaged")
        try:
            net.load_state_dict(clean_state_dict(state))
        except RuntimeError as exc:
            raise ModelError(f"{name}: the weights do not fit the network its config describes "
                             f"({str(exc).splitlines()[-1].strip()}); the checkpoint is damaged") from None
        broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if broken:
            raise ModelError(f"{name}: NaN or infinite weights in {', '.join(broken[:3])}; the checkpoint is damaged")
        # Inference only: BatchNorm folded into the layers before it (same outputs, ~1.3x faster).
        return fold_batchnorm(net)

    def logits(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Uncalibrated logits (N, 7) for uint8 faces (N, 48, 48); ``tta`` averages with the mirror image."""
        check_batch_size(batch_size)  # a zero or negative one gave zero rows, silently
        faces = check_faces(faces, self.preprocessing.input_size)
        return batched_logits(self.net, faces, self.preprocessing, tta=self.tta if tta is None else tta,
                              batch_size=batch_size)

    def predict(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Calibrated probabilities (N, 7) in EMOTIONS order for uint8 faces (N, 48, 48)."""
        z = torch.as_tensor(self.logits(faces, tta=tta, batch_size=batch_size))
        return torch.softmax(z / self.temperature, dim=1).numpy()

    def __repr__(self) -> str:
        acc = self.metrics.get("PrivateTest", {}).get("accuracy")
        return f"EmotionModel(name={self.name!r}, private_test_accuracy={acc})"


@torch.inference_mode()
def batched_logits(net: torch.nn.Module, faces: np.ndarray, prep: Preprocessing, *, tta: bool = False,
                   batch_size: int = 512) -> np.ndarray:
    """Logits of an eval-mode network for uint8 faces (N, 48, 48), in batches.

    The single place where faces meet the network, for training-time validation and for serving
    alike, so both normalise identically. ``tta`` averages the logits of each face and its mirror.
    """
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(faces), batch_size):
        x = normalize(faces[start:start + batch_size], prep).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        z = net(x).float()
        if tta:
            z = (z + net(torch.flip(x, dims=[3])).float()) / 2
        out.append(z.cpu())
    if not out:
        return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
    return torch.cat(out).numpy()


