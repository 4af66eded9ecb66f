"""Moodify web app: ``streamlit run app.py``.

UI only. Detection, recognition, drawing, tables, tracking and video annotation live in
``moodify/`` and are tested there; this file lays them out as four modes: Upload, Snapshot,
Live (webcam through streamlit-webrtc) and Video.
"""

from __future__ import annotations

import logging
import time

import streamlit as st

import moodify
from moodify.app_support.charts import mood_timeline_chart, probability_chart, video_timeline_chart
from moodify.app_support.results import (PICTURE_SHOWN_PX, encode_png, face_thumbnail, faces_table, fit_for_display,
                                         percent, records_json, reference_note, results_records, results_table,
                                         styled_table, table_csv, without_name)
from moodify.app_support.session import detector_key, live_analyzer, model_choices, session_recognizer
from moodify.app_support.uploads import pin_torch_threads, read_image_upload
from moodify.names import markdown_text
from moodify.pipeline.draw import annotate
from moodify.video.timeline import person_line
from moodify.video.tracking import SMOOTHING

LIVE_REFRESH_S = 0.25  # seconds between redraws of the live charts
DISPLAY_MAX_SIDE = 1400  # pixels: pictures are shown (and offered as PNG) at most this large
VIDEO_TYPES = ["mp4", "mov", "m4v", "avi", "mkv", "webm"]
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
# The sidebar's detection sliders. The no-face hint names them by these very labels, and only the
# ones the chosen detector shows, so it always points at a control that is on the screen.
SCORE_LABEL = "Minimum face score"  # YuNet
NEIGHBOURS_LABEL = "Hits a face needs (min neighbours)"  # Haar
MIN_SIZE_LABEL = "Minimum face size (pixels)"  # both
DETECTOR_SLIDER = {"yunet": SCORE_LABEL, "haar": NEIGHBOURS_LABEL}
DETECTOR_LABELS = {"yunet": "YuNet (finds turned and small faces)", "haar": "Haar cascade (OpenCV's classic)"}
PRIVACY_NOTE = ("**Privacy:** pictures and video are processed in memory on the machine running this app. "
                "Nothing is stored, and nothing is sent anywhere.")
MODES = ["Upload", "Snapshot", "Live", "Video"]
MODE_HELP = {
    "Upload": "Analyse one or more photos.",
    "Snapshot": "Take a photo with your webcam and analyse it.",
    "Live": "Continuous webcam: boxes and labels on the video, live probabilities and a mood timeline.",
    "Video": "Analyse a video file: annotated video, per-face emotion timeline and CSV.",
}


def no_face_hint(detector: str) -> str:
    """What to try when no face is found, naming the sidebar controls shown for ``detector``."""
    return (f"Try a photo where the face is larger and looks at the camera, or lower "
            f"**{DETECTOR_SLIDER[detector]}** or **{MIN_SIZE_LABEL}** in the sidebar.")


MODEL_CHOICES = model_choices()  # from the registry: name -> "name (summary)"


# ---------------------------------------------------------------- cached resources (once per process)

@st.cache_resource(show_spinner="Loading the emotion model...")
def get_model(name: str = "default") -> moodify.EmotionModel:
    return moodify.load_model(name)


def current_model() -> moodify.EmotionModel:
    """The shipped model this browser session picked in the sidebar (the default until it picks)."""
    return get_model(st.session_state.get("model_name", "default"))


def get_recognizer(settings: dict) -> moodify.Recognizer:
    """The shared model with this browser session's detector (moodify.app_support.session)."""
    return session_recognizer(st.session_state, current_model(), settings)


# ---------------------------------------------------------------- sidebar

