"""``moodify ensemble``: several trained models made into one, calibrated on PublicTest.

    moodify ensemble runs/vgg-s0/model.pt runs/vgg-s1/model.pt runs/resnet-s0/model.pt -o models/ensemble.pt

The members are checkpoints written by ``moodify train`` (or registry names); the ensemble averages
their calibrated logits (``moodify.model.ensemble``) and gets one temperature and its flip-TTA
choice fitted on PublicTest, as ``moodify train`` does for one network. PrivateTest is not read:
score the result with ``moodify evaluate`` like any model. The crop framing comes from the first
model listed (a shipped model's measured one, e.g. ``accurate``'s, when it is listed first).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ModelError
from ..files import check_outputs
from ..model.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from ..model.ensemble import is_ensemble, make_ensemble_checkpoint
from ..model.registry import resolve_model_path
from ..model.torch_backend import EmotionModel
from .calibrate import calibrate, public_metrics
from .data import load_dataset

DESCRIPTION = ("Make one model of several trained ones: their calibrated logits averaged, one temperature "
               "and the flip-TTA choice fitted on PublicTest (PrivateTest is never read).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("members", nargs="+", metavar="MODEL",
                   help="member checkpoints or registry names (two or more networks; an ensemble brings its members)")
    p.add_argument("-o", "--out", required=True, help="where to write the ensemble checkpoint (.pt)")
    p.add_argument("--data", default=None, help="FER2013 data, for PublicTest (default: $MOODIFY_DATA)")
    p.add_argument("--tta", default="auto", choices=["auto", "on", "off"],
                   help="flip test-time augmentation: auto picks it where it is more accurate on PublicTest; "
                        "off halves the cost of predict")
    p.add_argument("--half", action="store_true",
                   help="store the members' weights as float16: half the file, for a shipped model's size budget")


def build(members: list[str], *, data: str | None, out: str | Path, tta: str = "auto", half: bool = False) -> dict:
    """Write the ensemble of ``members`` to ``out``; returns its PublicTest metrics."""
    # Before any member or the data is read: -o naming a member would destroy it, -o a folder fail at the end.
    check_outputs({"-o": out}, [m for m in members if Path(m).exists()])
    checkpoints, sources, crop = [], [], None
    for member in members:
        path, name, expected = resolve_model_path(member)
        checkpoint = load_checkpoint(path, expected_sha256=expected)
        EmotionModel(checkpoint, name=name)  # every member checked before the data is read
        # An ensemble given as a member brings its members: a shipped ensemble grows by one network
        # (`moodify ensemble accurate runs/new/model.pt`) without its members' files.
        found = checkpoint["members"] if is_ensemble(checkpoint) else [checkpoint]
        crop = crop or checkpoint["preprocessing"]  # the first model's crop, an ensemble's own included
        checkpoints += found
        sources += [{"model": str(member), "sha256": sha256_file(path)}] * len(found)
    if len(checkpoints) < 2:
        raise ModelError("an ensemble needs two or more members")
    val = load_dataset(data)["PublicTest"]
    draft = make_ensemble_checkpoint(checkpoints, half=half, preprocessing=crop)  # calibrated as shipped
    fitted = calibrate(EmotionModel(draft, name="ensemble"), val, tta=tta)
    command = "moodify ensemble " + " ".join([*members, "-o", str(out), "--tta", tta, *(["--half"] if half else [])])
    checkpoint = make_ensemble_checkpoint(
        checkpoints, temperature=fitted["temperature"], tta=fitted["tta"],
        metrics={"PublicTest": public_metrics(fitted["report"])},
        training={"command": command, "sources": sources, "tta_choice": fitted["tta_choice"]}, half=half,
        preprocessing=crop)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, out)
    print(json.dumps({"model": str(out), "members": len(checkpoints), "tta": fitted["tta"],
                      "temperature": round(fitted["temperature"], 4), **checkpoint["metrics"]["PublicTest"]}),
          flush=True)
    return checkpoint["metrics"]


def main(args: argparse.Namespace) -> int:
    build(args.members, data=args.data, out=args.out, tta=args.tta, half=args.half)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="moodify ensemble", description=DESCRIPTION)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
