"""Row splits for real data: repeated (stratified) shuffle splits, k folds, training prefixes.

Every function takes a ``seed`` and returns integer row indices; nothing here looks at
features. A classification target (integer ``y``) is stratified, a regression target
(float ``y``) is split at random. The outer test rows of a split are never handed to
anything that selects (penalties, hyper-parameters): :func:`inner_folds` takes only the
training rows.
"""

from __future__ import annotations

import numpy as np

from mmtheory.core.seeding import SeedLike, as_generator

__all__ = [
    "CONSTANT_RTOL",
    "feature_scaling",
    "is_classification",
    "shuffle_splits",
    "inner_folds",
    "training_prefix",
]

#: A feature whose standard deviation on the fitting rows is at most this fraction of its
#: largest magnitude there is constant up to rounding: its standard deviation is rounding
#: noise (a constant 0.4292 has one of 5.6e-17), and dividing by it would turn every row
#: the scaling was not fit on into numbers near 1e16. Such a feature is left unscaled.
CONSTANT_RTOL = 1e-12


def feature_scaling(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each feature (the last axis) over every other axis of ``values``
    (the fitting rows, and time steps for sequences): the standard deviation, or 1 for a
    feature that is constant up to rounding (:data:`CONSTANT_RTOL`)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
    mu = flat.mean(axis=0)
    sd = flat.std(axis=0)
    constant = sd <= CONSTANT_RTOL * np.abs(flat).max(axis=0, initial=0.0)
    return mu, np.where(constant, 1.0, sd)


def is_classification(y: np.ndarray) -> bool:
    """True for integer class ids, False for float (regression) targets."""
    return bool(np.issubdtype(np.asarray(y).dtype, np.integer))


def _groups(y: np.ndarray) -> list[np.ndarray]:
    y = np.asarray(y)
    if is_classification(y) and y.ndim == 1:
        return [np.flatnonzero(y == c) for c in np.unique(y)]
    return [np.arange(len(y))]


def shuffle_splits(
    y: np.ndarray, n_splits: int, test_fraction: float = 0.25, seed: SeedLike = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train, test) index pairs; each draws ``test_fraction`` of every class
    (of all rows for regression) as test rows, independently per split.

    A class with a single row stays in training. Raises ValueError when a split would leave
    the training or the test part empty."""
    if not isinstance(n_splits, int | np.integer) or n_splits < 1:
        raise ValueError(f"n_splits must be an integer >= 1, got {n_splits!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n = len(y)
    out = []
    for s in range(int(n_splits)):
        rng = as_generator(seed, "outer-split", s)
        is_test = np.zeros(n, dtype=bool)
        for idx in _groups(y):
            if len(idx) < 2:
                continue
            idx = rng.permutation(idx)
            k = min(len(idx) - 1, max(1, int(round(test_fraction * len(idx)))))
            is_test[idx[:k]] = True
        if not is_test.any() or is_test.all():
            raise ValueError(
                f"a {test_fraction:g} test split of {n} rows leaves the "
                f"{'test' if not is_test.any() else 'training'} part empty"
            )
        out.append((np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    return out


def inner_folds(
    y_train: np.ndarray, k: int, seed: SeedLike = 0, key: tuple = ()
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (fit, validate) pairs of positions into the training rows ``y_train``
    (stratified for classification; every class spread over the folds). ``key`` names a
    sub-stream."""
    if k < 2:
        raise ValueError(f"inner folds must be >= 2, got {k}")
    rng = as_generator(seed, "inner-folds", *key)
    fold = np.empty(len(y_train), dtype=int)
    start = 0
    for idx in _groups(y_train):
        idx = rng.permutation(idx)
        fold[idx] = (np.arange(len(idx)) + start) % k
        start += len(idx)
    pos = np.arange(len(y_train))
    return [(pos[fold != f], pos[fold == f]) for f in range(k) if (fold == f).any()]


def training_prefix(y_train: np.ndarray, m: int, seed: SeedLike = 0, key: tuple = ()) -> np.ndarray:
    """Positions of ``m`` training rows: a shuffled, class-balanced prefix (every class
    present once before any class is seen twice, as far as the classes allow); nested in
    ``m`` for a fixed seed, so that larger sizes add rows to smaller ones. ``key`` names a
    sub-stream (e.g. the split's number)."""
    n = len(y_train)
    if not 1 <= m <= n:
        raise ValueError(f"training size m must be in 1..{n}, got {m}")
    rng = as_generator(seed, "prefix", *key)
    groups = [rng.permutation(g) for g in _groups(y_train)]
    if len(groups) == 1:
        return groups[0][:m]
    # round-robin over classes in proportion: rank each row by its quantile in its class
    keys = np.concatenate([(np.arange(len(g)) + rng.random()) / len(g) for g in groups])
    rows = np.concatenate(groups)
    order = rows[np.argsort(keys, kind="stable")]
    return order[:m]
