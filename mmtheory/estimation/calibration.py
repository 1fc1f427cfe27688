"""Scores of predicted class probabilities: accuracy, cross-entropy, Brier score and the
expected calibration error (ECE). Shapes: ``proba`` ``(n, k)``, ``y`` ``(n,)`` class ids."""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCORES",
    "brier_score",
    "classification_scores",
    "cross_entropy",
    "expected_calibration_error",
]

#: Equal-width confidence bins of the ECE.
ECE_BINS = 15
#: The keys of :func:`classification_scores`, in order.
SCORES = ("accuracy", "error", "cross_entropy", "brier", "ece")


def cross_entropy(proba: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Mean -log p_y (natural log; p clipped at 1e-300) over the rows of ``proba``
    ``(..., n, k)``: a float for one model, an array over any leading axes."""
    y = np.asarray(y, dtype=int)
    picked = proba[..., np.arange(len(y)), y]
    ce = -np.log(np.clip(picked, 1e-300, None)).mean(axis=-1)
    return float(ce) if np.ndim(ce) == 0 else ce


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of sum_c (p_c - 1[y = c])^2 (0 is perfect, 2 the worst)."""
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum_b (n_b / n) |accuracy_b - mean confidence_b| over equal-width bins of the top
    class's probability (Guo et al. 2017)."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        sel = which == b
        total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def classification_scores(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """accuracy, error, cross_entropy (natural log), brier and ece of ``proba`` on ``y``."""
    y = np.asarray(y, dtype=int)
    acc = float((proba.argmax(axis=1) == y).mean())
    values = (acc, 1.0 - acc, float(cross_entropy(proba, y)), brier_score(proba, y))
    return dict(zip(SCORES, (*values, expected_calibration_error(proba, y)), strict=True))
