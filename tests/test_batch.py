"""``moodify batch`` and ``moodify merge``: one outcome per input, kill -9 and resume, shards that add up."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodify import EMOTIONS
from moodify.batch import COLUMNS, EXIT_UNREADABLE, ResumableOutput, iter_inputs, shard_of
from moodify.cli import main as cli

PROJECT = Path(__file__).resolve().parent.parent
FLOATS = {"confidence", *EMOTIONS}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def by_path(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["path"], []).append(row)
    return out


def same_rows(a: list[dict], b: list[dict], *, tol: float = 0.0) -> None:
    """Equal row for row; floats within ``tol`` (a face's batch-mates can move the 6th decimal)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for col in COLUMNS:
            if col in FLOATS and ra[col] and tol:
                assert abs(float(ra[col]) - float(rb[col])) <= tol, (ra["path"], col)
            else:
                assert ra[col] == rb[col], (ra["path"], col)


@pytest.fixture(scope="module")
def photos(astronaut_bgr, tmp_path_factory) -> Path:
    """Good photos in nested folders (one with two faces, one with a non-ASCII name), a photo
    with no face, and three broken files; plus a text file and a hidden file the folder walk skips."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub" / "deeper").mkdir(parents=True)
    cv2.imwrite(str(root / "astronaut.jpg"), astronaut_bgr)
    cv2.imwrite(str(root / "sub" / "astronaut-256.png"), cv2.resize(astronaut_bgr, (256, 256), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(root / "sub" / "deeper" / "Äströnaut ünïcode.jpg"), cv2.flip(astronaut_bgr, 1))
    cv2.imwrite(str(root / "sub" / "two astronauts.png"), np.hstack([astronaut_bgr, cv2.flip(astronaut_bgr, 1)]))
    cv2.imwrite(str(root / "sky.png"), np.full((200, 300, 3), (235, 206, 135), np.uint8))
    (root / "corrupt.jpg").write_bytes((root / "astronaut.jpg").read_bytes()[:2000])
    (root / "sub" / "notes.png").write_text("this is text, not a PNG")
    (root / "sub" / "deeper" / "empty.jpg").write_bytes(b"")
    (root / "readme.txt").write_text("not an image suffix: not an input")
    (root / "._astronaut.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    return root


@pytest.fixture(scope="module")
def crops(astronaut_bgr, tmp_path_factory) -> Path:
    """Pre-cropped grayscale faces: 40 at 48x48, one larger (resized by --pre-cropped), one corrupt."""
    root = tmp_path_factory.mktemp("crops")
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    rng = np.random.default_rng(0)
    for i in range(40):
        x, y = 150 + int(rng.integers(-20, 20)), 40 + int(rng.integers(-20, 20))
        cv2.imwrite(str(root / f"face{i:03d}.png"), cv2.resize(gray[y:y + 150, x:x + 150], (48, 48)))
    cv2.imwrite(str(root / "big.png"), gray[40:190, 150:300])
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root


def run(*argv: str) -> int:
    return cli(["batch", *map(str, argv), "--quiet", "--workers", "1"])


def test_every_input_gets_exactly_one_outcome(photos, tmp_path):
    out = tmp_path / "out.csv"
    assert run(photos, "-o", out) == EXIT_UNREADABLE  # three broken files
    rows = read_csv(out)
    assert list(rows[0]) == list(COLUMNS)
    groups = by_path(rows)
    names = {Path(p).relative_to(photos).as_posix(): g for p, g in groups.items()}
    # Every image-named file, nested and non-ASCII included; no text file, no hidden file.
    assert sorted(names) == sorted(["astronaut.jpg", "corrupt.jpg", "sky.png", "sub/astronaut-256.png",
                                    "sub/notes.png", "sub/two astronauts.png", "sub/deeper/empty.jpg",
                                    "sub/deeper/Äströnaut ünïcode.jpg"])
    for name in ("astronaut.jpg", "sub/astronaut-256.png", "sub/deeper/Äströnaut ünïcode.jpg"):
        (row,) = names[name]
        assert (row["face"], row["faces"], row["error"]) == ("1", "1", "")
    x, y, w, h = (int(names["astronaut.jpg"][0][k]) for k in "xywh")
    # YuNet's box on the astronaut's face (taller than wide: forehead to chin), and its landmarks.
    assert abs(x - 178) < 15 and abs(y - 63) < 15 and abs(w - 90) < 15 and abs(h - 113) < 15
    eye_x, eye_y = (float(names["astronaut.jpg"][0][k]) for k in ("right_eye_x", "right_eye_y"))
    assert x < eye_x < x + w / 2 and y < eye_y < y + h / 2
    two = names["sub/two astronauts.png"]
    assert [(r["face"], r["faces"]) for r in two] == [("1", "2"), ("2", "2")]
    assert {int(r["x"]) < 512 for r in two} == {True, False}  # one face in each half
    (sky,) = names["sky.png"]
    assert (sky["faces"], sky["face"], sky["emotion"], sky["error"]) == ("0", "", "", "")
    errors = {name: g[0]["error"] for name, g in names.items() if g[0]["error"]}
    assert set(errors) == {"corrupt.jpg", "sub/notes.png", "sub/deeper/empty.jpg"}
    assert "empty" in errors["sub/deeper/empty.jpg"] and "not an image" in errors["sub/notes.png"]
    assert "corrupt or truncated" in errors["corrupt.jpg"]
    for row in rows:
        if row["emotion"]:
            p = np.array([float(row[e]) for e in EMOTIONS])
            assert abs(p.sum() - 1) < 1e-4
            assert row["emotion"] == EMOTIONS[int(p.argmax())] and float(row["confidence"]) == p.max()


def test_summary_reports_counts(photos, tmp_path, capsys):
    assert cli(["batch", str(photos), "-o", str(tmp_path / "o.jsonl"), "--workers", "1"]) == EXIT_UNREADABLE
    summary = next(line for line in capsys.readouterr().err.splitlines() if " images/s) -> " in line)
    assert "8 images: 5 faces, 1 without a face, 3 errors; 8 images in" in summary


def test_summary_counts_one_of_a_kind_in_the_singular(photos, tmp_path, capsys):
    one_of_each = [str(photos / "astronaut.jpg"), str(photos / "sky.png"), str(photos / "corrupt.jpg")]
    assert cli(["batch", *one_of_each, "-o", str(tmp_path / "o.csv"), "--workers", "1"]) == EXIT_UNREADABLE
    summary = next(line for line in capsys.readouterr().err.splitlines() if " images/s) -> " in line)
    assert "3 images: 1 face, 1 without a face, 1 error; 3 images in" in summary, summary


@pytest.mark.slow  # a subprocess: torch imported afresh
def test_unreadable_inputs_are_named_on_stderr_with_their_own_exit_status(photos, tmp_path):
    """As a script or a scheduler sees it: stderr to a file, not a terminal."""
    out = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-m", "moodify", "batch", str(photos), "-o", str(out), "--workers", "1"],
                          cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_UNREADABLE == 3, done.stderr
    err = done.stderr.splitlines()
    # No progress bar redrawn into the log: the summary, then the failures, one per line.
    assert "\r" not in done.stderr and not any("img/s" in line for line in err), done.stderr
    assert err[0].startswith("moodify batch: 8 images: ")
    assert err[1] == f"moodify batch: 3 inputs could not be read; their rows give the reason in {out} (column error)"
    assert sorted(err[2:]) == sorted([f"  {photos / 'corrupt.jpg'}: " + _error_of(out, "corrupt.jpg"),
                                      f"  {photos / 'sub' / 'notes.png'}: " + _error_of(out, "notes.png"),
                                      f"  {photos / 'sub' / 'deeper' / 'empty.jpg'}: " + _error_of(out, "empty.jpg")])
    assert "corrupt or truncated" in done.stderr and out.exists()

    good = tmp_path / "good.csv"
    every_one_read = subprocess.run([sys.executable, "-m", "moodify", "batch", str(photos / "astronaut.jpg"),
                                     "-o", str(good), "--workers", "1"], cwd=PROJECT, capture_output=True, text=True,
                                    timeout=300)
    assert every_one_read.returncode == 0 and "could not be read" not in every_one_read.stderr


def _error_of(out: Path, name: str) -> str:
    return next(r["error"] for r in read_csv(out) if Path(r["path"]).name == name)


def test_batch_help_gives_the_exit_statuses(capsys):
    from moodify import cli

    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = capsys.readouterr().out
    assert "exit status: 0 every input was read; 3 the job finished but some inputs could not be read" in " ".join(text.split())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "torch"])  # onnx workers classify their own faces; torch's are classified here
def test_worker_processes_give_the_same_rows(photos, tmp_path, backend):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert run(photos, "-o", one, "--backend", backend) == EXIT_UNREADABLE
    assert cli(["batch", str(photos), "-o", str(two), "--quiet", "--workers", "2", "--chunk-size", "3",
                "--backend", backend]) == EXIT_UNREADABLE
    a = [json.loads(line) for line in one.read_text(encoding="utf-8").splitlines()]
    b = [json.loads(line) for line in two.read_text(encoding="utf-8").splitlines()]
    assert [r["path"] for r in a] == [r["path"] for r in b]
    assert [{k: v for k, v in r.items() if k not in FLOATS} for r in a] == \
        [{k: v for k, v in r.items() if k not in FLOATS} for r in b]
    assert max(abs((r[e] or 0) - (s[e] or 0)) for r, s in zip(a, b) for e in EMOTIONS) < 1e-5


def test_pre_cropped_skips_detection(crops, model, tmp_path):
    out = tmp_path / "out.csv"
    assert run(crops, "-o", out, "--pre-cropped") == EXIT_UNREADABLE  # broken.png
    groups = by_path(read_csv(out))
    assert len(groups) == 42 and all(len(g) == 1 for g in groups.values())
    big = groups[str(crops / "big.png")][0]
    assert (big["x"], big["y"], big["w"], big["h"], big["faces"]) == ("0", "0", "150", "150", "1")
    assert groups[str(crops / "broken.png")][0]["error"]
    face = cv2.imread(str(crops / "face000.png"), cv2.IMREAD_GRAYSCALE)
    expected = model.predict(face[None])[0]
    got = np.array([float(groups[str(crops / "face000.png")][0][e]) for e in EMOTIONS])
    assert np.abs(got - expected).max() < 1e-5


def test_parquet_output_has_typed_columns(crops, tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow")
    import pyarrow.parquet as pq

    out = tmp_path / "out.parquet"
    assert run(crops, "-o", out, "--pre-cropped") == EXIT_UNREADABLE
    table = pq.read_table(out)
    assert table.column_names == list(COLUMNS)
    assert table.schema.field("face").type == pa.int32() and table.schema.field("happy").type == pa.float64()
    rows = table.to_pylist()
    assert len(rows) == 42
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["error"] and broken["face"] is None and broken["emotion"] is None
    back = tmp_path / "back.csv"
    assert cli(["merge", str(out), "-o", str(back)]) == 0  # merge reads Parquet too
    assert [r["path"] for r in read_csv(back)] == sorted(r["path"] for r in rows)


def test_parquet_reads_into_pandas_with_the_types_of_its_columns(photos, tmp_path):
    """pandas gets whole numbers as whole numbers (missing ones <NA>), and the CSV's very values."""
    pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow")
    import pandas as pd

    inputs = [photos / "astronaut.jpg", photos / "sky.png", photos / "corrupt.jpg"]
    assert run(*inputs, "-o", tmp_path / "out.parquet") == EXIT_UNREADABLE
    assert run(*inputs, "-o", tmp_path / "out.csv") == EXIT_UNREADABLE
    df = pd.read_parquet(tmp_path / "out.parquet")
    for column in ("face", "faces", "x", "y", "w", "h"):
        assert str(df[column].dtype) == "Int32", (column, df[column].dtype)
    for column in ("path", "emotion", "error"):
        assert isinstance(df[column].dtype, pd.StringDtype), (column, df[column].dtype)
    assert all(df[column].dtype == "float64" for column in ("confidence", *EMOTIONS, "right_eye_x"))
    face = df.iloc[0]
    assert (face["face"], face["faces"], face["x"]) == (1, 1, int(read_csv(tmp_path / "out.csv")[0]["x"]))
    assert df["face"].isna().tolist() == [False, True, True] and df["faces"].tolist()[1] == 0
    csv_row = read_csv(tmp_path / "out.csv")[0]
    for column in ("confidence", "happy", "right_eye_x", "mouth_left_y"):
        assert face[column] == float(csv_row[column]), column  # not float32's 200.199997 for 200.2


def test_list_files_globs_and_missing_entries(photos, tmp_path):
    listing = tmp_path / "inputs.txt"
    rel = os.path.relpath(photos / "astronaut.jpg", tmp_path)
    listing.write_text(f"# photos to score\n{rel}\n\nmissing.jpg\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert run(listing, str(photos / "sub" / "*.png"), "-o", out) == EXIT_UNREADABLE  # missing.jpg, notes.png
    rows = read_csv(out)
    assert [Path(r["path"]).name for r in rows] == ["astronaut.jpg", "missing.jpg", "astronaut-256.png",
                                                    "notes.png", "two astronauts.png", "two astronauts.png"]
    assert rows[1]["error"] == "no such file"


def test_bad_commands_fail_with_one_line(photos, tmp_path, capsys):
    assert run(tmp_path / "nope", "-o", tmp_path / "a.csv") == 2
    assert run(str(tmp_path / "*.jpg"), "-o", tmp_path / "a.csv") == 2
    assert run(photos, "-o", tmp_path / "a.xlsx") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("moodify batch: error: ") for line in err)
    assert "no such file or folder" in err[0] and "no file matches" in err[1] and ".xlsx" in err[2]
    out = tmp_path / "done.csv"
    out.write_text("somebody's results")
    assert run(photos, "-o", out) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "somebody's results"


def test_interrupted_run_needs_resume_and_same_settings(crops, tmp_path, capsys):
    out = tmp_path / "out.csv"
    fingerprint_of_other_run = {"inputs": [str(crops)], "other": "settings"}
    interrupted = ResumableOutput(out, fingerprint_of_other_run)
    interrupted.start()
    interrupted.close()
    assert run(crops, "-o", out, "--pre-cropped") == 2
    assert "--resume" in capsys.readouterr().err
    assert run(crops, "-o", out, "--pre-cropped", "--resume") == 2
    assert "different settings" in capsys.readouterr().err
    assert run(crops, "-o", out, "--pre-cropped", "--overwrite") == EXIT_UNREADABLE
    assert len(read_csv(out)) == 42 and not Path(str(out) + ".partial").exists()
    assert not Path(str(out) + ".progress").exists()


@pytest.fixture(scope="module")
def many_crops(crops, tmp_path_factory) -> Path:
    """150 distinct small files: with 3 per chunk, a run is long enough to be killed in the middle."""
    root = tmp_path_factory.mktemp("many")
    faces = sorted(crops.glob("face*.png"))
    for i in range(150):
        (root / f"{i // 50}").mkdir(exist_ok=True)
        (root / f"{i // 50}" / f"f{i:04d}.png").write_bytes(faces[i % len(faces)].read_bytes())
    return root


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(many_crops, tmp_path):
    reference = tmp_path / "reference.csv"
    assert run(many_crops, "-o", reference, "--pre-cropped", "--chunk-size", "3") == 0

    out = tmp_path / "out.csv"
    progress = Path(str(out) + ".progress")
    cmd = [sys.executable, "-m", "moodify", "batch", str(many_crops), "-o", str(out), "--pre-cropped",
           "--chunk-size", "3", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # start-up alone takes minutes on a machine busy training
    while time.monotonic() < deadline and proc.poll() is None:
        # header line + empty commit + at least 3 chunk commits
        if progress.exists() and progress.read_text(encoding="utf-8").count("\n") >= 5:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = Path(str(out) + ".partial")
    assert not out.exists() and partial.exists()
    # Also as if the kill had landed in the middle of writing a chunk: a half row after the last commit.
    with open(partial, "ab") as fh:
        fh.write(b"/half/written/row.png,0,1,0,0,4")

    assert run(many_crops, "-o", out, "--pre-cropped", "--chunk-size", "3", "--resume") == 0
    assert out.read_bytes() == reference.read_bytes()
    rows = read_csv(out)
    assert len(rows) == 150 and len({r["path"] for r in rows}) == 150
    assert not partial.exists() and not progress.exists()
    assert run(many_crops, "-o", out, "--pre-cropped", "--chunk-size", "3", "--resume") == 0  # already complete


def test_shards_merge_to_the_unsharded_run(photos, crops, tmp_path, capsys):
    full = tmp_path / "full.csv"
    assert run(photos, crops, "-o", full) == EXIT_UNREADABLE
    parts = [tmp_path / f"part-{k}.csv" for k in (1, 2, 3)]
    for k, part in enumerate(parts, start=1):
        assert run(photos, crops, "-o", part, "--shard", f"{k}/3") in (0, EXIT_UNREADABLE)
    shard_paths = [{r["path"] for r in read_csv(p)} for p in parts]
    assert all(shard_paths) and sum(map(len, shard_paths)) == len(set().union(*shard_paths))  # disjoint, none empty

    # Merging 2 of 3 printed "205 rows from 2 file(s)" and exited 0: each shard now records which K
    # of N it is (part-K.csv.shard), and merge names the missing one unless told --allow-missing.
    assert json.loads(Path(str(parts[2]) + ".shard").read_text())["shard"] == 3
    merged = tmp_path / "merged.csv"
    capsys.readouterr()
    assert cli(["merge", str(parts[0]), str(parts[2]), "-o", str(merged)]) == 2
    err = capsys.readouterr().err
    assert "shard 2 of 3 is missing" in err and "--allow-missing" in err and not merged.exists()
    assert cli(["merge", str(parts[0]), str(parts[2]), "-o", str(merged), "--allow-missing"]) == 0
    assert "warning: shard 2 of 3 is missing" in capsys.readouterr().err
    assert len(read_csv(merged)) == len(read_csv(parts[0])) + len(read_csv(parts[2]))

    assert cli(["merge", str(tmp_path / "part-*"), "-o", str(merged), "--overwrite"]) == 0  # the glob also matches .shard files
    key = lambda r: (r["path"], int(r["face"]) if r["face"] else -1)  # noqa: E731
    same_rows(read_csv(merged), sorted(read_csv(full), key=key), tol=2e-6)

    as_jsonl = tmp_path / "merged.jsonl"
    assert cli(["merge", *map(str, parts), "-o", str(as_jsonl)]) == 0
    lines = [json.loads(line) for line in as_jsonl.read_text(encoding="utf-8").splitlines()]
    assert [(r["path"], r["face"]) for r in lines] == [(r["path"], int(r["face"]) if r["face"] else None)
                                                       for r in read_csv(merged)]


def test_merge_refuses_unfinished_or_overlapping_shards(photos, tmp_path, capsys):
    part = tmp_path / "part-1.csv"
    assert run(photos, "-o", part, "--shard", "1/2") in (0, EXIT_UNREADABLE)
    assert cli(["merge", str(part), str(part), "-o", str(tmp_path / "m.csv")]) == 2
    assert "more than once" in capsys.readouterr().err
    Path(str(part) + ".progress").write_text("{}\n")
    assert cli(["merge", str(part), "-o", str(tmp_path / "m.csv")]) == 2
    assert "unfinished" in capsys.readouterr().err


def test_shard_assignment_is_stable_and_covers_everything(photos):
    paths = list(iter_inputs([str(photos)]))
    per_shard = [list(iter_inputs([str(photos)], shard=(k, 4))) for k in range(1, 5)]
    assert sorted(sum(per_shard, [])) == sorted(paths)
    assert shard_of("photos/a.jpg", 8) == shard_of("photos/a.jpg", 8)
    counts = np.bincount([shard_of(f"img{i}.jpg", 8) for i in range(8000)], minlength=9)[1:]
    assert counts.min() > 850  # about 1000 each
