"""Batch inputs that say who each photo shows: a person list, and each person's neutral reference.

A person list is a CSV input with the columns ``path,person,reference`` (paths relative to the
CSV's folder; ``reference`` 1 marks that person's neutral photos). ``moodify batch people.csv -o
out.csv`` reads each person's reference photos first (one forward pass each, averaged), then
writes every input as usual, with each face's probabilities relative to that person's reference,
and four more kinds of column: ``person``, ``reference`` (1: the row is one of the person's reference
photos), ``relative_to_reference`` (1: the probabilities are relative) and ``raw_<emotion>``, the
model's own reading. A person with no usable reference is written as read, and named on stderr.
A photo shows one person: a path listed for two people is refused, naming both rows.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import BatchError
from ..labels import EMOTIONS

LIST_COLUMNS = ("path", "person", "reference")
REFERENCE_COLUMNS = ("person", "reference", "relative_to_reference", *(f"raw_{e}" for e in EMOTIONS))


def is_person_list(spec: str) -> bool:
    """Whether an input is a person list: a ``.csv`` file whose header names ``path`` and ``person``."""
    if not (spec.lower().endswith(".csv") and os.path.isfile(spec)):
        return False
    try:
        with open(spec, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, csv.Error):
        return False
    return {"path", "person"} <= {h.strip() for h in header}


def read_person_list(spec: str) -> list[tuple[str, str, bool, int]]:
    """``(path as opened, person, is a reference, line)`` per row of a person list, in file order."""
    rows = []
    base = os.path.dirname(spec)
    with open(spec, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.DictReader(fh)
        for line, row in enumerate(reader, start=2):
            path = (row.get("path") or "").strip()
            if not path:
                continue
            flag = (row.get("reference") or "").strip().lower()
            if flag not in ("", "0", "1", "yes", "no", "true", "false"):
                raise BatchError(f"{spec}, line {line}: reference must be 1 or 0 (or empty), got {flag!r}")
            full = os.path.join(base, path) if base and not os.path.isabs(path) else path
            rows.append((full, (row.get("person") or "").strip(), flag in ("1", "yes", "true"), line))
    return rows


@dataclass
class People:
    """Who each input shows and each person's reference, for one batch job."""

    person_of: dict[str, str] = field(default_factory=dict)  # path -> person
    reference_paths: set[str] = field(default_factory=set)
    references: dict = field(default_factory=dict)  # person -> Reference
    unusable: dict[str, str] = field(default_factory=dict)  # person -> why they have no reference
    setting: object = None  # the model's ReferenceSetting

    @classmethod
    def from_inputs(cls, specs: Sequence[str]) -> "People | None":
        """The people of the person lists among ``specs`` (None where there is none)."""
        lists = [s for s in specs if is_person_list(s)]
        if not lists:
            return None
        people, first_row = cls(), {}  # path -> (list, line) where it was first given a person
        for spec in lists:
            for path, person, is_reference, line in read_person_list(spec):
                first = people.person_of.setdefault(path, person)
                first_spec, first_line = first_row.setdefault(path, (spec, line))
                if first != person and first_spec == spec:
                    base = os.path.dirname(spec)
                    written = path[len(base) + 1:] if base and path.startswith(base + os.sep) else path  # as listed
                    raise BatchError(f"{spec}, line {line}: {written} is listed for {person!r} and, on line "
                                     f"{first_line}, for {first!r}; each photo of a person list shows one person")
                if first != person:
                    raise BatchError(f"{spec}: {path} is listed for {person!r} here and for {first!r} in "
                                     "another list; each photo shows one person")
                if is_reference:
                    people.reference_paths.add(path)
        return people

    def make_references(self, recognizer) -> None:
        """Each person's reference from their reference photos, with ``recognizer`` (one pass per photo)."""
        from ..pipeline.images import ImageError
        from ..pipeline.reference import ReferenceError, reference_setting

        self.setting = reference_setting(recognizer.model)
        by_person: dict[str, list[str]] = {}
        for path in self.reference_paths:
            by_person.setdefault(self.person_of[path], []).append(path)
        for person, paths in sorted(by_person.items()):
            try:
                self.references[person] = recognizer.reference(sorted(paths))
            except (ReferenceError, ImageError) as exc:
                self.unusable[person] = str(exc)
        for person in sorted(set(self.person_of.values()) - set(by_person)):
            self.unusable[person] = "no reference photo in the list"

    def fingerprint(self) -> dict:
        """What a resumed run must share with the interrupted one: who is who, and the references."""
        return {"people": len(set(self.person_of.values())), "references": {
            p: [round(float(v), 6) for v in r.log_probabilities] for p, r in sorted(self.references.items())}}

    def adjust(self, path: str, probs: np.ndarray | None) -> tuple[np.ndarray | None, list[tuple]]:
        """The probabilities to write for an input's faces and the ``REFERENCE_COLUMNS`` values per row."""
        from ..pipeline.reference import adjust

        person = self.person_of.get(path)
        is_reference = int(path in self.reference_paths) if person is not None else None
        reference = self.references.get(person)
        if probs is None or not len(probs):
            return probs, [(person, is_reference, None, *(None,) * len(EMOTIONS))]
        written = probs if reference is None else adjust(probs, reference, self.setting)
        return written, [(person, is_reference, int(reference is not None), *map(float, p)) for p in probs]


def unusable_report(people: People) -> str | None:
    """A few lines for stderr naming the people read without a reference, or None."""
    from ..names import printable

    if not people.unusable:
        return None
    lines = [f"moodify batch: {len(people.unusable)} person(s) had no usable reference; their photos are read as they are:"]
    lines += [f"  {printable(person) or '(no person)'}: {printable(why)}" for person, why in list(people.unusable.items())[:20]]
    return "\n".join(lines)
