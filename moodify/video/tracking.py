"""Who is who across video frames, and labels that do not flicker: pure logic, no I/O.

``IoUTracker`` gives every face a stable id by matching each frame's detector boxes to the
tracks of earlier frames by overlap (IoU). A track keeps moving at its last velocity on frames
where the detector is not run, and survives a few missed detections, so a face the detector
loses for a moment (a blink of Haar, a hand in front) keeps its id. ``ProbabilitySmoother``
averages each track's emotion probabilities over time (an exponential moving average), which
stops the label from flickering between two close emotions from one frame to the next.

Both are shared by ``moodify live``, ``moodify video`` and the web app's live and video modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h in pixels

IOU_THRESHOLD = 0.3  # least overlap for a detection to continue a track
MAX_DISTANCE = 1.0  # failing that, farthest centre-to-centre step, in face widths, that still continues it
MAX_SIZE_RATIO = 2.0  # and only between boxes whose widths differ less than this
MAX_MISSED = 5  # detections in a row a track may miss before it is dropped (its id is never reused)
SMOOTHING = 0.6  # EMA weight of the past at each new observation: 0 = off, 0.6 settles in ~3 frames
VELOCITY_MEMORY = 0.5  # EMA weight of the old velocity when a track is matched again
MISSED_VELOCITY_DECAY = 0.5  # a lost face is assumed to slow down rather than fly off


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes, 0 when they do not overlap."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / (aw * ah + bw * bh - inter))


def iou_matrix(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b``: shape (len(a), len(b))."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, dtype=np.float64)[:, None, :]
    b = np.asarray(b, dtype=np.float64)[None, :, :]
    iw = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def centre_distance_matrix(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """Distance between the centres of every box in ``a`` and ``b``, in units of their mean width."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, dtype=np.float64)[:, None, :]
    b = np.asarray(b, dtype=np.float64)[None, :, :]
    dx = (a[..., 0] + a[..., 2] / 2) - (b[..., 0] + b[..., 2] / 2)
    dy = (a[..., 1] + a[..., 3] / 2) - (b[..., 1] + b[..., 3] / 2)
    return np.hypot(dx, dy) / np.maximum((a[..., 2] + b[..., 2]) / 2, 1e-12)


