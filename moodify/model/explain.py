"""Where the network looks: Grad-CAM saliency maps for 48x48 faces, and overlays to show them.

Grad-CAM (Selvaraju et al., ICCV 2017) weighs each channel of a conv layer's output by the mean
gradient of a class score over that channel, sums, and keeps the positive part: regions whose
features raise the score. On EmotionNet the last conv block is 6x6, so a map is coarse by design.

>>> model = moodify.load_model()
>>> maps = gradcam(model, faces)            # (N, 48, 48) in [0, 1], for the predicted class
>>> bgr = overlay(faces[0], maps[0], size=192)
"""

from __future__ import annotations

import threading
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..labels import EMOTIONS
from ..pipeline.preprocess import normalize
from .base import check_faces
from .torch_backend import EmotionModel

# Hooks live on the shared network: two threads (say, two Streamlit sessions) explaining at once
# would see each other's activations, so one explanation runs at a time; and a hook keeps only
# what its own thread's forward pass produced, so a ``predict`` on another thread (the webcam's,
# another session's upload) running through the same network cannot slip its output in.
_LOCK = threading.Lock()


def default_layers(net: nn.Module) -> list[nn.Module]:
    """``default_layer`` of the network, or of each member of an ensemble (whose maps are averaged)."""
    return [default_layer(m) for m in _members(net)]


def _members(net: nn.Module) -> list[nn.Module]:
    """An ensemble's member networks, or the network itself."""
    members = getattr(net, "members", None)
    return list(members) if members is not None else [net]


def default_layer(net: nn.Module) -> nn.Module:
    """The last ReLU of ``net.features``: the output of the deepest conv block, before its pooling."""
    return _relus(net)[-1]


def fallback_layer(net: nn.Module) -> nn.Module | None:
    """The ReLU before ``default_layer``: for EmotionNet the deepest block's first conv, the same 6x6 grid.

    At the last ReLU no region raises the score of about one face in five for ``default`` (the
    channel weights there sum negative everywhere: 119 of 600 PublicTest faces, the astronaut
    among them), and one in fifteen for ``accurate``; one conv earlier, none of the 600 is empty.
    """
    relus = _relus(net)
    return relus[-2] if len(relus) > 1 else None


