"""The web app's charts as Altair specs: one face's probabilities, the live timeline, the video timeline.

Built here, not in app.py, so what a chart encodes (which mark, which legend, one row per person)
is tested without a browser. Colours are the drawing's (``moodify.pipeline.draw.EMOTION_COLORS``), so a
colour means the same emotion on the picture, in a chart and in its legend.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..labels import EMOTIONS
from ..pipeline.draw import EMOTION_COLORS
from ..pipeline.recognizer import Face
from .results import PERCENT_FORMAT, probabilities_table


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


EMOTION_HEX: dict[str, str] = {e: _hex(EMOTION_COLORS[e]) for e in EMOTIONS}
# All 7 emotions in label order and the drawing's colours, whatever the data holds.
EMOTION_SCALE = alt.Scale(domain=list(EMOTIONS), range=[EMOTION_HEX[e] for e in EMOTIONS])


def _emotion_color(field: str, *, legend: bool = True) -> alt.Color:
    """Colour by emotion; the legend, when shown, lists all 7 in one row under the chart, where
    no chart height can clip it (a 36-pixel strip showed only angry, disgust and fear)."""
    return alt.Color(f"{field}:N", scale=EMOTION_SCALE, title="emotion",
                     legend=alt.Legend(orient="bottom", columns=len(EMOTIONS), symbolType="square")
                     if legend else None)


def probability_chart(face: Face, *, height: int = 190) -> alt.Chart:
    """A horizontal bar per emotion, in the model's label order and the drawing's colours."""
    return (alt.Chart(probabilities_table(face), height=height)
            .mark_bar()
            .encode(x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None)),
                    y=alt.Y("emotion:N", sort=list(EMOTIONS), title=None,
                            axis=alt.Axis(labelOverlap=False)),  # all 7 names, even in a small card
                    color=_emotion_color("emotion", legend=False),
                    tooltip=["emotion", alt.Tooltip("probability:Q", format=PERCENT_FORMAT)]))


def mood_timeline_chart(timeline: pd.DataFrame, *, height: int = 220) -> alt.Chart:
    """Live: each face's top emotion over time, one mark per analysed frame, coloured by emotion and
    shaped by face number, so two people are told apart.

    ``mark_point``, not ``mark_circle``: a circle has a fixed shape and Vega-Lite drops a ``shape``
    encoding on it ("shape dropped as it is incompatible with circle").
    """
    faces = timeline.assign(face=timeline["face"].map(lambda n: f"face {n}"))
    return (alt.Chart(faces, height=height)
            .mark_point(size=40, filled=True)
            .encode(x=alt.X("time_s:Q", title="seconds"),
                    y=alt.Y("confidence:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
                    color=_emotion_color("emotion"),
                    shape=alt.Shape("face:N", title="face"),
                    tooltip=["face", "emotion", alt.Tooltip("confidence:Q", format=PERCENT_FORMAT), "time_s"]))


def video_timeline_chart(timeline: pd.DataFrame, *, width: int = 760, row_height: int = 110) -> alt.FacetChart:
    """Video: one row per person; in each, the 7 (smoothed) probabilities stacked over time, so the
    area of a colour is how sure the model is of that emotion, and above them a band coloured by
    the person's smoothed label. ``timeline`` is the ``moodify video`` CSV (``CSV_COLUMNS``)."""
    people = timeline.sort_values(["track_id", "time_s"]).assign(
        person=lambda t: "person " + t["track_id"].astype(str))
    # Each frame's band runs to the person's next frame (the last one for a typical frame's length).
    step = people.groupby("track_id")["time_s"].diff().median()
    step = 0.04 if pd.isna(step) else float(step)
    people["until_s"] = people.groupby("track_id")["time_s"].shift(-1).fillna(people["time_s"] + step)
    people = people[["person", "time_s", "until_s", *EMOTIONS, "label", "label_confidence"]]
    x = alt.X("time_s:Q", title="seconds")
    base = alt.Chart(width=width, height=row_height)
    stacked = (base.transform_fold(list(EMOTIONS), as_=["emotion", "probability"])
               .transform_calculate(order=f"indexof({list(EMOTIONS)}, datum.emotion)")
               .mark_area(interpolate="step-after")
               .encode(x=x, y=alt.Y("probability:Q", stack="zero", scale=alt.Scale(domain=[0, 1.12]),
                                    axis=alt.Axis(format="%", values=[0, 0.5, 1], title=None)),
                       color=_emotion_color("emotion"), order=alt.Order("order:Q"),
                       tooltip=["person:N", "emotion:N", alt.Tooltip("probability:Q", format=PERCENT_FORMAT),
                                alt.Tooltip("time_s:Q", format=".2f")]))
    band = (base.mark_rect()
            .encode(x=x, x2="until_s:Q", y=alt.YDatum(1.03), y2=alt.Y2Datum(1.12),
                    color=_emotion_color("label"),
                    tooltip=["person:N", alt.Tooltip("label:N", title="smoothed label"),
                             alt.Tooltip("label_confidence:Q", format=PERCENT_FORMAT),
                             alt.Tooltip("time_s:Q", format=".2f")]))
    return (alt.layer(stacked, band, data=people)
            .facet(row=alt.Row("person:N", title=None, sort=sorted(people["person"].unique(), key=_person_number),
                               header=alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold")))
            .resolve_scale(x="shared"))


def _person_number(person: str) -> int:
    return int(person.rsplit(" ", 1)[1])
