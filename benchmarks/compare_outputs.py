"""Run the user-facing commands on fixed inputs and save their outputs, to compare two versions.

    python benchmarks/compare_outputs.py /tmp/before        # on the old commit
    python benchmarks/compare_outputs.py /tmp/after         # on the new one
    diff -r /tmp/before/out /tmp/after/out

The inputs (made under OUT/inputs, the same bytes every time): scikit-image's astronaut photo (one
face), a picture with no face, one with several faces (the astronaut at three sizes), a file that
is not an image, and a 1.5 s video made with OpenCV from the photo moving slowly to the right.
Outputs under OUT/out: ``moodify batch`` as CSV and JSONL (YuNet, and Haar for the CSV),
``moodify classify --json`` and its text, ``moodify video --csv`` and its summary. Exit statuses
are saved too, since they are part of what users see. Paths in the outputs are relative to
OUT/inputs, so two runs in different folders compare equal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent


def make_inputs(folder: Path) -> dict[str, Path]:
    from skimage import data as skdata

    folder.mkdir(parents=True, exist_ok=True)
    astronaut = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512, one face
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    cv2.imwrite(str(photos / "astronaut.png"), astronaut)
    rng = np.random.default_rng(0)
    no_face = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (9, 9), 0)
    cv2.imwrite(str(photos / "no_face.png"), no_face)
    # Several faces: the astronaut at three sizes on one grey canvas.
    canvas = np.full((600, 1400, 3), 128, np.uint8)
    for x, side in ((0, 560), (600, 400), (1050, 300)):
        canvas[:side, x:x + side] = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(photos / "several.png"), canvas)
    (photos / "not_an_image.png").write_bytes(b"this is not a picture\n")
    # A video: 45 frames at 30 frames/s, the photo sliding 2 px a frame on a wider canvas.
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 512))
    for i in range(45):
        frame = np.full((512, 640, 3), 100, np.uint8)
        frame[:, 2 * i:2 * i + 512] = astronaut
        writer.write(frame)
    writer.release()
    return {"photos": photos, "video": video}


def moodify(args: list[str], *, cwd: Path, out: Path, name: str) -> None:
    """Run ``python -m moodify ARGS`` in ``cwd``; save its stdout, stderr and exit status."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "MOODIFY_CACHE": str(out.parent / "cache")}
    done = subprocess.run([sys.executable, "-m", "moodify", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    (out / f"{name}.stdout").write_text(_steady(done.stdout, out))
    (out / f"{name}.stderr").write_text(_steady(done.stderr, out))
    (out / f"{name}.status").write_text(f"{done.returncode}\n")


def _steady(text: str, out: Path) -> str:
    """``text`` without the lines that give timings, which change from run to run, and with the
    output folder written as OUT, so two runs in different folders compare equal."""
    return "".join(line.replace(str(out), "OUT") for line in text.splitlines(keepends=True)
                   if " s this run" not in line and "frames/s" not in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to make the inputs (FOLDER/inputs) and outputs (FOLDER/out)")
    args = parser.parse_args()
    inputs = args.folder / "inputs"
    out = args.folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    make_inputs(inputs)
    images = ["photos/astronaut.png", "photos/no_face.png", "photos/several.png", "photos/not_an_image.png"]
    run = dict(cwd=inputs, out=out)
    moodify(["batch", "photos", "-o", str(out / "batch.csv"), "--workers", "1", "--overwrite", "--quiet"],
            name="batch_csv", **run)
    moodify(["batch", "photos", "-o", str(out / "batch.jsonl"), "--workers", "1", "--overwrite", "--quiet"],
            name="batch_jsonl", **run)
    moodify(["batch", "photos", "-o", str(out / "batch-haar.csv"), "--workers", "1", "--overwrite", "--quiet",
             "--detector", "haar"], name="batch_haar", **run)
    moodify(["classify", "--json", *images], name="classify_json", **run)
    moodify(["classify", *images], name="classify_text", **run)
    moodify(["video", "clip.mp4", "--csv", str(out / "video.csv"), "--no-progress"], name="video", **run)
    moodify(["video", "clip.mp4", "--csv", str(out / "video-every2.csv"), "--every", "2", "--no-progress"],
            name="video_every2", **run)
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