def sidebar(model: moodify.EmotionModel) -> dict:
    """The model card, the detector and smoothing settings, and the privacy note."""
    with st.sidebar:
        accuracy = model.metrics.get("PrivateTest", {}).get("accuracy")
        st.markdown(f"**{model.name}**  \nFER2013 PrivateTest accuracy: "
                    f"**{percent(accuracy) if accuracy is not None else 'not recorded'}**")
        st.header("Face detector")
        kind = st.radio("Detector", list(DETECTOR_LABELS), format_func=DETECTOR_LABELS.get, key="detector_kind")
        score_threshold, min_neighbors = moodify.YuNetDetector.score_threshold, moodify.HaarDetector.min_neighbors
        if kind == "yunet":
            score_threshold = st.slider(
                SCORE_LABEL, 0.3, 0.95, score_threshold, step=0.05, key="score_threshold",
                help="How sure YuNet must be that it sees a face. Lower finds more faces, and more false ones.")
        else:
            min_neighbors = st.slider(
                NEIGHBOURS_LABEL, 1, 12, min_neighbors, key="min_neighbors",
                help="How many overlapping detections a face needs. Lower finds more faces, and more false ones.")
        min_size = st.slider(MIN_SIZE_LABEL, 12, 200, moodify.HaarDetector.min_size, step=2, key="min_size",
                             help="Faces smaller than this are ignored.")
        explain = st.toggle("Explain: show where the model looks", key="explain",
                            help="Grad-CAM: warm colours mark the parts of each face that raised the score "
                                 "of the emotion shown (Upload and Snapshot).")
        st.header("Live and video")
        smoothing = st.slider(
            "Temporal smoothing", 0.0, 0.95, SMOOTHING, step=0.05, key="smoothing",
            help="How much each face's probabilities are averaged over time (0 = none): "
                 "higher is steadier, slower to react.")
        st.divider()
        st.caption(PRIVACY_NOTE)
    return {"detector": kind, "score_threshold": score_threshold, "min_neighbors": min_neighbors,
            "min_size": min_size, "smoothing": smoothing, "explain": explain, "model": model.name}


# ---------------------------------------------------------------- results of one picture

def show_picture_result(name: str, bgr, faces: list[moodify.Face], *, key: str, detector: str,
                        explain: bool = False) -> None:
    """Annotated picture, a card per face (number, crop, 7 bars), the table and the downloads."""
    saliency = explain_faces(faces) if explain and faces else [None] * len(faces)
    small, shown = fit_for_display(bgr, faces, max_side=DISPLAY_MAX_SIDE)
    annotated = annotate(small, shown, shown_width=PICTURE_SHOWN_PX)
    summary = (f"{len(faces)} face{'s' if len(faces) != 1 else ''} found" if faces else "no face found")
    picture_col, faces_col = st.columns([3, 2])
    # Every name a user supplied goes through markdown_text: shown as its characters, never as a
    # link or an image the browser would fetch from another host.
    picture_col.image(annotated, channels="BGR", caption=f"{markdown_text(name)}: {summary}")
    with faces_col:
        if not faces:
            st.warning(f"No face found in {markdown_text(name)}. {no_face_hint(detector)}")
        for number, (face, heat) in enumerate(zip(faces, saliency), start=1):
            with st.container(border=True):
                st.markdown(f"**Face {number}**: {face.emotion} ({percent(face.confidence)})")
                if (note := reference_note(face)) is not None:
                    st.caption(note)
                thumb_col, chart_col = st.columns([1, 2])
                thumb_col.image(face_thumbnail(bgr, face.box), channels="BGR")
                if heat is not None:
                    picture, caption = heat
                    thumb_col.image(picture, channels="BGR", caption=caption)
                chart_col.altair_chart(probability_chart(face, height=175), width="stretch")
    table = faces_table(faces, image=name)
    if faces:
        st.dataframe(styled_table(table), hide_index=True)
    stem = name.rsplit(".", 1)[0] or "image"
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download CSV", table_csv(table), f"{stem}-moodify.csv", "text/csv",
                       key=f"{key}-csv", on_click="ignore")
    c2.download_button("Download JSON", records_json(results_records([(name, faces)])), f"{stem}-moodify.json",
                       "application/json", key=f"{key}-json", on_click="ignore")
    c3.download_button("Download annotated PNG", encode_png(annotated), f"{stem}-moodify.png", "image/png",
                       key=f"{key}-png", on_click="ignore")


def explain_faces(faces: list[moodify.Face], *, size: int = 160) -> list:
    """A Grad-CAM overlay (BGR) and its caption per face, for the emotion each face is labelled with."""
    from moodify.app_support.explain import face_saliency

    return face_saliency(current_model(), faces, size=size)


def analyze_upload(data: bytes, name: str, settings: dict, *, reference=None):
    """(bgr, faces) for an uploaded picture; raises moodify.ImageError with a message for people."""
    bgr = read_image_upload(data, name)
    return bgr, get_recognizer(settings).analyze(bgr, reference=reference)


