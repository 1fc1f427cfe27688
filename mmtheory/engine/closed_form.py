"""Exact least squares on nested sample prefixes and column subsets (the closed form).

The closed form (``linear`` learner, squared loss) is exact ERM: one Gram matrix per data
group, accumulated over nested sample prefixes, every subset solved from its sub-block with
a pseudo-inverse (minimum-norm least squares, as ``numpy.linalg.lstsq``).
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
    "fit_least_squares",
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
        sizes = [int(s) for s in sizes]
        if sorted(sizes) != sizes or len(set(sizes)) != len(sizes):
            raise ValueError(f"sizes must be strictly increasing, got {sizes}")
        if sizes[-1] > n or sizes[0] < 1:
            raise ValueError(f"sizes must be in 1..{n}, got {sizes}")
        self.blocks, self.sizes, self.ridge, self.intercept = blocks, sizes, ridge, intercept
        widths = [b.shape[1] for b in blocks]
        self.offs = np.concatenate([[0], np.cumsum(widths)]).tolist()
        d = self.d = self.offs[-1]
        self.dtype, self.device = blocks[0].dtype, blocks[0].device
        dtype, device = self.dtype, self.device
        self.column_sets = [cols.to(device) for cols in column_sets]
        self.keep = keep
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


def least_squares_path(
    X: torch.Tensor | Sequence[torch.Tensor],
    Y: torch.Tensor,
    sizes: Sequence[int],
    column_sets: Sequence[torch.Tensor],
    *,
    ridge: float = 0.0,
    intercept: bool = True,
    factors: GramFactors | None = None,
    probe: torch.Tensor | None = None,
) -> LeastSquaresPath:
    """:func:`fit_least_squares`, and the training risk on every prefix of a fixed
    predictor ``probe`` ((d, p), no intercept; e.g. the population's best) computed from
    the same Gram matrix and X^T Y, with no pass over the data:
    ``(y'y - 2 tr(W' X'y) + tr(W' X'X W)) / m``, the formula the fits' own ``train_loss``
    uses."""
    if factors is None:
        factors = GramFactors(X, sizes, column_sets, ridge=ridge, intercept=intercept)
    elif (
        [int(s) for s in sizes] != factors.sizes
        or ridge != factors.ridge
        or intercept != factors.intercept
        or len(column_sets) != len(factors.column_sets)
    ):
        raise ValueError("factors were built for other sizes, subsets, ridge or intercept")
    blocks, offs, d = factors.blocks, factors.offs, factors.d
    dtype, device = factors.dtype, factors.device
    if Y.ndim == 1:
        Y = Y[:, None]
    p = Y.shape[1]
    Y = Y.to(dtype)
    if probe is not None:
        probe = probe.to(device=device, dtype=torch.float64).reshape(d, p)
    c = torch.zeros(d + 1, p, dtype=dtype, device=device)
    yy = torch.zeros((), dtype=torch.float64, device=device)
    fits: list[list[LeastSquaresFit]] = []
    probe_risk: list[float] = []
    start = 0
    for i, m in enumerate(factors.sizes):
        Yb = Y[start:m]
        for b, Xb in enumerate(blocks):
            c[offs[b] : offs[b + 1]] += Xb[start:m].T @ Yb
        c[d] += Yb.sum(dim=0)
        yy += (Yb.double() * Yb.double()).sum()
        start = m
        c64 = c.double()
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
