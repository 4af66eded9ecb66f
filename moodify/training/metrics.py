"""Classification and calibration metrics, and temperature scaling. Pure functions on arrays."""

from __future__ import annotations

import numpy as np
import torch

from ..labels import EMOTIONS
from ..model.base import TEMPERATURE_RANGE
from ..model.base import softmax  # noqa: F401 - training and evaluation import it from here too

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins: the mean |accuracy - confidence|, weighted by bin size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability(probs: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS) -> dict:
    """Per-bin confidence, accuracy and count, for a reliability diagram."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"edges": edges.tolist(), "count": count.tolist(),
                "confidence": np.nan_to_num(conf_sum / count).tolist(),
                "accuracy": np.nan_to_num(acc_sum / count).tolist()}


def classification_report(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix (rows = truth), ECE."""
    # scikit-learn is imported here, not at module top: importing metrics (for softmax, the temperature) stays light.
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    pred = probs.argmax(axis=1)
    k = range(len(EMOTIONS))
    precision, recall, f1, support = precision_recall_fscore_support(labels, pred, labels=list(k), zero_division=0)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(f1_score(labels, pred, labels=list(k), average="macro", zero_division=0)),
        "nll": float(nll),
        "ece": expected_calibration_error(probs, labels),
        "per_class": {e: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, e in enumerate(EMOTIONS)},
        "confusion": confusion_matrix(labels, pred, labels=list(k)).tolist(),
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (Guo et al., 2017)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    # Within what a checkpoint may hold (model.base.TEMPERATURE_RANGE), so a model trained here always loads.
    low, high = TEMPERATURE_RANGE
    return float(min(max(log_t.exp().item(), low), high))
