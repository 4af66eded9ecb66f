"""Upload checks behind the web app's friendly error messages, and the test-only ICE switch."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moodify import EMOTIONS, Face, ImageError
from moodify.app_support.live import LOOPBACK_ICE_ENV, LiveResults, loopback_ice_requested
from moodify.app_support.uploads import read_image_upload


def _png(width: int, height: int, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), 1).save(buf, format="PNG")
    return buf.getvalue()


def test_reads_a_photo(astronaut_jpg):
    bgr = read_image_upload(astronaut_jpg.read_bytes(), "astronaut.jpg")
    assert bgr.shape == (512, 512, 3) and bgr.dtype == np.uint8


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"%PDF-1.4 this is not a picture", "not an image"),
    (_png(64, 64)[:60], "corrupt or truncated"),
])
def test_bad_uploads_get_one_line_messages(data, words):
    with pytest.raises(ImageError) as err:
        read_image_upload(data, "upload.bin")
    message = str(err.value)
    assert message.startswith("upload.bin: ") and words in message and "\n" not in message


def test_huge_image_is_refused_before_decoding():
    data = _png(8000, 7000, "1")  # 56 megapixels in a few kB (1 bit per pixel)
    with pytest.raises(ImageError, match=r"8000x7000 pixels \(56 megapixels\).*downscale"):
        read_image_upload(data, "huge.png")


def test_loopback_switch_reads_the_environment(monkeypatch):
    monkeypatch.delenv(LOOPBACK_ICE_ENV, raising=False)
    assert not loopback_ice_requested()
    monkeypatch.setenv(LOOPBACK_ICE_ENV, "1")
    assert loopback_ice_requested()


def _face(top: str, box=(10, 10, 50, 50), track_id: int = 1):
    from moodify.video import TrackedFace

    probs = {e: (0.7 if e == top else 0.05) for e in EMOTIONS}
    return TrackedFace(box, probs, track_id=track_id, raw_probabilities=probs)


def _frame(index: int, t: float, *faces):
    from moodify.video import FrameResult

    return FrameResult(index, t, list(faces), True)


def test_live_results_keep_latest_faces_and_a_rolling_timeline():
    live = LiveResults(history_s=10)
    assert live.read().frames == 0 and live.read().timeline.empty
    for i in range(30):  # one frame a second for 30 s; two faces until second 20
        faces = [_face("happy"), _face("sad", track_id=2)] if i < 20 else [_face("surprise")]
        live.publish(_frame(i, float(i), *faces))
    snap = live.read()
    assert snap.frames == 30
    assert [(n, f.emotion) for n, f in snap.faces] == [(1, "surprise")]
    timeline = snap.timeline
    assert timeline["time_s"].min() >= 19 and timeline["time_s"].max() == 29  # only the last 10 s
    assert set(timeline.columns) >= {"time_s", "face", "emotion", *EMOTIONS}
    assert timeline[timeline["face"] == 2]["emotion"].unique().tolist() == ["sad"]


def test_live_keeps_the_last_session_after_stop_with_its_csv():
    """STOP cleared the chart and the timeline, and Live had no download: the last session's
    summary and timeline CSV (the columns of `moodify live --csv`) stay until the next START."""
    from moodify.video import CSV_COLUMNS

    live = LiveResults(history_s=10)
    for i in range(40):  # person 1 happy throughout, person 2 sad for 10 frames
        live.publish(_frame(i, i / 10, _face("happy"), *([_face("sad", track_id=2)] if i < 10 else [])))
    snap = live.read()  # what the page shows after STOP: nothing was cleared
    assert snap.summary["track_id"].tolist() == [1, 2] and snap.summary["mood"].tolist() == ["mostly happy", "mostly sad"]
    timeline = pd.read_csv(io.BytesIO(live.timeline_csv()))
    assert tuple(timeline.columns) == CSV_COLUMNS and len(timeline) == 50
    assert timeline["time_s"].max() == pytest.approx(3.9)
    live.new_session()  # START again
    assert live.read().frames == 0 and live.read().summary.empty and len(live.timeline_csv().splitlines()) == 1


def test_live_results_survive_a_busy_writer_thread():
    live = LiveResults(history_s=1e6)
    done = threading.Event()

    def writer():
        for i in range(2000):
            live.publish(_frame(i, float(i), _face("happy"), _face("fear", track_id=2)))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        snap = live.read()
        # Never half a frame: every frame contributes two rows, published under one lock.
        assert len(snap.timeline) == 2 * snap.frames
    thread.join()
    assert live.read().frames == 2000


def test_live_says_it_is_connecting_until_frames_arrive_and_warns_when_none_do():
    """START once did nothing visible for 72 s: now the page says what is happening."""
    from moodify.app_support.live import LIVE_CONNECT_TIMEOUT_S, live_connection_message

    assert live_connection_message(playing=False, signalling=False, new_frames=0, waited_s=0) is None
    kind, text = live_connection_message(playing=False, signalling=True, new_frames=0, waited_s=1)
    assert kind == "info" and "Connecting to your camera" in text and "setting up the video connection" in text
    kind, text = live_connection_message(playing=True, signalling=False, new_frames=0, waited_s=3)
    assert kind == "info" and "waiting for the first picture" in text
    kind, text = live_connection_message(playing=True, signalling=False, new_frames=0,
                                         waited_s=LIVE_CONNECT_TIMEOUT_S + 1)
    assert kind == "warning" and "16 s" in text and "START" in text and "waiting for the first picture" in text
    # A stall while negotiating says so: the step that stalled is what tells two causes apart.
    kind, text = live_connection_message(playing=False, signalling=True, new_frames=0, waited_s=40)
    assert kind == "warning" and "40 s (the browser and this app are setting up the video connection)" in text
    assert live_connection_message(playing=True, signalling=False, new_frames=2, waited_s=30) is None


def test_a_stalled_live_start_logs_the_webrtc_step_it_stopped_at():
    """The log line at the 15 s warning tells apart no answer, ICE never connecting, and DTLS not finishing."""
    from types import SimpleNamespace

    import aiortc
    from streamlit_webrtc.component import WebRtcStreamerContext

    from moodify.app_support.live import webrtc_connection_details

    # The attributes read are the installed streamlit-webrtc's and aiortc's own.
    assert callable(WebRtcStreamerContext._get_worker)
    assert "_is_sdp_answer_sent" in WebRtcStreamerContext.__annotations__
    for name in ("iceGatheringState", "iceConnectionState", "connectionState"):
        assert isinstance(getattr(aiortc.RTCPeerConnection, name), property)
    pc = SimpleNamespace(iceGatheringState="complete", iceConnectionState="checking", connectionState="connecting")
    ctx = SimpleNamespace(_is_sdp_answer_sent=True, _get_worker=lambda: SimpleNamespace(pc=pc))
    assert webrtc_connection_details(ctx) == ("SDP answer sent; ICE gathering complete, ICE connection checking, "
                                              "peer connection connecting")
    # Before a worker exists, or with a library that renamed things: "unknown", never an exception.
    assert webrtc_connection_details(SimpleNamespace(_is_sdp_answer_sent=False, _get_worker=lambda: None)) == (
        "SDP answer not sent; ICE gathering unknown, ICE connection unknown, peer connection unknown")
    assert "unknown" in webrtc_connection_details(object())


def test_model_choices_come_from_the_registry():
    from moodify import available_models
    from moodify.app_support.session import model_choices

    choices = model_choices()
    assert list(choices) == available_models() == ["default", "accurate"]
    assert choices["default"] == "default (fast)" and choices["accurate"] == "accurate (slower)"


def test_a_session_keeps_its_detector_until_its_settings_change(model):
    from moodify.app_support.session import session_recognizer

    state = {}
    settings = {"detector": "yunet", "score_threshold": 0.6, "min_neighbors": 3, "min_size": 30}
    first = session_recognizer(state, model, settings)
    assert session_recognizer(state, model, settings).detector is first.detector
    other = session_recognizer(state, model, {**settings, "score_threshold": 0.8})
    assert other.detector is not first.detector and other.detector.score_threshold == 0.8
    assert session_recognizer({}, model, settings).detector is not first.detector  # another browser session


@pytest.mark.slow
def test_a_video_upload_is_analysed_in_memory(astronaut_bgr, recognizer, tmp_path):
    """The Video mode's work without a browser: the upload's bytes in, the annotated MP4, the timeline
    (the columns of `moodify video --csv`) and the summary out, progress reported, nothing left behind."""
    import cv2
    import tempfile

    from moodify.app_support.video import analyze_video_upload
    from moodify.video import CSV_COLUMNS

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    for _ in range(6):
        writer.write(astronaut_bgr)
    writer.release()
    before = set(Path(tempfile.gettempdir()).glob("moodify-*"))
    seen = []
    result = analyze_video_upload(clip.read_bytes(), "my clip.avi", recognizer=recognizer, smoothing=0.6,
                                  progress=lambda done, text: seen.append((done, text)))
    assert result.frames_read == 6 and result.damage is None and result.video[:12].find(b"ftyp") >= 0
    assert list(result.timeline.columns) == list(CSV_COLUMNS) and result.timeline["face"].tolist() == [1] * 6
    assert result.summary["main_emotion"].tolist() == ["happy"]
    assert len(seen) == 6 and "my clip.avi" in seen[-1][1]
    assert set(Path(tempfile.gettempdir()).glob("moodify-*")) == before


def test_a_video_upload_that_is_not_a_video_names_the_upload(recognizer):
    from moodify.app_support.video import analyze_video_upload
    from moodify.errors import VideoError

    with pytest.raises(VideoError, match="holiday.mp4") as caught:
        analyze_video_upload(b"not a video at all", "holiday.mp4", recognizer=recognizer, smoothing=0.6)
    assert "input.mp4" not in str(caught.value)
