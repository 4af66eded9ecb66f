"""Throughput and memory of ``moodify batch``, against the targets in the batch issue.

    python benchmarks/bench_batch.py                  # everything (a few minutes on 2 cores)
    python benchmarks/bench_batch.py --skip-memory    # just the two throughput figures

1. pre-cropped 48x48 faces (decode + classify), target >= 2,000 faces/s;
2. full pipeline on 256x256 photos with one face each (decode + detect + crop + classify), with the CLI's
   detector (YuNet; ``--detector haar`` for the old one), target >= 250 images/s;
   and the same photos as a person list (issue 22: ``path,person,reference``, 10 photos a person, the
   first of each person its neutral reference): the cost of references is one more decode, detect and
   forward pass per reference photo, before the run;
3. memory over 100,000 inputs (a list file; most entries are missing files, which are cheap error
   rows, so the run is about bookkeeping and streaming): the resident memory must stay flat.

Each run goes through ``moodify.batch.run_batch`` exactly as the CLI does (durable commits
included); the model is loaded once beforehand, so start-up is not counted. The load average is
printed with the figures, since a busy machine (a training run) lowers them a lot.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def make_crops(folder: Path, n: int) -> None:
    """n distinct 48x48 grayscale PNG faces (the astronaut's face, jittered)."""
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        x, y, s = 150 + rng.integers(-15, 15), 40 + rng.integers(-15, 15), 150 + rng.integers(-20, 20)
        face = cv2.resize(gray[y:y + s, x:x + s], (48, 48), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"face{i:06d}.png"), cv2.convertScaleAbs(face, alpha=rng.uniform(0.8, 1.2)))


def make_photos(folder: Path, n: int) -> None:
    """n distinct 256x256 JPEG photos with one face each (the astronaut, shifted and re-lit)."""
    bgr = astronaut_bgr()
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dx, dy = rng.integers(-20, 20, size=2)
        shifted = cv2.warpAffine(bgr, np.float32([[1, 0, dx], [0, 1, dy]]), (512, 512), borderMode=cv2.BORDER_REFLECT)
        photo = cv2.resize(shifted, (256, 256), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"photo{i:06d}.jpg"), cv2.convertScaleAbs(photo, alpha=rng.uniform(0.85, 1.15)),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])


def throughput(inputs: Path, out: Path, model, *, pre_cropped: bool, workers: int, backend: str,
               detector: str = "yunet", scale_factor: float | None = None) -> tuple[float, int]:
    from moodify.batch import run_batch

    rate, faces, _ = timed_batch(inputs, out, model, pre_cropped=pre_cropped, workers=workers, backend=backend,
                                 detector_spec={"kind": detector} | (
                                     {"scale_factor": scale_factor} if scale_factor and detector == "haar" else {}))
    return rate, faces


def timed_batch(inputs: Path, out: Path, model, *, pre_cropped: bool, workers: int, backend: str,
                detector_spec: dict) -> tuple[float, int, float]:
    """(inputs/s of the run as batch reports it, faces found, inputs/s of the whole call's wall time)."""
    from moodify.batch import run_batch

    start = time.perf_counter()
    summary = run_batch([str(inputs)], out, model=model, backend=backend, pre_cropped=pre_cropped,
                        workers=workers, overwrite=True, progress=False, detector_spec=detector_spec)
    return summary.processed / summary.seconds, summary.counts.faces, summary.processed / (time.perf_counter() - start)


def person_list_throughput(photos: Path, out: Path, model, *, workers: int, backend: str, per_person: int = 10,
                           detector: str = "yunet", rounds: int = 3) -> tuple[float, float, float]:
    """The photos as a plain list and as a person list (the first photo of each person its reference):
    medians over ``rounds`` of (images/s of the person list's run, images/s of the wall time of each
    call: plain, person list)."""
    plain, people = out.parent / "plain.txt", out.parent / "people.csv"
    paths = sorted(photos.glob("*.jpg"))
    plain.write_text("".join(f"{path}\n" for path in paths))
    people.write_text("path,person,reference\n" + "".join(
        f"{path},p{i // per_person},{int(i % per_person == 0)}\n" for i, path in enumerate(paths)))
    spec, runs = {"kind": detector}, []
    for _ in range(rounds):  # alternating, so that a busy spell of the machine hits both
        _, _, plain_wall = timed_batch(plain, out, model, pre_cropped=False, workers=workers, backend=backend,
                                       detector_spec=spec)
        rate, _, people_wall = timed_batch(people, out, model, pre_cropped=False, workers=workers, backend=backend,
                                           detector_spec=spec)
        runs.append((rate, plain_wall, people_wall))
    return tuple(float(np.median(column)) for column in zip(*runs))