def greedy_match(scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs, best score first, each row and column used once, score >= threshold.

    Greedy is what IoU trackers use in practice: with a handful of faces it agrees with the
    optimal assignment except in contrived ties, and it needs no solver.
    """
    pairs: list[tuple[int, int]] = []
    if scores.size == 0:
        return pairs
    used_rows, used_cols = set(), set()
    for flat in np.argsort(-scores, axis=None, kind="stable"):
        r, c = divmod(int(flat), scores.shape[1])
        if scores[r, c] < threshold:
            break
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        pairs.append((r, c))
    return pairs


@dataclass
class Track:
    """One face followed across frames. ``box`` is where it is now (measured or predicted)."""

    id: int
    box: tuple[float, float, float, float]
    last_seen: tuple[float, float, float, float]  # the box of its last matched detection
    velocity: tuple[float, float] = (0.0, 0.0)  # box movement in pixels per frame
    hits: int = 1  # detections matched so far
    missed: int = 0  # detections missed in a row
    first_frame: int = 0
    last_frame: int = 0  # frame of the last matched detection

    @property
    def int_box(self) -> Box:
        return tuple(int(round(v)) for v in self.box)  # type: ignore[return-value]


@dataclass
class IoUTracker:
    """Stable ids for detector boxes across frames.

    Call ``update(boxes)`` once per frame: with the detector's boxes on frames where it ran (an
    empty list when it found nothing), with ``None`` on frames where it did not run, in which
    case visible tracks move on at their velocity. Returns the tracks to show, by id.

    ``iou_threshold``: least overlap between a detection and a track's predicted or last box.
    ``max_distance``: without that overlap, the farthest a face may have moved (centre to centre,
    in face widths) and still be matched, which keeps fast faces and sparse detection tracked;
    overlap always wins over mere nearness.
    ``max_missed``: detections in a row a track may miss and still take its face back.
    ``min_hits``: detections a new track needs before it is shown (2 hides one-frame false faces).
    ``coast``: missed detections during which a track is still shown at its predicted box (1
    stops a box from blinking when the detector misses a face once; 0 shows only what was found).
    """

    iou_threshold: float = IOU_THRESHOLD
    max_distance: float = MAX_DISTANCE
    max_missed: int = MAX_MISSED
    min_hits: int = 1
    coast: int = 0
    tracks: list[Track] = field(default_factory=list)
    frame: int = -1
    next_id: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed < 0 or self.min_hits < 1 or self.max_distance < 0 or self.coast < 0:
            raise ValueError("max_missed, max_distance and coast must be >= 0, min_hits >= 1")

    def reset(self) -> None:
        """Forget every track (a new video); ids start again at 1."""
        self.tracks.clear()
        self.frame, self.next_id = -1, 1

    def update(self, boxes: Iterable[Sequence[float]] | None) -> list[Track]:
        """Advance one frame; ``boxes`` from the detector, or ``None`` where it was not run."""
        self.frame += 1
        for t in self.tracks:
            dx, dy = t.velocity
            x, y, w, h = t.box
            t.box = (x + dx, y + dy, w, h)
        if boxes is not None:
            self._match([tuple(map(float, b)) for b in boxes])
        return self.visible()

    def visible(self) -> list[Track]:
        """Tracks confirmed by ``min_hits`` and missed by at most ``coast`` detections, by id."""
        return sorted((t for t in self.tracks if t.missed <= self.coast and t.hits >= self.min_hits),
                      key=lambda t: t.id)

    def _match(self, boxes: list[tuple[float, float, float, float]]) -> None:
        predicted = [t.box for t in self.tracks]
        last = [t.last_seen for t in self.tracks]
        # A face that keeps moving is found at its predicted box; one that stopped or came back
        # where it vanished is found at its last box: either overlap counts.
        overlap = np.maximum(iou_matrix(predicted, boxes), iou_matrix(last, boxes))
        distance = np.minimum(centre_distance_matrix(predicted, boxes), centre_distance_matrix(last, boxes))
        widths = np.array([[t.box[2] for t in self.tracks]]).T
        ratio = widths / np.array([[b[2] for b in boxes]]) if self.tracks and boxes else np.ones_like(overlap)
        similar = (ratio < MAX_SIZE_RATIO) & (ratio > 1 / MAX_SIZE_RATIO)
        near = np.zeros_like(overlap)
        if self.max_distance > 0:
            near = np.where(similar & (distance < self.max_distance),
                            self.iou_threshold * (1 - distance / self.max_distance) * 0.999, 0.0)
        # Scores >= iou_threshold are overlaps; those below it are near misses, ranked by nearness.
        scores = np.where(overlap >= self.iou_threshold, overlap, near)
        matched_tracks, matched_boxes = set(), set()
        for ti, bi in greedy_match(scores, 1e-9):
            self._continue(self.tracks[ti], boxes[bi])
            matched_tracks.add(ti)
            matched_boxes.add(bi)
        survivors = []
        for ti, t in enumerate(self.tracks):
            if ti not in matched_tracks:
                t.missed += 1
                t.velocity = (t.velocity[0] * MISSED_VELOCITY_DECAY, t.velocity[1] * MISSED_VELOCITY_DECAY)
                # An unconfirmed track that misses was most likely a false detection.
                if t.missed > self.max_missed or t.hits < self.min_hits:
                    continue
            survivors.append(t)
        for bi, box in enumerate(boxes):
            if bi not in matched_boxes:
                survivors.append(Track(self.next_id, box, box, first_frame=self.frame, last_frame=self.frame))
                self.next_id += 1
        self.tracks = survivors

    def _continue(self, t: Track, box: tuple[float, float, float, float]) -> None:
        frames = max(1, self.frame - t.last_frame)
        step = ((box[0] + box[2] / 2 - t.last_seen[0] - t.last_seen[2] / 2) / frames,
                (box[1] + box[3] / 2 - t.last_seen[1] - t.last_seen[3] / 2) / frames)
        if t.hits == 1:
            t.velocity = step
        else:
            t.velocity = tuple(VELOCITY_MEMORY * v + (1 - VELOCITY_MEMORY) * s for v, s in zip(t.velocity, step))
        t.box = t.last_seen = box
        t.hits += 1
        t.missed = 0
        t.last_frame = self.frame


class ProbabilitySmoother:
    """Per-track exponential moving average of probability vectors.

    ``smoothing`` is the weight the past keeps at each new observation: 0 turns smoothing off
    (each frame's own probabilities), 0.6 lets a real change of expression take over the label in
    about three observations while one odd frame cannot flip it.
    """

    def __init__(self, smoothing: float = SMOOTHING):
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self._state: dict[int, np.ndarray] = {}

    def update(self, key: int, probabilities: Sequence[float]) -> np.ndarray:
        """The smoothed probabilities of ``key`` after observing ``probabilities``."""
        p = np.asarray(probabilities, dtype=np.float64)
        prev = self._state.get(key)
        smoothed = p if prev is None or self.smoothing == 0 else self.smoothing * prev + (1 - self.smoothing) * p
        self._state[key] = smoothed
        return smoothed.copy()

    def get(self, key: int) -> np.ndarray | None:
        state = self._state.get(key)
        return None if state is None else state.copy()

    def keep_only(self, keys: Iterable[int]) -> None:
        """Forget every key not in ``keys`` (tracks the tracker dropped)."""
        keep = set(keys)
        for key in [k for k in self._state if k not in keep]:
            del self._state[key]

    def reset(self) -> None:
        self._state.clear()

    def __len__(self) -> int:
        return len(self._state)
