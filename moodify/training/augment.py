"""Training augmentation on whole batches of tensors, with independent randomness per face.

torchvision's v2 transforms draw one set of parameters per call, so on a batch every face
would get the same shift and rotation. Here each face gets its own affine warp (shift, scale,
rotation and horizontal flip folded into one matrix, applied by a single ``grid_sample``) and
its own erased rectangle, all vectorised: one call per batch, in the main process, which is
what keeps a 2-core CPU busy with training instead of with Python loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    shift: float = 0.1  # max translation, fraction of the image side (0.1 of 48 px ~ 5 px)
    scale: float = 0.1  # max zoom in/out, fraction (0.9x .. 1.1x)
    rotate: float = 10.0  # max rotation, degrees
    flip: bool = True  # mirror half the faces: expressions are left-right symmetric
    erase_p: float = 0.5  # probability of erasing one rectangle per face
    erase_area: tuple[float, float] = (0.02, 0.15)  # erased fraction of the image area


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly warp and erase a batch of images ``x`` (N, C, H, W), float; returns a new tensor."""
    n = x.shape[0]
    dev = x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=dev) * (high - low) + low

    angle = uniform(-config.rotate, config.rotate) * (math.pi / 180)
    zoom = uniform(1 - config.scale, 1 + config.scale)
    flip = torch.ones(n, device=dev)
    if config.flip:
        flip = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -1.0, 1.0)
    # affine_grid maps output coords to input coords in [-1, 1]; shift of 2*s covers s of the side.
    tx = uniform(-config.shift, config.shift) * 2
    ty = uniform(-config.shift, config.shift) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], dim=1),
        torch.stack([sin * flip, cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    if config.erase_p > 0:
        h, w = x.shape[-2:]
        area = uniform(*config.erase_area) * h * w
        aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
        eh = torch.sqrt(area * aspect).clamp(1, h)
        ew = torch.sqrt(area / aspect).clamp(1, w)
        top = torch.rand(n, generator=generator, device=dev) * (h - eh)
        left = torch.rand(n, generator=generator, device=dev) * (w - ew)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
        active = torch.rand(n, generator=generator, device=dev) < config.erase_p
        mask = (inside & active.view(n, 1, 1)).unsqueeze(1)
        noise = torch.rand(out.shape, generator=generator, device=dev)
        out = torch.where(mask, noise, out)
    return out
