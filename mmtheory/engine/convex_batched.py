"""Many L2-penalised softmax heads at once, each in the eigenbasis of its own features.

The objectives are those of :mod:`mmtheory.engine.convex` (softmax: mean cross-entropy +
(lam / 2) ||W||_F^2, bias not penalised; ridge: mean squared error summed over outputs +
lam ||W||_F^2), for standardised (column-centred) features Z ``(n, d)``.

**The eigenbasis (exact).** Let Z^T Z / n = V diag(ev) V^T. The data term's gradient in W
is Z^T G, so at the optimum lam W = -Z^T G lies in the row space of Z: W = V B with B
``(r, p)`` over the r eigenvectors with ev > 0, and ||W|| = ||B||. Each problem is solved in
the coordinates F = Z V (orthogonal columns, F^T F / n = diag(ev)): a rotation that drops
only directions the optimum never uses (r <= min(n - 1, d), so small training sets give
small problems). The gradient's 2-norm is the same in both coordinates, so the stopping
rule means the same in either. Directions with ev below ``EV_CUT`` x the largest are taken
as null.

**Softmax: batched L-BFGS with a Jacobi initial matrix.** Every problem keeps its own
curvature pairs, step and stopping; the initial inverse Hessian of the two-loop recursion
is the inverse of the exact Hessian diagonal at the current point (in the eigenbasis the
features are uncorrelated, so the diagonal carries most of the curvature), scaled by
s^T y / y^T H0 y. (Böhning's fixed bound diag(ev / 2 + lam) was tried and needed 5x more
iterations on mfeat: confident rows have far less curvature than the bound.) Line search:
the longest step of ``STEPS`` meeting Armijo's condition, else the best (0 included), so no
objective ever increases; the logits move linearly along a direction, so trying steps costs
no pass over F. A problem stops when its gradient 2-norm is at most ``tol`` (default
:data:`mmtheory.engine.convex.GTOL`; the 2-norm bounds the max-norm that the reference
L-BFGS-B checks, so the criterion is at least as strict); stopped problems leave the batch,
so nothing couples the problems.

**Ridge:** exact in the eigenbasis, B_i = (F_i^T Y / n) / (ev_i + lam).

Shapes: a batch of P problems is padded to (P, n, r); ``weights`` (P, n) are 1/n_p on a
problem's rows and 0 on padding rows; padding columns are zero features, whose
coefficients stay 0 (their gradient is lam times themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtheory.engine.convex import GTOL, MAXITER

__all__ = [
    "Basis",
    "eigenbasis",
    "SoftmaxBatch",
    "solve_softmax_batch",
    "ridge_in_basis",
    "EV_CUT",
    "STEPS",
]

#: Relative cut below which an eigen-direction of Z^T Z / n is taken as null.
EV_CUT = 1e-12
#: Step lengths the line search tries, longest first (0: stay, so never worse).
STEPS = (1.0, 0.5, 0.25, 0.1, 0.03, 0.01, 0.0)
#: L-BFGS memory.
MEMORY = 20
#: Floor of the Jacobi preconditioner's Hessian diagonal (only the bias of a class absent
#: from a problem's rows can come near 0 there; the penalised coefficients have >= lam).
JACOBI_FLOOR = 1e-8


@dataclass
class Basis:
    """The eigenbasis of standardised features Z ``(n, d)``: V ``(d, r)`` orthonormal
    columns, ev ``(r,)`` the positive eigenvalues of Z^T Z / n, F = Z V ``(n, r)``."""

    V: np.ndarray
    ev: np.ndarray
    F: np.ndarray


def eigenbasis(Z: np.ndarray, cov: np.ndarray | None = None) -> Basis:
    """The eigenbasis of ``Z`` ``(n, d)`` (module docstring). ``cov``: Z^T Z / n when the
    caller already has it (a block of a larger covariance). Uses the d x d covariance when
    d <= n, else the n x n Gram matrix (the same nonzero spectrum)."""
    n, d = Z.shape
    if d <= n:
        C = cov if cov is not None else Z.T @ Z / n
        ev, V = np.linalg.eigh(C)
        keep = ev > EV_CUT * max(float(ev[-1]), 1e-300)
        ev, V = ev[keep], V[:, keep]
        return Basis(V, ev, Z @ V)
    K = Z @ Z.T / n
    ev, U = np.linalg.eigh(K)
    keep = ev > EV_CUT * max(float(ev[-1]), 1e-300)
    ev, U = ev[keep], U[:, keep]
    # Z^T U / sqrt(n ev) are orthonormal eigenvectors of Z^T Z / n; F = Z V = U sqrt(n ev)
    V = Z.T @ U / np.sqrt(n * ev)
    return Basis(V, ev, U * np.sqrt(n * ev))


def ridge_in_basis(basis: Basis, Y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients in ``basis`` (B ``(r, p)``, so W = V B, and b ``(p,)``) for
    centred features and targets Y ``(n,)`` or ``(n, p)``: exact,
    B_i = (F_i^T Yc / n) / (ev_i + lam)."""
    Y = Y[:, None] if Y.ndim == 1 else Y
    n = Y.shape[0]
    my = Y.mean(axis=0)
    B = (basis.F.T @ (Y - my) / n) / (basis.ev + lam)[:, None]
    return B, my


