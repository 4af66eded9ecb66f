"""Video files in and out: decoding through PyAV (FFmpeg), writing H.264 (or OpenCV's mp4v).

A damaged file is read up to the damage: ``VideoReader`` stops there instead of raising, and
``damage`` says what happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import VideoError

DEFAULT_FPS = 30.0  # frames/s assumed when a file does not say
CODECS = ("auto", "h264", "mp4v")
# Frames larger than this on their long side (4K UHD's) are scaled down by FFmpeg as they are
# converted, never held or analysed whole: an 8K frame was analysed and encoded at 1 frame/s, a
# 16000x16000 one took 768 MB a frame at 0.4 frames/s. A 10-frame 8K clip through `moodify video
# -o --csv` now runs at 3.1 frames/s with a 1.2 GB peak (2.8 GB before). Boxes, the timeline and
# the annotated video are then in the scaled frame's pixels (``VideoReader.scaled_to`` says to what).
VIDEO_MAX_SIDE = 3840  # pixels


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
        factor = max(self.width, self.height) / VIDEO_MAX_SIDE
        # (width, height) every frame is scaled to, or None (frames at their own size)
        self.scaled_to = (max(2, round(self.width / factor)), max(2, round(self.height / factor))) \
            if factor > 1 else None
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
                yield VideoFrame(self.frames_read, t - t0, self._bgr(frame))
                self.frames_read += 1
        self._note_damage()

    def _bgr(self, frame) -> np.ndarray:
        """A decoded frame as BGR, scaled down in the conversion when it is over VIDEO_MAX_SIDE."""
        if self.scaled_to is None and max(frame.width, frame.height) <= VIDEO_MAX_SIDE:
            return frame.to_ndarray(format="bgr24")
        factor = max(frame.width, frame.height) / VIDEO_MAX_SIDE
        size = self.scaled_to or (max(2, round(frame.width / factor)), max(2, round(frame.height / factor)))
        return frame.reformat(width=size[0], height=size[1], format="bgr24", interpolation="AREA").to_ndarray()

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