def classify_only(model, n: int = 2048) -> float:
    faces = np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8)
    model.predict(faces[:256], batch_size=256)
    t = time.perf_counter()
    model.predict(faces, batch_size=256)
    return n / (time.perf_counter() - t)


def write_listing(listing: Path, crops: Path, n_inputs: int, real_every: int) -> Path:
    """A batch input list of n_inputs paths: every real_every-th a real crop, the others missing files."""
    real = sorted(crops.glob("*.png"))
    with open(listing, "w") as fh:
        for i in range(n_inputs):
            fh.write(f"{real[i % len(real)]}\n" if i % real_every == 0 else f"missing/{i:07d}.png\n")
    return listing


def memory_run(tmp: Path, crops: Path, n_inputs: int, real_every: int, backend: str) -> list[tuple[int, float]]:
    """Run the CLI over a list of n_inputs paths; sample (inputs done, RSS MiB) as it goes."""
    import json

    listing = write_listing(tmp / "inputs.txt", crops, n_inputs, real_every)
    out = tmp / "memory.csv"
    progress = Path(str(out) + ".progress")
    cmd = [sys.executable, "-m", "moodify", "batch", str(listing), "-o", str(out), "--pre-cropped", "--overwrite",
           "--workers", "1", "--backend", backend, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=PROJECT)
    samples, next_mark = [], 0
    while proc.poll() is None:
        try:
            rss = int(next(line.split()[1] for line in open(f"/proc/{proc.pid}/status") if line.startswith("VmRSS"))) / 1024
            lines = progress.read_text().splitlines()
            done = json.loads(lines[-1])["counts"]["inputs"] if len(lines) > 1 else 0
        except (OSError, StopIteration, ValueError, KeyError):
            time.sleep(0.2)
            continue
        if done >= next_mark:
            samples.append((done, rss))
            next_mark = done + n_inputs // 10
        time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run failed with exit status {proc.returncode}")
    rows = sum(1 for _ in open(out)) - 1
    samples.append((rows, samples[-1][1] if samples else float("nan")))
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crops", type=int, default=3000, help="pre-cropped faces to time")
    p.add_argument("--photos", type=int, default=400, help="256x256 photos to time")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to try")
    p.add_argument("--backends", default="torch,onnx", help="comma-separated backends to try")
    p.add_argument("--memory-inputs", type=int, default=100_000, help="inputs in the memory run")
    p.add_argument("--real-every", type=int, default=20, help="memory run: every k-th input is a real face")
    p.add_argument("--detector", default="yunet", choices=["yunet", "haar"], help="face detector for the photos")
    p.add_argument("--scale-factor", type=float, default=None, help="Haar pyramid step for the photos (default: the CLI's)")
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args()

    import torch

    from moodify import load_model

    print(f"CPU cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_crops(tmp / "crops", args.crops)
        make_photos(tmp / "photos", args.photos)
        for backend in args.backends.split(","):
            model = load_model(backend=backend)
            print(f"\n[{backend}] classification alone, batch 256: {classify_only(model):,.0f} faces/s")
            for w in workers:
                rate, _ = throughput(tmp / "crops", tmp / "c.csv", model, pre_cropped=True, workers=w, backend=backend)
                print(f"[{backend}] pre-cropped 48x48, workers {w}: {rate:,.0f} faces/s (target 2,000)")
            for w in workers:
                rate, faces = throughput(tmp / "photos", tmp / "p.csv", model, pre_cropped=False, workers=w,
                                         backend=backend, detector=args.detector, scale_factor=args.scale_factor)
                print(f"[{backend}] 256x256 photos, {args.detector}, workers {w}: {rate:,.1f} images/s (target 250); "
                      f"faces found in {faces}/{args.photos}")
                rate, plain_wall, people_wall = person_list_throughput(tmp / "photos", tmp / "r.csv", model,
                                                                       workers=w, backend=backend,
                                                                       detector=args.detector)
                print(f"[{backend}] the same as a person list (10 a person, 1 reference each; median of 3), workers {w}: "
                      f"{rate:,.1f} images/s; whole call {people_wall:,.1f} against {plain_wall:,.1f} as a plain list "
                      "(the references are made first, in the main process)")
        if not args.skip_memory:
            samples = memory_run(tmp, tmp / "crops", args.memory_inputs, args.real_every, "onnx")
            print(f"\nmemory over {args.memory_inputs:,} inputs (1 in {args.real_every} a real face), RSS of the "
                  "batch process:")
            for done, rss in samples[:-1]:
                print(f"  after {done:>7,} inputs: {rss:7.1f} MiB")
            print(f"  rows written: {samples[-1][0]:,}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
