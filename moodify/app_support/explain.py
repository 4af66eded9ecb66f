"""The app's "Explain" toggle: a Grad-CAM overlay per face, for the emotion the face is labelled with."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..model.explain import gradcam, overlay
from ..pipeline.recognizer import Face


def face_saliency(model, faces: Sequence[Face], *, size: int = 160) -> list[tuple[np.ndarray, str]]:
    """One ``(picture, caption)`` per face: the network's input (BGR, ``size`` pixels square) with warm
    colours where it raised the score of the face's own emotion. ``model``: a torch ``EmotionModel``.

    A face whose map is empty even at ``gradcam``'s fallback layer (no region raised its score; none
    of 600 PublicTest faces) shows as the plain face, and its caption says so.
    """
    if not faces:
        return []
    crops = np.stack([face.crop for face in faces])
    maps = gradcam(model, crops, [face.emotion for face in faces])
    return [(overlay(crop, heat, size=size),
             "where the model looks" if heat.max() > 0 else f"no region stood out for {face.emotion}: empty map")
            for face, crop, heat in zip(faces, crops, maps)]
