"""Repeated splits, inner folds and training prefixes (core/splits.py)."""

import numpy as np
import pytest

from mmtheory.core.splits import inner_folds, shuffle_splits, training_prefix


def test_shuffle_splits_are_stratified_disjoint_and_vary_with_the_split():
    y = np.repeat(np.arange(4), 20)
    splits = shuffle_splits(y, 3, 0.25, seed=0)
    tests = []
    for tr, te in splits:
        assert not set(tr) & set(te) and len(tr) + len(te) == len(y)
        assert np.bincount(y[te]).tolist() == [5] * 4  # a quarter of every class
        tests.append(frozenset(te))
    assert len(set(tests)) == 3  # each split draws its own test rows
    again = shuffle_splits(y, 3, 0.25, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(splits, again))


def test_regression_targets_split_at_random_and_singletons_stay_in_training():
    y = np.linspace(0, 1, 40)  # float: every value distinct, no stratification
    tr, te = shuffle_splits(y, 1, 0.25, seed=1)[0]
    assert len(te) == 10
    y_int = np.array([0] * 10 + [1])  # class 1 has one row
    tr, te = shuffle_splits(y_int, 1, 0.3, seed=0)[0]
    assert 10 in tr


def test_shuffle_splits_reject_bad_arguments():
    with pytest.raises(ValueError, match="n_splits"):
        shuffle_splits(np.zeros(4, dtype=int), 0)
    with pytest.raises(ValueError, match="test_fraction"):
        shuffle_splits(np.zeros(4, dtype=int), 1, 1.5)


def test_inner_folds_partition_the_training_rows():
    y = np.repeat(np.arange(3), 7)
    folds = inner_folds(y, 3, seed=0)
    val = np.concatenate([v for _, v in folds])
    assert sorted(val) == list(range(len(y)))
    for fit, v in folds:
        assert not set(fit) & set(v)


def test_training_prefixes_are_nested_and_balanced():
    y = np.repeat(np.arange(3), 30)
    small, big = training_prefix(y, 9, seed=0), training_prefix(y, 45, seed=0)
    assert set(small) <= set(big)
    assert np.bincount(y[small], minlength=3).tolist() == [3, 3, 3]


def test_feature_scaling_leaves_features_constant_up_to_rounding_unscaled():
    from mmtheory.core.splits import feature_scaling

    rng = np.random.default_rng(0)
    X = np.column_stack(
        [
            np.full(27, 0.429173215284496),  # a constant whose std is rounding noise
            np.zeros(27),
            1.0 + 1e-6 * rng.standard_normal(27),  # tiny but real variation: kept
            rng.standard_normal(27),
        ]
    )
    assert X[:, 0].std() > 0  # the trap: not exactly zero
    mu, sd = feature_scaling(X)
    assert sd[0] == 1.0 and sd[1] == 1.0
    assert np.array_equal(sd[2:], X.std(axis=0)[2:])  # as before for real features
    assert np.allclose(mu, X.mean(axis=0))
    # sequences: over rows and time steps
    seq = rng.standard_normal((10, 4, 3))
    mu, sd = feature_scaling(seq)
    assert np.allclose(sd, seq.reshape(-1, 3).std(axis=0))
