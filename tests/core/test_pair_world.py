"""The two-modality Gaussian world of the dynamics study: its moments by hand, and samples
whose moments are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import synthetic


def test_moments_and_oracles_by_hand():
    # sigma_A = 2, sigma_B = 1, rho = 0.5: Cov = [[4, 1], [1, 1]], y = x_A + x_B
    w = synthetic.GaussianPairWorld(2.0, 1.0, 0.5, label_noise=0.5)
    sigma, sxy, syy = w.second_moments()
    assert np.allclose(sigma, [[4.0, 1.0], [1.0, 1.0]])
    assert np.allclose(sxy.ravel(), [5.0, 2.0])  # E[y x_A] = 4 + 1, E[y x_B] = 1 + 1
    assert np.allclose(syy, [[7.0 + 0.25]])  # 4 + 2 + 1, plus the noise variance
    assert np.allclose(w.best_linear(["A"]).ravel(), [1.25, 0.0])  # 5 / 4: LS on {A}
    assert np.allclose(w.best_linear(["B"]).ravel(), [0.0, 2.0])
    assert np.allclose(w.best_linear().ravel(), [1.0, 1.0])
    assert np.isclose(w.bayes_risk(), 0.25)
    assert np.isclose(w.eta_inf(["A"]), 7.0 - 25.0 / 4.0)  # Var y - (E[y x_A])^2 / Var x_A
    assert w.dims == {"A": 1, "B": 1} and w.output_dim == 1


def test_coordinates_are_independent_pairs():
    w = synthetic.GaussianPairWorld([1.0, 3.0], [2.0, 1.0], [0.5, -0.5], names=("v", "t"))
    sigma, _, _ = w.second_moments()
    assert np.allclose(np.diag(sigma), [1, 9, 4, 1])
    assert np.allclose(sigma[0, 2], 0.5 * 1 * 2) and np.allclose(sigma[1, 3], -0.5 * 3 * 1)
    assert np.allclose(sigma[0, 1], 0) and np.allclose(sigma[0, 3], 0)


@pytest.mark.parametrize(
    "world",
    [
        synthetic.GaussianPairWorld(1.5, 1.0, -0.7),
        synthetic.GaussianPairWorld([1.0, 2.0], [0.5, 1.0], [0.9, 0.0], label_noise=0.3),
    ],
)
def test_sample_exact_moments_has_the_population_moments(world, seed):
    n = 12
    data = world.sample_exact_moments(n, seed=seed)
    x = data.concat().double().numpy()
    y = data.y.double().numpy().reshape(n, -1)
    xy = np.concatenate([x, y], axis=1)
    sigma, sxy, syy = world.second_moments()
    full = np.block([[sigma, sxy], [sxy.T, syy]])
    # exact up to rounding: a QR factorisation of a 12-row matrix, float64
    assert np.abs(xy.mean(axis=0)).max() < 1e-12
    assert np.abs(xy.T @ xy / n - full).max() < 1e-12
    again = world.sample_exact_moments(n, seed=seed)
    assert torch.equal(again.y, data.y)


def test_sample_exact_moments_needs_enough_rows():
    w = synthetic.GaussianPairWorld([1.0, 1.0], 1.0, 0.2, label_noise=0.1)  # 4 latent + 1 noise
    with pytest.raises(ValueError, match="n must be >= 6"):
        w.sample_exact_moments(5)
    w.sample_exact_moments(6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma_a": 0.0}, "sigma_a must be"),
        ({"rho": 1.5}, "rho must be"),
        (
            {"sigma_a": [1.0, 2.0], "rho": [0.1, 0.2, 0.3]},
            "sigma_a must be a number or a list of 3",
        ),
        ({"names": ("A", "A")}, "two distinct"),
        ({"label_noise": -1}, "label_noise must be"),
    ],
)
def test_invalid_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.GaussianPairWorld(**kwargs)
