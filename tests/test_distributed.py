"""`moodify train` under torchrun: two CPU processes (gloo) split the data and end with equal weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from moodify.model.registry import load_model

from synthetic import write_fer2013_csv

PROBE = Path(__file__).with_name("ddp_probe.py")
pytestmark = pytest.mark.slow  # the fast subset (README) leaves it out


def test_two_processes_see_different_faces_and_end_with_identical_weights(tmp_path):
    data = write_fer2013_csv(tmp_path / "fer2013" / "fer2013.csv.gz", {"Training": 20, "PublicTest": 5, "PrivateTest": 5})
    out = tmp_path / "run"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(PROBE), str(out), "--data", str(data), "--out", str(out), "--epochs", "2",
                           "--batch-size", "16", "--widths", "8", "16", "--hidden", "32", "--threads", "1",
                           "--ema-decay", "0", "--warmup-epochs", "0"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MOODIFY_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["distributed"] and b["distributed"] and a["world"] == b["world"] == 2
    for epoch in (0, 1):
        mine, theirs = a["seen"][epoch], b["seen"][epoch]
        # 140 faces, 70 per process, 4 full batches of 16 each: disjoint halves of one shuffled order.
        assert len(mine) == len(theirs) == 64
        assert not set(mine) & set(theirs)
    assert a["seen"][0] != a["seen"][1]  # reshuffled every epoch
    # Gradients are averaged across processes, so every step leaves both with the same weights...
    assert a["final"].keys() == b["final"].keys()
    assert all(torch.equal(a["final"][k], b["final"][k]) for k in a["final"])
    # ...and the steps did change them.
    assert any(not torch.equal(a["final"][k], a["initial"][k]) for k in a["final"] if k.endswith("weight"))
    # Rank 0 wrote the usable model, once.
    assert load_model(out / "model.pt").predict(torch.zeros(2, 48, 48, dtype=torch.uint8).numpy()).shape == (2, 7)
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_machines(tmp_path: Path, data: Path, *train_options: str) -> list[subprocess.CompletedProcess]:
    """The README's two-machine command, each "machine" a torchrun in its own folder on this one."""
    port, nodes = _free_port(), []
    for node in (0, 1):
        folder = tmp_path / f"machine{node}"
        folder.mkdir(exist_ok=True)
        nodes.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
             "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
             str(PROBE), ".", "--data", str(data), "--out", "run", "--batch-size", "16", "--widths", "8", "16",
             "--hidden", "32", "--threads", "1", "--ema-decay", "0", "--warmup-epochs", "0", *train_options],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MOODIFY_CACHE": str(folder / "cache"), "PYTHONPATH": str(PROBE.parent.parent)}))
    done = []
    try:
        for proc in nodes:
            out, err = proc.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in nodes:  # one machine stuck waiting for the other must not outlive the test
            proc.kill()
    return done


def test_two_machines_train_one_model_and_resume_from_rank_0s_checkpoint_alone(tmp_path):
    data = write_fer2013_csv(tmp_path / "fer2013.csv.gz", {"Training": 20, "PublicTest": 5, "PrivateTest": 5})
    first = _two_machines(tmp_path, data, "--epochs", "1")
    assert [p.returncode for p in first] == [0, 0], first[1].stderr[-3000:] + first[0].stderr[-3000:]
    machine0, machine1 = tmp_path / "machine0" / "run", tmp_path / "machine1" / "run"
    assert (machine0 / "checkpoint.pt").exists() and not (machine1 / "checkpoint.pt").exists()
    # Resumed on both: machine 1 has no checkpoint of its own and gets rank 0's.
    again = _two_machines(tmp_path, data, "--epochs", "2", "--resume")
    assert [p.returncode for p in again] == [0, 0], again[1].stderr[-3000:] + again[0].stderr[-3000:]
    assert "resumed from run/checkpoint.pt at epoch 2" in again[0].stdout
    a, b = (torch.load(tmp_path / f"machine{r}" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["world"] == b["world"] == 2
    assert all(torch.equal(a["final"][k], b["final"][k]) for k in a["final"])  # one model, trained together
    assert all(torch.equal(a["initial"][k], b["initial"][k]) for k in a["initial"])  # both resumed from epoch 1
    assert not set(a["seen"][1]) & set(b["seen"][1])
    assert [json.loads(line)["epoch"] for line in (machine0 / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert (machine0 / "model.pt").exists() and not (machine1 / "model.pt").exists()
