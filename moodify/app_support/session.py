"""Which model and detector a browser session of the web app uses.

The model is shared by the whole process (its inference is thread-safe and it is big); the
detector belongs to one browser session, rebuilt only when that session's sidebar settings
change, because an OpenCV detector is not safe to run from two sessions' threads at once. The
Live mode gets a detector of its own as well: its frame callback runs on yet another thread.
``state`` is any mutable mapping: ``st.session_state`` in the app, a dict in the tests.
"""

from __future__ import annotations

from typing import MutableMapping

from ..model.registry import REGISTRY, available_models
from ..pipeline.detect import make_detector
from ..pipeline.recognizer import Recognizer
from ..video.frames import FrameAnalyzer


def model_choices() -> dict[str, str]:
    """The sidebar's model menu from the registry: name -> "name (summary)", the default first."""
    return {name: f"{name} ({REGISTRY[name]['summary']})" if REGISTRY[name].get("summary") else name
            for name in available_models()}


def detector_key(settings: dict) -> tuple:
    """The ``make_detector`` keywords the sidebar chose, as a hashable key."""
    return (("kind", settings["detector"]), ("score_threshold", settings["score_threshold"]),
            ("min_neighbors", settings["min_neighbors"]), ("min_size", settings["min_size"]))


def session_recognizer(state: MutableMapping, model, settings: dict) -> Recognizer:
    """``model`` with this session's detector, which is rebuilt only when its settings change."""
    key = detector_key(settings)
    if state.get("detector_key") != key:
        state["detector"] = make_detector(**dict(key))
        state["detector_key"] = key
    return Recognizer(model=model, detector=state["detector"])


def live_analyzer(state: MutableMapping, model, settings: dict, *, new_session: bool = False) -> FrameAnalyzer:
    """This session's live-webcam analyzer: a detector of its own and ``moodify live``'s webcam
    settings (detector on every 3rd frame, at 320 px), rebuilt when the settings or model change,
    or for a ``new_session`` (START: time from 0, people numbered from 1). A new object, not a
    reset: the webcam thread may still be finishing a frame with the old one."""
    key = (detector_key(settings), settings["smoothing"], settings["model"])
    if new_session or state.get("live_key") != key:
        recognizer = Recognizer(model=model, detector=make_detector(**dict(detector_key(settings))))
        state["live_analyzer"] = FrameAnalyzer.live(recognizer, smoothing=settings["smoothing"])
        state["live_key"] = key
    return state["live_analyzer"]
