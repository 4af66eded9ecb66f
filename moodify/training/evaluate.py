"""Evaluation: ``moodify evaluate``. Metrics on one split, a confusion-matrix PNG and a reliability diagram."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..cli.options import HelpFormatter
from ..files import check_outputs
from ..labels import EMOTIONS
from ..model.registry import load_model
from ..model.torch_backend import EmotionModel, batched_logits
from ..pipeline.preprocess import Preprocessing
from .data import SPLITS, DataError, FaceSet, load_dataset
from .metrics import classification_report, reliability, softmax


DESCRIPTION = ("Score a model on a FER2013 split (accuracy, macro-F1, per-class precision and recall, confusion "
               "matrix, expected calibration error before and after temperature scaling), or the whole pipeline "
               "(detect, crop, classify) on labelled photos with --photos.")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moodify evaluate", description=DESCRIPTION,
                                formatter_class=HelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli.options import add_detector_arguments

    p.add_argument("--data", help="FER2013 data path (default: $MOODIFY_DATA)")
    p.add_argument("--photos", default=None, metavar="PATH",
                   help="labelled photos instead of FER2013: a CSV with path,label columns (paths relative to it) or "
                        "a folder with one sub-folder per class; the whole pipeline runs on each photo")
    p.add_argument("--where", action="append", default=None, metavar="COLUMN=VALUE[,VALUE]",
                   help="with --photos CSV: keep rows whose COLUMN is one of the VALUEs (repeatable, all must hold)")
    p.add_argument("--person", default=None, metavar="COLUMN[,COLUMN]",
                   help="with --photos CSV and --reference-where: the columns that name one person (e.g. subject,session); "
                        "each photo is read relative to that person's reference photos (matched by angle too, where the "
                        "CSV has an angle column), which are not scored")
    p.add_argument("--reference-where", action="append", default=None, metavar="COLUMN=VALUE[,VALUE]",
                   help="with --person: the CSV rows that are reference photos (a person's neutral face), e.g. label=neutral")
    p.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus"],
                   help="ground truth: FER2013 labels or the FER+ majority vote")
    p.add_argument("--split", default="PrivateTest", choices=SPLITS, help="which split to score")
    p.add_argument("--without-training-copies", action="store_true",
                   help="leave out the split's faces that are pixel copies of Training faces (288 in PrivateTest)")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None,
                     help="flip test-time augmentation on (default: whatever the model's predict does)")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="flip test-time augmentation off")
    p.add_argument("--out", default=None, help="folder for report.json, confusion.png, reliability.png (FER2013) or predictions.csv, "
                                                   "one row per photo (--photos)")
    p.add_argument("--record", action="store_true",
                   help="store the metrics in the checkpoint file (shown by the app; changes its sha256)")
    add_detector_arguments(p)


def validate(net: torch.nn.Module, faces: FaceSet, prep: Preprocessing, *, tta: bool = False) -> tuple[dict, np.ndarray]:
    """Metrics of an eval-mode network on a split, and its logits."""
    net.eval()
    logits = batched_logits(net, faces.images, prep, tta=tta)
    return classification_report(softmax(logits), faces.labels), logits



def evaluate_model(model: EmotionModel, images: np.ndarray, labels: np.ndarray, *, tta: bool | None = None) -> dict:
    """Report for calibrated probabilities (as ``predict`` gives them), plus the ECE at temperature 1."""
    logits = model.logits(images, tta=tta)
    probs = softmax(logits, model.temperature)
    report = classification_report(probs, labels)
    raw = softmax(logits)
    report["ece_uncalibrated"] = classification_report(raw, labels)["ece"]
    report["temperature"] = model.temperature
    report["tta"] = model.tta if tta is None else tta
    report["reliability"] = reliability(probs, labels)
    report["reliability_uncalibrated"] = reliability(raw, labels)
    return report


def plot_confusion(confusion: list[list[int]], path: Path, *, title: str, columns: list[str] | None = None) -> None:
    """Rows: true class; columns: predicted (``columns`` may add e.g. "no face" after the 7 classes)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    columns = list(columns or EMOTIONS)
    cm = np.array(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(6.4 + 0.7 * (len(columns) - len(EMOTIONS)), 5.6))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(EMOTIONS)):
        for j in range(len(columns)):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="share of true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_reliability(report: dict, path: Path, *, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for key, name, ece in (("reliability_uncalibrated", "temperature 1", report["ece_uncalibrated"]),
                           ("reliability", f"temperature {report['temperature']:.2f}", report["ece"])):
        rel = report[key]
        count = np.array(rel["count"])
        keep = count > 0
        ax.plot(np.array(rel["confidence"])[keep], np.array(rel["accuracy"])[keep], "o-",
                label=f"{name}: ECE {ece:.1%}")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def format_report(report: dict, *, header: str) -> str:
    lines = [header,
             f"  accuracy {report['accuracy']:.2%}   macro-F1 {report['macro_f1']:.4f}   n={report['n']}",
             f"  ECE (15 bins) {report['ece']:.2%} at temperature {report['temperature']:.3f} "
             f"(uncalibrated {report['ece_uncalibrated']:.2%})   flip TTA {'on' if report['tta'] else 'off'}",
             f"  {'class':<9} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}"]
    for label, c in report["per_class"].items():
        lines.append(f"  {label:<9} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>5}")
    lines.append("  confusion (rows true, columns predicted, order " + ", ".join(EMOTIONS) + "):")
    lines += ["    " + " ".join(f"{v:>4}" for v in row) for row in report["confusion"]]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    check_outputs({"--out": args.out}, folders=["--out"])  # before the model and the data are read
    if args.photos:
        return evaluate_photos_main(args)
    model = load_model(args.model, backend=args.backend)
    sets = load_dataset(args.data, labels=args.labels)
    if args.split not in sets:
        raise DataError(f"the data has no {args.split} split (in a folder layout PrivateTest is test/, PublicTest "
                        f"val/); it has {', '.join(sets)}: pick one with --split")
    split, what = sets[args.split], args.split
    if args.without_training_copies:
        from .explore import copies_of

        if args.record:
            raise ValueError("--record stores a whole split's metrics; leave out --without-training-copies")
        keep = ~copies_of(split.images, sets["Training"].images)
        split = FaceSet(split.images[keep], split.labels[keep])
        what = f"{args.split} without its {int((~keep).sum())} copies of Training faces"
    report = evaluate_model(model, split.images, split.labels, tta=args.tta)
    print(format_report(report, header=f"{model.name} on {what} ({args.labels} labels)"))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        plot_confusion(report["confusion"], out / "confusion.png", title=f"{model.name}: {args.split}")
        plot_reliability(report, out / "reliability.png", title=f"{model.name}: {args.split} reliability")
        print(f"wrote {out / 'report.json'}, {out / 'confusion.png'}, {out / 'reliability.png'}")
    if args.record:
        record_metrics(args.model, args.split, report)
    return report


