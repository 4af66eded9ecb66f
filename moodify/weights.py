"""Checkpoints (plain dicts, never pickled modules), the shipped-model registry and ``load_model``."""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .labels import EMOTIONS
from .network import EmotionNet, NetConfig, fold_batchnorm
from .preprocess import Preprocessing, normalize

FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# Shipped models: name -> file in models/ and its sha256, checked on every load so a truncated
# download, a Git LFS pointer or a hand-edited file fails loudly instead of predicting nonsense.
# "default" is fast enough for live video and large batches on a laptop CPU; "accurate" is a
# larger network, slightly more accurate and several times slower (models/MODEL_CARD*.md).
REGISTRY: dict[str, dict[str, str]] = {
    "default": {"file": "moodify-fer2013-fast.pt", "sha256": "2188a3f9d0d3c9380446e3a93293004c13fef51442a6557caffa988296f6e9ac"},
    "accurate": {"file": "moodify-fer2013.pt", "sha256": "47a8265f42bd5988f0cd56d956fc5e7a8eb62d9e79d887052f5b4099577276a9"},
}


class ModelError(Exception):
    """A model that cannot be loaded: unknown name, missing or corrupt file, wrong labels.

    The message is always one line (a library's multi-line explanation is joined into it).
    """

    def __init__(self, message: str):
        super().__init__(" ".join(line.strip() for line in str(message).splitlines() if line.strip()))


def check_settings(prep: Preprocessing, temperature: float, *, name: str) -> None:
    """Refuse preprocessing or a calibration temperature that would make every prediction wrong or NaN."""
    numbers = {"temperature": temperature, "mean": prep.mean, "std": prep.std, "framing scale": prep.framing.scale,
               "framing shift_x": prep.framing.shift_x, "framing shift_y": prep.framing.shift_y}
    for what, value in numbers.items():
        if not np.isfinite(value):
            raise ModelError(f"{name}: {what} is {value}; the checkpoint is damaged")
    for what in ("temperature", "std", "framing scale"):
        if numbers[what] <= 0:
            raise ModelError(f"{name}: {what} must be positive, got {numbers[what]}; the checkpoint is damaged")
    if prep.input_size < 8:
        raise ModelError(f"{name}: input_size {prep.input_size} is not a usable face size; the checkpoint is damaged")