def _relus(net: nn.Module) -> list[nn.Module]:
    relus = [m for m in net.features if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("the network has no ReLU in .features to take Grad-CAM activations from")
    return relus


def gradcam(model: EmotionModel, faces: np.ndarray, target: int | str | Sequence[int | str] | None = None, *,
            layer: nn.Module | None = None, tta: bool | None = None, batch_size: int = 64) -> np.ndarray:
    """Grad-CAM maps (N, 48, 48) float32 in [0, 1] for uint8 faces (N, 48, 48) or one face (48, 48).

    ``target``: the class to explain, as an index or an emotion name, one for all faces or one per
    face; default, the class ``model.predict`` gives (what a user is shown). ``layer``: the module
    whose output is explained (default ``default_layer``, and for a face whose map is empty there,
    ``fallback_layer``). ``tta``: also explain the mirrored face
    and mirror its map back, averaging both, as flip TTA averages logits (default ``model.tta``).
    Each map is scaled so its maximum is 1; a face where no region raises the score maps to all 0.
    The model is left as it was: eval mode, no gradients stored on its parameters.
    """
    faces = check_faces(faces, model.preprocessing.input_size)
    targets = _targets(model, faces, target)
    tta = model.tta if tta is None else tta
    # An ensemble's score depends on every member: each member's map (the gradient of the
    # ensemble's score at that member's deepest block) is taken, and their mean shown.
    if layer is not None:
        layers, fallbacks = [layer], [None]
    else:
        layers, fallbacks = default_layers(model.net), [fallback_layer(m) for m in _members(model.net)]
    out = np.zeros(faces.shape, dtype=np.float32)

    def one_map(each: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cam = _gradcam_batch(model.net, each, x, y)
        if tta:
            cam = (cam + torch.flip(_gradcam_batch(model.net, each, torch.flip(x, dims=[3]), y), dims=[2])) / 2
        return _unit_max(cam)

    # The caller may be inside inference_mode or no_grad (batched_logits is); a saliency map needs
    # a graph, and tensors made under inference_mode cannot join one, so switch both off first.
    with _LOCK, torch.inference_mode(False), torch.enable_grad():
        for start in range(0, len(faces), batch_size):
            x = normalize(faces[start:start + batch_size], model.preprocessing)
            y = torch.as_tensor(targets[start:start + batch_size])
            cam = 0
            for each, fallback in zip(layers, fallbacks):
                one = one_map(each, x, y)
                empty = one.amax(dim=(1, 2)) == 0
                if fallback is not None and bool(empty.any()):
                    one[empty] = one_map(fallback, x[empty], y[empty])
                cam = cam + one / len(layers)
            out[start:start + batch_size] = _unit_max(cam).numpy()
    return out


def overlay(face: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.6, size: int | None = None,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """A BGR uint8 picture of a grayscale face with ``heatmap`` (values in [0, 1]) painted over it.

    Colour is blended in proportion to the heat, so cold regions show the plain face; ``alpha`` is
    the colour's weight where the heat is 1. ``size`` upscales both first (48 px is small on screen).
    """
    face = np.asarray(face)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if face.ndim != 2 or face.dtype != np.uint8:
        raise ValueError(f"face must be a grayscale uint8 (H, W) array, got {face.dtype} {face.shape}")
    if heat.shape != face.shape:
        raise ValueError(f"heatmap shape {heat.shape} differs from the face's {face.shape}")
    if size is not None:
        face = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        heat = np.clip(cv2.resize(heat, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)
    color = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), colormap).astype(np.float32)
    gray = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR).astype(np.float32)
    weight = (alpha * heat)[..., None]
    return np.round(gray * (1 - weight) + color * weight).astype(np.uint8)


def _targets(model: EmotionModel, faces: np.ndarray, target) -> np.ndarray:
    """Class index per face from ``target`` (None, index, name, or a sequence of these)."""
    if target is None:
        return model.predict(faces).argmax(axis=1)
    items = [target] * len(faces) if isinstance(target, (int, np.integer, str)) else list(target)
    if len(items) != len(faces):
        raise ValueError(f"{len(items)} targets for {len(faces)} faces")
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in EMOTIONS:
                raise ValueError(f"unknown emotion {item!r}: use one of {', '.join(EMOTIONS)}")
            item = EMOTIONS.index(item)
        if not 0 <= int(item) < len(EMOTIONS):
            raise ValueError(f"target {item} is not a class index 0..{len(EMOTIONS) - 1}")
        out.append(int(item))
    return np.array(out, dtype=np.int64)


def _gradcam_batch(net: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unnormalised Grad-CAM (N, H, W) at the input resolution for a normalised batch ``x``
    (call with gradients enabled and inference mode off)."""
    captured: list[torch.Tensor] = []
    me = threading.get_ident()

    def keep(_module, _inputs, output) -> None:
        if threading.get_ident() == me:
            captured.append(output)

    handle = layer.register_forward_hook(keep)
    device = next(net.parameters()).device
    try:
        x = x.to(device).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        logits = net(x)
        score = logits.gather(1, targets.to(device)[:, None]).sum()
        # autograd.grad, not backward(): nothing accumulates in the parameters' .grad.
        (grads,) = torch.autograd.grad(score, captured[-1])
    finally:
        handle.remove()
    acts = captured[-1].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return cam[:, 0].float().cpu()


def _unit_max(cam: torch.Tensor) -> torch.Tensor:
    """Scale each map to a maximum of 1 (all-zero maps stay zero)."""
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam)).clamp_(0, 1)
