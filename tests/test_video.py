"""`moodify video` and its Python API on short videos made here from a real face photo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodify import cli
from moodify.labels import EMOTIONS
from moodify.video import (CSV_COLUMNS, EmotionSummary, FrameAnalyzer, VideoError, VideoReader, VideoWriter,
                           analyze_video)

W, H = 640, 480
FPS = 15


# ----------------------------------------------------------------- test videos (also used by test_live.py)

def head(astronaut_bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The astronaut's head and shoulders (her face is ~95 px wide at scale 1)."""
    crop = astronaut_bgr[20:260, 120:330]
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else crop


def canvas() -> np.ndarray:
    return np.full((H, W, 3), 90, np.uint8)


def paste(img: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h, w = patch.shape[:2]
    img[y:y + h, x:x + w] = patch


def write_avi(path: Path, frames: list[np.ndarray]) -> Path:
    """Motion-JPEG AVI through OpenCV: an independent writer, so the reader is tested on its own."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def moving_face_frames(astronaut_bgr, n: int = 24, step: int = 15) -> list[np.ndarray]:
    face = head(astronaut_bgr)
    frames = []
    for i in range(n):
        img = canvas()
        paste(img, face, 20 + step * i, 120)
        frames.append(img)
    return frames


def crossing_frames(astronaut_bgr, n: int = 24) -> list[np.ndarray]:
    """Two people walk past each other: one left to right above, one right to left below."""
    face = head(astronaut_bgr, 0.75)
    fh, fw = face.shape[:2]
    frames = []
    for i in range(n):
        img = canvas()
        t = i / (n - 1)
        paste(img, face, int(10 + t * (W - fw - 20)), 20)
        paste(img, face, int(W - fw - 10 - t * (W - fw - 20)), H - fh - 20)
        frames.append(img)
    return frames


def leave_and_return_frames(astronaut_bgr, gap: range = range(8, 12), n: int = 20) -> list[np.ndarray]:
    """A face that is away (frames in ``gap``) and comes back to where it was."""
    face = head(astronaut_bgr)
    frames = []
    for i in range(n):
        img = canvas()
        if i not in gap:
            paste(img, face, 200 + 2 * i, 120)
        frames.append(img)
    return frames


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def decoded_frames(path: Path) -> tuple[str, list[np.ndarray]]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, [f.to_ndarray(format="bgr24") for f in container.decode(stream)]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main([*argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def moving_avi(astronaut_bgr, tmp_path_factory) -> Path:
    return write_avi(tmp_path_factory.mktemp("video") / "moving.avi", moving_face_frames(astronaut_bgr))


# ----------------------------------------------------------------- the command

def test_video_writes_browser_playable_annotated_video_csv_and_summary(moving_avi, astronaut_bgr, tmp_path, capsys):
    out, timeline = tmp_path / "out.mp4", tmp_path / "timeline.csv"
    rc, stdout, err = run_cli(capsys, "video", str(moving_avi), "-o", str(out), "--csv", str(timeline),
                              "--no-progress")
    assert rc == 0, err
    codec, frames = decoded_frames(out)
    assert codec == "h264" and len(frames) == 24 and frames[0].shape == (H, W, 3)

    columns, rows = read_csv(timeline)
    assert tuple(columns) == CSV_COLUMNS
    assert [int(r["frame"]) for r in rows] == list(range(24))  # one face on every frame
    assert {r["track_id"] for r in rows} == {"1"}  # the same person throughout
    xs = [int(r["x"]) for r in rows]
    assert xs[-1] - xs[0] == pytest.approx(15 * 23, abs=20)  # the box follows the face
    assert float(rows[1]["time_s"]) == pytest.approx(1 / 15, abs=1e-3)
    for r in rows:
        assert sum(float(r[e]) for e in EMOTIONS) == pytest.approx(1, abs=1e-4)
        assert r["label"] in EMOTIONS and 0 < float(r["label_confidence"]) <= 1

    # The box is drawn onto the video where the CSV says the face is, and nothing else changes.
    x, y, w, h = (int(rows[5][k]) for k in "xywh")
    original = moving_face_frames(astronaut_bgr)[5].astype(int)
    drawn = frames[5].astype(int)
    left_edge = np.abs(drawn[y + 5:y + h - 5, x - 1:x + 2] - original[y + 5:y + h - 5, x - 1:x + 2]).mean()
    far_away = np.abs(drawn[5:100, 520:635] - original[5:100, 520:635]).mean()
    assert left_edge > 40 and far_away < 8

    # The summary: one person, seen the whole time, shares summing to 100%.
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["person", "seen", "(s)"]
    person = lines[1].split()
    assert person[0] == "1" and person[1] == "0.0-1.5" and person[2] == "24"
    assert sum(float(v.rstrip("%")) for v in person[3:10]) == pytest.approx(100, abs=3)
    assert "24 frames read" in stdout and "h264" in stdout


def test_every_n_analyses_every_nth_frame_but_keeps_the_whole_video(moving_avi, tmp_path, capsys):
    out, timeline = tmp_path / "out.mp4", tmp_path / "t.csv"
    rc, _, err = run_cli(capsys, "video", str(moving_avi), "-o", str(out), "--csv", str(timeline), "--every", "3",
                         "--no-progress")
    assert rc == 0, err
    _, rows = read_csv(timeline)
    assert [int(r["frame"]) for r in rows] == list(range(0, 24, 3))
    assert {r["track_id"] for r in rows} == {"1"}
    assert len(decoded_frames(out)[1]) == 24


def test_no_progress_bar_is_left_in_a_log(moving_avi, tmp_path, capsys):
    """stderr to a file or a pipe (a log, a scheduler): warnings only, no bar redrawn into it."""
    rc, stdout, err = run_cli(capsys, "video", str(moving_avi), "--csv", str(tmp_path / "t.csv"))
    assert rc == 0 and "24 frames read" in stdout
    assert "frame/s" not in err and "|" not in err and "\r" not in err, err


def test_two_crossing_faces_keep_their_ids(astronaut_bgr, tmp_path, capsys):
    video = write_avi(tmp_path / "crossing.avi", crossing_frames(astronaut_bgr))
    timeline = tmp_path / "t.csv"
    rc, stdout, err = run_cli(capsys, "video", str(video), "--csv", str(timeline), "--no-progress")
    assert rc == 0, err
    _, rows = read_csv(timeline)
    assert len(rows) == 2 * 24
    by_id: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        by_id.setdefault(r["track_id"], []).append((int(r["x"]), int(r["y"])))
    assert set(by_id) == {"1", "2"}
    for track in by_id.values():
        assert len(track) == 24
        ys = [y for _, y in track]
        assert max(ys) - min(ys) < 30  # an id never jumps to the other person's row
        xs = [x for x, _ in track]
        steps = np.sign(np.diff(xs))
        assert abs(steps.sum()) >= 20  # each id keeps walking one way through the crossing
    directions = {tid: np.sign(track[-1][0] - track[0][0]) for tid, track in by_id.items()}
    assert sorted(directions.values()) == [-1, 1]
    assert len([line for line in stdout.splitlines() if line.split()[:1] in (["1"], ["2"])]) == 2


def test_a_face_leaving_and_returning_keeps_its_id_and_has_no_rows_while_away(astronaut_bgr, tmp_path, capsys):
    video = write_avi(tmp_path / "away.avi", leave_and_return_frames(astronaut_bgr))
    timeline = tmp_path / "t.csv"
    rc, stdout, err = run_cli(capsys, "video", str(video), "--csv", str(timeline), "--no-progress")
    assert rc == 0, err
    _, rows = read_csv(timeline)
    assert [int(r["frame"]) for r in rows] == [i for i in range(20) if i not in range(8, 12)]
    assert {r["track_id"] for r in rows} == {"1"}
    # Away longer than --max-missed allows: the tracker cannot know it is her, so a new id.
    rc, _, err = run_cli(capsys, "video", str(video), "--csv", str(timeline), "--max-missed", "2", "--no-progress")
    assert rc == 0, err
    _, rows = read_csv(timeline)
    assert [r["track_id"] for r in rows] == ["1"] * 8 + ["2"] * 8


def test_truncated_video_is_processed_up_to_the_damage_and_outputs_stay_valid(moving_avi, tmp_path, capsys):
    data = moving_avi.read_bytes()
    broken = tmp_path / "broken.avi"
    broken.write_bytes(data[: len(data) * 6 // 10])
    out, timeline = tmp_path / "out.mp4", tmp_path / "t.csv"
    rc, stdout, err = run_cli(capsys, "video", str(broken), "-o", str(out), "--csv", str(timeline), "--no-progress")
    assert rc == 1
    assert "truncated" in err and "Traceback" not in err
    read = int(err.split("only ")[1].split(" of ")[0])
    assert 5 <= read < 24
    _, rows = read_csv(timeline)
    # The last frame read may be half-decoded, without a face left to find.
    assert [int(r["frame"]) for r in rows] in (list(range(read)), list(range(read - 1)))
    assert len(decoded_frames(out)[1]) == read  # a playable video of what could be read


@pytest.mark.parametrize("content,message", [(b"", "empty file"), (b"\x00\x01garbage" * 300, "not a readable video"),
                                             (None, "no such file")])
def test_unreadable_video_gives_one_clear_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    rc, _, err = run_cli(capsys, "video", str(path), "--csv", str(tmp_path / "t.csv"), "--no-progress")
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_options_are_refused_plainly(moving_avi, tmp_path, capsys):
    for args, message in [(["--smoothing", "1.5"], "--smoothing"), (["--every", "0"], "--every"),
                          (["--detect-every", "0"], "--detect-every"), (["-o", str(moving_avi)], "overwrite")]:
        rc, _, err = run_cli(capsys, "video", str(moving_avi), *args, "--no-progress")
        assert rc == 2 and message in err, (args, err)
    rc, _, err = run_cli(capsys, "video", str(moving_avi), "-o", str(tmp_path / "nope" / "o.mp4"), "--no-progress")
    assert rc == 2 and "does not exist" in err


# ----------------------------------------------------------------- the Python API

def test_analyze_video_yields_frames_and_stopping_early_leaves_valid_outputs(moving_avi, recognizer, tmp_path):
    out, timeline = tmp_path / "o.mp4", tmp_path / "t.csv"
    analysis = analyze_video(moving_avi, recognizer=recognizer, output=out, csv_path=timeline, progress=False)
    for result in analysis:
        assert [f.track_id for f in result.faces] == [1]
        json.dumps(result.to_dict())  # what the web app and --jsonl hand on
        if result.index == 9:
            break  # the caller stops early (a Stop button, Ctrl+C)
    assert analysis.frames_processed == 10 and analysis.last_annotated.shape == (H, W, 3)
    assert len(decoded_frames(out)[1]) == 10
    assert len(read_csv(timeline)[1]) == 10
    rows = analysis.summary.rows()
    assert [r["track_id"] for r in rows] == [1] and rows[0]["frames"] == 10
    assert sum(rows[0][e] for e in EMOTIONS) == pytest.approx(1, abs=1e-3)


def test_analyze_video_refuses_unreadable_input_at_once(tmp_path, recognizer):
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="bad.mkv"):
        analyze_video(bad, recognizer=recognizer)


def test_reader_reports_rate_size_and_count(moving_avi):
    with VideoReader(moving_avi) as reader:
        assert (reader.width, reader.height, reader.frame_count) == (W, H, 24)
        assert reader.fps == pytest.approx(FPS)
        assert sum(1 for _ in reader) == 24 and reader.damage is None


@pytest.mark.parametrize("codec,expected", [("h264", "h264"), ("mp4v", "mpeg4")])
def test_writer_codecs_make_decodable_files(tmp_path, codec, expected):
    path = tmp_path / f"{codec}.mp4"
    with VideoWriter(path, fps=FPS, codec=codec) as writer:
        for i in range(6):
            img = canvas()
            cv2.circle(img, (100 + 40 * i, 200), 30, (0, 0, 255), -1)
            writer.write(img)
    name, frames = decoded_frames(path)
    assert name == expected and len(frames) == 6
    assert frames[3][200, 220].tolist() == pytest.approx([0, 0, 255], abs=40)  # the red dot moved there


def test_odd_sized_frames_are_written_as_h264(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=10, codec="h264") as writer:
        for _ in range(3):
            writer.write(np.full((121, 161, 3), 128, np.uint8))
    _, frames = decoded_frames(path)
    assert len(frames) == 3 and frames[0].shape == (120, 160, 3)


# ----------------------------------------------------------------- FrameAnalyzer with a stand-in model

class _Model:
    """A happy face whose every other frame reads slightly sad (noise), like a real classifier."""

    def __init__(self):
        self.calls = 0

    def predict(self, crops):
        happy, sad = (0.55, 0.35) if self.calls % 2 == 0 else (0.40, 0.45)
        p = np.full((len(crops), len(EMOTIONS)), (1 - happy - sad) / 5)
        p[:, EMOTIONS.index("happy")], p[:, EMOTIONS.index("sad")] = happy, sad
        self.calls += 1
        return p


class _Detector:
    def __init__(self):
        self.calls = 0

    def detect(self, gray):
        self.calls += 1
        return [(100, 100, 80, 80)]


def _Recognizer():
    """The real pipeline (moodify.Recognizer) around the stand-in model and detector."""
    from moodify import Recognizer
    from moodify.pipeline.preprocess import Preprocessing

    model = _Model()
    model.preprocessing = Preprocessing()
    return Recognizer(model=model, detector=_Detector())


def labels_over(frames: int, **options) -> list[str]:
    analyzer = FrameAnalyzer(_Recognizer(), **options)
    img = canvas()
    return [analyzer.process(img, time_s=i / 30).faces[0].emotion for i in range(frames)]


def test_smoothing_stops_the_label_from_flickering():
    raw = labels_over(20, smoothing=0)
    assert sum(a != b for a, b in zip(raw, raw[1:])) >= 8  # flickers without smoothing
    smooth = labels_over(20, smoothing=0.6)
    assert sum(a != b for a, b in zip(smooth, smooth[1:])) == 0


def test_detect_every_runs_the_detector_on_every_kth_frame_only():
    rec = _Recognizer()
    analyzer = FrameAnalyzer(rec, detect_every=4)
    results = [analyzer.process(canvas(), time_s=i / 30) for i in range(12)]
    assert rec.detector.calls == 3
    assert [r.detected for r in results] == [i % 4 == 0 for i in range(12)]
    assert all([f.track_id for f in r.faces] == [1] for r in results)
    assert rec.model.calls == 12  # classification still runs on every frame, one batch each


def test_summary_shares_per_person():
    from moodify.video import FrameResult, TrackedFace

    summary = EmotionSummary()
    for i, label in enumerate(["happy"] * 3 + ["sad"]):
        probs = dict.fromkeys(EMOTIONS, 0.0) | {label: 1.0}
        summary.add(FrameResult(i, i / 10, [TrackedFace((0, 0, 10, 10), probs, track_id=7)], True))
    (row,) = summary.rows()
    assert row["track_id"] == 7 and row["happy"] == 0.75 and row["sad"] == 0.25 and row["main_emotion"] == "happy"
    assert "mostly happy" in summary.format()


def test_a_near_tie_is_called_mixed_the_same_way_everywhere():
    """A person 26% sad, 25% happy, 25% neutral was "mostly sad"; `moodify video`, `moodify live`
    (both print ``EmotionSummary.format``) and the app (``person_line``) now say "mixed"."""
    from moodify.video import FrameResult, TrackedFace
    from moodify.video.timeline import mood, person_line

    summary = EmotionSummary()
    labels = ["sad"] * 26 + ["happy"] * 25 + ["neutral"] * 25 + ["angry"] * 24
    for i, label in enumerate(labels):
        probs = dict.fromkeys(EMOTIONS, 0.0) | {label: 1.0}
        summary.add(FrameResult(i, i / 10, [TrackedFace((0, 0, 10, 10), probs, track_id=1)], True))
    (row,) = summary.rows()
    assert row["mood"] == "mixed: sad / happy / neutral / angry"
    assert summary.format().splitlines()[1].endswith("mixed: sad / happy / neutral / angry")
    assert person_line(row).startswith("Person 1: mixed: sad / happy / neutral / angry (26.0% / 25.0% / 25.0% / 24.0%")
    assert mood({"happy": 0.7, "sad": 0.3}) == "mostly happy"
