"""The real-data protocol: repeated splits x sizes x subsets, convex heads, inner CV.

For each of ``n_splits`` stratified shuffle splits of all rows (the seed varies the split),
each training size m (a class-balanced prefix of that split's training rows, nested in m)
and each subset S of modalities:

1. the L2 strength is chosen by ``inner_folds``-fold cross-validation **on the m training
   rows only** (validation cross-entropy for classification, squared error for regression),
   each inner fit standardising with its own fitting rows;
2. the head (softmax regression by L-BFGS, or ridge) is refit on the m rows with that
   strength, to convergence, in float64, features standardised with the m rows' statistics;
3. it is scored once on the split's test rows: error, accuracy, cross-entropy, Brier, ECE
   (classification) or mean squared error (regression).

The split's test rows never reach :func:`select_lambda` (``tests/experiments/
test_protocol.py`` proves it on every real-data path by recording what it is given).
Intervals built from the rows of this table over splits cover the split's variance, the
training subsample's and the test sample's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmtheory.core.data import MultiModalData
from mmtheory.core.splits import inner_folds, is_classification, shuffle_splits, training_prefix
from mmtheory.core.subsets import Subset, all_subsets, parse_subsets
from mmtheory.engine.convex import Fit, fit_ridge, fit_softmax, predict, predict_proba
from mmtheory.estimation.calibration import classification_scores

__all__ = [
    "Protocol",
    "ProtocolRun",
    "run_protocol",
    "select_lambda",
    "default_sizes",
    "as_arrays",
    "PROTOCOL_NAME",
]

PROTOCOL_NAME = "repeated splits, L-BFGS heads, inner-CV penalty"
#: Consecutive rises of the validation loss after which the penalty path stops.
PATIENCE = 2


@dataclass(frozen=True)
class Protocol:
    """Settings of the protocol (module docstring)."""

    n_splits: int = 5
    test_fraction: float = 0.25
    inner_folds: int = 3
    lambdas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    seed: int = 0

    def describe(self) -> str:
        return (
            f"{self.n_splits} stratified {1 - self.test_fraction:.0%}/{self.test_fraction:.0%} "
            f"shuffle splits (seed {self.seed}); L2 strength from "
            f"{[float(v) for v in self.lambdas]} by {self.inner_folds}-fold CV on the training "
            "rows only; heads fit to convergence (L-BFGS softmax or exact ridge, float64)"
        )


@dataclass
class ProtocolRun:
    """The per-run table, the splits used (train, test row indices) and the task."""

    results: pd.DataFrame
    splits: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    task: str
    metric: str


def as_arrays(data: MultiModalData) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """float64 numpy features per modality (sequences mean-pooled over time) and ``y``."""
    x = {}
    for k in data.names:
        v = data[k].detach().cpu().numpy().astype(np.float64)
        x[k] = v.mean(axis=1) if v.ndim == 3 else v
    y = data.y.detach().cpu().numpy()
    return x, y


def default_sizes(n_train: int, n_classes: int | None, count: int = 5) -> list[int]:
    """``count`` sizes spaced geometrically from max(4 x classes, 10) to ``n_train``."""
    low = min(n_train, max(4 * (n_classes or 1), 10))
    return sorted({int(round(v)) for v in np.geomspace(low, n_train, count)})


def _standardize(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X[rows].mean(axis=0)
    sd = X[rows].std(axis=0)
    return mu, np.where(sd > 0, sd, 1.0)


def _fit(X, y, rows, lam, classes, init=None) -> tuple[Fit, np.ndarray, np.ndarray]:
    mu, sd = _standardize(X, rows)
    Z = (X[rows] - mu) / sd
    if classes:
        return fit_softmax(Z, y[rows], classes, lam, init=init), mu, sd
    return fit_ridge(Z, y[rows], lam), mu, sd


def _val_loss(fit, mu, sd, X, y, rows, classes) -> float:
    Z = (X[rows] - mu) / sd
    if classes:
        p = predict_proba(fit, Z)
        return float(-np.log(np.clip(p[np.arange(len(rows)), y[rows]], 1e-300, None)).mean())
    r = predict(fit, Z) - (y[rows][:, None] if y.ndim == 1 else y[rows])
    return float((r**2).sum(axis=1).mean())


def _baseline_risk(y, rows, te, classes) -> float:
    """The risk of the best constant: the training rows' majority class (error) or mean
    (squared error), scored on the test rows: the value of the empty subset."""
    if classes:
        majority = np.bincount(y[rows], minlength=classes).argmax()
        return float((y[te] != majority).mean())
    yt = y[te][:, None] if y.ndim == 1 else y[te]
    mean = (y[rows][:, None] if y.ndim == 1 else y[rows]).mean(axis=0)
    return float(((yt - mean) ** 2).sum(axis=1).mean())


def select_lambda(
    X: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    *,
    classes: int | None,
    lambdas: Sequence[float],
    folds: int,
    seed: int,
    key: tuple = (),
) -> tuple[float, list[float]]:
    """The penalty in ``lambdas`` with the least mean validation loss over ``folds`` folds
    of the rows ``rows`` (indices into X and y; nothing else is read). Returns the choice
    and the loss of every candidate (NaN for those not reached). The path runs from the
    strongest penalty to the weakest, warm-started, and stops once the loss has risen
    :data:`PATIENCE` times in a row past its best (weak penalties are the slow fits). With
    fewer rows than 2 per fold, the largest penalty."""
    lambdas = sorted(float(v) for v in lambdas)
    if len(rows) < 2 * folds:
        return lambdas[-1], [float("nan")] * len(lambdas)
    splits = inner_folds(y[rows], folds, seed=seed, key=key)
    loss = np.full(len(lambdas), np.nan)
    inits: list = [None] * len(splits)
    rises = 0
    for j in range(len(lambdas) - 1, -1, -1):  # strong to weak penalty, warm-started
        total = 0.0
        for f, (fit_pos, val_pos) in enumerate(splits):
            fr, vr = rows[fit_pos], rows[val_pos]
            fit, mu, sd = _fit(X, y, fr, lambdas[j], classes, inits[f])
            inits[f] = fit if classes else None
            total += _val_loss(fit, mu, sd, X, y, vr, classes)
        loss[j] = total / len(splits)
        # the path stops once the validation loss has risen twice in a row past its best
        rises = rises + 1 if loss[j] > np.nanmin(loss) else 0
        if rises >= PATIENCE:
            break
    return lambdas[int(np.nanargmin(loss))], [float(v) for v in loss]


def run_protocol(
    data: MultiModalData,
    *,
    subsets: object = "all",
    sizes: Sequence[int] | None = None,
    protocol: Protocol | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProtocolRun:
    """Run the protocol (module docstring) on all rows of ``data``.

    Returns one table row per (split, m, subset): ``split, m, subset, n_modalities, lam,
    converged`` and the test scores (``test_error, test_accuracy, test_cross_entropy,
    test_brier, test_ece`` or ``test_mse``);
    ``risk`` repeats the primary score (error, or mse for regression); ``baseline_risk`` is
    the best constant's (the empty subset)."""
    p = protocol or Protocol()
    x, y = as_arrays(data)
    classes = data.n_classes if is_classification(y) else None
    task = "classification" if classes else "regression"
    names = tuple(x)
    subs: list[Subset] = all_subsets(names) if subsets == "all" else parse_subsets(subsets, names)
    splits = shuffle_splits(y, p.n_splits, p.test_fraction, seed=p.seed)
    n_train = min(len(tr) for tr, _ in splits)
    sizes = list(sizes) if sizes is not None else default_sizes(n_train, classes)
    bad = [m for m in sizes if not 1 <= int(m) <= n_train]
    if bad:
        raise ValueError(f"sizes: m must be in 1..{n_train} (the training rows), got {bad[0]}")
    rows_out = []
    for s, (tr, te) in enumerate(splits):
        for m in sorted(int(v) for v in sizes):
            rows = tr[training_prefix(y[tr], m, seed=p.seed, key=(s,))]
            baseline = _baseline_risk(y, rows, te, classes)
            for sub in subs:
                X = np.concatenate([x[k] for k in sub.names], axis=1)
                lam, _ = select_lambda(
                    X,
                    y,
                    rows,
                    classes=classes,
                    lambdas=p.lambdas,
                    folds=p.inner_folds,
                    seed=p.seed,
                    key=(s, m),
                )
                fit, mu, sd = _fit(X, y, rows, lam, classes)
                Z = (X[te] - mu) / sd
                if classes:
                    scores = {
                        f"test_{k}": v
                        for k, v in classification_scores(predict_proba(fit, Z), y[te]).items()
                    }
                    risk = scores["test_error"]
                else:
                    r = predict(fit, Z) - (y[te][:, None] if y.ndim == 1 else y[te])
                    scores = {"test_mse": float((r**2).sum(axis=1).mean())}
                    risk = scores["test_mse"]
                rows_out.append(
                    {
                        "split": s,
                        "m": m,
                        "subset": str(sub),
                        "n_modalities": len(sub),
                        "lam": lam,
                        "converged": fit.converged,
                        **scores,
                        "risk": risk,
                        "baseline_risk": baseline,
                    }
                )
            if progress is not None:
                progress(f"split {s + 1}/{len(splits)}, m = {m}: {len(subs)} subsets")
    metric = "error" if classes else "mse"
    return ProtocolRun(pd.DataFrame(rows_out), splits, task, metric)
