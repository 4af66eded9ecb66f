"""Moodify web app: ``streamlit run app.py``.

UI only. Detection, recognition, drawing, tables, tracking and video annotation live in
``moodify/`` and are tested there; this file lays them out as four modes: Upload, Snapshot,
Live (webcam through streamlit-webrtc) and Video.
"""

from __future__ import annotations

import time

import streamlit as st

import moodify
from moodify.app_support import read_image_upload
from moodify.draw import EMOTION_COLORS, annotate
from moodify.results import (encode_png, face_thumbnail, faces_table, fit_for_display, probabilities_table,
                             records_json, results_records, results_table, table_csv)

LIVE_REFRESH_S = 0.25  # seconds between redraws of the live charts
DISPLAY_MAX_SIDE = 1400  # pixels: pictures are shown (and offered as PNG) at most this large
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
NO_FACE_HINT = ("Try a photo where the face is larger and looks at the camera, or lower the detector "
                "sensitivity / minimum face size in the sidebar.")
PRIVACY_NOTE = ("**Privacy:** pictures and video are processed in memory on the machine running this app. "
                "Nothing is stored, and nothing is sent anywhere.")
MODES = ["Upload", "Snapshot", "Live", "Video"]
MODE_HELP = {
    "Upload": "Analyse one or more photos.",
    "Snapshot": "Take a photo with your webcam and analyse it.",
    "Live": "Continuous webcam: boxes and labels on the video, live probabilities and a mood timeline.",
    "Video": "Analyse a video file: annotated video, per-face emotion timeline and CSV.",
}


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


EMOTION_HEX = {e: _hex(EMOTION_COLORS[e]) for e in moodify.EMOTIONS}


# ---------------------------------------------------------------- cached resources (once per process)

@st.cache_resource(show_spinner="Loading the emotion model...")
def get_model() -> moodify.EmotionModel:
    return moodify.load_model()


@st.cache_resource
def get_detector(min_neighbors: int, min_size: int) -> moodify.HaarDetector:
    return moodify.HaarDetector(min_neighbors=min_neighbors, min_size=min_size)


def get_recognizer(settings: dict) -> moodify.Recognizer:
    # Both parts are cached; a Recognizer is only a pair of references, so building one is free.
    return moodify.Recognizer(model=get_model(), detector=get_detector(settings["min_neighbors"],
                                                                        settings["min_size"]))


# ---------------------------------------------------------------- sidebar

def sidebar(model: moodify.EmotionModel) -> dict:
    """The model card, the detector and smoothing settings, and the privacy note."""
    with st.sidebar:
        st.header("Model")
        accuracy = model.metrics.get("PrivateTest", {}).get("accuracy")
        st.markdown(f"**{model.name}**  \nFER2013 PrivateTest accuracy: "
                    f"**{f'{accuracy:.1%}' if accuracy is not None else 'not recorded'}**")
        st.header("Face detector")
        min_neighbors = st.slider(
            "Sensitivity (min neighbours)", 1, 12, 5, key="min_neighbors",
            help="How many overlapping detections a face needs. Lower finds more faces, and more false ones.")
        min_size = st.slider("Minimum face size (pixels)", 12, 200, 30, step=2, key="min_size",
                             help="Faces smaller than this are ignored.")
        st.header("Live and video")
        smoothing = st.slider(
            "Temporal smoothing", 0.0, 0.95, 0.6, step=0.05, key="smoothing",
            help="How much each face's probabilities are averaged over time (0 = none): "
                 "higher is steadier, slower to react.")
        st.divider()
        st.caption(PRIVACY_NOTE)
    return {"min_neighbors": min_neighbors, "min_size": min_size, "smoothing": smoothing}


# ---------------------------------------------------------------- results of one picture

def probability_chart(face: moodify.Face, *, height: int = 190):
    """A horizontal bar per emotion, in the model's label order and the drawing's colours."""
    import altair as alt

    return (alt.Chart(probabilities_table(face), height=height)
            .mark_bar()
            .encode(x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None)),
                    y=alt.Y("emotion:N", sort=list(moodify.EMOTIONS), title=None),
                    color=alt.Color("emotion:N", scale=alt.Scale(domain=list(moodify.EMOTIONS),
                                                                   range=list(EMOTION_HEX.values())), legend=None),
                    tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")]))


