"""`moodify live` headless on a short video made from a real face photo; keys without a window."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodify import Recognizer
from moodify.pipeline.preprocess import Preprocessing
from moodify.video import CSV_COLUMNS, FrameAnalyzer, VideoFrame
from moodify.video.live import KEY_PAUSE, KEY_QUIT, LiveSession, gui_problem
from test_video import (canvas, decoded_frames, head, leave_and_return_frames, moving_face_frames, paste, read_csv,
                        run_cli, write_avi)


@pytest.fixture(scope="module")
def moving_avi(astronaut_bgr, tmp_path_factory) -> Path:
    return write_avi(tmp_path_factory.mktemp("live") / "moving.avi", moving_face_frames(astronaut_bgr))


def test_headless_live_reports_people_writes_csv_and_recording(moving_avi, tmp_path, capsys):
    timeline, record = tmp_path / "t.csv", tmp_path / "rec.mp4"
    rc, out, err = run_cli(capsys, "live", "--no-window", "--source", str(moving_avi), "--csv", str(timeline),
                           "--record", str(record))
    assert rc == 0, err
    lines = out.splitlines()
    assert any("person 1 appears:" in line for line in lines)
    assert not any("person 2" in line for line in lines)  # one face, one id, also between detections
    columns, rows = read_csv(timeline)
    assert tuple(columns) == CSV_COLUMNS
    assert [int(r["frame"]) for r in rows] == list(range(24)) and {r["track_id"] for r in rows} == {"1"}
    xs = [int(r["x"]) for r in rows]
    assert all(b >= a for a, b in zip(xs, xs[1:])) and xs[-1] - xs[0] > 250  # boxes follow between detections
    assert len(decoded_frames(record)[1]) == 24
    summary = next(i for i, line in enumerate(lines) if line.split()[:2] == ["person", "seen"])
    assert lines[summary + 1].split()[:3] == ["1", "0.0-1.5", "24"]
    assert lines[-1].startswith("24 frames in")


def test_a_small_face_far_from_the_webcam_is_tracked_on_every_frame(astronaut_bgr, tmp_path, capsys):
    # A ~45 px face in 640x480 (a person a few metres away), drifting slowly, with the live defaults.
    from test_video import H, W

    face = head(astronaut_bgr, 0.47)
    frames = []
    for i in range(45):
        img = canvas()
        paste(img, face, 300 + 3 * i, 200 + (i % 5))
        frames.append(img)
    video = write_avi(tmp_path / "far.avi", frames)
    timeline = tmp_path / "far.csv"
    rc, out, err = run_cli(capsys, "live", "--no-window", "--source", str(video), "--csv", str(timeline))
    assert rc == 0, err
    _, rows = read_csv(timeline)
    assert [int(r["frame"]) for r in rows] == list(range(45)) and {r["track_id"] for r in rows} == {"1"}
    assert all(35 <= int(r["w"]) <= 60 for r in rows) and (W, H) == (640, 480)
    assert "out of sight" not in out


def test_headless_jsonl_prints_one_json_line_per_frame(moving_avi, capsys):
    rc, out, err = run_cli(capsys, "live", "--no-window", "--jsonl", "--max-frames", "6", "--source", str(moving_avi))
    assert rc == 0, err
    records = [json.loads(line) for line in out.splitlines()]  # stdout is JSON only
    assert [r["frame"] for r in records] == list(range(6))
    assert all([f["track_id"] for f in r["faces"]] == [1] for r in records)
    assert "person" in err and "frames in" in err  # the summary goes to stderr


def test_headless_face_away_and_back_is_reported_as_the_same_person(astronaut_bgr, tmp_path, capsys):
    video = write_avi(tmp_path / "away.avi", leave_and_return_frames(astronaut_bgr))
    rc, out, err = run_cli(capsys, "live", "--no-window", "--source", str(video), "--detect-every", "1")
    assert rc == 0, err
    events = re.findall(r"person (\d+) (appears|out of sight|back in sight)", out)
    assert events == [("1", "appears"), ("1", "out of sight"), ("1", "back in sight")]


def test_missing_camera_names_what_was_tried_and_exits_nonzero(capsys):
    rc, out, err = run_cli(capsys, "live", "--no-window", "--camera", "99")
    assert rc == 2
    assert "cannot open camera 99" in err and "tried" in err and "--source" in err
    assert err.count("\n") == 1 and "Traceback" not in err and "WARN" not in err


def test_corrupt_source_exits_nonzero_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 500)
    rc, _, err = run_cli(capsys, "live", "--no-window", "--source", str(bad))
    assert rc == 2 and "not a readable video" in err and err.count("\n") == 1


def test_window_mode_without_gui_says_what_to_do(moving_avi, capsys, monkeypatch):
    # What opencv-python-headless reports (a server install that swapped the GUI build out).
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           NONE\n")
    assert gui_problem() is not None
    rc, _, err = run_cli(capsys, "live", "--source", str(moving_avi))
    assert rc == 2
    assert "no GUI support in this OpenCV build: use --no-window or install opencv-python" in err


# ----------------------------------------------------------------- the window's keys, without a window

class _Model:
    preprocessing = Preprocessing()

    @staticmethod
    def predict(crops):
        p = np.full((len(crops), 7), 0.05)
        p[:, 3] = 0.7
        return p


class _Detector:
    @staticmethod
    def detect(gray):
        return [(200, 150, 120, 120)]


def _Recognizer():
    """The real pipeline (moodify.Recognizer) around a stand-in model and detector."""
    return Recognizer(model=_Model(), detector=_Detector())


def frames(n: int):
    for i in range(n):
        img = canvas()
        cv2.circle(img, (260, 210), 50, (200, 200, 200), -1)
        yield VideoFrame(i, i / 15, img)


def test_keys_snapshot_record_pause_and_quit(tmp_path, capsys):
    session = LiveSession(FrameAnalyzer(_Recognizer()), fps_hint=15, out_dir=tmp_path)
    source = frames(12)
    for frame in [next(source) for _ in range(3)]:
        shown = session.step(frame)
    assert session.handle_key(ord("s")) is False
    (snap,) = session.snapshots
    saved = cv2.imread(str(snap))
    assert saved.shape == (480, 640, 3) and np.array_equal(saved, shown)  # the annotated frame, as shown

    session.handle_key(ord("r"))  # start recording
    assert session.recorder is not None
    for frame in [next(source) for _ in range(5)]:
        shown = session.step(frame)
    assert shown[10:40, 10:150].max() > 200  # the FPS and REC overlay is drawn
    session.handle_key(ord("r"))  # stop: the file is complete
    assert session.recorder is None
    (rec,) = session.recordings
    assert len(decoded_frames(rec)[1]) == 5

    (space,) = KEY_PAUSE
    session.handle_key(space)
    assert session.paused
    session.handle_key(space)
    assert not session.paused
    assert all(session.handle_key(k) for k in KEY_QUIT)
    session.close()
    out = capsys.readouterr().out
    assert f"snapshot saved: {snap}" in out and f"recording saved: {rec}" in out


def test_two_snapshots_in_one_second_do_not_overwrite_each_other(tmp_path, capsys):
    session = LiveSession(FrameAnalyzer(_Recognizer()), fps_hint=15, out_dir=tmp_path)
    session.step(next(frames(1)))
    session.handle_key(ord("s"))
    session.handle_key(ord("s"))
    assert len(set(session.snapshots)) == 2 and all(p.exists() for p in session.snapshots)
    session.close()


def test_fps_counter_and_overlay(astronaut_bgr):
    from moodify.pipeline.draw import annotate_tracks
    from moodify.video import FpsMeter

    meter = FpsMeter()
    for i in range(10):
        fps = meter.tick(now=i / 25)
    assert fps == pytest.approx(25)
    img = canvas()
    paste(img, head(astronaut_bgr), 100, 100)
    drawn = annotate_tracks(img, [], fps=fps, status=["REC"])
    assert not np.array_equal(drawn[5:35, 5:120], img[5:35, 5:120]) and np.array_equal(drawn[200:], img[200:])
