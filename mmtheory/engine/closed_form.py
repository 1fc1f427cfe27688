"""Exact least squares on nested sample prefixes and column subsets (the closed form).

The closed form (``linear`` learner, squared loss) is exact ERM: one Gram matrix per data
group, accumulated over nested sample prefixes, every subset solved from its sub-block with
a pseudo-inverse (minimum-norm least squares, as ``numpy.linalg.lstsq``).

A sample that is exactly linear in a latent z (features x = T z, targets y = B z: a
noise-free linear-latent world) needs no features or targets at all: every quantity the
fit uses is a linear image of the latent's moments Z~^T Z~ (Z~ = [Z, 1]) on each prefix,
Gram = T~ S T~^T, X^T y = T~ S B~^T, y^T y = tr(B~ S B~^T) (:meth:`GramFactors.from_latent`).
That costs one r x r Gram of the latent instead of a d x d one of the features plus X^T y
per target, and worlds that share the latent share everything but B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "GramFactors",
    "LeastSquaresFit",
    "LeastSquaresPath",
    "LatentMoments",
    "fit_least_squares",
    "latent_route_pays",
    "least_squares_path",
    "pinv_solve",
]


@dataclass
class LeastSquaresFit:
    """Exact least squares on subset columns: ``W`` (d, p) full width (zero rows outside
    the subset), intercept ``b`` (p,), ``train_loss`` (mean squared error summed over p),
    and ``rank`` of the subset's design."""

    W: torch.Tensor
    b: torch.Tensor
    train_loss: float
    rank: int


