"""Convex heads fit to convergence in float64: L2-penalised softmax regression (L-BFGS) and
ridge regression (closed form).

Objective (softmax): mean cross-entropy + (lam / 2) ||W||_F^2 (the bias is not penalised);
(ridge): mean squared error summed over outputs + lam ||W||_F^2. Both are strictly convex
for lam > 0 in W (softmax scores are unchanged by a common shift of b, the one direction
left flat), so the optimum is unique in W and "fit to convergence" is checkable: the returned
``Fit.converged`` says whether L-BFGS met its gradient tolerance.

Shapes: X ``(n, d)`` float64, y ``(n,)`` int class ids (softmax) or ``(n,)``/``(n, p)``
floats (ridge); W ``(d, p)``, b ``(p,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

__all__ = ["Fit", "fit_softmax", "fit_ridge", "predict_proba", "predict"]

#: L-BFGS gradient tolerance (max-norm of the projected gradient) and iteration cap.
GTOL = 1e-7
MAXITER = 3000


@dataclass
class Fit:
    """A fitted linear head: scores are ``X @ W + b``."""

    W: np.ndarray
    b: np.ndarray
    lam: float
    converged: bool
    iterations: int


def _softmax_objective(theta, X, Y, lam, d, k):
    W = theta[: d * k].reshape(d, k)
    b = theta[d * k :]
    logp = log_softmax(X @ W + b, axis=1)
    n = X.shape[0]
    loss = -(Y * logp).sum() / n + 0.5 * lam * (W * W).sum()
    G = (np.exp(logp) - Y) / n
    gW = X.T @ G + lam * W
    gb = G.sum(axis=0)
    return loss, np.concatenate([gW.ravel(), gb])


def fit_softmax(
    X: np.ndarray, y: np.ndarray, n_classes: int, lam: float, init: Fit | None = None
) -> Fit:
    """Multinomial logistic regression with penalty ``lam`` > 0, by L-BFGS (float64).
    ``init``: a previous fit to warm-start from (e.g. the next value on a penalty path)."""
    if lam <= 0:
        raise ValueError(f"lam must be > 0 (a strictly convex objective), got {lam}")
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    k = int(n_classes)
    Y = np.zeros((n, k))
    Y[np.arange(n), np.asarray(y, dtype=int)] = 1.0
    theta0 = np.concatenate([init.W.ravel(), init.b]) if init is not None else np.zeros(d * k + k)
    res = minimize(
        _softmax_objective,
        theta0,
        args=(X, Y, lam, d, k),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": GTOL, "ftol": 1e-14, "maxiter": MAXITER, "maxcor": 20},
    )
    theta = res.x
    grad_ok = float(np.abs(res.jac).max()) <= 10 * GTOL if res.jac is not None else res.success
    return Fit(
        theta[: d * k].reshape(d, k), theta[d * k :], lam, bool(res.success or grad_ok), res.nit
    )


def fit_ridge(X: np.ndarray, y: np.ndarray, lam: float) -> Fit:
    """Ridge regression with an unpenalised intercept, exact (a linear solve, float64)."""
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    mx, my = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - mx, Y - my
    n, d = X.shape
    A = Xc.T @ Xc / n + lam * np.eye(d)
    W = np.linalg.lstsq(A, Xc.T @ Yc / n, rcond=None)[0]
    return Fit(W, my - mx @ W, lam, True, 0)


def predict_proba(fit: Fit, X: np.ndarray) -> np.ndarray:
    """(n, k) class probabilities of a softmax fit."""
    return np.exp(log_softmax(np.asarray(X, dtype=np.float64) @ fit.W + fit.b, axis=1))


def predict(fit: Fit, X: np.ndarray) -> np.ndarray:
    """(n, p) predictions of a ridge fit."""
    return np.asarray(X, dtype=np.float64) @ fit.W + fit.b