def neutral_reference(settings: dict):
    """The optional "neutral photo of this person" of Upload mode: a Reference, or None (with the reason shown)."""
    from moodify.pipeline.reference import ReferenceError

    if not st.toggle("Read relative to a neutral photo of this person", key="use_reference",
                     help="A face that looks a little stern or sad at rest fools any single-photo reader. Give a "
                          "photo of the same person with a neutral face, and their photos are read as a change "
                          "from it. Use it only for photos of that person."):
        return None
    neutral = st.file_uploader("Neutral photo of this person", type=IMAGE_TYPES, key="neutral_photo")
    if neutral is None:
        st.info("Add a photo of this person with a neutral face; until then photos are read as they are.")
        return None
    try:
        reference = get_recognizer(settings).reference(read_image_upload(neutral.getvalue(), neutral.name),
                                                      names=[neutral.name])
    except (moodify.ImageError, ReferenceError) as exc:
        st.error(f"The neutral photo cannot be used: {markdown_text(without_name(str(exc), neutral.name))}")
        return None
    st.success(f"Photos below are read relative to the neutral face in {markdown_text(neutral.name)}; each card shows the "
               "reading without it too.")
    return reference


# ---------------------------------------------------------------- modes

def upload_mode(settings: dict) -> None:
    files = st.file_uploader("Photos", type=IMAGE_TYPES, accept_multiple_files=True,
                             help="JPEG, PNG, WebP, BMP, TIFF or GIF; up to 50 megapixels each.")
    reference = neutral_reference(settings)
    if not files:
        st.info("Drop one or more photos here. Faces are numbered the same way in the picture and the tables.")
        return
    results, errors = [], {}
    for i, file in enumerate(files):
        try:
            with st.spinner(f"Analysing {markdown_text(file.name)}..."):
                bgr, faces = analyze_upload(file.getvalue(), file.name, settings, reference=reference)
        except moodify.ImageError as exc:
            errors[file.name] = str(exc)
            st.error(f"**{markdown_text(file.name)}** could not be read: "
                     f"{markdown_text(without_name(str(exc), file.name))}")
            continue
        results.append((file.name, faces))
        # The first few photos open; a long batch stays compact until a photo is clicked.
        with st.expander(f"{markdown_text(file.name)}: {len(faces)} face{'s' if len(faces) != 1 else ''}",
                         expanded=len(results) <= 3):
            show_picture_result(file.name, bgr, faces, key=f"upload-{i}", detector=settings["detector"],
                                explain=settings["explain"])
    if len(files) > 1:
        # Every photo has a row, in the table and both downloads: its faces, "no face", or why it could not be read.
        st.subheader("All photos")
        table = results_table(results, errors=errors)
        st.dataframe(styled_table(table), hide_index=True)
        c1, c2 = st.columns(2)
        c1.download_button("Download all as CSV", table_csv(table), "moodify-results.csv", "text/csv",
                           key="all-csv", on_click="ignore")
        c2.download_button("Download all as JSON", records_json(results_records(results, errors=errors)),
                           "moodify-results.json", "application/json", key="all-json", on_click="ignore")


def snapshot_mode(settings: dict) -> None:
    camera_col, _ = st.columns([1, 1])
    shot = camera_col.camera_input("Take a photo", resolution="720p",
                                   help="Your browser asks for the camera; the photo stays on this machine.")
    if shot is None:
        st.info("Allow the camera, look at it, and press **Take Photo**.")
        return
    try:
        bgr, faces = analyze_upload(shot.getvalue(), "snapshot.jpg", settings)
    except moodify.ImageError as exc:
        st.error(f"The camera picture could not be read: {markdown_text(without_name(str(exc), 'snapshot.jpg'))}")
        return
    show_picture_result("snapshot.jpg", bgr, faces, key="snapshot", detector=settings["detector"],
                        explain=settings["explain"])