def _eigh_cut(A: torch.Tensor, tol_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept eigenpairs of symmetric PSD A (see :func:`pinv_solve`): V_k, w_k."""
    w, V = torch.linalg.eigh(A)
    eps = torch.finfo(tol_dtype or A.dtype).eps
    cut = w.max().clamp_min(0) * max(A.shape) * eps * 10
    keep = w > cut
    return V[:, keep], w[keep]


def pinv_solve(A: torch.Tensor, c: torch.Tensor, tol_dtype=None) -> tuple[torch.Tensor, int]:
    """A^+ c for symmetric PSD A via eigh (in A's dtype), cutting eigenvalues below
    ``max eig * size * eps(tol_dtype) * 10``: the rounding level of the dtype A was
    accumulated in (a float32 Gram carries float32 rounding even when solved in float64)."""
    Vk, wk = _eigh_cut(A, tol_dtype)
    return Vk @ ((Vk.T @ c) / wk[:, None]), int(Vk.shape[1])


@dataclass
class LatentMoments:
    """Sufficient statistics of a sample linear in its latent: ``T`` (d, r), the features'
    map x = T z, and per nested prefix ``S[i]`` = Z~^T Z~ over its rows, Z~ = [Z, 1]
    ((r + 1, r + 1), float64; the last row and column hold the column sums and the count)."""

    T: torch.Tensor
    S: list[torch.Tensor]
    select: torch.Tensor | None = None  # T's row -> latent column, where T is a 0/1 selection

    def __post_init__(self) -> None:
        # T~, built once: the rows of Z~ each feature (and the intercept) copies where T is
        # a selection, else the lifted map
        r = self.T.shape[1]
        if self.select is not None:
            self._rows = torch.cat([self.select, torch.tensor([r], device=self.select.device)])
        else:
            self._T_lifted = self.lift(self.T, intercept_column=True)

    def apply_T(self, M: torch.Tensor) -> torch.Tensor:
        """T~ M for M ((r + 1, q)): a row gather where T is a 0/1 selection (the same
        numbers as the product, without its d r q multiplications)."""
        if self.select is not None:
            return M[self._rows]
        return self._T_lifted @ M

    def lift(self, M: torch.Tensor, intercept_column: bool) -> torch.Tensor:
        """``M`` ((q, r)) as a map of Z~: [M, 0], with ``[0, 1]`` appended as a last row
        when ``intercept_column`` (the Gram's intercept)."""
        q, r = M.shape
        out = torch.zeros(q + int(intercept_column), r + 1, dtype=torch.float64, device=M.device)
        out[:q, :r] = M
        if intercept_column:
            out[q, r] = 1.0
        return out


def _check_sizes(sizes: Sequence[int], n: int) -> list[int]:
    """``sizes`` as ints, strictly increasing, in 1..n (a ValueError naming the rule)."""
    sizes = [int(s) for s in sizes]
    if not sizes:
        raise ValueError("sizes must name at least one sample size")
    if sorted(sizes) != sizes or len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes must be strictly increasing, got {sizes}")
    if sizes[-1] > n or sizes[0] < 1:
        raise ValueError(f"sizes must be in 1..{n}, got {sizes}")
    return sizes


class GramFactors:
    """The target-free half of :func:`fit_least_squares`: the Gram matrix of the features
    (with the intercept column) on each nested prefix, and each (size, subset) block's
    eigendecomposition. Built from the features alone, so least-squares fits of any number
    of targets on the same features share it (Table 4's overlap worlds differ only in the
    target); a fit through it is bit-identical to one without it.

    Parameters
    ----------
    X : (n, d), or a list of per-modality blocks (n, d_k)
    sizes, column_sets, ridge, intercept : as :func:`fit_least_squares`
    keep : memoise the eigendecompositions (for reuse); otherwise each is computed on
        demand and dropped (one fit: no extra memory)
    """

    def __init__(
        self,
        X: torch.Tensor | Sequence[torch.Tensor],
        sizes: Sequence[int],
        column_sets: Sequence[torch.Tensor],
        *,
        ridge: float = 0.0,
        intercept: bool = True,
        keep: bool = False,
    ) -> None:
        blocks = [X] if isinstance(X, torch.Tensor) else list(X)
        n = blocks[0].shape[0]
        self.blocks: list[torch.Tensor] | None
        sizes = _check_sizes(sizes, n)
        self.blocks, self.sizes, self.ridge, self.intercept = blocks, sizes, ridge, intercept
        widths = [b.shape[1] for b in blocks]
        self.offs = np.concatenate([[0], np.cumsum(widths)]).tolist()
        d = self.d = self.offs[-1]
        self.dtype, self.device = blocks[0].dtype, blocks[0].device
        dtype, device = self.dtype, self.device
        self.column_sets = [cols.to(device) for cols in column_sets]
        self.keep = keep
        self.latent: LatentMoments | None = None
        self._factors: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        A = torch.zeros(d + 1, d + 1, dtype=dtype, device=device)
        self.grams: list[torch.Tensor] = []
        start = 0
        for m in sizes:
            for i, Xi in enumerate(blocks):
                Xi = Xi[start:m]
                si = slice(self.offs[i], self.offs[i + 1])
                for j in range(i, len(blocks)):
                    sj = slice(self.offs[j], self.offs[j + 1])
                    block = Xi.T @ blocks[j][start:m]
                    A[si, sj] += block
                    if j != i:
                        A[sj, si] += block.T
                sx = Xi.sum(dim=0)
                A[si, d] += sx
                A[d, si] += sx
            A[d, d] += m - start
            start = m
            self.grams.append(A.double().clone())

    @classmethod
    def from_latent(
        cls,
        z: torch.Tensor,
        T: torch.Tensor,
        sizes: Sequence[int],
        column_sets: Sequence[torch.Tensor],
        *,
        ridge: float = 0.0,
        intercept: bool = True,
        keep: bool = False,
    ) -> GramFactors:
        """The factors of the features ``x = T z`` without forming them: the latent's
        moments on each prefix (one r x r Gram of ``z`` (n, r)), and each prefix's Gram
        T~ S T~^T (module docstring). Fits through them take the targets' map
        (``least_squares_path(target_map=B)``) in place of targets. Equal to the Gram of
        the features up to rounding (exactly equal entries where T is a 0/1 selection)."""
        self = cls.__new__(cls)
        n = z.shape[0]
        sizes = _check_sizes(sizes, n)
        if T.shape[1] != z.shape[1]:
            raise ValueError(f"T must have shape (d, {z.shape[1]}), got {tuple(T.shape)}")
        self.blocks, self.sizes, self.ridge, self.intercept = None, sizes, ridge, intercept
        self.d = int(T.shape[0])
        self.offs = [0, self.d]
        self.dtype, self.device = torch.float64, z.device
        self.column_sets = [cols.to(z.device) for cols in column_sets]
        self.keep = keep
        self._factors = {}
        r = z.shape[1]
        T = T.to(z.device, torch.float64)
        S = torch.zeros(r + 1, r + 1, dtype=torch.float64, device=z.device)
        moments, self.grams = [], []
        start = 0
        for m in sizes:
            Zc = z[start:m].to(torch.float64)
            S[:r, :r] += Zc.T @ Zc
            sz = Zc.sum(dim=0)
            S[:r, r] += sz
            S[r, :r] += sz
            S[r, r] += m - start
            start = m
            moments.append(S.clone())
        self.latent = LatentMoments(T, moments, selection_rows(T))
        for S_i in moments:
            A = self.latent.apply_T(self.latent.apply_T(S_i).T)
            self.grams.append((A + A.T) / 2)
        return self

    def index(self, j: int) -> torch.Tensor:
        """Rows/columns of subset ``j``'s block in the Gram matrix (intercept last)."""
        cols = self.column_sets[j]
        if self.intercept:
            return torch.cat([cols, torch.tensor([self.d], device=self.device)])
        return cols

    def factor(self, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Size ``i``, subset ``j``: the block A_s, the kept eigenvectors and eigenvalues
        of A_s (plus ``ridge * m`` on the non-intercept diagonal)."""
        key = (i, j)
        if key in self._factors:
            return self._factors[key]
        idx = self.index(j)
        A_s = self.grams[i][idx][:, idx]
        A_fit = A_s.clone()
        if self.ridge > 0:
            diag = torch.arange(len(self.column_sets[j]), device=self.device)
            A_fit[diag, diag] += self.ridge * self.sizes[i]
        Vk, wk = _eigh_cut(A_fit, self.dtype)
        out = (A_s, Vk, wk)
        if self.keep:
            self._factors[key] = out
        return out

    def nbytes(self) -> int:
        """Bytes held (Gram snapshots and memoised factors)."""
        held = list(self.grams) + [t for f in self._factors.values() for t in f]
        if self.latent is not None:
            held += self.latent.S
        return sum(t.numel() * t.element_size() for t in held)


def fit_least_squares(
    X: torch.Tensor | Sequence[torch.Tensor],
    Y: torch.Tensor,
    sizes: Sequence[int],
    column_sets: Sequence[torch.Tensor],
    *,
    ridge: float = 0.0,
    intercept: bool = True,
    factors: GramFactors | None = None,
) -> list[list[LeastSquaresFit]]:
    """Exact ERM of linear predictors on nested prefixes and column subsets.

    Parameters
    ----------
    X : (n, d), or a list of per-modality blocks (n, d_k) (no concatenated copy is made);
        float64 recommended
    Y : (n,) or (n, p)
    sizes : increasing sample sizes m (prefixes of the rows), each <= n
    column_sets : per subset, the column indices it keeps (into the concatenated columns)
    ridge : adds ``ridge * m`` to the Gram diagonal (not to the intercept)
    factors : the :class:`GramFactors` of these same ``X``, ``sizes``, ``column_sets``,
        ``ridge`` and ``intercept``, shared across targets (built here when None)

    Returns
    -------
    ``fits[i][j]``: the fit on the first ``sizes[i]`` rows and ``column_sets[j]``.

    Cost: one Gram matrix of the largest prefix, accumulated block by block over the
    sizes, plus one eigendecomposition per (size, subset) of the subset's block; with
    shared ``factors`` only X^T Y and the solves.
    """
    return least_squares_path(
        X, Y, sizes, column_sets, ridge=ridge, intercept=intercept, factors=factors
    ).fits


@dataclass
class LeastSquaresPath:
    """:func:`least_squares_path`'s result: ``fits[i][j]`` as :func:`fit_least_squares`,
    and ``probe_risk[i]``, the mean squared error (summed over outputs) of the fixed
    predictor ``probe`` on the first ``sizes[i]`` rows (empty without a probe)."""

    fits: list[list[LeastSquaresFit]]
    probe_risk: list[float]


def _data_target_moments(factors: GramFactors, Y: torch.Tensor):
    """Per prefix: X~^T Y ((d + 1, p), float64) and y^T y, accumulated over the rows."""
    blocks, offs, d = factors.blocks, factors.offs, factors.d
    assert blocks is not None
    Y = Y.to(factors.dtype)
    c = torch.zeros(d + 1, Y.shape[1], dtype=factors.dtype, device=factors.device)
    yy = torch.zeros((), dtype=torch.float64, device=factors.device)
    start = 0
    for m in factors.sizes:
        Yb = Y[start:m]
        for b, Xb in enumerate(blocks):
            c[offs[b] : offs[b + 1]] += Xb[start:m].T @ Yb
        c[d] += Yb.sum(dim=0)
        yy += (Yb.double() * Yb.double()).sum()
        start = m
        yield c.double().clone(), yy.clone()


def _latent_target_moments(factors: GramFactors, B: torch.Tensor):
    """Per prefix, from the latent's moments S: X~^T Y = T~ S B~^T, y^T y = tr(B~ S B~^T)."""
    latent = factors.latent
    assert latent is not None
    Bl = latent.lift(B.to(factors.device, torch.float64), intercept_column=False)
    for S in latent.S:
        SB = S @ Bl.T
        yield latent.apply_T(SB), (Bl * SB.T).sum()


def selection_rows(T: torch.Tensor) -> torch.Tensor | None:
    """Where every row of ``T`` is one 1 among zeros (features that copy latent columns,
    as Table 4's), the latent column of each row; else None."""
    ones = T == 1
    if bool(((T == 0) | ones).all()) and bool((ones.sum(dim=1) == 1).all()):
        return T.argmax(dim=1)
    return None


def latent_route_pays(T: np.ndarray, n: int, n_sizes: int) -> bool:
    """Whether fitting from the latent's moments costs fewer multiplications than from the
    features: n r^2 (the latent's Gram) plus, per size, d r (d + r) for T S T^T (nothing
    for a 0/1 selection, a gather), against n d^2 (the features' Gram) plus n d r (forming
    them). A deterministic function of the world and the grid, so every shard and resume
    takes the same route."""
    d, r = T.shape
    select = selection_rows(torch.from_numpy(np.asarray(T, dtype=np.float64))) is not None
    latent = n * r * r + (0 if select else n_sizes * d * r * (d + r))
    return latent < n * d * d + n * d * r


def least_squares_path(
    X: torch.Tensor | Sequence[torch.Tensor] | None,
    Y: torch.Tensor | None,
    sizes: Sequence[int],
    column_sets: Sequence[torch.Tensor],
    *,
    ridge: float = 0.0,
    intercept: bool = True,
    factors: GramFactors | None = None,
    probe: torch.Tensor | None = None,
    target_map: torch.Tensor | None = None,
) -> LeastSquaresPath:
    """:func:`fit_least_squares`, and the training risk on every prefix of a fixed
    predictor ``probe`` ((d, p), no intercept; e.g. the population's best) computed from
    the same Gram matrix and X^T Y, with no pass over the data:
    ``(y'y - 2 tr(W' X'y) + tr(W' X'X W)) / m``, the formula the fits' own ``train_loss``
    uses.

    With ``factors`` from :meth:`GramFactors.from_latent`, pass ``X = Y = None`` and the
    targets' map ``target_map`` ((p, r): y = B z): X^T Y and y^T y come from the latent's
    moments."""
    if factors is None:
        if X is None:
            raise ValueError("X is needed unless factors are given")
        factors = GramFactors(X, sizes, column_sets, ridge=ridge, intercept=intercept)
    elif (
        [int(s) for s in sizes] != factors.sizes
        or ridge != factors.ridge
        or intercept != factors.intercept
        or len(column_sets) != len(factors.column_sets)
    ):
        raise ValueError("factors were built for other sizes, subsets, ridge or intercept")
    if (factors.latent is None) != (target_map is None) or (Y is None) == (target_map is None):
        raise ValueError("targets Y go with data factors, a target_map with latent factors")
    if target_map is not None and X is not None:
        raise ValueError("X must be None with a target_map (the latent factors replace it)")
    d, device = factors.d, factors.device
    if target_map is not None:
        assert factors.latent is not None
        if target_map.ndim == 1:
            target_map = target_map[None]
        r = factors.latent.T.shape[1]
        if target_map.ndim != 2 or target_map.shape[1] != r:
            raise ValueError(f"target_map must have shape (p, {r}), got {tuple(target_map.shape)}")
        p = int(target_map.shape[0])
        moments = _latent_target_moments(factors, target_map)
    else:
        assert Y is not None
        if Y.ndim == 1:
            Y = Y[:, None]
        p = Y.shape[1]
        moments = _data_target_moments(factors, Y)
    if probe is not None:
        probe = probe.to(device=device, dtype=torch.float64).reshape(d, p)
    fits: list[list[LeastSquaresFit]] = []
    probe_risk: list[float] = []
    for i, (m, (c64, yy)) in enumerate(zip(factors.sizes, moments, strict=True)):
        if probe is not None:
            A = factors.grams[i][:d, :d]
            sse = yy - 2 * (probe * c64[:d]).sum() + (probe * (A @ probe)).sum()
            probe_risk.append(float(sse.clamp_min(0)) / m)
        row = []
        for j, cols in enumerate(factors.column_sets):
            idx = factors.index(j)
            A_s, Vk, wk = factors.factor(i, j)
            cj = c64[idx]
            w = Vk @ ((Vk.T @ cj) / wk[:, None])
            sse = yy - 2 * (w * cj).sum() + (w * (A_s @ w)).sum()
            W = torch.zeros(d, p, dtype=torch.float64, device=device)
            W[cols] = w[: len(cols)]
            bias = w[len(cols)] if intercept else torch.zeros(p, dtype=torch.float64, device=device)
            row.append(LeastSquaresFit(W, bias, float(sse.clamp_min(0)) / m, int(Vk.shape[1])))
        fits.append(row)
    return LeastSquaresPath(fits, probe_risk)