def record_metrics(name_or_path: str | None, split: str, report: dict) -> None:
    """Write a split's headline metrics into the checkpoint (they never feed back into training)."""
    from ..model.registry import rewrite_checkpoint

    keep = ("n", "accuracy", "macro_f1", "nll", "ece", "ece_uncalibrated", "tta")
    metrics = {k: report[k] for k in keep} | {"recall": {k: v["recall"] for k, v in report["per_class"].items()}}
    path = rewrite_checkpoint(name_or_path, lambda ckpt: ckpt.setdefault("metrics", {}).update({split: metrics}))
    print(f"recorded {split} metrics in {path} (new sha256: update the registry if it is a shipped model)")


def evaluate_photos_main(args: argparse.Namespace) -> dict:
    """``moodify evaluate --photos``: the whole pipeline on labelled photos, printed and written."""
    from ..cli.options import build_recognizer
    from .photos import (format_photo_report, load_photos, load_references, photo_report, run_photos,
                         write_photo_predictions)

    if args.record:
        raise ValueError("--record stores FER2013 split metrics; it does not apply to --photos")
    if bool(args.person) != bool(args.reference_where):
        raise ValueError("--person and --reference-where go together: who each photo shows, and which photos are "
                         "their neutral references")
    photos = load_photos(args.photos, where=args.where)
    recognizer = build_recognizer(args)
    if args.tta is not None:  # the model was loaded for this run alone: its default is ours to set
        recognizer.model.tta = args.tta
    references = None
    if args.person:
        person = [c.strip() for c in args.person.split(",") if c.strip()]
        selected = len(photos)
        photos, references = load_references(recognizer, args.photos, photos, person=person, where=args.reference_where)
        if not photos:
            raise ValueError("every photo selected is a reference photo: nothing is left to score")
    outcomes, seconds = run_photos(recognizer, photos, progress=sys.stderr.isatty(), total=len(photos),
                                   references=references)
    report = photo_report(outcomes, seconds=seconds)
    report.update(model=recognizer.model.name, detector=recognizer.detector.kind, photos=str(args.photos),
                  where=args.where or [], tta=bool(recognizer.model.tta))
    if references is not None:
        with_ref = sum(o.referenced for o in outcomes)
        report["reference"] = {"person": list(references.person), "where": args.reference_where,
                               "setting": recognizer.model.preprocessing.reference.to_dict(),
                               "with_reference": with_ref, "without_reference": len(outcomes) - with_ref,
                               "reference_photos": selected - len(photos),
                               "unusable": {" ".join(k): why for k, why in references.unusable.items()}}
    print(format_photo_report(report, header=f"{recognizer.model.name} + {recognizer.detector.kind} detector"
                                             f"{', flip TTA' if report['tta'] else ''} on "
                                             f"{args.photos}" + (f" ({' '.join(args.where)})" if args.where else "")))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        write_photo_predictions(outcomes, out / "predictions.csv")
        plot_confusion(report["confusion"], out / "confusion.png", title=f"{recognizer.model.name}: {Path(args.photos).name}",
                       columns=report["confusion_columns"])
        print(f"wrote {out / 'report.json'}, {out / 'predictions.csv'} (one row per photo), {out / 'confusion.png'}")
    return report
