"""The checkpoint format: a plain dict (never a pickled module), written, checked and read here.

A checkpoint holds the network config, the state_dict, the label names in order, the
preprocessing, the calibration temperature, the flip-TTA default, metrics and how it was trained.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..labels import EMOTIONS
from ..pipeline.preprocess import MAX_INPUT_SIZE, Preprocessing
from .network import NetConfig

FORMAT_VERSION = 1


def net_config(config: Any, *, name: str) -> NetConfig:
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
              and int(net.input_size) // 2 ** len(widths) >= 1 and int(net.input_size) <= MAX_INPUT_SIZE
              and max(widths) <= 4096 and int(net.hidden) <= 65536 and len(widths) <= 16)
    except (TypeError, ValueError, OverflowError):
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


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a checkpoint through a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


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
    if not isinstance(checkpoint, dict) or ("state_dict" not in checkpoint and "members" not in checkpoint):
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
