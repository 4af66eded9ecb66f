"""Emotions over time: tracking, the per-frame core, video I/O, the timeline, whole videos and live.

``tracking`` (IoU tracker, probability smoothing) -> ``frames`` (``FrameAnalyzer``: frame in,
tracked faces out) -> ``io`` (``VideoReader``, ``VideoWriter``) and ``timeline`` (CSV, summary)
-> ``job`` (``analyze_video``: a whole file) and ``live`` (a camera or stream, in a window or
headless). The commands are in ``moodify.cli.video`` and ``moodify.cli.live``.
"""

from ..errors import VideoError
from .frames import LIVE_SETTINGS, FpsMeter, FrameAnalyzer, FrameResult, TrackedFace
from .io import VideoFrame, VideoReader, VideoWriter
from .job import VideoAnalysis, analyze_video
from .timeline import CSV_COLUMNS, EmotionSummary, TimelineWriter

__all__ = [
    "CSV_COLUMNS", "EmotionSummary", "FpsMeter", "FrameAnalyzer", "FrameResult", "LIVE_SETTINGS", "TimelineWriter",
    "TrackedFace", "VideoAnalysis", "VideoError", "VideoFrame", "VideoReader", "VideoWriter", "analyze_video",
]


def __getattr__(name: str):
    """The other names of the module this package was (before the folders), from their new homes."""
    from .._moved import moved_attribute

    return moved_attribute(__name__, name, ("moodify.video.io", "moodify.video.timeline", "moodify.video.frames",
                                              "moodify.cli.options", "moodify.cli.video"))
