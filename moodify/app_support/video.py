"""The web app's Video mode, apart from its widgets: an uploaded video analysed, with everything
returned in memory."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import VideoError
from ..video.job import analyze_video


@dataclass
class VideoUploadResult:
    """An analysed upload: the annotated MP4 (empty when no frame could be read), the timeline CSV
    as downloaded and as a table, the per-person summary, frames read, and the input's damage."""

    video: bytes
    csv: bytes
    timeline: pd.DataFrame
    summary: pd.DataFrame
    frames_read: int
    damage: str | None


def analyze_video_upload(data: bytes, name: str, *, recognizer, smoothing: float,
                         progress: Callable[[float, str], None] | None = None) -> VideoUploadResult:
    """Analyse an uploaded video's bytes, as ``moodify video`` does with ``--csv``.

    The decoder and encoder need real files, so the upload is written to a temporary folder that
    is deleted before this returns. ``progress(fraction, text)`` is called after every frame (the
    fraction is 0 while the container does not say how many frames it has). A ``VideoError``
    names the upload, not the temporary copy.
    """
    suffix = Path(name).suffix.lower() or ".mp4"
    with tempfile.TemporaryDirectory(prefix="moodify-") as tmp:
        src, out, csv_path = Path(tmp) / f"input{suffix}", Path(tmp) / "annotated.mp4", Path(tmp) / "timeline.csv"
        src.write_bytes(data)
        try:
            analysis = analyze_video(src, recognizer=recognizer, output=out, csv_path=csv_path,
                                     smoothing=smoothing, progress=False)
            total = analysis.reader.frame_count
            for _ in analysis:
                if progress is not None:
                    done = analysis.frames_read / total if total else 0.0
                    progress(min(done, 1.0), f"Analysing {name}: frame {analysis.frames_read}"
                                             + (f" of {total}" if total else ""))
        except VideoError as exc:
            raise VideoError(str(exc).replace(str(src), name)) from None
        return VideoUploadResult(video=out.read_bytes() if analysis.frames_read else b"",
                                 csv=csv_path.read_bytes(), timeline=pd.read_csv(csv_path),
                                 summary=pd.DataFrame(analysis.summary.rows()), frames_read=analysis.frames_read,
                                 damage=analysis.damage)
