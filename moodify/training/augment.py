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

import cv2
import numpy as np
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


@dataclass
class PhotoConfig:
    """What real photos do to a face that FER2013's web crops rarely show, each drawn per face.

    ``p``: probability of each effect (0 turns them all off). Ranges are on the 0..255 scale.
    Applied to uint8 faces before normalisation, in the order a photo goes through: exposure and
    tone, lens blur, sensor noise, JPEG, then the face being small in the picture (the crop then
    enlarges it, so it arrives soft at 48 px).
    """

    p: float = 0.0
    gamma: float = 1.5  # gamma drawn log-uniformly in [1/1.5, 1.5]
    contrast: float = 0.3  # contrast factor in [0.7, 1.3] about the face's own mean
    brightness: float = 30.0  # added grey levels in [-30, 30]
    blur_sigma: tuple[float, float] = (0.3, 1.0)  # Gaussian blur, pixels at 48 px
    noise_std: tuple[float, float] = (2.0, 8.0)  # Gaussian noise, grey levels
    jpeg_quality: tuple[int, int] = (25, 90)
    low_res: tuple[float, float] = (0.4, 0.85)  # shrunk to this fraction of the side, then enlarged back


def photo_augment(faces: np.ndarray, config: PhotoConfig, rng: np.random.Generator) -> np.ndarray:
    """A new uint8 batch (N, H, W): each face given its own tone, blur, noise, JPEG and low resolution.

    In NumPy and OpenCV on uint8, the form a face takes in the pipeline; ~10 ms a batch of 128,
    against ~300 ms for the same effects through kornia on 2 cores (its differentiable JPEG alone 1 s).
    """
    if config.p <= 0 or len(faces) == 0:
        return faces
    n, h, w = faces.shape
    hit = lambda: rng.random(n) < config.p  # noqa: E731 - one draw per face and effect
    x = faces.astype(np.float32)
    tone = hit()
    if tone.any():
        gamma = np.exp(rng.uniform(-np.log(config.gamma), np.log(config.gamma), n)).astype(np.float32)
        contrast = rng.uniform(1 - config.contrast, 1 + config.contrast, n).astype(np.float32)
        bright = rng.uniform(-config.brightness, config.brightness, n).astype(np.float32)
        t = x[tone]
        t = 255.0 * (t / 255.0) ** gamma[tone, None, None]
        mean = t.mean(axis=(1, 2), keepdims=True)
        x[tone] = (t - mean) * contrast[tone, None, None] + mean + bright[tone, None, None]
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    blur, noise, jpeg, small = hit(), hit(), hit(), hit()
    sigma = rng.uniform(*config.blur_sigma, n)
    noise_std = rng.uniform(*config.noise_std, n)
    quality = rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1, n)
    shrink = rng.uniform(*config.low_res, n)
    for i in np.flatnonzero(blur | noise | jpeg | small):
        face = out[i]
        if blur[i] and sigma[i] >= 0.1:  # below that the kernel is one pixel: no blur
            face = cv2.GaussianBlur(face, (0, 0), sigma[i])
        if noise[i]:
            face = np.clip(face + rng.normal(0, noise_std[i], face.shape), 0, 255).astype(np.uint8)
        if jpeg[i]:
            ok, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
            face = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if ok else face
        if small[i]:
            side = max(4, int(round(h * shrink[i])))
            face = cv2.resize(cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA), (w, h),
                              interpolation=cv2.INTER_LINEAR)
        out[i] = face
    return out