def live_mode(settings: dict) -> None:
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    from moodify.app_support.live import (LiveResults, live_connection_message, live_connection_step,
                                          loopback_ice_requested, patch_loopback_ice,
                                          webrtc_connection_details)
    from moodify.pipeline.draw import annotate_tracks
    from moodify.video.frames import FpsMeter, FrameAnalyzer

    if loopback_ice_requested():
        patch_loopback_ice()
    # Per browser session: the hand-over object (which keeps the last session after STOP), and a
    # tracker/smoother rebuilt when settings change or a session starts.
    live: LiveResults = st.session_state.setdefault("live_results", LiveResults())
    analyzer: FrameAnalyzer = live_analyzer(st.session_state, current_model(), settings)
    meter = FpsMeter()

    def on_frame(frame: av.VideoFrame) -> av.VideoFrame:
        # Runs on streamlit-webrtc's worker thread: no st.* here, only the hand-over below. It reads
        # ``analyzer`` when called, so a session started below gets its fresh one.
        bgr = frame.to_ndarray(format="bgr24")
        result = analyzer.process(bgr)
        live.publish(result)
        return av.VideoFrame.from_ndarray(annotate_tracks(bgr, result.faces, fps=meter.tick(), copy=False),
                                          format="bgr24")

    video_col, chart_col = st.columns([3, 2])
    with video_col:
        ctx = webrtc_streamer(
            key="live", mode=WebRtcMode.SENDRECV, video_frame_callback=on_frame,
            # No STUN/TURN servers: the browser talks to this app directly and nothing goes elsewhere.
            rtc_configuration={"iceServers": []},
            media_stream_constraints={"video": True, "audio": False}, async_processing=True)
    if chart_col.button("Calibrate: hold a neutral face", key="calibrate", disabled=not ctx.state.playing,
                        help="Each person in view holds a neutral face for a second; from then on their emotions "
                             "are read relative to it, until they leave the picture."):
        analyzer.calibrate()
    status, chart_area = chart_col.empty(), chart_col.empty()
    timeline_area = st.empty()
    if not (ctx.state.playing or ctx.state.signalling):
        st.session_state["live_running"] = False
        snap = live.read()
        if not snap.frames:
            status.info("Press **START** and allow the camera. Each person gets a box, a number that follows "
                        "them, and their emotion, smoothed over time as set in the sidebar.")
            return
        show_live_session(live, snap, status=status, chart_area=chart_area, timeline_area=timeline_area)
        return
    if not st.session_state.get("live_running"):  # START: a new session, from frame 0 and person 1
        st.session_state["live_running"] = True
        live.new_session()
        analyzer = live_analyzer(st.session_state, current_model(), settings, new_session=True)
    # Until the first frame arrives, say so: the WebRTC connection can take a while, or never come.
    # Streamlit reruns this script when the connection's state changes, which ends this wait.
    start, frames_before, logged = time.monotonic(), live.read().frames, False
    while (waiting := live_connection_message(
            playing=ctx.state.playing, signalling=ctx.state.signalling,
            new_frames=live.read().frames - frames_before, waited_s=time.monotonic() - start)) is not None:
        kind, text = waiting
        getattr(status, kind)(text)
        if kind == "warning" and not logged:  # in the app's log too: where a stall happened, for its cause
            logging.getLogger("moodify.app").warning(
                "Live: no frame %.0f s after START (%s; %s)", time.monotonic() - start,
                live_connection_step(playing=ctx.state.playing), webrtc_connection_details(ctx))
            logged = True
        time.sleep(LIVE_REFRESH_S)
    while ctx.state.playing:
        snap = live.read()
        if snap.faces:
            number, face = snap.faces[0]
            calibration = ("  \nCalibrating: hold a neutral face..." if analyzer.calibrating else
                           f"  \n{reference_note(face)}" if face.relative_to_reference else "")
            status.markdown(f"Frames analysed: **{snap.frames}**. Faces now: **{len(snap.faces)}**.  \n"
                            f"Face {number}: **{face.emotion}** ({percent(face.confidence)}){calibration}")
            chart_area.altair_chart(probability_chart(face), width="stretch")
        else:
            status.markdown(f"Frames analysed: **{snap.frames}**. No face in view.")
        if not snap.timeline.empty:
            timeline_area.altair_chart(mood_timeline_chart(snap.timeline), width="stretch")
        time.sleep(LIVE_REFRESH_S)


def show_live_session(live, snap, *, status, chart_area, timeline_area) -> None:
    """After STOP: the last session's summary per person, its timeline chart and its CSV."""
    status.markdown(f"**Last session** (stopped): **{snap.frames}** frames analysed; **{len(snap.summary)} "
                    f"{'person' if len(snap.summary) == 1 else 'people'}** seen. Press **START** for a new one.")
    with chart_area.container():
        for row in snap.summary.to_dict("records"):
            st.markdown(person_line(row))
        st.download_button("Download timeline CSV", live.timeline_csv(), "moodify-live-timeline.csv", "text/csv",
                           key="live-csv", on_click="ignore")
    with timeline_area.container():
        if not snap.timeline.empty:
            st.markdown(f"**Mood timeline**: the last {live.history_s:.0f} s of the session.")
            st.altair_chart(mood_timeline_chart(snap.timeline), width="stretch")
        if not snap.summary.empty:
            show_people_table(snap.summary)