def show_picture_result(name: str, bgr, faces: list[moodify.Face], *, key: str) -> None:
    """Annotated picture, a card per face (number, crop, 7 bars), the table and the downloads."""
    small, shown = fit_for_display(bgr, faces, max_side=DISPLAY_MAX_SIDE)
    annotated = annotate(small, shown)
    summary = (f"{len(faces)} face{'s' if len(faces) != 1 else ''} found" if faces else "no face found")
    picture_col, faces_col = st.columns([3, 2])
    picture_col.image(annotated, channels="BGR", caption=f"{name}: {summary}")
    with faces_col:
        if not faces:
            st.warning(f"No face found in {name}. {NO_FACE_HINT}")
        for number, face in enumerate(faces, start=1):
            with st.container(border=True):
                st.markdown(f"**Face {number}**: {face.emotion} ({face.confidence:.0%})")
                thumb_col, chart_col = st.columns([1, 2])
                thumb_col.image(face_thumbnail(bgr, face.box), channels="BGR")
                chart_col.altair_chart(probability_chart(face, height=150), use_container_width=True)
    table = faces_table(faces, image=name)
    if faces:
        st.dataframe(table, hide_index=True, column_config=_table_columns())
    stem = name.rsplit(".", 1)[0] or "image"
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download CSV", table_csv(table), f"{stem}-moodify.csv", "text/csv",
                       key=f"{key}-csv", on_click="ignore")
    c2.download_button("Download JSON", records_json(results_records([(name, faces)])), f"{stem}-moodify.json",
                       "application/json", key=f"{key}-json", on_click="ignore")
    c3.download_button("Download annotated PNG", encode_png(annotated), f"{stem}-moodify.png", "image/png",
                       key=f"{key}-png", on_click="ignore")


def _table_columns() -> dict:
    percent = {e: st.column_config.NumberColumn(e, format="percent") for e in moodify.EMOTIONS}
    return {"confidence": st.column_config.NumberColumn("confidence", format="percent"), **percent}


