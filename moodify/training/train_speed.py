"""How fast a network trains here, and whether bf16 autocast pays on this CPU.

bf16 autocast is 2-3x faster than fp32 on CPUs with AMX, about even or better with AVX-512 BF16
alone, and many times *slower* on AVX2-only CPUs (oneDNN emulates it). CPU flags do not say which
of these a given machine is, so ``--amp auto`` times a few real training steps both ways.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..model.network import EmotionNet, NetConfig

WARMUP_STEPS = 2  # the first steps pick oneDNN kernels and allocate: not timed
TIMED_STEPS = 4


def step_rate(config: NetConfig, *, amp: bool, device: torch.device | str = "cpu", batch_size: int = 128,
              steps: int = TIMED_STEPS) -> float:
    """Training images per second of a fresh ``config`` network: forward, backward and an SGD step
    on random faces, channels_last, with or without bf16 autocast."""
    device = torch.device(device)
    # Its own random numbers: timing must not change the seeded run that follows.
    with torch.random.fork_rng(devices=[]):
        return _timed_steps(config, amp=amp, device=device, batch_size=batch_size, steps=steps)


def _timed_steps(config: NetConfig, *, amp: bool, device: torch.device, batch_size: int, steps: int) -> float:
    net = EmotionNet(config).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    size = config.input_size
    x = torch.randn(batch_size, 1, size, size, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(config.num_classes, (batch_size,), generator=generator).to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(WARMUP_STEPS):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def pick_amp(config: NetConfig, *, device: torch.device | str = "cpu", batch_size: int = 128) -> tuple[bool, dict]:
    """(use bf16 autocast?, {"fp32": img/s, "bf16": img/s}) measured on this CPU.

    bf16 must be at least 10% faster to be picked: below that the fp32 numerics are worth more
    than the time. (On CUDA there is nothing to measure: ``moodify train`` always uses bf16 there.)
    """
    rates = {"fp32": step_rate(config, amp=False, device=device, batch_size=batch_size),
             "bf16": step_rate(config, amp=True, device=device, batch_size=batch_size)}
    return rates["bf16"] > 1.1 * rates["fp32"], rates
