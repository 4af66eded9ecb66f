"""`moodify train` under torchrun: two CPU processes (gloo) split the data and end with equal weights."""

from __future__ import annotations

import os
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

