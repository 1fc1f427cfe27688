"""Convex heads (engine/convex.py): optimality conditions on small problems."""

import numpy as np
import pytest

from mmtheory.engine.convex import _softmax_objective, fit_ridge, fit_softmax, predict


def test_softmax_fit_meets_the_optimality_condition():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = rng.integers(0, 3, 60)
    fit = fit_softmax(X, y, 3, lam=0.1)
    assert fit.converged
    Y = np.eye(3)[y]
    _, grad = _softmax_objective(np.concatenate([fit.W.ravel(), fit.b]), X, Y, 0.1, 4, 3)
    assert np.abs(grad).max() < 1e-5  # the unique minimiser of a strictly convex objective
    warm = fit_softmax(X, y, 3, lam=0.1, init=fit)
    assert np.allclose(warm.W, fit.W, atol=1e-5)


def test_separable_data_stays_bounded_with_a_penalty():
    X = np.array([[-1.0], [1.0]] * 10)
    y = np.array([0, 1] * 10)
    fit = fit_softmax(X, y, 2, lam=1.0)
    assert np.abs(fit.W).max() < 5  # without a penalty the weights would diverge


def test_ridge_solves_the_normal_equations():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 3)) + 2.0
    y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    fit = fit_ridge(X, y, 0.0)
    assert np.allclose(predict(fit, X)[:, 0], y)
    with pytest.raises(ValueError, match="lam"):
        fit_softmax(X, (y > 0).astype(int), 2, lam=0.0)
