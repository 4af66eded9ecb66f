"""The CSV timeline of a video or live run and its per-person summary.

The timeline has one row per face per processed frame: ``time_s, frame, track_id``, then the face
columns every Moodify table has (``moodify.pipeline.rows.FACE_COLUMNS``: ``face`` numbered from 1
in the frame, the box, this frame's own ``emotion`` and ``confidence`` and its seven
probabilities), then the temporally smoothed ``label`` with its smoothed ``label_confidence``
(what the annotated video shows), and ``relative_to_reference`` (1: that label was read relative to
the person's neutral face, ``moodify video --reference-seconds`` or live's calibration).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import VideoError
from ..labels import EMOTIONS
from ..pipeline.rows import FACE_COLUMNS, face_row, numbered, percent
from .frames import FrameResult

CSV_COLUMNS = ("time_s", "frame", "track_id", *FACE_COLUMNS, "label", "label_confidence", "relative_to_reference")
# The per-person summary: ``EmotionSummary.rows()``, one dict per person with these keys.
SUMMARY_COLUMNS = ("track_id", "first_s", "last_s", "frames", "main_emotion", "mood", *EMOTIONS)
# A person is "mostly X" only when X's share of the time leads every other emotion's by at least
# this much; emotions closer to the top than that are named together ("mixed: sad / happy").
CLEAR_LEAD = 0.10


def mood_emotions(shares: Mapping[str, float], *, lead: float = CLEAR_LEAD) -> list[str]:
    """The emotions within ``lead`` of the largest share of the time, largest first (one when it is clear)."""
    ranked = sorted(shares.items(), key=lambda item: -item[1])  # stable: EMOTIONS order on equal shares
    top = ranked[0][1] if ranked else 0.0
    return [emotion for emotion, share in ranked if share > 0 and round(top - share, 9) < lead]


def mood(shares: Mapping[str, float], *, lead: float = CLEAR_LEAD) -> str:
    """``"mostly happy"``, or ``"mixed: sad / happy / neutral"`` when no emotion's share of the time
    is ``lead`` ahead of the next: what ``moodify video``, ``moodify live`` and the app call a person."""
    close = mood_emotions(shares, lead=lead)
    if len(close) == 1:
        return f"mostly {close[0]}"
    return "mixed: " + " / ".join(close) if close else "no face"


def person_line(row: Mapping) -> str:
    """One person of ``EmotionSummary.rows()`` in words: ``"Person 1: mostly happy (95.0% of the
    time), seen 0.0-12.3 s"``, with every emotion of a mixed mood and its share."""
    shares = {e: row[e] for e in EMOTIONS}
    named = mood_emotions(shares)
    return (f"Person {row['track_id']}: {mood(shares)} ({' / '.join(percent(shares[e]) for e in named)} of the "
            f"time), seen {row['first_s']:.1f}-{row['last_s']:.1f} s")


def timeline_rows(result: FrameResult) -> list[list]:
    """The ``CSV_COLUMNS`` values of one processed frame, one list per face, as the CSV writes them."""
    rows = []
    for number, face in numbered(result.faces):
        raw = [face.raw_probabilities[e] for e in EMOTIONS]
        number, x, y, w, h, emotion, confidence, *probs = face_row(number, face.box, raw)
        rows.append([f"{result.time:.4f}", result.index, face.track_id, number, x, y, w, h, emotion,
                     f"{confidence:.6f}", *(f"{p:.6f}" for p in probs), face.emotion, f"{face.confidence:.6f}",
                     int(face.relative_to_reference)])
    return rows


class TimelineWriter:
    """The CSV timeline: ``CSV_COLUMNS``, one row per face per processed frame, flushed after
    every frame so the file is complete up to the last frame even if the job dies."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._fh = open(self.path, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot write ({exc.strerror})") from None
        self._writer = csv.writer(self._fh)
        self._writer.writerow(CSV_COLUMNS)
        self.rows = 0

    def write(self, result: FrameResult) -> None:
        rows = timeline_rows(result)
        self._writer.writerows(rows)
        self.rows += len(rows)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class TrackSummary:
    track_id: int
    first_time: float
    last_time: float
    frames: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))

    @property
    def shares(self) -> dict[str, float]:
        """Share of this person's processed frames in each (smoothed) emotion; sums to 1."""
        return {e: c / self.frames if self.frames else 0.0 for e, c in self.counts.items()}

    @property
    def main_emotion(self) -> str:
        return max(self.counts, key=self.counts.get)

    @property
    def mood(self) -> str:
        """``"mostly X"`` or ``"mixed: X / Y"`` (``mood``)."""
        return mood(self.shares)


class EmotionSummary:
    """Per person (track): when they were seen and the share of time in each emotion."""

    def __init__(self) -> None:
        self.tracks: dict[int, TrackSummary] = {}
        self.frames = 0

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        for face in result.faces:
            s = self.tracks.setdefault(face.track_id, TrackSummary(face.track_id, result.time, result.time))
            s.last_time = result.time
            s.frames += 1
            s.counts[face.emotion] += 1

    def rows(self) -> list[dict]:
        """One dict per person: track_id, first/last time, frames, main emotion (the largest share),
        mood (``"mostly X"`` or ``"mixed: X / Y"``), share per emotion."""
        return [{"track_id": s.track_id, "first_s": round(s.first_time, 3), "last_s": round(s.last_time, 3),
                 "frames": s.frames, "main_emotion": s.main_emotion, "mood": s.mood,
                 **{e: round(v, 4) for e, v in s.shares.items()}}
                for s in sorted(self.tracks.values(), key=lambda s: s.track_id)]

    def format(self) -> str:
        """A text table: one line per person with the share of time in each emotion."""
        if not self.tracks:
            return f"no face found in {self.frames} processed frame(s)"
        head = f"{'person':>6}  {'seen (s)':>13}  {'frames':>6}  " + "  ".join(f"{e:>8}" for e in EMOTIONS)
        lines = [head]
        for row in self.rows():
            seen = f"{row['first_s']:.1f}-{row['last_s']:.1f}"
            lines.append(f"{row['track_id']:>6}  {seen:>13}  {row['frames']:>6}  "
                         + "  ".join(f"{percent(row[e]):>8}" for e in EMOTIONS) + f"  {row['mood']}")
        return "\n".join(lines)