def mood_timeline_chart(timeline, *, height: int = 220):
    """Each face's top emotion over time, one dot per analysed frame, coloured by emotion."""
    import altair as alt

    return (alt.Chart(timeline, height=height)
            .mark_circle(size=30)
            .encode(x=alt.X("time_s:Q", title="seconds"),
                    y=alt.Y("confidence:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
                    color=alt.Color("emotion:N", scale=alt.Scale(domain=list(moodify.EMOTIONS),
                                                                   range=list(EMOTION_HEX.values()))),
                    shape=alt.Shape("face:N"),
                    tooltip=["face", "emotion", alt.Tooltip("confidence:Q", format=".0%"), "time_s"]))


def analyze_upload(data: bytes, name: str, settings: dict):
    """(bgr, faces) for an uploaded picture; raises moodify.ImageError with a message for people."""
    bgr = read_image_upload(data, name)
    return bgr, get_recognizer(settings).analyze(bgr)


# ---------------------------------------------------------------- modes

def upload_mode(settings: dict) -> None:
    files = st.file_uploader("Photos", type=IMAGE_TYPES, accept_multiple_files=True,
                             help="JPEG, PNG, WebP, BMP, TIFF or GIF; up to 50 megapixels each.")
    if not files:
        st.info("Drop one or more photos here. Faces are numbered the same way in the picture and the tables.")
        return
    results, errors = [], {}
    for i, file in enumerate(files):
        try:
            with st.spinner(f"Analysing {file.name}..."):
                bgr, faces = analyze_upload(file.getvalue(), file.name, settings)
        except moodify.ImageError as exc:
            errors[file.name] = str(exc)
            st.error(f"Could not read {file.name}: {exc}")
            continue
        results.append((file.name, faces))
        with st.expander(f"{file.name}: {len(faces)} face{'s' if len(faces) != 1 else ''}", expanded=i < 3):
            show_picture_result(file.name, bgr, faces, key=f"upload-{i}")
    if len(files) > 1 and results:
        st.subheader("All photos")
        table = results_table(results)
        st.dataframe(table, hide_index=True, column_config=_table_columns())
        c1, c2 = st.columns(2)
        c1.download_button("Download all as CSV", table_csv(table), "moodify-results.csv", "text/csv",
                           key="all-csv", on_click="ignore")
        c2.download_button("Download all as JSON", records_json(results_records(results, errors=errors)),
                           "moodify-results.json", "application/json", key="all-json", on_click="ignore")


def snapshot_mode(settings: dict) -> None:
    camera_col, _ = st.columns([1, 1])
    shot = camera_col.camera_input("Take a photo",
                                   help="Your browser asks for the camera; the photo stays on this machine.")
    if shot is None:
        st.info("Allow the camera, look at it, and press **Take Photo**.")
        return
    try:
        bgr, faces = analyze_upload(shot.getvalue(), "snapshot.jpg", settings)
    except moodify.ImageError as exc:
        st.error(f"Could not read the camera picture: {exc}")
        return
    show_picture_result("snapshot.jpg", bgr, faces, key="snapshot")


def live_mode(settings: dict) -> None:
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    from moodify.app_support import LiveResults, loopback_ice_requested, patch_loopback_ice

    if loopback_ice_requested():
        patch_loopback_ice()
    # One hand-over object per browser session; the frame callback below only ever calls publish().
    live: LiveResults = st.session_state.setdefault("live_results", LiveResults())
    model = get_model()
    # A detector of its own: the callback runs on another thread, and OpenCV cascades are not
    # safe to share with the Upload mode of other sessions.
    detector = moodify.HaarDetector(min_neighbors=settings["min_neighbors"], min_size=settings["min_size"])
    recognizer = moodify.Recognizer(model=model, detector=detector)

    def on_frame(frame: av.VideoFrame) -> av.VideoFrame:
        bgr = frame.to_ndarray(format="bgr24")
        faces = recognizer.analyze(bgr)
        live.publish(list(enumerate(faces, start=1)))
        return av.VideoFrame.from_ndarray(annotate(bgr, faces), format="bgr24")

    video_col, chart_col = st.columns([3, 2])
    with video_col:
        ctx = webrtc_streamer(
            key="live", mode=WebRtcMode.SENDRECV, video_frame_callback=on_frame,
            # No STUN/TURN servers: the browser talks to this app directly and nothing goes elsewhere.
            rtc_configuration={"iceServers": []},
            media_stream_constraints={"video": True, "audio": False}, async_processing=True)
    status, chart_area = chart_col.empty(), chart_col.empty()
    timeline_area = st.empty()
    if not ctx.state.playing:
        status.info("Press **START** and allow the camera. Each face gets a box, a number and its emotion.")
        return
    while ctx.state.playing:
        snap = live.read()
        if snap.faces:
            number, face = snap.faces[0]
            status.markdown(f"Frames analysed: **{snap.frames}**. Faces now: **{len(snap.faces)}**. "
                            f"Face {number}: **{face.emotion}** ({face.confidence:.0%})")
            chart_area.altair_chart(probability_chart(face), use_container_width=True)
        else:
            status.markdown(f"Frames analysed: **{snap.frames}**. No face in view.")
        if not snap.timeline.empty:
            timeline_area.altair_chart(mood_timeline_chart(snap.timeline), use_container_width=True)
        time.sleep(LIVE_REFRESH_S)


def video_mode(settings: dict) -> None:
    st.info("Video mode needs moodify.video (coming soon).")


def main() -> None:
    st.set_page_config(page_title="Moodify", page_icon=":performing_arts:", layout="wide")
    st.title("Moodify")
    st.caption("Facial emotion recognition that runs entirely on your machine.")
    try:
        model = get_model()
    except moodify.ModelError as exc:
        st.error(f"The emotion model could not be loaded: {exc}")
        st.stop()
    settings = sidebar(model)
    mode = st.segmented_control("Mode", MODES, default="Upload", required=True, key="mode",
                                label_visibility="collapsed")
    st.caption(MODE_HELP[mode])
    {"Upload": upload_mode, "Snapshot": snapshot_mode, "Live": live_mode, "Video": video_mode}[mode](settings)


main()