@dataclass
class SoftmaxBatch:
    """Solutions of a batch: B ``(P, r, k)`` and b ``(P, k)`` (the padded width), the
    final gradient 2-norms ``(P,)``, iterations ``(P,)`` and ``converged`` ``(P,)``."""

    B: np.ndarray
    b: np.ndarray
    grad_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def _lse(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log-sum-exp over the last axis and the softmax of logits ``out`` (P, n, k)."""
    top = out.max(-1, keepdims=True)
    e = np.exp(out - top)
    tot = e.sum(-1, keepdims=True)
    return (np.log(tot) + top)[..., 0], e / tot


def _ce(out: np.ndarray, Y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean cross-entropy per problem of logits ``out`` (P, n, k)."""
    return ((_lse(out)[0] - (out * Y).sum(-1)) * w).sum(-1)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-problem inner products of (P, ...) arrays."""
    return np.einsum("pij,pij->p", a, b)


def solve_softmax_batch(
    F: np.ndarray,
    Y: np.ndarray,
    weights: np.ndarray,
    lam: np.ndarray,
    *,
    B0: np.ndarray | None = None,
    b0: np.ndarray | None = None,
    tol: float = GTOL,
    maxiter: int = MAXITER,
) -> SoftmaxBatch:
    """Penalised multinomial logistic regressions (module docstring), one per problem.

    F ``(P, n, r)`` features, Y ``(P, n, k)`` one-hot targets, weights ``(P, n)`` (each
    row's weight in its problem's mean; 0 on padding), lam ``(P,)`` > 0; B0 ``(P, r, k)``
    and b0 ``(P, k)`` a warm start (default 0). numpy float64 throughout (the problems
    are many and small: torch's per-operation overhead would dominate)."""
    P, n, r = F.shape
    k = Y.shape[-1]
    if not (F.shape[:2] == Y.shape[:2] == weights.shape):
        raise ValueError(f"shapes disagree: F {F.shape}, Y {Y.shape}, weights {weights.shape}")
    lam = np.asarray(lam, dtype=np.float64)
    if lam.shape != (P,) or not np.all(lam > 0):
        raise ValueError(f"lam must be ({P},) positive values, got {lam!r}")
    theta = np.zeros((P, r + 1, k))
    if B0 is not None:
        theta[:, :r] = B0
    if b0 is not None:
        theta[:, r] = b0
    out_B = np.zeros((P, r, k))
    out_b = np.zeros((P, k))
    out_g = np.zeros(P)
    out_it = np.zeros(P, dtype=int)
    out_ok = np.zeros(P, dtype=bool)
    active = np.arange(P)
    Fa, Ya, wa, la = F, Y, weights, lam
    F2a = F * F

    def logits(th: np.ndarray) -> np.ndarray:
        return Fa @ th[:, :r] + th[:, r:]

    def state(out: np.ndarray, th: np.ndarray):
        """objective, gradient and the Jacobi preconditioner (inverse Hessian diagonal)."""
        lse, prob = _lse(out)
        f = ((lse - (out * Ya).sum(-1)) * wa).sum(-1) + 0.5 * la * (th[:, :r] ** 2).sum((1, 2))
        R = (prob - Ya) * wa[:, :, None]
        gB = Fa.transpose(0, 2, 1) @ R + la[:, None, None] * th[:, :r]
        g = np.concatenate([gB, R.sum(1, keepdims=True)], 1)
        D = prob * (1 - prob) * wa[:, :, None]
        diag = np.concatenate(
            [F2a.transpose(0, 2, 1) @ D + la[:, None, None], D.sum(1, keepdims=True)], 1
        )
        return f, g, 1.0 / np.maximum(diag, JACOBI_FLOOR)

    out = logits(theta)
    f, g, ha = state(out, theta)
    S: list[np.ndarray] = []  # curvature pairs; a problem's zeroed pairs are skipped
    Yl: list[np.ndarray] = []
    stalled = np.zeros(P, dtype=bool)
    it = 0
    while True:
        gnorm = np.sqrt((g * g).sum((1, 2)))
        stop = (gnorm <= tol) | stalled | (it >= maxiter)
        if stop.any():
            idx = active[stop]
            out_B[idx] = theta[stop, :r]
            out_b[idx] = theta[stop, r]
            out_g[idx] = gnorm[stop]
            out_it[idx] = it
            out_ok[idx] = gnorm[stop] <= tol
            keep = ~stop
            if not keep.any():
                break
            active = active[keep]
            theta, out, f, g, ha = theta[keep], out[keep], f[keep], g[keep], ha[keep]
            Fa, F2a, Ya, wa, la = Fa[keep], F2a[keep], Ya[keep], wa[keep], la[keep]
            S = [v[keep] for v in S]
            Yl = [v[keep] for v in Yl]
        # two-loop recursion with the diagonal initial matrix, per problem
        q = g.copy()
        alphas = []
        for s_i, y_i in zip(reversed(S), reversed(Yl)):
            sy = _dot(s_i, y_i)
            rho = np.where(sy > 0, 1.0 / np.where(sy > 0, sy, 1.0), 0.0)
            a = rho * _dot(s_i, q)
            q -= a[:, None, None] * y_i
            alphas.append((a, rho))
        gamma = np.ones(len(q))
        if S:
            sy = _dot(S[-1], Yl[-1])
            yhy = _dot(Yl[-1], ha * Yl[-1])
            gamma = np.where((sy > 0) & (yhy > 0), sy / np.where(yhy > 0, yhy, 1.0), 1.0)
        q *= ha * gamma[:, None, None]
        for (s_i, y_i), (a, rho) in zip(zip(S, Yl), reversed(alphas)):
            beta = rho * _dot(y_i, q)
            q += (a - beta)[:, None, None] * s_i
        d = -q
        slope = _dot(g, d)
        bad = slope >= 0  # not a descent direction: the preconditioned gradient instead
        if bad.any():
            d = np.where(bad[:, None, None], -g * ha, d)
            slope = _dot(g, d)
        dout = logits(d)  # the logits move linearly along d: F d_B + d_b
        dB2 = (d[:, :r] ** 2).sum((1, 2))
        tB = (theta[:, :r] * d[:, :r]).sum((1, 2))
        B2 = (theta[:, :r] ** 2).sum((1, 2))
        # the full step first; only the problems it fails try the shorter ones (the same
        # choice as trying every step for every problem: a full step meeting Armijo's
        # condition is the longest such step, and it decreases the objective)
        trial = np.full((len(f), len(STEPS)), np.inf)
        trial[:, 0] = _ce(out + STEPS[0] * dout, Ya, wa) + 0.5 * la * (
            B2 + 2 * STEPS[0] * tB + STEPS[0] ** 2 * dB2
        )
        short = np.flatnonzero(~(trial[:, 0] <= f + 1e-4 * STEPS[0] * slope))
        if len(short):
            o, do, Ys, ws, ls = out[short], dout[short], Ya[short], wa[short], la[short]
            for c, t in enumerate(STEPS[1:], 1):
                trial[short, c] = _ce(o + t * do, Ys, ws) + 0.5 * ls * (
                    B2[short] + 2 * t * tB[short] + t * t * dB2[short]
                )
        ts = np.asarray(STEPS)
        armijo = trial <= f[:, None] + 1e-4 * ts[None] * slope[:, None]
        armijo[:, -1] = True
        first = armijo.argmax(1)  # the longest step meeting Armijo's condition
        best = trial.argmin(1)
        pick = np.where(trial[np.arange(len(f)), first] <= f, first, best)
        t = ts[pick]
        step = t[:, None, None] * d
        theta = theta + step
        out = out + t[:, None, None] * dout
        g_old = g
        f, g, ha = state(out, theta)
        it += 1
        # no step: forget that problem's curvature pairs (next: a preconditioned gradient
        # step); no step from an empty memory: stalled (stops, converged only if tol met)
        still = t == 0
        empty = np.ones_like(still) if not S else ~S[-1].reshape(len(t), -1).any(1)
        stalled = still & empty
        S.append(step)
        Yl.append(g - g_old)
        if len(S) > MEMORY:
            S.pop(0)
            Yl.pop(0)
        if still.any():
            S = [np.where(still[:, None, None], 0.0, v) for v in S]
            Yl = [np.where(still[:, None, None], 0.0, v) for v in Yl]
    return SoftmaxBatch(out_B, out_b, out_g, out_it, out_ok)
