"""The per-frame core of video and live analysis: frames in, tracked and smoothed faces out.

``FrameAnalyzer`` is what ``moodify video``, ``moodify live`` and the web app's Live and Video
modes run on each frame: the detector on every k-th frame, the tracker carrying the boxes in
between, one batched classification of all the frame's faces through the recognizer's pipeline,
and an EMA of each person's probabilities.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..labels import EMOTIONS
from ..pipeline.detect import Detection
from ..pipeline.recognizer import Face
from ..pipeline.rows import numbered
from .tracking import IOU_THRESHOLD, MAX_MISSED, SMOOTHING, IoUTracker, ProbabilitySmoother

# Per-frame settings that keep a webcam at >= 30 frames/s on a 2-core laptop: detection (the
# slow part) on every 3rd frame on a half-size copy, and a missed detection does not blink the box.
LIVE_SETTINGS = {"detect_every": 3, "detect_side": 320, "coast": 1}


@dataclass
class TrackedFace(Face):
    """A ``Face`` followed across frames: ``probabilities`` are smoothed over time, ``track_id``
    stays with the person, ``raw_probabilities`` are this frame's alone."""

    track_id: int = 0
    raw_probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["track_id"] = self.track_id
        d["raw_probabilities"] = {k: round(v, 6) for k, v in self.raw_probabilities.items()}
        return d


# How long ``FrameAnalyzer.calibrate`` collects a person's frames for their reference (live's `c`).
CALIBRATION_SECONDS = 1.0
# An automatic reference is the median of a person's last this many frames (log-probabilities).
AUTO_REFERENCE_FRAMES = 300


@dataclass
class FrameResult:
    """The faces of one processed frame. ``time`` in seconds from the start; ``detected``: the
    detector ran on this frame (otherwise the boxes were carried along by the tracker)."""

    index: int
    time: float
    faces: list[TrackedFace]
    detected: bool

    def to_dict(self) -> dict:
        return {"frame": self.index, "time_s": round(self.time, 4),
                "faces": [{"face": number, **f.to_dict()} for number, f in numbered(self.faces)]}


