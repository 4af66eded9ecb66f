"""Train several networks at once (an ensemble's members), each resumable, then make their ensemble.

    python docs/train_members.py --data ../shared/data --out runs/members --epochs 60 --jobs 4
    python docs/train_members.py ... --member vgg-s4="--seed 4" --member wide-s3="--widths 48 96 192 384 --seed 3"

Each member is one ``moodify train`` process (``--device auto``: CUDA and bf16 where there is a GPU;
all processes share it) writing ``OUT/NAME/`` and ``OUT/NAME.log``. Running the same command again
continues every unfinished member from its last epoch (``--resume``) and leaves finished ones alone,
so a run cut off by a time limit loses at most an epoch per member. Options after ``--`` go to every
member. Then ``moodify ensemble`` of the finished members (``--half``) writes ``OUT/ensemble.pt``,
and ``OUT/summary.txt`` gives each member's and the ensemble's PublicTest accuracy (PrivateTest is
never read). docs/GPU.md is the recipe for a lent GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # moodify from this checkout, installed or not

# Members of the next `accurate` (issue "Model v2"): two seeds of the shipped 1.77M recipe, a wider and a
# deeper network. Each model.pt stays under 16 MiB in float32 (the device tool brings back no larger file).
MEMBERS = {
    "vgg-s2": "--seed 2",
    "vgg-s3": "--seed 3",
    "wide-s2": "--widths 48 96 192 384 --seed 2",
    "deep-s2": "--convs-per-block 3 --seed 2",
}
COMMON = "--ema-decay 0.998"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="FER2013 data root (holding fer2013/fer2013.csv.gz)")
    p.add_argument("--out", required=True, type=Path, help="folder for the members, their logs and the ensemble")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--jobs", type=int, default=len(MEMBERS), help="members trained at once")
    p.add_argument("--member", action="append", default=[], metavar="NAME=OPTIONS",
                   help="train this member instead of the built-in list (repeatable)")
    return p.parse_args(argv), extra


def members(args: argparse.Namespace) -> dict[str, str]:
    if not args.member:
        return dict(MEMBERS)
    chosen = {}
    for item in args.member:
        name, sep, options = item.partition("=")
        if not sep or not name or "/" in name:
            sys.exit(f"train_members: --member wants NAME=OPTIONS, got {item!r}")
        chosen[name] = options
    return chosen


def finished(folder: Path, epochs: int) -> bool:
    """The member's model.pt exists and its log reached the last epoch."""
    log = folder / "log.jsonl"
    if not (folder / "model.pt").exists() or not log.exists():
        return False
    lines = log.read_text().splitlines()
    return bool(lines) and json.loads(lines[-1])["epoch"] >= epochs


def command(name: str, options: str, args: argparse.Namespace, extra: list[str]) -> list[str]:
    folder = args.out / name
    cmd = [sys.executable, "-m", "moodify", "train", "--data", str(args.data), "--out", str(folder),
           "--epochs", str(args.epochs), *shlex.split(COMMON), *shlex.split(options), *extra]
    if (folder / "checkpoint.pt").exists():
        cmd.append("--resume")
    return cmd


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    todo = [(n, o) for n, o in members(args).items() if not finished(args.out / n, args.epochs)]  # exits on a bad --member
    running: list[tuple[str, subprocess.Popen, float]] = []  # name, process, start time
    failed = []
    start = time.time()
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            name, options = todo.pop(0)
            cmd = command(name, options, args, extra)
            print(f"start {name}: {shlex.join(cmd[2:])}", flush=True)
            with open(args.out / f"{name}.log", "a") as log:  # the child keeps its own copy of the handle
                running.append((name, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                                time.time()))
        time.sleep(0.5)
        for entry in list(running):
            name, proc, began = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            print(f"{'done' if proc.returncode == 0 else 'FAILED'} {name} in {time.time() - began:.0f} s "
                  f"(exit {proc.returncode}; log {args.out / (name + '.log')})", flush=True)
            if proc.returncode != 0:
                failed.append(name)
    wanted = members(args)
    done = [n for n in wanted if finished(args.out / n, args.epochs)]
    summary = [f"{len(done)} of {len(wanted)} members finished in {time.time() - start:.0f} s"]
    for name in done:
        metrics = _public_test(args.out / name / "model.pt")
        summary.append(f"{name}: PublicTest {metrics:.2%}")
    if len(done) >= 2:
        ensemble = args.out / "ensemble.pt"
        subprocess.run([sys.executable, "-m", "moodify", "ensemble", *[str(args.out / n / "model.pt") for n in done],
                        "-o", str(ensemble), "--half", "--data", str(args.data)], cwd=ROOT, env=env, check=True)
        summary.append(f"ensemble of {len(done)}: PublicTest {_public_test(ensemble):.2%}")
    (args.out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 1 if failed else 0


def _public_test(path: Path) -> float:
    from moodify.model.checkpoint import load_checkpoint

    return float(load_checkpoint(path)["metrics"]["PublicTest"]["accuracy"])


if __name__ == "__main__":
    sys.exit(main())
