"""A person's own neutral face as the reference for their expressions.

An expression is a change from a person's resting face. A face that looks a little stern or sad at
rest reads as angry or sad in every photo; told what that person looks like when neutral, Moodify
reads each of their faces relative to it. A ``Reference`` holds the mean log-probabilities of one
person's neutral faces (one or more photos or frames); ``adjust`` turns a face's probabilities into
ones relative to it. How much of the reference to subtract, and how, is a measured property of each
model, stored with it (``ReferenceSetting`` in its preprocessing, as the crop framing is):
``benchmarks/bench_reference.py`` measures the candidates on KDEF's train subjects and
``python -m moodify.training.reference --record`` stores the pick.

Without a reference nothing changes: ``adjust`` is never called and the probabilities are the
model's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import MoodifyError
from ..labels import EMOTIONS

METHODS = ("logit", "prob")
NEUTRAL = EMOTIONS.index("neutral")
_EPS = 1e-6  # probabilities are floored here before a log, so a 0 from a float32 softmax stays finite
# A second face at least this fraction of the largest one's area makes a reference photo ambiguous:
# whose neutral face is it? (A small face in the background is left out, as ``analyze`` sorts by size.)
AMBIGUOUS_FACE_AREA = 0.5


def log_probabilities(probs) -> np.ndarray:
    """``log p`` with ``p`` floored at a tiny value, so a 0 from a float32 softmax stays finite."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))


class ReferenceError(MoodifyError):
    """A reference that cannot be built: no face, or faces of several people, in a reference photo."""


@dataclass(frozen=True)
class ReferenceSetting:
    """How a model's probabilities are read relative to a person's reference.

    ``method``: ``"logit"`` subtracts ``weight`` times the reference's log-probabilities from the
    face's (then softmax); ``"prob"`` subtracts ``weight`` times the reference's probabilities,
    floored at zero, renormalised. (Subtracting only the reference's expression evidence measured
    against its own neutral, ``log r_k - log r_neutral``, is ``"logit"`` again: the softmax drops the
    constant.) ``weight`` 0 leaves probabilities unchanged.
    """

    method: str = "logit"
    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"reference method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (isinstance(self.weight, (int, float)) and np.isfinite(self.weight) and 0 <= self.weight <= 2):
            raise ValueError(f"reference weight must be a number from 0 to 2, got {self.weight!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "ReferenceSetting | None":
        if d is None:
            return None
        if not isinstance(d, dict) or set(d) - {"method", "weight"}:
            raise ValueError(f"must be {{'method': ..., 'weight': ...}}, got {repr(d)[:80]}")
        method, weight = d.get("method", "logit"), d.get("weight", 0.0)
        if not isinstance(method, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"method must be text and weight a number, got {repr(method)[:40]}, {repr(weight)[:40]}")
        try:
            weight = float(weight)
        except OverflowError:
            raise ValueError("weight is too large for a float") from None
        return cls(method=method, weight=weight)


@dataclass(frozen=True)
class Reference:
    """One person's neutral face: the mean log-probabilities (7,) of ``count`` reference faces."""

    log_probabilities: np.ndarray
    count: int = 1
    sources: tuple[str, ...] = ()  # what each reference face came from, for messages and reports

    @classmethod
    def from_probabilities(cls, probs, *, sources=()) -> "Reference":
        """The reference of one or more faces' calibrated probabilities (K, 7) or (7,): their log mean."""
        probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
        if probs.shape[0] == 0 or probs.shape[1] != len(EMOTIONS):
            raise ReferenceError(f"a reference needs at least one face's {len(EMOTIONS)} probabilities, got {probs.shape}")
        if not np.all(np.isfinite(probs)):
            raise ReferenceError("a reference face's probabilities are not finite")
        logp = log_probabilities(probs).mean(axis=0)
        return cls(logp, count=probs.shape[0], sources=tuple(sources))

    @property
    def probabilities(self) -> dict[str, float]:
        """The reference itself as probabilities (what the model reads in this person's neutral face)."""
        p = np.exp(self.log_probabilities - self.log_probabilities.max())
        return dict(zip(EMOTIONS, map(float, p / p.sum())))

    def to_dict(self) -> dict:
        return {"faces": self.count, "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}


def adjust(probs, reference: Reference | np.ndarray, setting: ReferenceSetting) -> np.ndarray:
    """Probabilities (N, 7) or (7,) relative to ``reference`` (a ``Reference`` or its mean log-probabilities)."""
    p = np.asarray(probs, dtype=np.float64)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    ref = np.asarray(reference.log_probabilities if isinstance(reference, Reference) else reference, dtype=np.float64)
    w = float(setting.weight)
    if setting.method == "prob":
        r = np.exp(ref - ref.max())
        r /= r.sum()
        out = np.clip(p - w * r, 0.0, None) + _EPS
        out /= out.sum(axis=1, keepdims=True)
    else:
        z = log_probabilities(p) - w * ref
        z -= z.max(axis=1, keepdims=True)
        out = np.exp(z)
        out /= out.sum(axis=1, keepdims=True)
    return out[0] if single else out


def reference_setting(model) -> ReferenceSetting:
    """The setting stored with ``model`` (its preprocessing's ``reference``); refuses a model without one."""
    setting = getattr(getattr(model, "preprocessing", None), "reference", None)
    if setting is None:
        raise ReferenceError(f"model {getattr(model, 'name', model)!r} has no measured reference setting; "
                             "record one with `python -m moodify.training.reference --record MODEL ...`")
    return setting
