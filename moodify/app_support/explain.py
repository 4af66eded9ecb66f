"""The app's "Explain" toggle: a Grad-CAM overlay per face, for the emotion the face is labelled with."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..model.explain import gradcam, overlay
from ..pipeline.recognizer import Face


def face_saliency(model, faces: Sequence[Face], *, size: int = 160) -> list[np.ndarray]:
    """One BGR picture per face (``size`` pixels square): the network's input with warm colours where
    it raised the score of the face's own emotion. ``model``: a torch ``EmotionModel``."""
    if not faces:
        return []
    crops = np.stack([face.crop for face in faces])
    maps = gradcam(model, crops, [face.emotion for face in faces])
    return [overlay(crop, heat, size=size) for crop, heat in zip(crops, maps)]
