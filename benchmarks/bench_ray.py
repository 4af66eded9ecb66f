"""``moodify batch --ray`` against ``moodify batch``, on one machine, against the targets in the Ray issue.

    python benchmarks/bench_ray.py                  # both parts (a few minutes on 2 cores)
    python benchmarks/bench_ray.py --skip-memory    # just the throughput figures

1. throughput on 256x256 photos with one face each (decode + YuNet + crop + classify, onnx), in the
   same run: ``moodify batch`` (``run_batch``, 2 worker processes) and ``--ray`` (``run_ray``, a local
   Ray with an actor per core); target: Ray >= 0.8x. Both figures leave start-up out (the batch
   workers' and the actors' model loads), as each command's own summary line does; the wall time of
   each whole run, start-up included, is printed beside them.
2. memory over 100,000 inputs (a list file; 1 in 20 a real 48x48 face, the rest missing files, which
   are cheap error rows, so the run is about bookkeeping and streaming): the memory of the whole
   process tree (the driver, Ray's GCS and raylet, the actors) must stay flat as the count grows.
   Memory is the sum of each process's PSS, so Ray's shared object store is counted once.

Ray's overhead matters most on few cores; the load average is printed with the figures, since other
work on the machine lowers both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

from bench_batch import make_crops, make_photos, write_listing  # noqa: E402  (the same self-made inputs as bench_batch)


def throughput(photos: Path, tmp: Path, workers: int, rounds: int) -> dict[str, list[tuple[float, float, int]]]:
    """Per round, for batch and for --ray (alternating, so a burst of other work hits both alike):
    images/s (start-up left out), wall seconds (start-up included), faces."""
    from moodify import load_model
    from moodify.batch import run_batch
    from moodify.batch.ray import run_ray

    results: dict[str, list] = {"moodify batch": [], "moodify batch --ray": []}
    for _ in range(rounds):
        t = time.perf_counter()
        model = load_model(backend="onnx")
        s = run_batch([str(photos)], tmp / "batch.parquet", model=model, workers=workers, overwrite=True,
                      progress=False)
        results["moodify batch"].append((s.processed / s.seconds, time.perf_counter() - t, s.counts.faces))
        t = time.perf_counter()
        s = run_ray([str(photos)], tmp / "ray-out", workers=workers, overwrite=True, progress=False)
        results["moodify batch --ray"].append((s.processed / s.seconds, time.perf_counter() - t, s.counts.faces))
    return results


def _tree_memory_mib(pid: int) -> tuple[float, float, int]:
    """(sum of PSS, sum of RSS) in MiB over ``pid`` and its descendants, and how many processes."""
    import psutil

    try:
        procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0
    pss = rss = 0.0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as fh:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in fh if line.split()[-1:] == ["kB"]}
            pss += fields.get("Pss", 0) / 1024
            rss += fields.get("Rss", 0) / 1024
        except (OSError, ValueError, IndexError):
            pass
    return pss, rss, len(procs)


def memory_run(tmp: Path, crops: Path, n_inputs: int, real_every: int, workers: int, marks: list[int]):
    """The CLI over a list of n_inputs paths; (inputs done, tree PSS, tree RSS, processes) at each mark."""
    import pyarrow.parquet as pq

    listing = write_listing(tmp / "inputs.txt", crops, n_inputs, real_every)
    out = tmp / "memory-out"
    chunk = max(1, n_inputs // 40)
    cmd = [sys.executable, "-m", "moodify", "batch", str(listing), "-o", str(out), "--ray", "--pre-cropped",
           "--overwrite", "--workers", str(workers), "--chunk-size", str(chunk), "--quiet"]
    log = open(tmp / "memory-run.log", "wb")  # the run names its 95,000 unreadable inputs: not here
    proc = subprocess.Popen(cmd, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}, stderr=log)
    samples, peak, counted, done = [], (0.0, 0.0, 0), set(), 0
    while proc.poll() is None:
        pss, rss, n = _tree_memory_mib(proc.pid)
        if pss > peak[0]:
            peak = (pss, rss, n)
        for part in out.glob("part-*.parquet"):
            if part not in counted:
                counted.add(part)
                done += len(set(pq.read_table(part, columns=["path"]).column("path").to_pylist()))
        while marks and done >= marks[0]:
            samples.append((marks.pop(0), done, pss, *peak))  # now, and the peak so far, at this count
        time.sleep(0.25)
    log.close()
    if proc.returncode not in (0, 3):  # 3: some inputs unreadable, as meant here
        raise RuntimeError(f"memory run failed with exit status {proc.returncode}: "
                           + (tmp / "memory-run.log").read_text(errors="replace")[-2000:])
    rows = pq.read_table(out).num_rows
    samples += [(mark, rows, None, *peak) for mark in marks]  # the marks the last poll did not reach: the end
    return samples, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=3000, help="256x256 one-face photos to time")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds (each: batch, then --ray)")
    p.add_argument("--workers", type=int, default=2, help="batch worker processes and Ray actors (one per core)")
    p.add_argument("--memory-inputs", type=int, default=100_000, help="inputs in the memory run")
    p.add_argument("--real-every", type=int, default=20, help="memory run: every k-th input is a real face")
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args()

    print(f"CPU cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_photos(tmp / "photos", args.photos)
        results = throughput(tmp / "photos", tmp, args.workers, args.rounds)
        print(f"\n{args.photos:,} 256x256 photos, one face each, YuNet, onnx, {args.workers} workers/actors, "
              f"{args.rounds} rounds (batch, then --ray, in each):")
        for name, runs in results.items():
            for k, (rate, wall, faces) in enumerate(runs, start=1):
                print(f"  {name:<20} round {k}: {rate:7.1f} images/s (start-up left out); {wall:5.1f} s wall with "
                      f"start-up; faces {faces:,}/{args.photos:,}")
        ratios = [r[0] / b[0] for r, b in zip(results["moodify batch --ray"], results["moodify batch"])]
        print("  --ray / batch, round by round: " + ", ".join(f"{x:.2f}x" for x in ratios) + " (target >= 0.8x)")
        if not args.skip_memory:
            make_crops(tmp / "crops", 500)
            n = args.memory_inputs
            samples, rows = memory_run(tmp, tmp / "crops", n, args.real_every, args.workers,
                                       [n // 4, n // 2, 3 * n // 4, n])
            print(f"\nmemory over {n:,} inputs (1 in {args.real_every} a real 48x48 face), --ray --pre-cropped, "
                  "the whole process tree (driver, GCS, raylet, actors):")
            for mark, done, now, pss, rss, procs in samples:
                at = f"PSS now {now:7.1f} MiB, " if now is not None else "at the end:         "
                print(f"  by {mark:>7,} inputs ({done:,} done): {at}peak so far PSS {pss:7.1f} MiB "
                      f"(RSS {rss:7.1f} MiB), {procs} processes")
            print(f"  rows written: {rows:,}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
