"""A whole video analysis: decode, analyse each frame, write the annotated video and the CSV.

    analysis = analyze_video("talk.mp4", recognizer=rec, output="out.mp4", csv_path="t.csv")
    for result in analysis:          # one FrameResult per processed frame, outputs written as it goes
        ...
    print(analysis.summary.format(), analysis.damage)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ..files import check_outputs
from ..names import printable
from ..pipeline.draw import annotate_tracks
from .frames import FrameAnalyzer, FrameResult
from .io import VideoReader, VideoWriter
from .timeline import EmotionSummary, TimelineWriter
from .tracking import MAX_MISSED, SMOOTHING


class VideoAnalysis:
    """An analysis in progress: iterate it for one ``FrameResult`` per processed frame; the
    annotated video and the CSV are written as it goes and closed when the iteration ends,
    breaks or fails. Afterwards: ``summary``, ``damage`` (None, or what went wrong in the input),
    ``frames_read``, ``frames_processed``; ``last_annotated`` is the latest annotated frame."""

    def __init__(self, source, *, recognizer=None, output: str | os.PathLike | None = None,
                 csv_path: str | os.PathLike | None = None, every: int = 1, detect_every: int = 1,
                 detect_side: int | None = None, smoothing: float = SMOOTHING, max_missed: int = MAX_MISSED,
                 coast: int = 0, codec: str = "auto", progress: bool = True, max_frames: int = 0,
                 reference_span: tuple[float, float] | None = None, auto_reference: bool = False):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        # An output that is the input (by inode: a hard link or another name for it too) is
        # refused before anything is opened for writing.
        check_outputs({"-o": output, "--csv": csv_path}, [source])
        if recognizer is None:
            from ..pipeline.recognizer import Recognizer

            recognizer = Recognizer()
        self.analyzer = FrameAnalyzer(recognizer, detect_every=detect_every, detect_side=detect_side,
                                      smoothing=smoothing, max_missed=max_missed, coast=coast,
                                      auto_reference=auto_reference)
        # The people in view during reference_span (seconds) hold a neutral face: their reference.
        self.reference_span = reference_span
        self.calibrated: set[int] = set()  # track ids that got a reference from the span
        if reference_span is not None:  # refused here for a model with no measured reference setting
            self.analyzer.calibrate(start=reference_span[0], end=reference_span[1])
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
        bar = tqdm(total=total, unit="frame", desc=printable(Path(self.reader.name).name), disable=not self.progress,
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
                    self.calibrated.update(self.analyzer.references)
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

    def reference_note(self) -> str:
        """One line on what the reference span gave: who was calibrated, or why nobody."""
        a, b = self.reference_span
        if self.calibrated:
            people = ", ".join(str(k) for k in sorted(self.calibrated))
            return (f"reference: person {people} calibrated from {a:g}-{b:g} s; their emotions after {b:g} s are "
                    "relative to their neutral face")
        return f"reference: nobody was calibrated: no face was tracked through {a:g}-{b:g} s (the video may be shorter)"

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
