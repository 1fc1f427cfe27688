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
curvature pairs, step and stopping; the initial inverse Hessian of the two-loop recursion is
the inverse of the exact Hessian diagonal (in the eigenbasis the features are uncorrelated,
so the diagonal carries most of the curvature), evaluated every ``JACOBI_EVERY`` iterations
(at the start, on every stopping check, and at iterations 0, 3, 6, ...: the same for every
problem of a batch), scaled by s^T y / y^T H0 y. (Böhning's fixed bound diag(ev / 2 + lam)
was tried and needed 5x more iterations on mfeat: confident rows have far less curvature
than the bound.) Line search: backtracking over ``STEPS``, the longest step meeting Armijo's
condition (each problem tries shorter steps only until one does), else 0, so no objective
ever increases; the logits move linearly along a direction, so trying steps costs no pass
over F. Each step's change of the objective is formed from the logits' move (the penalty's
exactly; the cross-entropy's, where it is below ``PRECISE_BELOW``, as log1p(sum_c p_c
expm1(move_c)) per row), not as a difference of two objective values: near the optimum at a
strong penalty the last steps lower the objective by less than its float64 rounding, and
plain differences stalled two of mfeat's quick problems at 1.02e-7. A problem stops when its
gradient 2-norm, formed again from its parameters (the tracked logits can drift from F theta
by rounding), is at most ``tol`` (default :data:`mmtheory.engine.convex.GTOL`; the 2-norm
bounds the max-norm that the reference L-BFGS-B checks, so the criterion is at least as
strict); stopped problems leave the batch, so nothing couples the problems (tested bit for
bit: a problem solved alone gets the answer it gets in a batch).

**Precision.** The gradient, logits, line search and stopping rule are float64.
Only the direction's ingredients are float32: the Jacobi diagonal (F^2 times the softmax
variances: one product with F's squares) and the two-loop recursion over the curvature
pairs, which are stored in float32. Any descent direction keeps the method correct and
the stopping rule exact; float32 halves the memory the recursion reads and makes the
diagonal's product about 3x cheaper. A problem whose float32 direction is not finite (a
degenerate coordinate: a Jacobi entry at 1 / ``JACOBI_FLOOR`` times a large scaling) gets
its direction in float64 that iteration. Each problem's squared features are scaled by a
power of two (its own largest square, rounded up) before the float32 product and scaled
back in float64, so no feature scale leaves float32's range and no problem's arithmetic
depends on its batch. On mfeat's protocol (the 42 batches of ``reproduce --quick``, one thread):
26 s of CPU instead of 42 s for 0.7.1's all-float64 solver, with the same number of
iterations (within 0.01%) and every problem converged; 0.10.0's 6 pairs, Jacobi diagonal
every third iteration and backtracking: 18.6-19.3 s against 24.3-25.1 s for 0.9.0 in one
run, 7% more iterations (``benchmarks/softmax_solver.py``).

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
#: Steps tried, longest first, when none of ``STEPS`` lowers the objective from an empty
#: curvature memory (a direction far too long: a warm start in the softmax's saturated
#: region, where the Jacobi diagonal is tiny and its inverse huge). With a memory, the
#: memory is forgotten first (the next direction is the preconditioned gradient).
SHORT_STEPS = tuple(10.0**-j for j in range(3, 13))
#: L-BFGS memory. Six pairs, not scipy's 10 or the reference's 20: the recursion reads
#: every pair of every problem from memory twice per iteration, and on mfeat's quick
#: protocol 6 pairs took 7% more iterations and 20% less time than 20
#: (``benchmarks/issue18-quick``). The price, found by review: on ill-conditioned problems
#: it can take 2-3x the iterations of 20 pairs at lam <= 1e-3 (synthetic eigenbases with
#: eigenvalue ratios up to 8e11: always converged), and on features NOT rotated into their
#: eigenbasis (column scales 1e-2 to 1e2, lam = 1.8e-4) one problem missed MAXITER where 20
#: pairs converged; the protocol always rotates, and reports ``converged`` per row.
MEMORY = 6
#: Iterations between evaluations of the Jacobi diagonal (a product with F's squares);
#: between them the last one is kept. Any positive diagonal keeps the method correct; on
#: mfeat's quick protocol every third iteration took 0.3% more iterations than every one.
JACOBI_EVERY = 3
#: Objective changes below which the line search forms them again with relative precision.
PRECISE_BELOW = 1e-9
#: Share of the working arrays that stopped problems may hold before they are dropped.
COMPACT = 0.25
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


