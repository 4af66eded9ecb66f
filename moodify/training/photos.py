"""Labelled photos: the whole pipeline (detect, crop, classify) scored on real pictures.

A labelled photo set is either a CSV with ``path`` and ``label`` columns (other columns allowed:
``--where column=value`` keeps matching rows; paths are relative to the CSV's folder) or a folder
with one sub-folder per class (``happy/``, ``sad/``, ...; FER2013 names, or KDEF-style aliases
such as ``afraid``). ``moodify evaluate --photos PATH`` and ``python -m moodify.training.framing --photos``
read them through ``load_photos``.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..labels import EMOTIONS, label_index
from ..names import csv_cell, printable
from ..pipeline.images import IMAGE_SUFFIXES
from ..pipeline.rows import BOX_COLUMNS, FIRST_FACE, PROBABILITY_DECIMALS, face_row
from .data import DataError, bounded_lines



@dataclass(frozen=True)
class LabelledPhoto:
    path: str  # as it is opened
    label: int  # index into EMOTIONS
    name: str  # as the user wrote it (relative to the CSV or folder), for reports
    meta: dict = field(default_factory=dict, compare=False)  # the CSV row


def _label(text: str) -> int:
    index = label_index(text)
    if index is None:
        raise DataError(f"unknown label {text!r}: use one of {', '.join(EMOTIONS)}")
    return index


def parse_where(clauses: Sequence[str] | None, *, option: str = "--where") -> dict[str, set[str]]:
    """``["split=val", "angle=HL,HR"]`` -> ``{"split": {"val"}, "angle": {"HL", "HR"}}``; errors name ``option``."""
    where: dict[str, set[str]] = {}
    for clause in clauses or ():
        column, sep, values = clause.partition("=")
        if not sep or not column.strip():
            raise DataError(f"{option} takes COLUMN=VALUE[,VALUE...], got {clause!r}")
        where.setdefault(column.strip(), set()).update(v.strip() for v in values.split(","))
    return where


def load_photos(source: str | os.PathLike, *, where: Sequence[str] | dict | None = None,
                option: str = "--where") -> list[LabelledPhoto]:
    """The labelled photos of a CSV or a folder per class, filtered by ``where`` (the command's ``option``)."""
    source = Path(source)
    conditions = where if isinstance(where, dict) else parse_where(where, option=option)
    if source.is_dir():
        if conditions:
            raise DataError(f"{option} selects rows of a CSV; a folder per class has no columns")
        photos = _folder_photos(source)
    elif source.is_file():
        photos = _csv_photos(source, conditions, option)
    else:
        raise DataError(f"no such labelled-photo CSV or folder: {source}")
    if not photos:
        raise DataError(f"{source}: no labelled photos" + (f" match the {option} conditions" if conditions else ""))
    return photos


def _csv_photos(path: Path, where: dict[str, set[str]], option: str = "--where") -> list[LabelledPhoto]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(bounded_lines(fh, path))
        columns = reader.fieldnames or []
        missing = {"path", "label"} - set(columns)
        if missing:
            raise DataError(f"{path}: a labelled-photo CSV needs the columns path and label "
                            f"(missing {', '.join(sorted(missing))}; found {', '.join(columns) or 'none'})")
        unknown = set(where) - set(columns)
        if unknown:
            raise DataError(f"{path}: {option} names no column {', '.join(sorted(unknown))} "
                            f"(columns: {', '.join(columns)})")
        photos = []
        for line, row in enumerate(reader, start=2):
            if any(row.get(col) not in values for col, values in where.items()):
                continue
            try:
                label = _label(row["label"] or "")
            except DataError as exc:
                raise DataError(f"{path}, line {line}: {exc}") from None
            name = row["path"]
            photos.append(LabelledPhoto(str(path.parent / name), label, name, dict(row)))
    return photos


def _folder_photos(folder: Path) -> list[LabelledPhoto]:
    photos = []
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: expected one sub-folder per class ({', '.join(EMOTIONS)})")
    for sub in classes:
        label = _label(sub.name)
        for file in sorted(sub.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
                photos.append(LabelledPhoto(str(file), label, str(file.relative_to(folder))))
    return photos


@dataclass
class PhotoOutcome:
    """What the pipeline made of one labelled photo: the largest face's probabilities, or why none."""

    photo: LabelledPhoto
    probabilities: np.ndarray | None = None  # (7,) for the largest face (relative to its reference, if any)
    faces: int = 0
    error: str | None = None  # the photo could not be read
    referenced: bool = False  # read relative to its person's reference
    box: tuple[int, int, int, int] | None = None  # the largest face's (x, y, w, h), in pixels


@dataclass
class PhotoReferences:
    """Each person's reference (their neutral photos, by ``--person`` columns and angle) for a photo set."""

    person: tuple[str, ...]  # the CSV columns that name one person, e.g. ("subject", "session")
    references: dict = field(default_factory=dict)  # person key -> Reference
    reference_paths: set = field(default_factory=set)  # the reference photos, which are not scored
    unusable: dict = field(default_factory=dict)  # person key -> why no reference could be made

    def key(self, photo: LabelledPhoto) -> tuple:
        return tuple(photo.meta.get(c, "") for c in self.person) + ((photo.meta["angle"],) if "angle" in photo.meta else ())

    def reference_for(self, photo: LabelledPhoto):
        return self.references.get(self.key(photo))


def load_references(recognizer, source: str | os.PathLike, photos: Sequence[LabelledPhoto], *,
                    person: Sequence[str], where: Sequence[str]) -> tuple[list[LabelledPhoto], PhotoReferences]:
    """The photos to score (reference photos left out) and each person's reference.

    The reference photos are the CSV's rows matching ``where`` (e.g. ``label=neutral``), whatever
    ``--where`` kept; a photo's reference is made from those of the same ``person`` (and the same
    ``angle``, where the CSV has that column). Several reference photos of one person are averaged.
    """
    from ..pipeline.images import ImageError
    from ..pipeline.reference import ReferenceError, reference_setting

    if Path(source).is_dir():
        raise DataError("--person and --reference-where read columns of a CSV; a folder per class has none")
    reference_setting(recognizer.model)  # a model with no measured setting: one error, not every person unusable
    candidates = load_photos(source, where=where, option="--reference-where")
    missing = [c for c in person if c not in candidates[0].meta]
    if missing:
        raise DataError(f"{source}: --person names no column {', '.join(missing)} "
                        f"(columns: {', '.join(candidates[0].meta)})")
    refs = PhotoReferences(tuple(person), reference_paths={c.path for c in candidates})
    groups: dict[tuple, list[LabelledPhoto]] = {}
    for c in candidates:
        groups.setdefault(refs.key(c), []).append(c)
    scored = [ph for ph in photos if ph.path not in refs.reference_paths]
    for key in sorted({refs.key(ph) for ph in scored} & set(groups)):
        try:
            refs.references[key] = recognizer.reference([c.path for c in groups[key]])
        except (ReferenceError, ImageError) as exc:
            refs.unusable[key] = str(exc)
    return scored, refs


def run_photos(recognizer, photos: Iterable[LabelledPhoto], *, progress: bool = False,
               total: int | None = None, references: PhotoReferences | None = None) -> tuple[list[PhotoOutcome], float]:
    """Analyse every photo (the largest face counts); returns the outcomes and the seconds taken.

    ``references``: each photo is read relative to its person's reference, where one was made.
    """
    from tqdm import tqdm

    from ..pipeline.images import ImageError

    outcomes = []
    start = time.perf_counter()
    for photo in tqdm(photos, total=total, unit="photo", disable=not progress, leave=False):
        reference = references.reference_for(photo) if references is not None else None
        try:
            faces = recognizer.analyze(photo.path, reference=reference)
        except ImageError as exc:
            outcomes.append(PhotoOutcome(photo, error=str(exc)))
            continue
        probs = np.array([faces[0].probabilities[e] for e in EMOTIONS]) if faces else None
        outcomes.append(PhotoOutcome(photo, probs, len(faces), referenced=reference is not None,
                                     box=tuple(faces[0].box) if faces else None))
    return outcomes, time.perf_counter() - start


def photo_report(outcomes: Sequence[PhotoOutcome], *, seconds: float | None = None) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix over all photos.

    A photo with no face found, or unreadable, counts as wrong (a user got no answer): it sits in
    the confusion matrix's extra last column, "no face".
    """
    from .metrics import classification_report

    n = len(outcomes)
    labels = np.array([o.photo.label for o in outcomes], dtype=int)
    predicted = np.array([-1 if o.probabilities is None else int(np.argmax(o.probabilities)) for o in outcomes])
    confusion = np.zeros((len(EMOTIONS), len(EMOTIONS) + 1), dtype=int)
    for t, p in zip(labels, predicted):
        confusion[t, p if p >= 0 else len(EMOTIONS)] += 1
    correct = labels == predicted
    per_class = {}
    f1s = []
    for k, name in enumerate(EMOTIONS):
        support = int((labels == k).sum())
        tp = int(confusion[k, k])
        called = int((predicted == k).sum())
        recall = tp / support if support else 0.0
        precision = tp / called if called else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            f1s.append(f1)
    report = {
        "n": n,
        "accuracy": float(correct.mean()) if n else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "confusion_columns": [*EMOTIONS, "no face"],
        "no_face": [o.photo.name for o in outcomes if o.error is None and o.probabilities is None],
        "unreadable": {o.photo.name: o.error for o in outcomes if o.error is not None},
        "several_faces": sum(1 for o in outcomes if o.faces > 1),
    }
    found = [o for o in outcomes if o.probabilities is not None]
    if found:  # calibration where the pipeline gave an answer
        probs = np.stack([o.probabilities for o in found])
        report["ece_on_found"] = classification_report(probs, np.array([o.photo.label for o in found]))["ece"]
        report["accuracy_on_found"] = float(np.mean([np.argmax(o.probabilities) == o.photo.label for o in found]))
    if seconds is not None:
        report["seconds"] = round(seconds, 3)
        report["ms_per_photo"] = round(1000 * seconds / n, 2) if n else 0.0
    return report


# predictions.csv: the photo and its label, then the largest face as `moodify batch` writes a face
# (same columns, same 6 decimals), with "no face" in ``emotion`` where none was found.
PREDICTION_COLUMNS = ("path", "label", "correct", "face", "faces", *BOX_COLUMNS, "emotion", "confidence", *EMOTIONS,
                      "error")


def write_photo_predictions(outcomes: Sequence[PhotoOutcome], path: str | os.PathLike) -> None:
    """One CSV row per photo (``PREDICTION_COLUMNS``): its label, whether the pipeline got it right,
    and the largest face as every Moodify table describes a face, or why there is none."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for o in outcomes:
            label = EMOTIONS[o.photo.label]
            if o.probabilities is None:
                emotion = "" if o.error else "no face"
                writer.writerow([csv_cell(o.photo.name), label, False, "", "" if o.error else o.faces,
                                 *[""] * len(BOX_COLUMNS), emotion, "", *[""] * len(EMOTIONS), csv_cell(o.error or "")])
                continue
            number, x, y, w, h, emotion, *probabilities = face_row(FIRST_FACE, o.box or (0, 0, 0, 0), o.probabilities)
            writer.writerow([csv_cell(o.photo.name), label, emotion == label, number, o.faces, x, y, w, h, emotion,
                             *(f"{p:.{PROBABILITY_DECIMALS}f}" for p in probabilities), ""])


def format_photo_report(report: dict, *, header: str) -> str:
    lines = [header]
    if "reference" in report:
        r = report["reference"]
        lines.append(f"  relative to each person's reference ({', '.join(r['person'])}): {r['with_reference']} photos; "
                     f"{r['without_reference']} had no reference and were read as they are; "
                     f"{r['reference_photos']} reference photos not scored")
    lines += [
             f"  accuracy {report['accuracy']:.2%}   macro-F1 {report['macro_f1']:.4f}   photos {report['n']}   "
             f"no face found {len(report['no_face'])}   unreadable {len(report['unreadable'])}   "
             f"several faces {report['several_faces']}"]
    if "ms_per_photo" in report:
        lines.append(f"  speed {report['ms_per_photo']:.1f} ms per photo ({report['seconds']:.1f} s in all)")
    lines.append(f"  {'class':<9} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}")
    for label, c in report["per_class"].items():
        lines.append(f"  {label:<9} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>5}")
    lines.append("  confusion (rows true, columns predicted: " + ", ".join(report["confusion_columns"]) + "):")
    lines += ["    " + " ".join(f"{v:>4}" for v in row) for row in report["confusion"]]
    for name in report["no_face"][:20]:
        lines.append(f"  no face: {printable(name)}")
    if len(report["no_face"]) > 20:
        lines.append(f"  ... and {len(report['no_face']) - 20} more without a face (all in report.json)")
    for name, error in list(report["unreadable"].items())[:20]:
        lines.append(f"  unreadable: {printable(error)}")
    return "\n".join(lines)

