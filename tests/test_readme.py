"""The README's code, run as a reader runs it: each command line of its bash blocks in a shell,
each Python block as a script, in a folder holding the files they name (made from a real photo).

A block that cannot run here carries its reason in the README, on the line before it
(``<!-- readme-test: skip: REASON -->``); a command line that cannot is listed in ``LINE_SKIPS``
with its reason. Both show as skips with that reason. Anything else the README shows must run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA_ROOT, FER2013_CSV

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")
COMMAND_TIMEOUT_S = 600  # one command on a busy 2-core machine: a cold torch import alone can take a minute

# Command lines (by how they start) that cannot run in a test, and why.
LINE_SKIPS = {
    "moodify live --camera": "needs a webcam and a display (the headless line below runs the same code on a file)",
    "moodify train": "trains a network for hours on FER2013",
    "torchrun": "trains a network on 4 processes for hours",
    "moodify ensemble": "needs the models the train lines above make (tests/test_ensemble.py runs it on made ones)",
    "moodify merge 'part-*.csv'": "needs all 8 shards, made on 8 machines: one alone is refused as incomplete "
                                  "(tests/test_batch.py merges real shards and checks that refusal)",
    "moodify evaluate --photos ../shared/data/kdef/meta.csv": "tests/test_reference.py runs this KDEF line and checks its figure",
    # The reference lines: tests/test_reference.py runs each of them through the same CLI (in-process, which
    # saves the suite a cold start of torch per line) and checks what it prints or writes.
    "moodify classify photo.jpg --reference": "tests/test_reference.py runs it on a real photo and checks both readings",
    "moodify batch people.csv": "tests/test_reference.py runs a person list through moodify batch and checks its columns",
    "moodify video talk.mp4 --csv t.csv --reference-seconds": "tests/test_reference.py runs --reference-seconds on a "
                                                               "made video and checks the timeline",
}
NEEDS_DATA = "--data ../shared/data"  # run where FER2013 is present, reached as the README has it: ../shared/data


@dataclass(frozen=True)
class Block:
    language: str
    start: int  # line number of the opening fence
    lines: tuple[str, ...]
    skip: str | None


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks, with the skip reason written on the line before each."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        mark = SKIP_MARK.search(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append(Block(fence.group(1), i + 1, tuple(lines[i + 1:end]), mark.group(1) if mark else None))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _commands(block: Block) -> list[tuple[int, str]]:
    return [(block.start + 1 + k, line.strip()) for k, line in enumerate(block.lines)
            if line.strip() and not line.strip().startswith("#")]


CASES = [pytest.param(block, number, command, id=f"README.md:{number} {command.split('#')[0].strip()[:60]}")
         for block in BLOCKS if block.language == "bash" for number, command in _commands(block)]
PYTHON_CASES = [pytest.param(block, id=f"README.md:{block.start} python") for block in BLOCKS
                if block.language == "python"]


def test_every_block_is_run_or_says_why_not():
    # "text" blocks hold no commands (the layout tree): nothing to run.
    assert {b.language for b in BLOCKS} <= {"bash", "python", "text"}, "a block in a language this test cannot run"
    assert PYTHON_CASES and any(b.skip is None for b in BLOCKS if b.language == "bash")


# ------------------------------------------------------------------------- the reader's folder

def _two_faces(bgr: np.ndarray) -> np.ndarray:
    return np.hstack([bgr, cv2.flip(bgr, 1)])


def _video(path: Path, astronaut_bgr: np.ndarray, *, seconds: float, fps: int = 15) -> Path:
    """The astronaut's head drifting across a 640x480 frame."""
    head = astronaut_bgr[20:260, 120:330]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for i in range(int(seconds * fps)):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x = 40 + 6 * i
        frame[100:340, x:x + head.shape[1]] = head
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def reader(tmp_path_factory, astronaut_bgr, recognizer):
    """A folder with the files the README's commands name, and a shell that runs them as written."""
    root = tmp_path_factory.mktemp("readme")
    work = root / "work"
    (work / "photos").mkdir(parents=True)
    (work / "faces").mkdir()
    cv2.imwrite(str(work / "photo.jpg"), astronaut_bgr)
    cv2.imwrite(str(work / "neutral.jpg"), cv2.flip(astronaut_bgr, 1))
    cv2.imwrite(str(work / "group.png"), _two_faces(astronaut_bgr))
    for k, scale in enumerate((1.0, 0.6)):
        cv2.imwrite(str(work / "photos" / f"portrait-{k}.jpg"), cv2.resize(astronaut_bgr, None, fx=scale, fy=scale))
    cv2.imwrite(str(work / "photos" / "two.png"), _two_faces(astronaut_bgr))
    crop = recognizer.analyze(astronaut_bgr)[0].crop
    for k in range(4):
        cv2.imwrite(str(work / "faces" / f"face-{k}.png"), np.roll(crop, k, axis=1))
    _video(work / "talk.mp4", astronaut_bgr, seconds=3)
    _video(work / "clip.mp4", astronaut_bgr, seconds=2)
    # Labelled photos with the columns the README's `evaluate --photos my-photos.csv --where split=val` uses.
    (work / "my-photos.csv").write_text("path,label,split\nphoto.jpg,happy,val\nphotos/portrait-1.jpg,happy,train\n")
    if FER2013_CSV.exists():  # ../shared/data, seen from the folder the commands run in
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(DATA_ROOT.resolve(), target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(PROJECT), "MOODIFY_CACHE": str(root / "cache"), "K": "1"}
    return _Reader(work, env)


