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

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import log_softmax

from mmtheory import _version
from mmtheory.core.data import MultiModalData
from mmtheory.core.splits import (
    feature_scaling,
    inner_folds,
    is_classification,
    shuffle_splits,
    training_prefix,
)
from mmtheory.core.subsets import Subset, all_subsets, parse_subsets
from mmtheory.engine.convex import Fit, fit_ridge, fit_softmax, predict, predict_proba
from mmtheory.engine.convex_batched import Basis, eigenbasis, ridge_in_basis, solve_softmax_batch
from mmtheory.engine.device import resolve_device
from mmtheory.estimation.calibration import SCORES, classification_scores, cross_entropy
from mmtheory.experiments.neural_protocol import neural_cell
from mmtheory.experiments.records import RecordStore
from mmtheory.models import Learner

__all__ = [
    "Protocol",
    "ProtocolRun",
    "run_protocol",
    "select_lambda",
    "select_and_fit",
    "default_sizes",
    "as_arrays",
    "PROTOCOL_NAME",
    "cell_run_ids",
    "protocol_fingerprint",
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
    #: "batched" (all subsets and folds of a size in one batched solve per penalty, each in
    #: its eigenbasis) or "reference" (one scipy L-BFGS-B fit at a time); the same optima.
    solver: str = "batched"

    def describe(self) -> str:
        return (
            f"{self.n_splits} stratified {1 - self.test_fraction:.0%}/{self.test_fraction:.0%} "
            f"shuffle splits (seed {self.seed}); L2 strength from "
            f"{[float(v) for v in self.lambdas]} by {self.inner_folds}-fold CV on the training "
            "rows only; heads fit to convergence (L-BFGS softmax or exact ridge, float64)"
        )


@dataclass
class ProtocolRun:
    """The per-run table, the splits used (train, test row indices) and the task;
    ``cells_read_back`` of the (split, m) cells came from the record store, and
    ``cell_seconds`` is the wall time every cell took when it was computed."""

    results: pd.DataFrame
    splits: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    task: str
    metric: str
    cells_read_back: int = 0
    cell_seconds: float = 0.0


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
    return feature_scaling(X[rows])


def _fit(X, y, rows, lam, classes, init=None) -> tuple[Fit, np.ndarray, np.ndarray]:
    mu, sd = _standardize(X, rows)
    Z = (X[rows] - mu) / sd
    if classes:
        return fit_softmax(Z, y[rows], classes, lam, init=init), mu, sd
    return fit_ridge(Z, y[rows], lam), mu, sd


def _val_loss(fit, mu, sd, X, y, rows, classes) -> float:
    Z = (X[rows] - mu) / sd
    if classes:
        return float(cross_entropy(predict_proba(fit, Z), y[rows]))
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


#: Elements of the padded feature batch (problems x rows x columns) solved at once.
BATCH_ELEMENTS = 6_000_000


@dataclass
class _Problem:
    """One (subset, fit set) problem of :func:`select_and_fit`: the eigenbasis of the fit
    rows' standardised features, their labels, and the validation rows' features."""

    sub: int
    cols: np.ndarray
    mu: np.ndarray
    sd: np.ndarray
    V: np.ndarray
    ev: np.ndarray
    F: np.ndarray
    y: np.ndarray
    Fv: np.ndarray | None = None
    yv: np.ndarray | None = None
    B: np.ndarray | None = None
    b: np.ndarray | None = None
    best: tuple | None = None
    previous: tuple | None = None  # (B, b) at the penalty before, on the path


def _path_start(q: _Problem, path: Sequence[float]) -> None:
    """Set ``q``'s warm start on the penalty path, ``path`` being (lam_next, lam_now,
    lam_prev): the penalty to solve next and up to two solved before it. With both solved,
    the start is the secant through the solutions at lam_prev and lam_now (``q.previous``
    and ``q.B``), extrapolated linearly in log(lam); else the last solution. The path is
    smooth in log(lam); on mfeat's quick protocol this start took 23% fewer iterations at
    m = 200 than the solution at lam_now (a step of 1.5x or 2x the secant, more; the
    optimum is the same to the solver's tolerance from any start)."""
    now = None if q.B is None else (q.B, q.b)
    # a repeated penalty has no secant (log spacing 0): start from the solution
    if len(path) == 3 and q.previous is not None and now is not None and path[1] != path[2]:
        lam_next, lam_now, lam_prev = path
        t = np.log(lam_next / lam_now) / np.log(lam_now / lam_prev)
        q.B = q.B + t * (q.B - q.previous[0])
        q.b = q.b + t * (q.b - q.previous[1])
    q.previous = now


def _problems(X, y, fit_rows, val_rows, subs_cols, which) -> list[_Problem]:
    """The problems of the subsets ``which`` on one fit set (its own standardisation)."""
    mu, sd = _standardize(X, fit_rows)
    Z = (X[fit_rows] - mu) / sd
    C = Z.T @ Z / len(fit_rows)
    Zv = (X[val_rows] - mu) / sd if val_rows is not None else None
    out = []
    for i in which:
        cols = subs_cols[i]
        basis = eigenbasis(Z[:, cols], cov=C[np.ix_(cols, cols)])
        out.append(
            _Problem(
                i,
                cols,
                mu[cols],
                sd[cols],
                basis.V,
                basis.ev,
                basis.F,
                y[fit_rows],
                Fv=Zv[:, cols] @ basis.V if Zv is not None else None,
                yv=y[val_rows] if val_rows is not None else None,
            )
        )
    return out


def _solve(probs: list[_Problem], lam: np.ndarray, classes: int) -> list[bool]:
    """Solve the softmax problems ``probs`` at penalties ``lam`` in one padded batch,
    warm-started from each problem's current (B, b); stores the solutions."""
    n = max(len(q.y) for q in probs)
    r = max(len(q.ev) for q in probs)
    P = len(probs)
    F = np.zeros((P, n, r))
    Y = np.zeros((P, n, classes))
    w = np.zeros((P, n))
    B0 = np.zeros((P, r, classes))
    b0 = np.zeros((P, classes))
    for j, q in enumerate(probs):
        nj, rj = q.F.shape
        F[j, :nj, :rj] = q.F
        Y[j, np.arange(nj), q.y] = 1.0
        w[j, :nj] = 1.0 / nj
        if q.B is not None:
            B0[j, :rj], b0[j] = q.B, q.b
    res = solve_softmax_batch(F, Y, w, lam, B0=B0, b0=b0)
    for j, q in enumerate(probs):
        q.B, q.b = res.B[j, : len(q.ev)], res.b[j]
    return [bool(v) for v in res.converged]


def _chunks(probs_per_sub: dict[int, list[_Problem]]) -> list[list[int]]:
    """Subsets grouped (by width, so that padding wastes little) into batches of at most
    :data:`BATCH_ELEMENTS` padded feature elements."""
    subs = sorted(probs_per_sub, key=lambda i: max(len(q.ev) for q in probs_per_sub[i]))
    chunks: list[list[int]] = []
    size = 0
    for i in subs:
        qs = probs_per_sub[i]
        width = max(len(q.ev) for q in qs)
        rows = max(len(q.y) for q in qs)
        if chunks and size + len(qs) * rows * width <= BATCH_ELEMENTS:
            chunks[-1].append(i)
            # padded to the chunk's widest problem (the last added: sorted by width)
            size = sum(len(probs_per_sub[k]) for k in chunks[-1]) * rows * width
        else:
            chunks.append([i])
            size = len(qs) * rows * width
    return chunks


def _val_loss_basis(q: _Problem, classes: int | None) -> float:
    if classes:
        logp = log_softmax(q.Fv @ q.B + q.b, axis=1)
        return float(-np.clip(logp[np.arange(len(q.yv)), q.yv], np.log(1e-300), None).mean())
    Yv = q.yv[:, None] if q.yv.ndim == 1 else q.yv
    return float((((q.Fv @ q.B + q.b) - Yv) ** 2).sum(axis=1).mean())


def _ridge_basis(q: _Problem, lam: float) -> None:
    q.B, q.b = ridge_in_basis(Basis(q.V, q.ev, q.F), q.y, lam)


def select_and_fit(
    x: dict[str, np.ndarray],
    y: np.ndarray,
    rows: np.ndarray,
    subsets: Sequence[Subset],
    *,
    classes: int | None,
    lambdas: Sequence[float],
    folds: int,
    seed: int,
    key: tuple = (),
) -> list[tuple[float, Fit, np.ndarray, np.ndarray]]:
    """For every subset: the penalty :func:`select_lambda` would choose (the same folds,
    path and stopping rule) and the head refit on all of ``rows`` at that penalty, with its
    standardisation: ``(lam, fit, mu, sd)``. Only ``rows`` of x and y are read.

    The batched solver: per fit set (each inner fold's fitting rows, then all rows), every
    subset's standardised features are rotated into their eigenbasis
    (:mod:`mmtheory.engine.convex_batched`), and all the subsets' and folds' softmax
    problems at one penalty are solved in one batched L-BFGS, warm-started from the
    previous penalty's solution (from the third penalty on, the secant through the last
    two: :func:`_path_start`); the final fit starts from the folds' solutions mapped to
    its coordinates. Ridge is exact in the eigenbasis."""
    names = list(x)
    X = np.concatenate([x[k] for k in names], axis=1)
    offsets = np.cumsum([0] + [x[k].shape[1] for k in names])
    where = {k: np.arange(offsets[i], offsets[i + 1]) for i, k in enumerate(names)}
    subs_cols = [np.concatenate([where[k] for k in sub.names]) for sub in subsets]
    lambdas = sorted(float(v) for v in lambdas)
    n_sub = len(subsets)
    chosen = np.full(n_sub, lambdas[-1])
    warm: dict[int, list[_Problem]] = {}
    if len(rows) >= 2 * folds:
        splits = inner_folds(y[rows], folds, seed=seed, key=key)
        per_sub: dict[int, list[_Problem]] = {i: [] for i in range(n_sub)}
        for fit_pos, val_pos in splits:
            for q in _problems(X, y, rows[fit_pos], rows[val_pos], subs_cols, range(n_sub)):
                per_sub[q.sub].append(q)
        for chunk in _chunks(per_sub):
            loss = np.full((len(chunk), len(lambdas)), np.nan)
            rises = np.zeros(len(chunk), dtype=int)
            live = np.ones(len(chunk), dtype=bool)
            for j in range(len(lambdas) - 1, -1, -1):  # strong to weak, warm-started
                probs = [q for c, i in enumerate(chunk) if live[c] for q in per_sub[i]]
                if not probs:
                    break
                if classes:
                    for q in probs:
                        _path_start(q, lambdas[j : j + 3])
                    _solve(probs, np.full(len(probs), lambdas[j]), classes)
                else:
                    for q in probs:
                        _ridge_basis(q, lambdas[j])
                for c, i in enumerate(chunk):
                    if not live[c]:
                        continue
                    qs = per_sub[i]
                    loss[c, j] = np.mean([_val_loss_basis(q, classes) for q in qs])
                    if loss[c, j] <= np.nanmin(loss[c]):
                        for q in qs:
                            q.best = (q.B, q.b)
                    rises[c] = rises[c] + 1 if loss[c, j] > np.nanmin(loss[c]) else 0
                    if rises[c] >= PATIENCE:
                        live[c] = False
            for c, i in enumerate(chunk):
                chosen[i] = lambdas[int(np.nanargmin(loss[c]))]
            warm.update({i: per_sub[i] for i in chunk})
        del per_sub
    final = {q.sub: [q] for q in _problems(X, y, rows, None, subs_cols, range(n_sub))}
    out: list = [None] * n_sub
    for chunk in _chunks(final):
        probs = [final[i][0] for i in chunk]
        for q in probs:  # warm start: the folds' heads at the chosen penalty, mapped here
            folds_q = [f for f in warm.get(q.sub, []) if f.best is not None]
            if classes and folds_q:
                W_raw = np.mean([(f.V @ f.best[0]) / f.sd[:, None] for f in folds_q], axis=0)
                b_raw = np.mean(
                    [f.best[1] - (f.mu / f.sd) @ (f.V @ f.best[0]) for f in folds_q], axis=0
                )
                q.B = q.V.T @ (W_raw * q.sd[:, None])
                q.b = b_raw + q.mu @ W_raw
        if classes:
            ok = _solve(probs, chosen[chunk], classes)
        else:
            ok = [True] * len(probs)
            for q, i in zip(probs, chunk):
                _ridge_basis(q, chosen[i])
        for q, i, conv in zip(probs, chunk, ok):
            fit = Fit(q.V @ q.B, q.b, float(chosen[i]), conv, 0)
            out[i] = (float(chosen[i]), fit, q.mu, q.sd)
    return out


def run_protocol(
    data: MultiModalData,
    *,
    subsets: object = "all",
    sizes: Sequence[int] | None = None,
    protocol: Protocol | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    store: RecordStore | None = None,
    learner: Learner | None = None,
    device: str = "cpu",
) -> ProtocolRun:
    """Run the protocol (module docstring) on all rows of ``data``.

    Returns one table row per (split, m, subset): ``split, m, subset, n_modalities, lam,
    converged`` and the test scores (``test_error, test_accuracy, test_cross_entropy,
    test_brier, test_ece`` or ``test_mse``);
    ``risk`` repeats the primary score (error, or mse for regression); ``baseline_risk`` is
    the best constant's (the empty subset).

    ``progress(done, total, message)`` is called after each (split, m) cell.

    ``store``: a :class:`~mmtheory.experiments.records.RecordStore`; each (split, m)
    cell's rows are appended (fsynced as records.py says) as the cell finishes,
    and a cell whose rows are already there (the same data, protocol, sizes, subsets and
    version: :func:`cell_run_ids`) is read back instead of recomputed. A cell depends only on its
    split, its size and the protocol, so an interrupted run resumed gives the numbers of an
    uninterrupted one.

    ``learner``: a network that needs Adam (a convolutional temporal encoder) instead of
    the convex heads, trained, selected and scored as :mod:`~mmtheory.experiments.
    neural_protocol` says (classification only; sequences are kept, not pooled), on
    ``device`` ("cpu", "cuda" or "auto"; the convex heads always run on the CPU)."""
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
    if p.solver not in ("batched", "reference"):
        raise ValueError(f"protocol solver must be 'batched' or 'reference', got {p.solver!r}")
    if learner is not None and not classes:
        raise ValueError(
            "the protocol trains networks (--temporal conv) for classification only; "
            "this file's y holds float targets: use --temporal mean (convex ridge heads)"
        )
    dev = resolve_device(device) if learner is not None else None
    tag = protocol_fingerprint(data, p, sizes, subs, learner, dev) if store is not None else ""
    columns = _columns(classes)
    rows_out = []
    total, done = len(splits) * len(sizes), 0
    read_back, cell_seconds = 0, 0.0
    for s, (tr, te) in enumerate(splits):
        for m in sorted(int(v) for v in sizes):
            done += 1
            if store is not None:
                ids = cell_run_ids(tag, s, m, subs)
                records = [store.get(i) for i in ids]
                held = [_held_row(r, columns) for r in records]
                if all(h is not None for h in held):
                    rows_out += [h for h in held if h is not None]
                    read_back += 1
                    first_record = records[0] or {}
                    cell_seconds += float(first_record.get("cell_wall_s", 0.0))
                    if progress is not None:
                        progress(done, total, f"split {s + 1}, m = {m}: read back")
                    continue
            first, t0 = len(rows_out), time.perf_counter()
            rows = tr[training_prefix(y[tr], m, seed=p.seed, key=(s,))]
            baseline = _baseline_risk(y, rows, te, classes)
            if learner is not None:
                cells = neural_cell(
                    data,
                    learner,
                    subs,
                    rows,
                    te,
                    lambdas=p.lambdas,
                    folds=p.inner_folds,
                    seed=p.seed,
                    key=(s, m),
                    device=dev,
                )
                for sub, (lam, converged, sc) in zip(subs, cells, strict=True):
                    scores = {f"test_{k}": v for k, v in sc.items()}
                    rows_out.append(
                        _row(s, m, sub, lam, converged, scores, scores["test_error"], baseline)
                    )
            else:
                for sub, (lam, fit, mu, sd) in zip(
                    subs, _convex_cell(x, y, rows, subs, p, s, m, classes)
                ):
                    X = np.concatenate([x[k] for k in sub.names], axis=1)
                    Z = (X[te] - mu) / sd
                    if classes:
                        proba = predict_proba(fit, Z)
                        scores = {
                            f"test_{k}": v for k, v in classification_scores(proba, y[te]).items()
                        }
                        risk = scores["test_error"]
                    else:
                        r = predict(fit, Z) - (y[te][:, None] if y.ndim == 1 else y[te])
                        scores = {"test_mse": float((r**2).sum(axis=1).mean())}
                        risk = scores["test_mse"]
                    rows_out.append(_row(s, m, sub, lam, fit.converged, scores, risk, baseline))
            elapsed = time.perf_counter() - t0
            cell_seconds += elapsed
            if store is not None:
                store.append(
                    [
                        _cell_record(run_id, row, s, elapsed)
                        for run_id, row in zip(ids, rows_out[first:], strict=True)
                    ]
                )
            if progress is not None:
                progress(done, total, f"split {s + 1}, m = {m}: {len(subs)} subsets")
    metric = "error" if classes else "mse"
    return ProtocolRun(pd.DataFrame(rows_out), splits, task, metric, read_back, cell_seconds)


def _convex_cell(x, y, rows, subs, p: Protocol, s: int, m: int, classes) -> list:
    """``(lam, fit, mu, sd)`` per subset of one (split, m) cell: convex heads."""
    kw = dict(classes=classes, lambdas=p.lambdas, folds=p.inner_folds, seed=p.seed)
    if p.solver == "batched":
        return select_and_fit(x, y, rows, subs, key=(s, m), **kw)
    fits = []
    for sub in subs:
        X = np.concatenate([x[k] for k in sub.names], axis=1)
        lam, _ = select_lambda(X, y, rows, key=(s, m), **kw)
        fits.append((lam, *_fit(X, y, rows, lam, classes)))
    return fits


def _columns(classes) -> list[str]:
    """The protocol table's columns, in order."""
    scores = [f"test_{k}" for k in SCORES] if classes else ["test_mse"]
    head = ["split", "m", "subset", "n_modalities", "lam", "converged"]
    return head + scores + ["risk", "baseline_risk"]


def _held_row(record: dict | None, columns: list[str]) -> dict | None:
    """A recorded row, or None when there is none or it is not a whole row of this table
    (then its cell is computed again)."""
    pairs = record.get("row") if record is not None else None
    if not isinstance(pairs, list) or not all(
        isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in pairs
    ):
        return None
    row = dict(pairs)
    if list(row) != columns:
        return None
    return row


def _row(s, m, sub, lam, converged, scores, risk, baseline) -> dict:
    """One row of the protocol's table."""
    return {
        "split": s,
        "m": m,
        "subset": str(sub),
        "n_modalities": len(sub),
        "lam": lam,
        "converged": converged,
        **scores,
        "risk": risk,
        "baseline_risk": baseline,
    }


def protocol_fingerprint(
    data: MultiModalData,
    p: Protocol,
    sizes,
    subsets,
    learner: Learner | None = None,
    device=None,
) -> str:
    """A hash of everything a cell's rows depend on: the data's bytes (sequences as they
    are), the protocol's settings, the sizes, the subsets, the network and its device (if
    any) and the package version (numbers may change with it)."""
    h = hashlib.sha256()
    for k in data.names:
        v = data[k].detach().cpu().numpy()
        h.update(k.encode())
        h.update(f"{v.shape}{v.dtype}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    y = data.y.detach().cpu().numpy()
    h.update(f"{y.shape}{y.dtype}{data.task}{data.n_classes}".encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(repr((p, sorted(int(m) for m in sizes), [str(s) for s in subsets])).encode())
    if learner is not None:
        h.update(repr((learner.settings(), str(device))).encode())
    h.update(_version.__version__.encode())
    return h.hexdigest()


def cell_run_ids(tag: str, split: int, m: int, subsets) -> list[str]:
    """The run ids of one (split, m) cell's rows, one per subset."""
    return [hashlib.sha256(f"{tag}|{split}|{m}|{sub}".encode()).hexdigest()[:20] for sub in subsets]


def _cell_record(run_id: str, row: dict, split: int, cell_s: float) -> dict:
    """A protocol row as a run record (the fields every record holds, the row, and the
    wall seconds its whole (split, m) cell took, ``cell_wall_s``)."""
    return {
        "cell_wall_s": cell_s,
        "run_id": run_id,
        "world": "protocol",
        "learner": "protocol",
        "subset": row["subset"],
        "m": int(row["m"]),
        "seed": int(split),
        "train_risk": None,
        "test_risk": float(row["risk"]),
        "eta": None,
        "converged": bool(row["converged"]),
        # (column, value) pairs: records are written with sorted keys, the table's column
        # order must survive
        "row": [[k, v.item() if hasattr(v, "item") else v] for k, v in row.items()],
    }
