"""docs/train_members.py: several members at once, resumable, then their ensemble (tiny, on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moodify.model.registry import load_model

from synthetic import write_fer2013_csv

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "train_members.py"
TINY = ["--batch-size", "16", "--widths", "8", "16", "--hidden", "32", "--threads", "1", "--amp", "off",
        "--warmup-epochs", "0"]
pytestmark = pytest.mark.slow


def _run(tmp_path: Path, data: Path, epochs: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--out", str(tmp_path / "members"),
                           "--epochs", str(epochs), "--jobs", "2", "--member", "a=--seed 1", "--member", "b=--seed 2",
                           "--", *TINY], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MOODIFY_CACHE": str(tmp_path / "cache")})


def test_members_train_side_by_side_resume_where_cut_off_and_make_one_ensemble(tmp_path):
    data = write_fer2013_csv(tmp_path / "fer2013" / "fer2013.csv.gz", {"Training": 20, "PublicTest": 5, "PrivateTest": 5})
    first = _run(tmp_path, tmp_path, 1)  # as if a time limit had stopped both after one epoch
    assert first.returncode == 0, first.stdout + first.stderr
    members = tmp_path / "members"
    # Asked for more epochs, both continue from their checkpoints rather than starting over.
    again = _run(tmp_path, tmp_path, 2)
    assert again.returncode == 0, again.stdout + again.stderr
    starts = [line for line in again.stdout.splitlines() if line.startswith("start ")]
    assert len(starts) == 2 and all(line.endswith("--resume") for line in starts), again.stdout
    for name in ("a", "b"):
        assert [json.loads(line)["epoch"] for line in (members / name / "log.jsonl").read_text().splitlines()] == [1, 2]
    ensemble = load_model(members / "ensemble.pt")
    assert ensemble.predict(np.zeros((2, 48, 48), dtype=np.uint8)).shape == (2, 7)
    summary = (members / "summary.txt").read_text()
    assert summary.startswith("2 of 2 members finished") and "a: PublicTest" in summary
    assert "ensemble of 2: PublicTest" in summary
    # Finished members are left alone.
    third = _run(tmp_path, tmp_path, 2)
    assert third.returncode == 0 and "start " not in third.stdout, third.stdout


def test_a_malformed_member_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path), "--out", str(tmp_path / "m"),
                           "--member", "no-options"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == "train_members: --member wants NAME=OPTIONS, got 'no-options'"