def _net_config(config: Any, *, name: str) -> NetConfig:
    """A NetConfig from a checkpoint's dict, refusing unknown keys and values no network can have."""
    known = {f.name for f in fields(NetConfig)}
    if not isinstance(config, dict):
        raise ModelError(f"{name}: the checkpoint has no network config; it is not a Moodify checkpoint")
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelError(f"{name}: unknown network config key(s) {', '.join(map(str, unknown))}; "
                         "made by a newer Moodify, or damaged")
    try:
        net = NetConfig(**config)
        widths = [int(w) for w in net.widths]
        ok = (widths and min(widths) > 0 and int(net.convs_per_block) > 0 and int(net.hidden) > 0
              and int(net.num_classes) == len(EMOTIONS) and 0 <= float(net.dropout) < 1
              and int(net.input_size) // 2 ** len(widths) >= 1)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelError(f"{name}: network config {config} describes no usable network; the checkpoint is damaged")
    return net


def make_checkpoint(net: torch.nn.Module, config: NetConfig, prep: Preprocessing, *, temperature: float = 1.0,
                    tta: bool = False, metrics: dict | None = None, training: dict | None = None) -> dict[str, Any]:
    """The checkpoint dict for a trained network: everything needed to use it, nothing pickled."""
    return {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in clean_state_dict(net.state_dict()).items()},
        "labels": list(EMOTIONS),
        "preprocessing": prep.to_dict(),
        "temperature": float(temperature),
        "tta": bool(tta),
        "metrics": metrics or {},
        "training": training or {},
    }


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the ``module.`` (DDP/EMA) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EmotionModel:
    """A loaded network with its preprocessing, label order and calibration temperature."""

    def __init__(self, checkpoint: dict[str, Any], *, name: str = "custom", device: str | torch.device = "cpu"):
        if checkpoint.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{name}: checkpoint format {checkpoint.get('format_version')!r}, "
                             f"this Moodify reads {FORMAT_VERSION}")
        labels = tuple(checkpoint.get("labels", ()))
        if labels != EMOTIONS:
            raise ModelError(f"{name}: label order {labels} differs from {EMOTIONS}; refusing to swap classes silently")
        self.name = name
        self.config = _net_config(checkpoint.get("config"), name=name)
        try:
            self.preprocessing = Preprocessing.from_dict(checkpoint["preprocessing"])
            self.temperature = float(checkpoint.get("temperature", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{name}: preprocessing or temperature missing or malformed ({type(exc).__name__}: "
                             f"{exc}); the checkpoint is damaged") from None
        check_settings(self.preprocessing, self.temperature, name=name)
        if self.preprocessing.input_size != self.config.input_size:
            raise ModelError(f"{name}: preprocessing makes {self.preprocessing.input_size}-pixel faces, the network "
                             f"takes {self.config.input_size}; the checkpoint is damaged")
        self.tta = bool(checkpoint.get("tta", False))
        self.metrics: dict = checkpoint.get("metrics", {})
        self.training: dict = checkpoint.get("training", {})
        self.labels = labels
        self.device = torch.device(device)
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
        self.net = fold_batchnorm(net).to(self.device, memory_format=torch.channels_last)

    def logits(self, faces: np.ndarray, *, tta: bool | None = None, batch_size: int = 512) -> np.ndarray:
        """Uncalibrated logits (N, 7) for uint8 faces (N, 48, 48); ``tta`` averages with the mirror image."""
        faces = _check_faces(faces, self.preprocessing.input_size)
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


def _check_faces(faces: np.ndarray, size: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.ndim != 3 or faces.shape[1:] != (size, size):
        raise ValueError(f"faces must be a uint8 array of shape (N, {size}, {size}), got {faces.shape}")
    if faces.dtype != np.uint8:
        raise ValueError(f"faces must be uint8 (0..255), got {faces.dtype}")
    return faces


def resolve_model_path(name_or_path: str | os.PathLike | None) -> tuple[Path, str, str | None]:
    """(file, display name, expected sha256 or None) for a registry name or a checkpoint path."""
    key = "default" if name_or_path is None else str(name_or_path)
    if key in REGISTRY:
        entry = REGISTRY[key]
        return MODELS_DIR / entry["file"], key, entry["sha256"] or None
    path = Path(key).expanduser()
    if path.suffix in (".pt", ".pth") or path.exists():
        return path, path.name, None
    raise ModelError(f"unknown model {key!r}: use one of {sorted(REGISTRY)} or a checkpoint path")


def load_checkpoint(path: str | os.PathLike, *, expected_sha256: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; verify its sha256 when one is expected."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelError(f"{path}: sha256 {actual} does not match the registry ({expected_sha256}); "
                             "the file is corrupt or was replaced (a Git LFS pointer?)")
    _check_zip_crcs(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean "not a checkpoint"
        # Never pass on torch's hint to retry with weights_only=False: that runs whatever code the file holds.
        hint = ("weights_only", "Weights only", "torch.load", "file an issue")
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = [line for line in lines if not any(h in line for h in hint)]
        if isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower():
            raise ModelError(f"{path}: not a Moodify checkpoint: it holds Python objects other than plain data "
                             "(a pickled class or code), which a Moodify checkpoint never does; refused unread") from None
        first = (detail or [""])[0].removeprefix("WeightsUnpickler error:").strip()
        raise ModelError(f"{path}: not a readable Moodify checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ModelError(f"{path}: not a Moodify checkpoint (no state_dict)")
    return checkpoint


def _check_zip_crcs(path: Path) -> None:
    """torch.load does not check the CRCs of its zip archive, so one flipped byte in a weight
    loads silently and predicts nonsense; Python's zipfile does check them."""
    if not zipfile.is_zipfile(path):
        return  # not torch's zip format: torch.load says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelError(f"{path}: damaged checkpoint file ({exc})") from None
    if bad is not None:
        raise ModelError(f"{path}: damaged checkpoint file (checksum mismatch in {bad}); download or copy it again")


def rewrite_checkpoint(name_or_path: str | os.PathLike | None, update: Callable[[dict[str, Any]], None]) -> Path:
    """Load a checkpoint, let ``update`` change it in place, and save it back to the same file.

    Its sha256 changes with it: a shipped model's ``REGISTRY`` entry must be updated to match.
    """
    path, _, _ = resolve_model_path(name_or_path)
    checkpoint = load_checkpoint(path)
    update(checkpoint)
    torch.save(checkpoint, path)
    return path


def load_model(name_or_path: str | os.PathLike | None = None, *, device: str = "cpu", backend: str = "torch"):
    """The shipped default model, a registry name, or a checkpoint file, ready to ``predict``.

    ``backend="onnx"`` runs the same network through onnxruntime (``moodify.onnx_backend``): a
    checkpoint is exported once into a cache keyed by its sha256. A .onnx file (``moodify export``)
    always runs through onnxruntime, whatever ``backend`` says: torch cannot read one. The onnx
    backend runs on the CPU only: any other ``device`` is refused rather than ignored.
    """
    if backend not in ("torch", "onnx"):
        raise ModelError(f"unknown backend {backend!r}: use torch or onnx")
    if backend == "onnx" or (name_or_path is not None and str(name_or_path).lower().endswith(".onnx")):
        from .onnx_backend import load_onnx_model

        if torch.device(device).type != "cpu":
            raise ModelError(f"the onnx backend runs on the CPU only, not {device!r}; "
                             "use backend='torch' (--backend torch) for a GPU")
        return load_onnx_model(name_or_path)
    path, name, sha = resolve_model_path(name_or_path)
    return EmotionModel(load_checkpoint(path, expected_sha256=sha), name=name, device=device)