class FrameAnalyzer:
    """Frames in, tracked and smoothed faces out: the per-frame core of live and video analysis.

    ``detect_every``: run the face detector on every k-th frame and let the tracker carry the
    boxes in between (classification still runs on every frame). ``detect_side``: the detector
    searches a copy downscaled to this long side (pixels; 0 = full size; None = the detector's own
    setting). A carried face keeps the landmarks of its last detection, moved with its box, so its
    crop is framed the same way between detections. ``smoothing``: EMA
    weight of the past for each track's probabilities (0 = off). ``max_missed``: detections in a
    row a face may go unseen and keep its id. ``coast``: missed detections during which a face
    is still reported at its predicted box (live video looks steadier with 1).
    """

    def __init__(self, recognizer, *, detect_every: int = 1, detect_side: int | None = None,
                 smoothing: float = SMOOTHING, iou_threshold: float = IOU_THRESHOLD,
                 max_missed: int = MAX_MISSED, min_hits: int = 1, coast: int = 0, auto_reference: bool = False):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.recognizer = recognizer
        self.detect_every = detect_every
        self.detector = _detector_at(recognizer.detector, detect_side)
        # The recognizer's own pipeline (model, crop, classify) with this analyzer's detector.
        self.pipeline = recognizer.with_detector(self.detector)
        self.tracker = IoUTracker(iou_threshold=iou_threshold, max_missed=max_missed, min_hits=min_hits,
                                  coast=coast)
        self.smoother = ProbabilitySmoother(smoothing)
        self.frames = 0
        self._t0: float | None = None
        self._landmarks: dict[int, tuple] = {}  # track id -> (box when measured, landmarks)
        if auto_reference:
            from ..pipeline.reference import reference_setting

            reference_setting(recognizer.model)  # refused at once for a model with no measured setting
        self.auto_reference = auto_reference
        self.references: dict = {}  # track id -> Reference, while the track lives
        self._history: dict[int, deque] = {}  # track id -> its last frames' log-probabilities (auto_reference)
        self._calibration: dict | None = None  # {"start", "end", "frames": {track id: [probs]}} while collecting

    @classmethod
    def live(cls, recognizer, **options) -> "FrameAnalyzer":
        """An analyzer with ``LIVE_SETTINGS`` (webcam speed), any of them overridable."""
        return cls(recognizer, **{**LIVE_SETTINGS, **options})

    def reset(self) -> None:
        """Start over for a new video: ids from 1, no smoothing memory."""
        self.tracker.reset()
        self.smoother.reset()
        self.frames = 0
        self._t0 = None
        self._landmarks = {}
        self.references, self._history, self._calibration = {}, {}, None

    def calibrate(self, *, start: float | None = None, end: float | None = None,
                  seconds: float = CALIBRATION_SECONDS) -> None:
        """Take every person seen between ``start`` and ``end`` (seconds of the video; default: from
        the next frame for ``seconds``) as holding a neutral face: their frames there become their
        reference, used from the end of the span while their track lives."""
        from ..pipeline.reference import reference_setting

        if start is not None and end is not None and not (0 <= start < end):
            raise ValueError(f"a reference span needs 0 <= start < end, got {start}-{end}")
        reference_setting(self.recognizer.model)  # a model with no measured setting is refused before any frame
        self._calibration = {"start": start, "end": end, "seconds": seconds, "frames": {}}

    @property
    def calibrating(self) -> bool:
        return self._calibration is not None

    def process(self, image: np.ndarray, *, time_s: float | None = None) -> FrameResult:
        """Analyse one BGR (or grayscale) uint8 frame; ``time_s`` defaults to the wall clock since
        the first frame, right for a camera."""
        if time_s is None:
            now = time.monotonic()
            self._t0 = now if self._t0 is None else self._t0
            time_s = now - self._t0
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        detect = self.frames % self.detect_every == 0
        found = self.pipeline.detect(image) if detect else None
        tracks = self.tracker.update(None if found is None else [d.box for d in found])
        self.smoother.keep_only(t.id for t in self.tracker.tracks)
        if found is not None:
            self._remember_landmarks(tracks, found)
        h, w = gray.shape
        # A carried box whose centre has left the picture is not a face on this frame any more.
        tracks = [t for t in tracks if 0 <= t.box[0] + t.box[2] / 2 < w and 0 <= t.box[1] + t.box[3] / 2 < h]
        detections = [Detection(t.int_box, landmarks=self._carried_landmarks(t)) for t in tracks]
        crops = self.pipeline.crops(gray, detections)
        probs = self.pipeline.predict(crops)  # all faces of the frame in one pass (none: an empty batch)
        self._collect(tracks, probs, float(time_s))
        faces: list[TrackedFace] = []
        for t, d, p, crop in zip(tracks, detections, probs, crops):
            reference = self._reference(t.id, p)
            read = p if reference is None else self.pipeline.relative(p[None], reference)[0]
            smoothed = self.smoother.update(t.id, read)
            faces.append(TrackedFace(d.box, dict(zip(EMOTIONS, map(float, smoothed))), crop, d.landmarks,
                                     relative_to_reference=reference is not None,
                                     track_id=t.id, raw_probabilities=dict(zip(EMOTIONS, map(float, p)))))
        result = FrameResult(self.frames, float(time_s), faces, detect)
        self.frames += 1
        return result

    def _collect(self, tracks, probs: np.ndarray, time_s: float) -> None:
        """Add this frame's readings to a calibration in progress; at its end, make the references."""
        from ..pipeline.reference import Reference

        alive = {t.id for t in self.tracker.tracks}
        for store in (self.references, self._history):
            for key in [k for k in store if k not in alive]:
                del store[key]  # a reference belongs to a tracked person: it ends with their track
        cal = self._calibration
        if cal is None:
            return
        if cal["start"] is None:
            cal["start"], cal["end"] = time_s, time_s + cal["seconds"]
        if cal["start"] <= time_s <= cal["end"]:
            for t, p in zip(tracks, probs):
                cal["frames"].setdefault(t.id, []).append(p)
        if time_s >= cal["end"]:
            for key, frames in cal["frames"].items():
                if key in alive:
                    self.references[key] = Reference.from_probabilities(np.stack(frames),
                                                                        sources=(f"{len(frames)} frames",))
            self._calibration = None

    def _reference(self, key: int, probs: np.ndarray):
        """The person's reference: their calibration, else (``auto_reference``) their earlier frames' median."""
        from ..pipeline.reference import Reference, log_probabilities

        if key in self.references:
            return self.references[key]
        if not self.auto_reference:
            return None
        history = self._history.setdefault(key, deque(maxlen=AUTO_REFERENCE_FRAMES))
        reference = Reference(np.median(np.stack(history), axis=0), count=len(history)) if history else None
        history.append(log_probabilities(probs))
        return reference

    def _remember_landmarks(self, tracks, found) -> None:
        """Each track's landmarks from the detection it was matched to on this frame."""
        by_box = {tuple(map(float, d.box)): d.landmarks for d in found}
        alive = {t.id for t in self.tracker.tracks}
        self._landmarks = {k: v for k, v in self._landmarks.items() if k in alive}
        for t in tracks:
            if t.last_frame == self.tracker.frame and t.last_seen in by_box:
                self._landmarks[t.id] = (t.last_seen, by_box[t.last_seen])

    def _carried_landmarks(self, track):
        """The track's last landmarks, moved with its box since they were measured (None if it has none)."""
        seen = self._landmarks.get(track.id)
        if seen is None or seen[1] is None:
            return None
        (x0, y0, _, _), points = seen
        dx, dy = track.box[0] - x0, track.box[1] - y0
        return tuple((px + dx, py + dy) for px, py in points)


def _detector_at(detector, side: int | None):
    """A copy of ``detector`` (its own OpenCV object: the analyzer may run on another thread) that
    searches images downscaled to ``side`` pixels (0: full size; None: the detector's own setting)."""
    if dataclasses.is_dataclass(detector) and hasattr(detector, "max_side"):
        return dataclasses.replace(detector, **({} if side is None else {"max_side": side}))
    return detector


class FpsMeter:
    """Frames per second over the last ``window`` frames (a steady number, not a jumpy one)."""

    def __init__(self, window: int = 30):
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float | None = None) -> float:
        self._times.append(time.perf_counter() if now is None else now)
        return self.fps

    @property
    def fps(self) -> float:
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])