def video_mode(settings: dict) -> None:
    from moodify.errors import VideoError

    file = st.file_uploader("Video", type=VIDEO_TYPES,
                            help="MP4, MOV, AVI, MKV or WebM. Every frame is analysed; a short clip is quickest.")
    if file is None:
        st.info("Upload a video to get it back annotated, with each person's emotions over time.")
        return
    key = (file.file_id, detector_key(settings), settings["smoothing"], settings["model"])
    if st.session_state.get("video_key") != key:
        try:
            result = analyze_video_upload(file, settings)
        except VideoError as exc:
            result = str(exc)  # the message, shown instead of results
        st.session_state["video_result"], st.session_state["video_key"] = result, key
    result = st.session_state["video_result"]
    if isinstance(result, str):
        st.error(f"**{markdown_text(file.name)}** could not be analysed: "
                 f"{markdown_text(without_name(result, file.name))}")
        return
    if result.damage:
        st.warning(f"{markdown_text(file.name)} is damaged: {markdown_text(result.damage)}. The results cover the "
                   f"{result.frames_read} frames that could be read.")
    timeline, summary = result.timeline, result.summary
    st.markdown(f"**{result.frames_read} frames** analysed; **{len(summary)} "
                f"{'person' if len(summary) == 1 else 'people'}** tracked.")
    video_col, side_col = st.columns([3, 2])
    if result.video:
        video_col.video(result.video, format="video/mp4")
    with side_col:
        if summary.empty:
            st.warning(f"No face found in {markdown_text(file.name)}. {no_face_hint(settings['detector'])}")
        for row in summary.to_dict("records"):
            st.markdown(person_line(row))
    if not summary.empty:
        # Full width: in the side column its 12 columns were cut off on the right.
        show_people_table(summary)
    if not timeline.empty:
        st.markdown("**Emotion timeline**: per person, how sure the model is of each emotion over time "
                    "(smoothed as set in the sidebar); the band on top is the label shown on the video.")
        st.altair_chart(video_timeline_chart(timeline), width="stretch")
    stem = file.name.rsplit(".", 1)[0] or "video"
    c1, c2 = st.columns(2)
    if result.video:
        c1.download_button("Download annotated video", result.video, f"{stem}-moodify.mp4", "video/mp4",
                           key="video-mp4", on_click="ignore")
    c2.download_button("Download timeline CSV", result.csv, f"{stem}-moodify-timeline.csv", "text/csv",
                       key="video-csv", on_click="ignore")


def show_people_table(summary) -> None:
    """The per-person summary of a video or a live session (``EmotionSummary.rows()``) as a table."""
    st.markdown("**Share of time in each emotion, per person**")
    st.dataframe(styled_table(summary.drop(columns=["main_emotion"])), hide_index=True, width="stretch",
                 column_config={"track_id": st.column_config.NumberColumn("person"),
                                "first_s": st.column_config.NumberColumn("from (s)"),
                                "last_s": st.column_config.NumberColumn("to (s)")})


def analyze_video_upload(file, settings: dict):
    """The upload analysed by moodify.app_support.video, with a progress bar on the page."""
    from moodify.app_support.video import analyze_video_upload as analyze

    bar = st.progress(0.0, text=f"Analysing {markdown_text(file.name)}...")
    result = analyze(file.getvalue(), file.name, recognizer=get_recognizer(settings), smoothing=settings["smoothing"],
                     progress=lambda done, text: bar.progress(done, text=markdown_text(text)))
    bar.empty()
    return result


def main() -> None:
    st.set_page_config(page_title="Moodify", page_icon=":performing_arts:", layout="wide")
    pin_torch_threads()  # before any analysis: one thread, as moodify video and live use
    st.title("Moodify")
    st.caption("Facial emotion recognition that runs entirely on your machine.")
    with st.sidebar:
        st.header("Model")
        st.selectbox("Model", list(MODEL_CHOICES), format_func=MODEL_CHOICES.get, key="model_name",
                     label_visibility="collapsed",
                     help="default: fast enough for live video on a laptop; accurate: a larger network, "
                          "more accurate and several times slower. Each has a model card in models/.")
    try:
        model = current_model()
    except moodify.ModelError as exc:
        st.error(f"The emotion model could not be loaded: {exc}")
        st.stop()
    settings = sidebar(model)
    mode = st.segmented_control("Mode", MODES, default="Upload", required=True, key="mode",
                                label_visibility="collapsed")
    st.caption(MODE_HELP[mode])
    {"Upload": upload_mode, "Snapshot": snapshot_mode, "Live": live_mode, "Video": video_mode}[mode](settings)


main()
