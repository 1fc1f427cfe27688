"""Rademacher complexity of H o G_M: closed forms, Monte Carlo, norm bounds, estimates.

Every function returns a :class:`Complexity` saying whether it is a rigorous bound or an
estimate. R^_S(F) = E_sigma sup_f (1/m) sum_i sigma_i f(x_i); R_m(F) = E_S R^_S(F).

For linear composites h o g with g(x) = A^T p_M x, h(z) = beta^T z, the class is contained
in the ball {x -> w^T p_M x : ||w||_2 <= R} with R = ||A||_op ||beta||. Its supremum is
exact: sup_w (1/m) sum sigma_i w^T x_i = (R/m) ||sum_i sigma_i x_i||.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmtheory.seeding import SeedLike, as_generator

__all__ = [
    "Complexity",
    "linear_ball_empirical_bound",
    "linear_ball_population_bound",
    "linear_ball_monte_carlo",
    "mlp_norm_bound",
]


@dataclass(frozen=True)
class Complexity:
    """A Rademacher complexity value, its standard error, and what kind of number it is."""

    value: float
    se: float
    rigorous: bool
    method: str


def linear_ball_empirical_bound(X: np.ndarray, radius: float) -> Complexity:
    """R^_S <= (R/m) sqrt(sum_i ||x_i||^2) (Jensen). X: (m, d), zero-filled outside M."""
    X = np.asarray(X, dtype=float)
    m = X.shape[0]
    return Complexity(radius * math.sqrt(float((X**2).sum())) / m, 0.0, True, "closed_form_empirical")


def linear_ball_population_bound(trace_second_moment: float, m: int, radius: float) -> Complexity:
    """R_m <= R sqrt(E||x||^2 / m): the closed-form population bound (E||x_M||^2 = tr Sigma_MM)."""
    if m < 1 or trace_second_moment < 0:
        raise ValueError(f"need m >= 1 and a non-negative trace, got {m}, {trace_second_moment}")
    return Complexity(radius * math.sqrt(trace_second_moment / m), 0.0, True, "closed_form_population")


def linear_ball_monte_carlo(X: np.ndarray, radius: float, n_draws: int = 2000,
                            seed: SeedLike = 0) -> Complexity:
    """Monte Carlo R^_S with the exact supremum (R/m) ||sum sigma_i x_i||; SE over draws."""
    X = np.asarray(X, dtype=float)
    m = X.shape[0]
    rng = as_generator(seed, "rademacher")
    sigma = rng.choice(np.array([-1.0, 1.0]), size=(n_draws, m))
    sups = radius * np.linalg.norm(sigma @ X, axis=1) / m
    return Complexity(float(sups.mean()), float(sups.std(ddof=1) / math.sqrt(n_draws)), False,
                      "monte_carlo_empirical")


def mlp_norm_bound(weights: list[np.ndarray], x_bound: float, m: int) -> Complexity:
    """Golowich, Rakhlin and Shamir (COLT 2018), Theorem 1: for a depth-D network with
    1-Lipschitz, positive-homogeneous activations (ReLU) and ||x|| <= B,
    R_m <= B (sqrt(2 D log 2) + 1) prod_j ||W_j||_F / sqrt(m). Rigorous for ReLU networks
    without biases (biases: append a constant input feature)."""
    D = len(weights)
    prod = float(np.prod([np.linalg.norm(np.asarray(W)) for W in weights]))
    return Complexity(x_bound * (math.sqrt(2 * D * math.log(2)) + 1) * prod / math.sqrt(m), 0.0,
                      True, "golowich_rakhlin_shamir_2018")