class _Reader:
    """Runs README lines in order in one folder: a line runs after the lines above it in its block."""

    def __init__(self, work: Path, env: dict[str, str]):
        self.work, self.env = work, env
        self.results: dict[int, subprocess.CompletedProcess] = {}

    def run(self, block: Block, number: int) -> subprocess.CompletedProcess:
        for earlier, command in _commands(block):
            if earlier > number:
                break
            if earlier not in self.results and _skip_reason(command) is None:
                self.results[earlier] = subprocess.run(["bash", "-c", command], cwd=self.work, env=self.env,
                                                       capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        return self.results[number]


def _skip_reason(command: str) -> str | None:
    reason = next((why for start, why in LINE_SKIPS.items() if command.startswith(start)), None)
    if reason is None and NEEDS_DATA in command and not FER2013_CSV.exists():
        reason = f"needs the FER2013 data at {FER2013_CSV}"
    return reason


# ------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("block, number, command", CASES)
def test_readme_command_runs(reader, block, number, command):
    if block.skip:
        pytest.skip(f"README.md:{block.start}: {block.skip}")
    reason = _skip_reason(command)
    if reason:
        pytest.skip(f"README.md:{number}: {reason}")
    done = reader.run(block, number)
    assert done.returncode == 0, f"README.md:{number}: `{command}` exited with {done.returncode}:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    _check_what_it_made(reader.work, command, done)


def _check_what_it_made(work: Path, command: str, done: subprocess.CompletedProcess) -> None:
    """What a reader would look at after each kind of command."""
    words = command.split("#")[0].split()
    if words[:2] == ["moodify", "classify"]:
        assert "photo.jpg" in done.stdout and ("happy" in done.stdout), done.stdout
        if "group.png" in words:
            assert "group.png: 2 faces" in done.stdout, done.stdout
    for flag in ("-o", "--csv", "--out"):
        if flag in words:
            made = work / words[words.index(flag) + 1].replace("$K", "1")
            assert made.exists() and (made.is_dir() or made.stat().st_size > 0), f"{command}: no {made}"


@pytest.mark.parametrize("block", PYTHON_CASES)
def test_readme_python_runs_on_a_real_photo(reader, block):
    if block.skip:
        pytest.skip(f"README.md:{block.start}: {block.skip}")
    script = reader.work / f"readme_{block.start}.py"
    # The example's last line computes probabilities; print them too, to check they are real ones.
    script.write_text("\n".join(block.lines) + "\nprint('probs', probs.shape, probs.sum(axis=1).round(4).tolist())\n",
                      encoding="utf-8")
    done = subprocess.run([sys.executable, script.name], cwd=reader.work, env=reader.env, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # One face: its box, "happy" (she smiles), its probabilities and its five landmarks; then the same
    # face read relative to a neutral photo: two sets of 7 probabilities (relative, raw).
    assert len(lines) == 3 and lines[0].startswith("(") and " happy " in lines[0], done.stdout
    assert lines[0].count("), (") == 4 and "'neutral': " in lines[0], done.stdout
    assert lines[1].startswith("{'angry': ") and lines[1].count("'neutral': ") == 2, done.stdout
    assert lines[2] == "probs (1, 7) [1.0]", done.stdout