def _row_lse(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log-sum-exp over the last axis and the softmax of logits ``out`` (P, n, k).

    The last axis is short (the classes), and numpy reduces a short last axis several
    times slower than it combines whole columns, so the maxima and sums run over columns."""
    k = out.shape[-1]
    top = out[..., 0].copy()
    for c in range(1, k):
        np.maximum(top, out[..., c], out=top)
    e = out - top[..., None]
    np.exp(e, out=e)
    tot = e[..., 0].copy()
    for c in range(1, k):
        tot += e[..., c]
    e /= tot[..., None]
    return np.log(tot) + top, e


def _dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-problem inner products of (P, ...) arrays (one batched matrix product)."""
    P = len(a)
    return (a.reshape(P, 1, -1) @ b.reshape(P, -1, 1))[:, 0, 0]


def _ce_change(
    lse: np.ndarray, prob: np.ndarray, new_lse: np.ndarray, move: np.ndarray, wy, w
) -> np.ndarray:
    """Change per problem of the weighted mean cross-entropy when logits with row
    log-sum-exps ``lse`` (P, n) and softmax ``prob`` (P, n, k) move by ``move`` to logits
    with row log-sum-exps ``new_lse``; ``wy`` is the one-hot targets times the row weights.

    Near an optimum the change is far below the rounding of the cross-entropy itself
    (1e-16 of a loss near log k), so where the plain difference is below ``PRECISE_BELOW``
    each row's change of log-sum-exp is formed again as log1p(sum_c p_c expm1(move_c)),
    which keeps relative precision (the plain difference kept where that form would lose
    it: every logit falling, the sum near -1, or an overflow)."""
    change = _dots(new_lse - lse, w) - _dots(move, wy)
    near = np.flatnonzero(np.abs(change) <= PRECISE_BELOW)
    if len(near):
        p, mv, k = prob[near], move[near], prob.shape[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.expm1(mv)
            e *= p
            s = e[..., 0].copy()
            for c in range(1, k):
                s += e[..., c]
            fine = np.isfinite(s) & (s > -0.5)
            row = np.where(fine, np.log1p(np.where(fine, s, 0.0)), new_lse[near] - lse[near])
        change[near] = _dots(row, w[near]) - _dots(mv, wy[near])
    return change


def _two_loop(
    q: np.ndarray,
    S: np.ndarray,
    Yl: np.ndarray,
    rho: np.ndarray,
    order: list[int],
    ha: np.ndarray,
) -> np.ndarray:
    """The L-BFGS direction -H g of the flat gradients ``q`` (P, D) (overwritten), in
    ``q``'s precision: the two-loop recursion over the ring buffer's ``order`` of pairs
    (S, Yl: (memory, P, D); rho = 1 / s^T y, 0 for a pair that is skipped), from the
    initial matrix gamma diag(ha), gamma = s^T y / y^T diag(ha) y of the newest pair."""
    dt = q.dtype
    tmp = np.empty_like(q)
    alphas = {}
    for s in reversed(order):
        a = (rho[s] * _dots(S[s], q)).astype(dt)
        np.multiply(Yl[s], a[:, None], out=tmp)
        q -= tmp
        alphas[s] = a
    if order:
        s = order[-1]
        sy = np.where(rho[s] > 0, 1.0 / np.where(rho[s] > 0, rho[s], 1.0), 0.0)
        yhy = _dots(Yl[s], ha * Yl[s]).astype(np.float64)
        gamma = np.where((sy > 0) & (yhy > 0), sy / np.where(yhy > 0, yhy, 1.0), 1.0)
        q *= ha * gamma.astype(dt)[:, None]
    else:
        q *= ha
    for s in order:
        beta = (rho[s] * _dots(Yl[s], q)).astype(dt)
        np.multiply(S[s], (alphas[s] - beta)[:, None], out=tmp)
        q += tmp
    np.negative(q, out=q)
    return q


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
    and b0 ``(P, k)`` a warm start (default 0). numpy throughout (the problems are many
    and small: torch's per-operation overhead would dominate); the objective, gradient,
    logits and stopping rule in float64, the direction's ingredients in float32 (module
    docstring)."""
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
    # the working arrays: a stopped problem stays (its result already stored) until the
    # stopped ones are COMPACT of them; nothing a problem computes depends on the others
    rows = np.arange(P)
    live = np.ones(P, dtype=bool)
    Fa, wa, la = F, np.asarray(weights, dtype=np.float64), lam
    FTa = np.ascontiguousarray(F.transpose(0, 2, 1))  # BLAS is faster on it than on a view
    wy = Y * wa[:, :, None]
    # the preconditioner's product in float32, each problem's squares scaled by a power of
    # two (exact) into float32's range and scaled back in float64
    F2 = FTa * FTa
    top = F2.reshape(P, -1).max(1, initial=0.0)
    f2scale = np.exp2(np.ceil(np.log2(np.maximum(top, np.finfo(np.float64).tiny))))
    F2a = (F2 / f2scale[:, None, None]).astype(np.float32)
    del F2
    D = (r + 1) * k
    S = np.zeros((MEMORY, P, D), dtype=np.float32)  # curvature pairs, ring buffer slots
    Yl = np.zeros((MEMORY, P, D), dtype=np.float32)
    rho = np.zeros((MEMORY, P))
    order: list[int] = []  # slots, oldest pair first
    newest = np.zeros(P, dtype=bool)  # the newest pair is a step (not zeroed)

    def state(th: np.ndarray, prob: np.ndarray, sel=slice(None), keep=None):
        """gradient and the Jacobi preconditioner (inverse Hessian diagonal; its product
        with F's squares in float32) at ``th`` whose logits have the softmax ``prob``; of
        the working problems ``sel``. ``keep``: a preconditioner to return instead."""
        thB, w_, la_ = th[:, :r], wa[sel], la[sel]
        R = prob * w_[:, :, None] - wy[sel]
        g = np.empty_like(th)
        g[:, :r] = FTa[sel] @ R
        g[:, :r] += la_[:, None, None] * thB
        g[:, r] = R.sum(1)
        if keep is not None:
            return g, keep
        Dw = (prob * (1 - prob) * w_[:, :, None]).astype(np.float32)
        diag = np.empty((len(th), r + 1, k))
        diag[:, :r] = F2a[sel] @ Dw
        diag[:, :r] *= f2scale[sel][:, None, None]
        diag[:, :r] += la_[:, None, None]
        diag[:, r] = Dw.sum(1)
        np.maximum(diag, JACOBI_FLOOR, out=diag)
        return g, (1.0 / diag).reshape(len(th), D)

    out = Fa @ theta[:, :r] + theta[:, r:]
    lse, prob = _row_lse(out)
    g, ha = state(theta, prob)
    stalled = np.zeros(P, dtype=bool)
    ts = np.asarray(STEPS)
    it = 0
    while True:
        gnorm = np.sqrt(_dots(g, g))
        stop = live & ((gnorm <= tol) | stalled | (it >= maxiter))
        if stop.any():
            # the stopping problems' gradients from their parameters: the tracked logits
            # move by steps and can drift from F theta by rounding (features of 1e20)
            sel = np.flatnonzero(stop)
            ex_out = Fa[sel] @ theta[sel, :r] + theta[sel, r:]
            ex_lse, ex_prob = _row_lse(ex_out)
            ex_g, ex_ha = state(theta[sel], ex_prob, sel)
            gnorm[sel] = np.sqrt(_dots(ex_g, ex_g))
            resume = (gnorm[sel] > tol) & ~stalled[sel] & (it < maxiter)
            if resume.any():  # not there yet: go on from the exact logits
                back = sel[resume]
                out[back], lse[back], prob[back] = ex_out[resume], ex_lse[resume], ex_prob[resume]
                g[back], ha[back] = ex_g[resume], ex_ha[resume]
                stop[back] = False
        if stop.any():
            idx = rows[stop]
            out_B[idx] = theta[stop, :r]
            out_b[idx] = theta[stop, r]
            out_g[idx] = gnorm[stop]
            out_it[idx] = it
            out_ok[idx] = gnorm[stop] <= tol
            live &= ~stop
            if not live.any():
                break
            if (~live).sum() >= COMPACT * len(live):
                keep = live
                rows, live, newest, stalled = rows[keep], live[keep], newest[keep], stalled[keep]
                theta, out, g, ha = theta[keep], out[keep], g[keep], ha[keep]
                lse, prob = lse[keep], prob[keep]
                Fa, FTa, F2a, f2scale = Fa[keep], FTa[keep], F2a[keep], f2scale[keep]
                wy, wa, la = wy[keep], wa[keep], la[keep]
                S, Yl, rho = S[:, keep], Yl[:, keep], rho[:, keep]
        Pa = len(theta)
        # the direction: float32, or float64 for a problem whose float32 one overflowed
        # (a degenerate coordinate: a constant feature's Jacobi entry is 1 / JACOBI_FLOOR)
        gf = g.reshape(Pa, D)
        with np.errstate(over="ignore", invalid="ignore"):
            q = _two_loop(gf.astype(np.float32), S, Yl, rho, order, ha.astype(np.float32))
        d = q.astype(np.float64)
        wide = np.flatnonzero(~np.isfinite(q).all(1))
        if len(wide):
            d[wide] = _two_loop(gf[wide], S[:, wide], Yl[:, wide], rho[:, wide], order, ha[wide])
        d = d.reshape(Pa, r + 1, k)
        slope = _dots(g, d)
        bad = slope >= 0  # not a descent direction: the preconditioned gradient instead
        if bad.any():
            d[bad] = -g[bad] * ha[bad].reshape(-1, r + 1, k)
            slope = _dots(g, d)
        dout = Fa @ d[:, :r] + d[:, r:]  # the logits move linearly along d: F d_B + d_b
        dB, thB = d[:, :r], theta[:, :r]
        dB2, tB = _dots(dB, dB), _dots(thB, dB)
        # the objective's change at each tried step (the penalty's exactly, the
        # cross-entropy's from the logits' move: precise where f itself only rounds); the
        # full step first, and only the problems it fails try the shorter ones (the same
        # choice as trying every step: a full step meeting Armijo's condition is the
        # longest such step, and it decreases the objective)
        change = np.full((Pa, len(STEPS)), np.inf)
        change[:, -1] = 0.0  # STEPS[-1] = 0: stay
        move = STEPS[0] * dout
        o1 = out + move
        lse1, prob1 = _row_lse(o1)
        change[:, 0] = _ce_change(lse, prob, lse1, move, wy, wa) + 0.5 * la * (
            2 * STEPS[0] * tB + STEPS[0] ** 2 * dB2
        )
        short = np.flatnonzero(~(change[:, 0] <= 1e-4 * STEPS[0] * slope))
        for c, t in enumerate(STEPS[1:-1], 1):  # backtracking, each problem until one meets it
            if not len(short):
                break
            mv = t * dout[short]
            change[short, c] = _ce_change(
                lse[short], prob[short], _row_lse(out[short] + mv)[0], mv, wy[short], wa[short]
            ) + 0.5 * la[short] * (2 * t * tB[short] + t * t * dB2[short])
            short = short[~(change[short, c] <= 1e-4 * t * slope[short])]
        armijo = change <= 1e-4 * ts[None] * slope[:, None]
        armijo[:, -1] = True
        # the longest step meeting Armijo's condition (the objective falls there: the slope
        # is negative), else none (the last column, 0)
        pick = armijo.argmax(1)
        t = ts[pick]
        # no step of STEPS lowers the objective and there is no curvature memory to forget
        # (which would be tried first): ever shorter steps before the problem stalls
        stuck = np.flatnonzero((t == 0) & ~newest)
        if len(stuck):
            o, do, ws, wys, ls = out[stuck], dout[stuck], wa[stuck], wy[stuck], la[stuck]
            ls0, ps0, open_ = lse[stuck], prob[stuck], np.ones(len(stuck), dtype=bool)
            for tt in SHORT_STEPS:
                mv = tt * do
                ch = _ce_change(ls0, ps0, _row_lse(o + mv)[0], mv, wys, ws) + 0.5 * ls * (
                    2 * tt * tB[stuck] + tt * tt * dB2[stuck]
                )
                took = open_ & (ch <= 1e-4 * tt * slope[stuck])
                t[stuck[took]] = tt
                open_ &= ~took
                if not open_.any():
                    break
        step = t[:, None, None] * d
        theta = theta + step
        # the new logits: the full step's where it was taken (already with their softmax)
        redo = np.flatnonzero(pick != 0)
        if len(redo):
            o1[redo] = out[redo] + t[redo, None, None] * dout[redo]
            lse1[redo], prob1[redo] = _row_lse(o1[redo])
        out, lse, prob = o1, lse1, prob1
        g_old = g
        g, ha = state(theta, prob, keep=ha if (it + 1) % JACOBI_EVERY else None)
        it += 1
        # the new pair; no step: forget that problem's pairs (next: a preconditioned
        # gradient step); no step from an empty memory: stalled (stops, converged only
        # if tol met)
        still = t == 0
        stalled = still & ~newest
        slot = len(order) if len(order) < MEMORY else order.pop(0)
        y = (g - g_old).reshape(Pa, D)
        sy = _dots(step, y)
        rho[slot] = np.where(sy > 0, 1.0 / np.where(sy > 0, sy, 1.0), 0.0)
        S[slot] = step.reshape(Pa, D)
        Yl[slot] = y
        order.append(slot)
        newest = step.reshape(Pa, D).any(1)
        if still.any():
            S[:, still] = 0.0
            Yl[:, still] = 0.0
            rho[:, still] = 0.0
            newest &= ~still
    return SoftmaxBatch(out_B, out_b, out_g, out_it, out_ok)
