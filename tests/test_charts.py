"""The app's charts as specs (no browser): what each encodes, so a user can read it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moodify import EMOTIONS
from moodify.app_support.charts import EMOTION_HEX, mood_timeline_chart, video_timeline_chart
from moodify.pipeline.draw import EMOTION_COLORS
from moodify.video import CSV_COLUMNS


def _layers(spec: dict) -> list[dict]:
    inner = spec.get("spec", spec)
    return inner.get("layer", [inner])


def _live_timeline() -> pd.DataFrame:
    rows = []
    for t in np.arange(0, 3, 0.25):
        rows.append({"time_s": t, "face": 1, "emotion": "happy", "confidence": 0.8})
        rows.append({"time_s": t, "face": 2, "emotion": "sad", "confidence": 0.6})
    return pd.DataFrame(rows)


def test_live_timeline_tells_two_faces_apart_by_shape():
    """The live chart used mark_circle, which drops a shape encoding: two people looked alike."""
    spec = mood_timeline_chart(_live_timeline()).to_dict()
    mark = spec["mark"]["type"] if isinstance(spec["mark"], dict) else spec["mark"]
    assert mark == "point"  # the one Vega-Lite mark whose shape can vary
    assert spec["encoding"]["shape"]["field"] == "face"
    assert spec["encoding"]["color"]["scale"]["domain"] == list(EMOTIONS)


def _video_timeline(people: int = 2, frames: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for track in range(1, people + 1):
        for frame in range(frames):
            p = rng.dirichlet(np.ones(len(EMOTIONS)))
            label = EMOTIONS[int(p.argmax())]
            rows.append({"time_s": frame / 10, "frame": frame, "track_id": track, "x": 10, "y": 10, "w": 50,
                         "h": 50, **dict(zip(EMOTIONS, p)), "label": label, "label_confidence": float(p.max())})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def test_video_timeline_has_a_row_per_person_and_all_seven_emotions_in_its_legend():
    """It was a thin dotted strip whose legend was clipped to angry/disgust/fear."""
    chart = video_timeline_chart(_video_timeline(people=3))
    spec = chart.to_dict()
    assert spec["facet"]["row"]["field"] == "person"
    assert sorted(pd.DataFrame(chart.data)["person"].unique()) == ["person 1", "person 2", "person 3"]
    stacked, band = _layers(spec)
    # Per person, the 7 probabilities over time, stacked; above them the smoothed label as a band.
    assert stacked["transform"][0]["fold"] == list(EMOTIONS)
    assert stacked["encoding"]["x"]["field"] == "time_s" and band["encoding"]["x"]["field"] == "time_s"
    assert stacked["encoding"]["y"]["stack"] == "zero"
    assert band["encoding"]["color"]["field"] == "label"
    for layer in (stacked, band):
        color = layer["encoding"]["color"]
        assert color["scale"]["domain"] == list(EMOTIONS)  # 7 legend entries, whatever the data holds
        assert color["scale"]["range"] == [EMOTION_HEX[e] for e in EMOTIONS]
    legend = stacked["encoding"]["color"]["legend"]
    assert legend["orient"] == "bottom" and legend["columns"] == len(EMOTIONS)  # one row, never clipped
    b, g, r = EMOTION_COLORS["happy"]
    assert EMOTION_HEX["happy"] == f"#{r:02x}{g:02x}{b:02x}"


def test_video_timeline_band_covers_every_frame():
    chart = video_timeline_chart(_video_timeline(people=1, frames=5))
    data = pd.DataFrame(chart.data)
    assert (data["until_s"] > data["time_s"]).all()
    np.testing.assert_allclose(data["until_s"].iloc[:-1].to_numpy(), data["time_s"].iloc[1:].to_numpy())
