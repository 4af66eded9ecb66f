"""Speed of each shipped model's ``predict``, against the accuracy issue's speed floor.

    python benchmarks/bench_model.py                       # every model in the registry, torch and onnx
    python benchmarks/bench_model.py --models default --backends torch

Target for the default model: at least 1,000 faces/s at batch 256 and at most 3 ms per call at
batch 1, on the 2-core CPU, with what ``predict`` does by default (its TTA setting included).
Figures are from ``model.predict`` on random 48x48 uint8 faces: preprocessing, the network and the
calibrated softmax. The load average is printed, since a busy machine lowers the figures a lot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def faces_per_second(model, faces: np.ndarray, seconds: float) -> float:
    model.predict(faces, batch_size=len(faces))  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.predict(faces, batch_size=len(faces))
        done += len(faces)
    return done / (time.perf_counter() - t0)


def latency_ms(model, face: np.ndarray, calls: int) -> tuple[float, float]:
    """Median and 95th-percentile milliseconds of one ``predict`` call on one face."""
    for _ in range(20):
        model.predict(face)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        model.predict(face)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated registry names or paths (default: all shipped)")
    p.add_argument("--backends", default="torch,onnx", help="comma-separated backends")
    p.add_argument("--seconds", type=float, default=5.0, help="timing window for the batch-256 figure")
    p.add_argument("--calls", type=int, default=500, help="batch-1 calls to time")
    args = p.parse_args()

    import torch

    from moodify.model.registry import REGISTRY, load_model

    names = args.models.split(",") if args.models else list(REGISTRY)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (256, 48, 48), dtype=np.uint8)
    print(f"CPU cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'model':<10} {'backend':<8} {'TTA':<4} {'params':>8} {'batch 256 faces/s':>18} "
          f"{'batch 1 ms (median / p95)':>26}")
    for name in names:
        params = sum(p.numel() for p in load_model(name).net.parameters())  # the onnx model has no torch net
        for backend in args.backends.split(","):
            model = load_model(name, backend=backend)
            rate = faces_per_second(model, batch, args.seconds)
            median, p95 = latency_ms(model, batch[:1], args.calls)
            print(f"{name:<10} {backend:<8} {'on' if model.tta else 'off':<4} {params / 1e6:>7.2f}M {rate:>18,.0f} "
                  f"{median:>15.2f} / {p95:.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
