"""Every hostile or careless input in ``bad_inputs.py`` through the API, ``classify``, ``batch`` and
``video``: no traceback, no hang, bounded memory, one outcome per input."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from bad_inputs import make_corpus, run_measured
from moodify.batch import EXIT_UNREADABLE

PROJECT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(PROJECT)}
PEAK_MB = 1500  # per command, interpreter, torch and model included (~700 MB of it); unbounded decodes took 2,000+
TIMEOUT_S = 180  # a hang fails the test instead of blocking the suite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(astronaut_bgr, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad-inputs")
    return folder, make_corpus(folder, astronaut_bgr)


def _paths(folder: Path, expected: dict[str, str]) -> list[str]:
    return [os.path.join(str(folder), name) for name in sorted(expected)]


def _check(name: str, outcome: str, *, faces: int | None, error: str | None) -> None:
    if error is not None:
        assert "\n" not in error and "Traceback" not in error, (name, error)
    if outcome == "face":
        assert faces and faces >= 1, (name, faces, error)
    elif outcome == "no face":
        assert faces == 0, (name, faces, error)
    elif outcome == "error":
        assert error, (name, faces)


def _python(*argv) -> tuple[int, str, str, float]:
    return run_measured([sys.executable, *map(str, argv)], timeout=TIMEOUT_S, env=ENV, cwd=PROJECT)


def test_the_api_gives_faces_or_an_image_error(corpus):
    folder, expected = corpus
    status, out, err, peak = _python(PROJECT / "tests" / "bad_inputs.py", "api", *_paths(folder, expected))
    assert status == 0 and "Traceback" not in err, err
    results = {os.path.basename(r["path"]): r for r in map(json.loads, out.splitlines())}
    assert set(results) == set(expected)
    for name, outcome in expected.items():
        _check(name, outcome, faces=results[name].get("faces"), error=results[name].get("error"))
    assert peak < PEAK_MB
    print(f"API over the corpus: peak {peak:,.0f} MB")


def test_classify_gives_one_result_or_one_error_line_per_file(corpus):
    folder, expected = corpus
    status, out, err, peak = _python("-m", "moodify", "classify", "--json", *_paths(folder, expected))
    assert status == 1 and "Traceback" not in err, err
    results = {os.path.basename(r["path"]): r for r in json.loads(out)}
    assert set(results) == set(expected)
    errors = err.strip().splitlines()
    assert len(errors) == sum(1 for r in results.values() if "error" in r)
    assert all(line.startswith("moodify: error: ") for line in errors)
    for name, outcome in expected.items():
        faces = results[name].get("faces")
        _check(name, outcome, faces=None if faces is None else len(faces), error=results[name].get("error"))
    assert peak < PEAK_MB
    print(f"classify over the corpus: peak {peak:,.0f} MB")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_batch_gives_every_input_its_rows(corpus, tmp_path, workers):
    folder, expected = corpus
    out = tmp_path / "out.csv"
    status, _, err, peak = _python("-m", "moodify", "batch", folder, "-o", out, "--quiet", "--workers", workers)
    assert status == EXIT_UNREADABLE and "Traceback" not in err, err  # the corpus's unreadable files are named
    assert "could not be read" in err
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        by_name.setdefault(os.path.basename(row["path"]), []).append(row)
    # A folder is searched, not an input, even when it is called folder.jpg; batch writes the
    # non-UTF-8 byte as \udce9.
    names = {n.encode("utf-8", "backslashreplace").decode() for n in expected if n != "folder.jpg"}
    assert set(by_name) == names
    for name, outcome in expected.items():
        if name == "folder.jpg":
            continue
        group = by_name[name.encode("utf-8", "backslashreplace").decode()]
        first = group[0]
        faces = int(first["faces"]) if first["faces"] else None
        assert len(group) == max(1, faces or 0)
        _check(name, outcome, faces=faces, error=first["error"] or None)
    if workers == "1":  # everything in one process; with 2, wait4 sees the workers only if they were reaped
        assert peak < PEAK_MB
        print(f"batch --workers 1 over the corpus: peak {peak:,.0f} MB")


def test_video_opens_or_refuses_each_input_in_one_line(corpus):
    folder, expected = corpus
    status, out, err, peak = _python(PROJECT / "tests" / "bad_inputs.py", "video", *_paths(folder, expected))
    assert status == 0 and "Traceback" not in err, err
    results = {os.path.basename(r["path"]): r for r in map(json.loads, out.splitlines())}
    assert set(results) == set(expected)
    for name in ("empty.jpg", "fifo.jpg", "folder.jpg", "loop.jpg"):
        assert "\n" not in results[name]["error"]
    assert "not a regular file" in results["fifo.jpg"]["error"]
    assert all("frames" in r or "error" in r for r in results.values())
    assert peak < PEAK_MB
    print(f"video over the corpus: peak {peak:,.0f} MB")
