"""The shipped models by name, and the one loader: ``load_model(name_or_path, backend=...)``.

The registry sits above the backends: a name or a path becomes a checked checkpoint, which the
torch backend runs, or the onnxruntime backend runs after exporting it once into a cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ModelError
from .checkpoint import load_checkpoint, sha256_file

BACKENDS = ("torch", "onnx")
MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"
# Shipped models: name -> file in models/ and its sha256, checked on every load so a truncated
# download, a Git LFS pointer or a hand-edited file fails loudly instead of predicting nonsense.
# "default" is fast enough for live video and large batches on a laptop CPU; "accurate" is an
# ensemble of two larger networks, more accurate and about 12x slower (models/MODEL_CARD*.md).
REGISTRY: dict[str, dict[str, str]] = {
    "default": {"file": "moodify-fer2013-fast.pt", "summary": "fast",
                "sha256": "9589933e2ce592f227f2ffd583373fc3f9ba777173258a1caae9f48a0bf79622"},
    "accurate": {"file": "moodify-fer2013-ensemble.pt", "summary": "slower",
                 "sha256": "94925a7994b8b726900399a3683b9eba99a858e6f54f2e70643a78969df98ae7"},
}




def available_models() -> list[str]:
    """The names of the shipped models, the default first: what ``load_model(name)`` accepts."""
    return list(REGISTRY)


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


def rewrite_checkpoint(name_or_path: str | os.PathLike | None, update: Callable[[dict[str, Any]], None]) -> Path:
    """Load a checkpoint, let ``update`` change it in place, and save it back to the same file.

    Its sha256 changes with it: a shipped model's ``REGISTRY`` entry must be updated to match.
    """
    path, _, _ = resolve_model_path(name_or_path)
    checkpoint = load_checkpoint(path)
    update(checkpoint)
    torch.save(checkpoint, path)
    return path


def load_model(name_or_path: str | os.PathLike | None = None, *, device: str = "cpu", backend: str = "torch",
               threads: int | None = None):
    """The shipped default model, a registry name, or a checkpoint file, ready to ``predict``.

    ``backend="onnx"`` runs the same network through onnxruntime (``moodify.model.onnx_backend``):
    a checkpoint is exported once into a cache keyed by its sha256. A .onnx file (``moodify
    export``) always runs through onnxruntime, whatever ``backend`` says: torch cannot read one.
    The onnx backend runs on the CPU only: any other ``device`` is refused rather than ignored.
    ``threads``: onnxruntime's intra-op threads (default: its own choice). Every model returned
    satisfies ``moodify.model.base.EmotionClassifier``.
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}: use torch or onnx")
    if backend == "onnx" or (name_or_path is not None and str(name_or_path).lower().endswith(".onnx")):
        from .onnx_backend import OnnxEmotionModel, cached_export

        if torch.device(device).type != "cpu":
            raise ModelError(f"the onnx backend runs on the CPU only, not {device!r}; "
                             "use backend='torch' (--backend torch) for a GPU")
        if name_or_path is not None and str(name_or_path).lower().endswith(".onnx"):
            return OnnxEmotionModel(Path(name_or_path).expanduser(), threads=threads)
        path, name, expected = resolve_model_path(name_or_path)
        checkpoint = load_checkpoint(path, expected_sha256=expected)
        return cached_export(checkpoint, name=name, sha256=expected or sha256_file(path), threads=threads)
    from .torch_backend import EmotionModel

    path, name, sha = resolve_model_path(name_or_path)
    return EmotionModel(load_checkpoint(path, expected_sha256=sha), name=name, device=device)
