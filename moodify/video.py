"""Emotions over time in a video: tracked per person, smoothed, written as video, CSV and summary.

``moodify video talk.mp4 -o talk-annotated.mp4 --csv timeline.csv`` decodes the video, finds and
tracks the faces, classifies each tracked face on every processed frame (one batched forward
pass per frame), and writes

* an annotated copy (H.264 through PyAV, which browsers play; OpenCV's mp4v where that fails),
* a CSV timeline, one row per face per processed frame: ``time_s, frame, track_id, x, y, w, h``,
  that frame's seven probabilities (``angry`` ... ``neutral``, EMOTIONS order), and the
  temporally smoothed ``label`` with its smoothed ``label_confidence``,
* a per-person summary: the share of processed frames each smoothed emotion held.

The same pieces serve Python and the web app::

    analysis = analyze_video("talk.mp4", recognizer=rec, output="out.mp4", csv_path="t.csv")
    for result in analysis:          # one FrameResult per processed frame, outputs written as it goes
        ...
    print(analysis.summary.format(), analysis.damage)

``FrameAnalyzer`` (frame in, tracked faces out) is what ``moodify live`` and the web app's live
mode run on each camera frame. A damaged file is read up to the damage: what was decoded is
analysed, the outputs stay valid, and ``damage`` says what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from .detect import DETECT_MAX_SIDE, YUNET_MAX_SIDE, Detection, find_faces
from .draw import annotate_tracks
from .labels import EMOTIONS
from .recognizer import Face
from .tracking import IOU_THRESHOLD, MAX_MISSED, SMOOTHING, IoUTracker, ProbabilitySmoother

DESCRIPTION = ("Annotate a video: faces tracked per person, smoothed emotions, a CSV timeline "
               "(one row per face per frame) and a per-person summary.")

DEFAULT_FPS = 30.0  # frames/s assumed when a file does not say
# Per-frame settings that keep a webcam at >= 30 frames/s on a 2-core laptop: detection (the
# slow part) on every 3rd frame on a half-size copy, and a missed detection does not blink the box.
LIVE_SETTINGS = {"detect_every": 3, "detect_side": 320, "coast": 1}
CSV_COLUMNS = ("time_s", "frame", "track_id", "x", "y", "w", "h", *EMOTIONS, "label", "label_confidence")
CODECS = ("auto", "h264", "mp4v")


class VideoError(Exception):
    """A video that cannot be opened or written; the message names it and says why."""


# --------------------------------------------------------------------------- per-frame analysis

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


@dataclass
class FrameResult:
    """The faces of one processed frame. ``time`` in seconds from the start; ``detected``: the
    detector ran on this frame (otherwise the boxes were carried along by the tracker)."""

    index: int
    time: float
    faces: list[TrackedFace]
    detected: bool

    def to_dict(self) -> dict:
        return {"frame": self.index, "time_s": round(self.time, 4), "faces": [f.to_dict() for f in self.faces]}


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
                 max_missed: int = MAX_MISSED, min_hits: int = 1, coast: int = 0):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.recognizer = recognizer
        self.detect_every = detect_every
        self.detector = _detector_at(recognizer.detector, detect_side)
        self.tracker = IoUTracker(iou_threshold=iou_threshold, max_missed=max_missed, min_hits=min_hits,
                                  coast=coast)
        self.smoother = ProbabilitySmoother(smoothing)
        self.frames = 0
        self._t0: float | None = None
        self._landmarks: dict[int, tuple] = {}  # track id -> (box when measured, landmarks)

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

    def process(self, image: np.ndarray, *, time_s: float | None = None) -> FrameResult:
        """Analyse one BGR (or grayscale) uint8 frame; ``time_s`` defaults to the wall clock since
        the first frame, right for a camera."""
        if time_s is None:
            now = time.monotonic()
            self._t0 = now if self._t0 is None else self._t0
            time_s = now - self._t0
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        detect = self.frames % self.detect_every == 0
        found = find_faces(self.detector, image) if detect else None
        tracks = self.tracker.update(None if found is None else [d.box for d in found])
        self.smoother.keep_only(t.id for t in self.tracker.tracks)
        if found is not None:
            self._remember_landmarks(tracks, found)
        h, w = gray.shape
        # A carried box whose centre has left the picture is not a face on this frame any more.
        tracks = [t for t in tracks if 0 <= t.box[0] + t.box[2] / 2 < w and 0 <= t.box[1] + t.box[3] / 2 < h]
        faces: list[TrackedFace] = []
        if tracks:
            detections = [Detection(t.int_box, landmarks=self._carried_landmarks(t)) for t in tracks]
            crops = self.recognizer.crops(gray, detections)
            probs = self.recognizer.model.predict(crops)  # all faces of the frame in one pass
            for t, d, p, crop in zip(tracks, detections, probs, crops):
                smoothed = self.smoother.update(t.id, p)
                faces.append(TrackedFace(d.box, dict(zip(EMOTIONS, map(float, smoothed))), crop, d.landmarks,
                                         track_id=t.id, raw_probabilities=dict(zip(EMOTIONS, map(float, p)))))
        result = FrameResult(self.frames, float(time_s), faces, detect)
        self.frames += 1
        return result


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


# --------------------------------------------------------------------------- reading video

@dataclass
class VideoFrame:
    index: int  # decoded frames before this one
    time: float  # seconds from the first frame
    bgr: np.ndarray


class VideoReader:
    """Frames of a video file or stream URL, decoded by FFmpeg through PyAV, as BGR arrays.

    Opening raises ``VideoError`` for a missing, empty or unreadable file. Reading stops at
    damage instead of raising: ``damage`` then says how far it got (also when the container
    promised more frames than could be decoded, the mark of a truncated file).
    """

    def __init__(self, source: str | os.PathLike, *, timeout_s: float = 10.0):
        import av  # a heavy import, paid only by those who read video

        self.name = str(source)
        is_url = "://" in self.name
        if not is_url:
            path = Path(source)
            if not path.exists():
                raise VideoError(f"{self.name}: no such file")
            if path.is_dir():
                raise VideoError(f"{self.name}: is a folder, not a video")
            if not path.is_file():  # reading a FIFO that nobody writes to would block forever
                raise VideoError(f"{self.name}: not a regular file (a pipe, socket or device); give a video file")
            if path.stat().st_size == 0:
                raise VideoError(f"{self.name}: empty file (0 bytes)")
        try:
            self._container = av.open(self.name, timeout=timeout_s if is_url else None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.name}: not a readable video ({_ffmpeg_reason(exc)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.name}: has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame-threaded decoding: the decoder uses the idle core
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else DEFAULT_FPS
        self.frame_count = int(self._stream.frames or 0)  # 0: the container does not say
        self.width = self._stream.codec_context.width
        self.height = self._stream.codec_context.height
        self.codec = self._stream.codec_context.name
        self.is_live = is_url
        self.frames_read = 0
        self.bad_packets = 0
        self.damage: str | None = None

    def __iter__(self) -> Iterator[VideoFrame]:
        import av

        t0 = None
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                self.damage = f"reading stopped after frame {self.frames_read}: {_ffmpeg_reason(exc)}"
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self.bad_packets += 1  # the decoder resynchronises at the next key frame
                continue
            for frame in frames:
                t = frame.time if frame.time is not None else self.frames_read / self.fps
                t0 = t if t0 is None else t0
                yield VideoFrame(self.frames_read, t - t0, frame.to_ndarray(format="bgr24"))
                self.frames_read += 1
        self._note_damage()

    def _note_damage(self) -> None:
        notes = [self.damage] if self.damage else []
        if self.frame_count and self.frames_read < self.frame_count and not self.damage:
            notes.append(f"only {self.frames_read} of {self.frame_count} frames could be decoded: "
                         "the file is truncated or damaged")
        if self.bad_packets:
            notes.append(f"{self.bad_packets} undecodable packet(s) skipped")
        self.damage = "; ".join(notes) or None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0]


# --------------------------------------------------------------------------- writing video

class VideoWriter:
    """Frames to a video file, opened at the first frame (which sets the size).

    ``codec``: ``h264`` (libx264 through PyAV; MP4s that browsers play, with the index at the
    front so they stream), ``mp4v`` (OpenCV's MPEG-4 Part 2: plays in desktop players, not in
    browsers), or ``auto`` (H.264 where this FFmpeg has libx264, else mp4v). ``close()`` writes
    the index: a video is valid up to the last frame written as long as it is closed, which
    ``analyze_video`` and ``moodify live`` make sure of even when interrupted.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, codec: str = "auto", preset: str = "veryfast"):
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoError(f"{self.path}: folder {self.path.parent} does not exist")
        # Checked now, not at the first frame or the last: a job must not run to find it cannot write.
        if self.path.is_dir():
            raise VideoError(f"{self.path}: is a folder; give a file name, like {self.path / 'annotated.mp4'}")
        if not os.access(self.path.parent, os.W_OK):
            raise VideoError(f"{self.path}: cannot write in {self.path.parent} (read-only or not permitted)")
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        self.codec = codec if codec != "auto" else ("h264" if h264_available() else "mp4v")
        self.preset = preset
        self.frames_written = 0
        self._av = self._av_stream = self._cv = None
        self._size: tuple[int, int] | None = None

    def write(self, bgr: np.ndarray) -> None:
        if self._size is None:
            self._open(bgr.shape[1], bgr.shape[0])
        w, h = self._size
        if bgr.shape[1] != w or bgr.shape[0] != h:
            bgr = cv2.resize(bgr, (w, h))
        if self._cv is not None:
            self._cv.write(bgr)
        else:
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
            try:
                self._av.mux(self._av_stream.encode(frame))
            except (OSError, av.error.FFmpegError) as exc:  # a full disk, a vanished folder
                raise VideoError(f"{self.path}: writing failed after {self.frames_written} frames ({exc})") from None
        self.frames_written += 1

    def _open(self, width: int, height: int) -> None:
        if self.codec == "h264":
            import av

            # yuv420p, the pixel format every browser decodes, needs even sides.
            self._size = (width - width % 2, height - height % 2)
            try:
                self._av = av.open(str(self.path), "w", options={"movflags": "+faststart"})
                self._av_stream = self._av.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
                self._av_stream.width, self._av_stream.height = self._size
                self._av_stream.pix_fmt = "yuv420p"
                self._av_stream.options = {"preset": self.preset, "crf": "23"}
            except (av.error.FFmpegError, ValueError) as exc:
                raise VideoError(f"{self.path}: cannot write H.264 ({exc}); try --codec mp4v") from None
        else:
            self._size = (width, height)
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._cv.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot write an mp4v video here")

    def close(self) -> None:
        if self._av is not None:
            import av

            container, self._av = self._av, None
            try:
                container.mux(self._av_stream.encode(None))  # flush the frames the encoder holds back
                container.close()
            except (OSError, av.error.FFmpegError) as exc:  # a full disk, a vanished folder
                raise VideoError(f"{self.path}: finishing the video failed after {self.frames_written} frames "
                                 f"({exc})") from None
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def h264_available() -> bool:
    """Whether PyAV's FFmpeg has the libx264 encoder (the PyPI wheels do)."""
    try:
        import av

        return "libx264" in av.codecs_available
    except ImportError:
        return False


