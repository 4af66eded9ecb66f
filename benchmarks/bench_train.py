"""Training speed of the project's networks here, fp32 against bf16 autocast: what ``--amp auto`` measures.

    python benchmarks/bench_train.py                 # the shipped sizes and a 7M net, batch 128, 2 threads
    python benchmarks/bench_train.py --steps 20 --threads 4

Figures are training images per second (forward, backward, SGD step, channels_last) on random faces,
so they leave out data loading and augmentation (a few percent of an epoch). The load average is
printed: a busy machine lowers them a lot. An epoch of FER2013 is 28,709 images.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moodify.model.network import NetConfig  # noqa: E402
from moodify.training.train_speed import step_rate  # noqa: E402

NETS = {  # name: (widths, hidden)
    "default (0.59M)": ([16, 32, 64, 128], 256),
    "accurate (1.77M)": ([32, 64, 128, 256], 256),
    "wide (7M)": ([64, 128, 256, 512], 512),
}
FER2013_TRAINING = 28_709


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per figure")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags.split()]
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}; "
          f"native bf16: {', '.join(native) or 'none (AVX2: bf16 is emulated)'}; load average {os.getloadavg()[0]:.1f}")
    print(f"| network | fp32 img/s | bf16 img/s | bf16 / fp32 | minutes per FER2013 epoch (faster) |")
    print("| --- | --- | --- | --- | --- |")
    for name, (widths, hidden) in NETS.items():
        config = NetConfig(widths=widths, hidden=hidden)
        fp32 = step_rate(config, amp=False, batch_size=args.batch_size, steps=args.steps)
        bf16 = step_rate(config, amp=True, batch_size=args.batch_size, steps=args.steps)
        minutes = FER2013_TRAINING / max(fp32, bf16) / 60
        print(f"| {name} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f}x | {minutes:.1f} |", flush=True)


if __name__ == "__main__":
    main()