# --------------------------------------------------------------------------- timeline and summary

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
        for face in result.faces:
            x, y, w, h = face.box
            self._writer.writerow([f"{result.time:.4f}", result.index, face.track_id, x, y, w, h,
                                   *(f"{face.raw_probabilities[e]:.6f}" for e in EMOTIONS),
                                   face.emotion, f"{face.confidence:.6f}"])
            self.rows += 1
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
        """One dict per person: track_id, first/last time, frames, main emotion, share per emotion."""
        return [{"track_id": s.track_id, "first_s": round(s.first_time, 3), "last_s": round(s.last_time, 3),
                 "frames": s.frames, "main_emotion": s.main_emotion,
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
                         + "  ".join(f"{row[e]:>8.0%}" for e in EMOTIONS) + f"  mostly {row['main_emotion']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the whole job

class VideoAnalysis:
    """An analysis in progress: iterate it for one ``FrameResult`` per processed frame; the
    annotated video and the CSV are written as it goes and closed when the iteration ends,
    breaks or fails. Afterwards: ``summary``, ``damage`` (None, or what went wrong in the input),
    ``frames_read``, ``frames_processed``; ``last_annotated`` is the latest annotated frame."""

    def __init__(self, source, *, recognizer=None, output: str | os.PathLike | None = None,
                 csv_path: str | os.PathLike | None = None, every: int = 1, detect_every: int = 1,
                 detect_side: int | None = None, smoothing: float = SMOOTHING, max_missed: int = MAX_MISSED,
                 coast: int = 0, codec: str = "auto", progress: bool = True, max_frames: int = 0):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if output is not None and Path(output).resolve() == Path(source).resolve():
            raise VideoError(f"{output}: the output would overwrite the input")
        if recognizer is None:
            from .recognizer import Recognizer

            recognizer = Recognizer()
        self.analyzer = FrameAnalyzer(recognizer, detect_every=detect_every, detect_side=detect_side,
                                      smoothing=smoothing, max_missed=max_missed, coast=coast)
        self.reader = VideoReader(source)
        try:
            self.writer = VideoWriter(output, fps=self.reader.fps, codec=codec) if output is not None else None
            self.timeline = TimelineWriter(csv_path) if csv_path is not None else None
        except BaseException:
            self.reader.close()
            raise
        self.every = every
        self.max_frames = max_frames
        self.progress = progress
        self.summary = EmotionSummary()
        self.damage: str | None = None
        self.frames_read = self.frames_processed = 0
        self.last_annotated: np.ndarray | None = None
        self._started = False

    def __iter__(self) -> Iterator[FrameResult]:
        from tqdm import tqdm

        if self._started:
            raise RuntimeError("a VideoAnalysis can be iterated once")
        self._started = True
        total = self.reader.frame_count or None
        if total and self.max_frames:
            total = min(total, self.max_frames)
        bar = tqdm(total=total, unit="frame", desc=Path(self.reader.name).name, disable=not self.progress,
                   file=sys.stderr, dynamic_ncols=True)
        result: FrameResult | None = None
        try:
            for frame in self.reader:
                if self.max_frames and frame.index >= self.max_frames:
                    break
                fresh = frame.index % self.every == 0
                if fresh:
                    result = self.analyzer.process(frame.bgr, time_s=frame.time)
                    result.index = frame.index  # the file's frame number, not the analyser's count
                    self.summary.add(result)
                    if self.timeline is not None:
                        self.timeline.write(result)
                    self.frames_processed += 1
                # Frames skipped by --every keep the latest boxes so the video plays at full rate.
                faces = result.faces if result is not None else []
                self.last_annotated = annotate_tracks(frame.bgr, faces, copy=False)
                if self.writer is not None:
                    self.writer.write(self.last_annotated)
                self.frames_read += 1
                bar.update()
                if fresh:
                    yield result
        finally:
            bar.close()
            self.close()
            self.damage = self.reader.damage

    def run(self) -> "VideoAnalysis":
        """Analyse the whole video (no per-frame results kept) and return self."""
        for _ in self:
            pass
        return self

    def close(self) -> None:
        for closer in (self.writer, self.timeline, self.reader):
            if closer is not None:
                closer.close()


def analyze_video(source, **options) -> VideoAnalysis:
    """Open ``source`` (a video file or stream URL) for analysis; iterate the result for one
    ``FrameResult`` per processed frame. Raises ``VideoError`` at once when it cannot be opened.
    Options: see ``VideoAnalysis``."""
    return VideoAnalysis(source, **options)


# --------------------------------------------------------------------------- command line

def add_arguments(p: argparse.ArgumentParser) -> None:
    from .options import add_detector_arguments

    p.add_argument("input", help="video file (MP4, MKV, AVI, MOV, WebM, ...) or stream URL")
    p.add_argument("-o", "--output", default=None, help="write the annotated video here (.mp4)")
    p.add_argument("--csv", default=None, help="write the timeline here: one row per face per processed frame")
    p.add_argument("--every", type=int, default=1, help="analyse every N-th frame (the video keeps all frames)")
    add_tracking_arguments(p, detect_every=1, detect_side=None, coast=0)
    p.add_argument("--codec", default="auto", choices=CODECS,
                   help="annotated video codec: h264 plays in browsers; mp4v is OpenCV's fallback")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")
    add_detector_arguments(p)


def add_tracking_arguments(p: argparse.ArgumentParser, *, detect_every: int, detect_side: int | None,
                           coast: int) -> None:
    """Tracking, smoothing and speed options shared by ``moodify video`` and ``moodify live``."""
    p.add_argument("--smoothing", type=float, default=SMOOTHING,
                   help="temporal smoothing of each person's probabilities, 0 (off) to <1 (steadier, slower to react)")
    p.add_argument("--detect-every", type=int, default=detect_every,
                   help="run the face detector on every k-th frame; the tracker carries the boxes in between")
    own = (f"; default: the detector's own, {YUNET_MAX_SIDE} for YuNet, {DETECT_MAX_SIDE} for Haar"
           if detect_side is None else "")
    p.add_argument("--detect-side", type=int, default=detect_side,
                   help=f"detect faces on a copy scaled down to this long side in pixels (0: full size{own})")
    p.add_argument("--max-missed", type=int, default=MAX_MISSED,
                   help="detections in a row a face may be missed and still keep its id")
    p.add_argument("--coast", type=int, default=coast,
                   help="missed detections during which a face is still shown where the tracker expects it")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the classifier; 1 leaves a core to video decoding and encoding")


def check_tracking_arguments(args: argparse.Namespace) -> str | None:
    """A one-line complaint about an out-of-range option, or None."""
    if not 0 <= args.smoothing < 1:
        return f"--smoothing must be in [0, 1), got {args.smoothing}"
    if args.detect_every < 1:
        return f"--detect-every must be >= 1, got {args.detect_every}"
    if args.detect_side is not None and (args.detect_side < 0 or 0 < args.detect_side < 64):
        return f"--detect-side must be 0 or at least 64 pixels, got {args.detect_side}"
    if args.max_missed < 0 or args.coast < 0:
        return f"--max-missed and --coast must be >= 0, got {args.max_missed} and {args.coast}"
    if args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    return None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the classifier on ``n`` CPU threads, restoring the previous number afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(args: argparse.Namespace) -> int:
    problem = check_tracking_arguments(args) or (f"--every must be >= 1, got {args.every}" if args.every < 1 else None)
    if problem:
        print(f"moodify video: error: {problem}", file=sys.stderr)
        return 2
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .options import build_recognizer

    recognizer = build_recognizer(args)
    try:
        analysis = analyze_video(args.input, recognizer=recognizer, output=args.output, csv_path=args.csv,
                                 every=args.every, detect_every=args.detect_every, detect_side=args.detect_side,
                                 smoothing=args.smoothing, max_missed=args.max_missed, coast=args.coast,
                                 codec=args.codec,
                                 # A bar only on a terminal: in a log or a pipe it is junk lines.
                                 progress=not args.no_progress and sys.stderr.isatty(), max_frames=args.max_frames)
    except VideoError as exc:
        print(f"moodify video: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    interrupted = False
    try:
        analysis.run()
    except KeyboardInterrupt:
        interrupted = True  # the outputs were closed on the way out and hold the frames so far
    except VideoError as exc:
        print(f"moodify video: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(analysis.summary.format())
    print(_outputs_line(analysis, seconds))
    if interrupted:
        print(f"moodify video: interrupted after {analysis.frames_read} frames; the outputs hold those",
              file=sys.stderr)
        return 130
    if analysis.damage:
        print(f"moodify video: warning: {args.input}: {analysis.damage}; the outputs cover the "
              f"{analysis.frames_read} frames read", file=sys.stderr)
        return 1
    return 0


def _outputs_line(analysis: VideoAnalysis, seconds: float) -> str:
    fps = analysis.frames_read / seconds if seconds > 0 else 0.0
    parts = [f"{analysis.frames_read} frames read, {analysis.frames_processed} analysed in {seconds:.1f} s "
             f"({fps:.1f} frames/s)"]
    if analysis.writer is not None:
        writer = analysis.writer
        parts.append(f"video: {writer.path} ({writer.codec}, {writer.frames_written} frames)")
    if analysis.timeline is not None:
        parts.append(f"timeline: {analysis.timeline.path} ({analysis.timeline.rows} rows)")
    return "; ".join(parts)
