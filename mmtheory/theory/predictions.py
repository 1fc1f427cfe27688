"""The paper's predictions P1-P9 (docs/theory.md section 4), one small function each.

Every function reads one slice of a results table (one exact world, ``world_id``, and one
learner) and returns rows whose ``holds`` is ``"true"``, ``"false"`` or ``"untestable"``;
an untestable row says why in ``reason`` ("needs several overlap values", "Bayes risk
unknown on real data", "the grid has no m below the crossing", "inconclusive at this
size"). No row is written only when a prediction holds, and every prediction has a case in
the tests where it must say false.

Statistics: means over seeds get Student-t intervals (the percentile bootstrap undercovers
with five seeds: tests/theory/test_coverage.py measures both); rates get exact binomial
intervals; several sizes tested for one claim are Holm-corrected.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats

from mmtheory.core.subsets import label_names, label_size, nested_label_pairs
from mmtheory.theory.statistics import LEVEL, binomial_interval, interval

__all__ = [
    "HOLDS",
    "PREDICTION_COLUMNS",
    "P5_ATOL",
    "P5_RTOL",
    "Slice",
    "crossover",
    "p1_latent_gap",
    "p2_sign_agreement",
    "p5_empirical_loss",
    "p6_small_sample",
    "p7_crossover",
    "p7_shrinks_with_gain",
    "p8_overlap",
    "p9_eta_vanishes",
    "prediction_rows",
]

HOLDS = ("true", "false", "untestable")
PREDICTION_COLUMNS = [
    "prediction",
    "statement",
    "M",
    "N",
    "m",
    "n_trials",
    "statistic",
    "ci_low",
    "ci_high",
    "holds",
    "detail",
]
#: P5 compares training risks of exact ERM: a violation is a difference above
#: max(P5_ATOL, P5_RTOL * scale), scale being the null risk (so that two interpolating fits,
#: both at 1e-20, never count as a violation of rounding size).
P5_RTOL = 1e-9
P5_ATOL = 1e-12
#: Numerical zero for sign decisions, relative to the table's scale.
_ZERO = 1e-9
#: World parameters shown in row labels when they vary across the table.
LABEL_PARAMS = [
    "overlap",
    "rho",
    "noise",
    "strength",
    "label_noise",
    "latent",
    "dim",
    "n_modalities_world",
    "latent_dim",
    "n_noise_modalities",
]


def _seed_key(seed) -> tuple:
    """Sort key of a seed: numbers by value, anything else after them by its text (a
    hand-made table may mix them)."""
    if isinstance(seed, numbers.Real) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def _in_seed_order(values: pd.Series) -> pd.Series:
    """``values`` (indexed by seed) in seed order, NaN seeds dropped (a row without a seed
    pairs with nothing; the bounds table drops them too): no statistic over seeds depends
    on the table's row order."""
    if values.index.hasnans:
        values = values[values.index.notna()]
    if values.index.is_monotonic_increasing:  # the usual case: a table in seed order
        return values
    seeds = list(values.index)
    return values.iloc[sorted(range(len(seeds)), key=lambda i: _seed_key(seeds[i]))]


@dataclass
class Slice:
    """One (world_id, learner) slice of a results table, indexed for paired look-ups."""

    table: pd.DataFrame
    keys: dict[str, object]
    label: str

    @cached_property
    def _rows(self) -> dict[tuple[str, int], np.ndarray]:
        """Per (subset, m), the positions of its rows in table order (built on first use:
        many callers need only the keys and label; a table of another kind, bounds, has
        none)."""
        if {"subset", "m", "seed"} <= set(self.table.columns):
            return dict(self.table.groupby(["subset", "m"]).indices)
        return {}

    @cached_property
    def _seeds(self) -> np.ndarray:
        return self.table["seed"].to_numpy()

    def _cell(self, sub: str, m: int) -> pd.DataFrame | None:
        idx = self._rows.get((sub, m))
        return None if idx is None else self.table.iloc[idx].set_index("seed")

    @property
    def sizes(self) -> list[int]:
        return sorted(int(m) for m in self.table.m.unique())

    @property
    def subsets(self) -> list[str]:
        return list(self.table.subset.unique())

    def pairs(self) -> list[tuple[str, str]]:
        """Nested pairs (N, M), N a proper subset of M."""
        return nested_label_pairs(self.subsets)

    def paired(self, m_sub: str, n_sub: str, m: int, col: str) -> np.ndarray:
        """col(M) - col(N) per seed at size m, over the seeds both have, in seed order (so
        that no statistic depends on the table's row order)."""
        return self.paired_by_seed(m_sub, n_sub, m, col).to_numpy(dtype=float)

    def paired_by_seed(self, m_sub: str, n_sub: str, m: int, col: str) -> pd.Series:
        """:meth:`paired` indexed by seed, for pairing seeds across sizes.

        Plain array look-ups where each cell's seeds are distinct and the column is
        numeric (a pandas ``.loc`` per pair cost most of the check); otherwise pandas'
        alignment, which the fast path equals (tested)."""
        ia, ib = self._rows.get((m_sub, m)), self._rows.get((n_sub, m))
        if ia is None or ib is None or col not in self.table.columns:
            return pd.Series(dtype=float)
        values = self.table[col].to_numpy()
        sa, sb = self._seeds[ia], self._seeds[ib]
        if values.dtype.kind not in "fiu" or len(set(sa)) < len(sa) or len(set(sb)) < len(sb):
            a, b = self._cell(m_sub, m), self._cell(n_sub, m)
            common = a.index.intersection(b.index)
            return _in_seed_order((a.loc[common, col] - b.loc[common, col]).astype(float))
        where = {s: i for i, s in zip(ib, sb)}
        pick = [(i, where[s]) for i, s in zip(ia, sa) if s in where]
        if not pick:
            return pd.Series(dtype=float)
        pa, pb = np.array(pick).T
        seeds = pd.Index(self._seeds[pa], name="seed")
        return _in_seed_order(pd.Series((values[pa] - values[pb]).astype(float), index=seeds))

    def values(self, sub: str, m: int, col: str) -> pd.Series:
        """col at (sub, m), indexed by seed, in seed order, as floats."""
        idx = self._rows.get((sub, m))
        if idx is None or col not in self.table.columns:
            return pd.Series(dtype=float)
        seeds = pd.Index(self._seeds[idx], name="seed")
        return _in_seed_order(self.table[col].iloc[idx].set_axis(seeds).astype(float))

    def column(self, col: str) -> pd.Series:
        return self.table[col] if col in self.table.columns else pd.Series(dtype=object)

    @property
    def exact_erm(self) -> bool:
        """Every run is exact ERM (the closed-form least squares)."""
        solver = self.column("solver")
        return len(solver) > 0 and bool((solver == "closed_form").all())

    @property
    def latent_is_prediction(self) -> bool:
        """The linear composite: its latent is its own prediction."""
        kind = self.column("learner_kind")
        return len(kind) > 0 and bool((kind == "linear").all())

    @property
    def bayes_method(self) -> str:
        col = self.column("bayes_risk_method").dropna()
        return str(col.iloc[0]) if len(col) else "unknown"

    @property
    def risk_column(self) -> str:
        """The risk P6 and P7 compare: the 0-1 test error for classification (bounded, what
        the paper's Fig. 2a plots; an unregularised model's cross-entropy explodes at small
        m), the test risk otherwise."""
        if "test_accuracy" in self.table.columns and self.table.test_accuracy.notna().all():
            return "test_error"
        return "test_risk"

    def eta_inf(self, sub: str) -> float:
        col = self.values(sub, self.sizes[-1], "eta_inf")
        return float(col.iloc[0]) if len(col) and np.isfinite(col.iloc[0]) else float("nan")

    @property
    def scale(self) -> float:
        """A magnitude for numerical zeros: the null risk, else the largest |test risk|."""
        if "null_risk" in self.table.columns and self.table.null_risk.notna().any():
            return float(self.table.null_risk.abs().max()) + 1e-300
        return float(self.table.test_risk.abs().max()) + 1e-300


def _row(
    pred: str,
    statement: str,
    sl: Slice,
    *,
    M="",
    N="",
    m="",
    n=0,
    stat=np.nan,
    lo=np.nan,
    hi=np.nan,
    holds: str,
    reason: str = "",
    detail: str = "",
) -> dict:
    if holds not in HOLDS:
        raise ValueError(f"holds must be one of {HOLDS}, got {holds!r}")
    text = detail if not reason else (f"{reason}; {detail}" if detail else reason)
    return {
        **sl.keys,
        "prediction": pred,
        "statement": statement,
        "M": M,
        "N": N,
        "m": m,
        "n_trials": int(n),
        "statistic": stat,
        "ci_low": lo,
        "ci_high": hi,
        "holds": holds,
        "reason": reason,
        "detail": f"{sl.label}; {text}" if text else sl.label,
    }


def _inconclusive(iv, what: str) -> str:
    return (
        f"inconclusive at this size: the {int(100 * LEVEL)}% interval of {what} "
        f"[{iv.low:.4g}, {iv.high:.4g}] contains 0"
    )


def _sign(iv, tol: float) -> str:
    """'pos' / 'neg' when the interval lies above +tol / below -tol (or at 0 within tol for
    'nonpos'), else 'zero?': the three outcomes of a sign decision."""
    if iv.low > tol:
        return "pos"
    if iv.high < -tol:
        return "neg"
    if iv.high <= tol:
        return "nonpos"
    return "unknown"


# ---------------------------------------------------------------------------- P1
def p1_latent_gap(sl: Slice) -> list[dict]:
    """P1: gamma(M, N) = eta(g_M) - eta(g_N) <= 0 for N in M at large m (the largest m),
    a t-interval over seeds. False when gamma is significantly positive."""
    rows, m = [], sl.sizes[-1]
    tol = _ZERO * sl.scale
    for n_sub, m_sub in sl.pairs():
        g = sl.paired(m_sub, n_sub, m, "eta")
        iv = interval(g, method="t")
        kw = dict(M=m_sub, N=n_sub, m=m, n=len(g), stat=iv.estimate, lo=iv.low, hi=iv.high)
        st = "gamma(M, N) <= 0 for N in M at large m"
        limit = sl.eta_inf(m_sub) - sl.eta_inf(n_sub)
        note = "" if not np.isfinite(limit) else f"exact limit gamma_inf = {limit:.4g}"
        if iv.n < 2:
            rows.append(
                _row(
                    "P1",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason="needs at least 2 seeds for an interval",
                )
            )
            continue
        side = _sign(iv, tol)
        if side in ("neg", "nonpos"):
            rows.append(_row("P1", st, sl, **kw, holds="true", detail=f"mean gamma, t; {note}"))
        elif side == "pos":
            rows.append(
                _row(
                    "P1",
                    st,
                    sl,
                    **kw,
                    holds="false",
                    detail=f"gamma significantly > 0 at m = {m}; {note}",
                )
            )
        else:
            rows.append(
                _row(
                    "P1",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason=_inconclusive(iv, "gamma"),
                    detail=note,
                )
            )
    return rows


# ---------------------------------------------------------------------------- P2
def p2_sign_agreement(sl: Slice) -> list[dict]:
    """P2: sign(r_M - r_N) agrees with sign(gamma) at large m: the agreement rate over seeds
    is above 1/2 (exact binomial interval). Untestable for the linear composite, whose
    latent is its prediction (the two gaps agree by construction)."""
    rows, m = [], sl.sizes[-1]
    st = "sign(r_M - r_N) agrees with sign(gamma) at large m"
    for n_sub, m_sub in sl.pairs():
        g = sl.paired(m_sub, n_sub, m, "eta")
        gap = sl.paired(m_sub, n_sub, m, "test_risk")
        agree = int(np.sum(np.sign(np.round(gap, 12)) == np.sign(np.round(g, 12))))
        n = len(g)
        lo, hi = binomial_interval(agree, n)
        kw = dict(M=m_sub, N=n_sub, m=m, n=n, stat=agree / max(n, 1), lo=lo, hi=hi)
        if sl.latent_is_prediction:
            rows.append(
                _row(
                    "P2",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason="the linear composite's latent is its prediction: the two "
                    "gaps agree by construction",
                )
            )
        elif lo > 0.5:
            rows.append(
                _row("P2", st, sl, **kw, holds="true", detail="agreement rate, exact binomial")
            )
        elif hi < 0.5:
            rows.append(
                _row("P2", st, sl, **kw, holds="false", detail="agreement rate, exact binomial")
            )
        else:
            rows.append(
                _row(
                    "P2",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason=f"inconclusive with {n} seeds: the exact interval of the "
                    f"agreement rate [{lo:.3g}, {hi:.3g}] contains 1/2",
                )
            )
    return rows


# ---------------------------------------------------------------------------- P5
def p5_empirical_loss(sl: Slice) -> list[dict]:
    """P5: exact ERM over nested classes gives L^_M <= L^_N on every sample (deterministic),
    up to rounding (P5_ATOL, P5_RTOL). Untestable for iterative learners (not exact ERM);
    their violations are reported as the optimiser stopping short."""
    rows = []
    st = "L^_M <= L^_N on every sample (nested ERM)"
    tol = max(P5_ATOL, P5_RTOL * sl.scale)
    for n_sub, m_sub in sl.pairs():
        violations = n = 0
        for m in sl.sizes:
            d = sl.paired(m_sub, n_sub, m, "train_risk")
            violations += int(np.sum(d > tol))
            n += len(d)
        kw = dict(M=m_sub, N=n_sub, m="all", n=n, stat=violations)
        if not sl.exact_erm:
            rows.append(
                _row(
                    "P5",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason="the learner is not an exact ERM (iterative solver)",
                    detail=f"{violations} of {n} samples have L^_M > L^_N: the "
                    "optimiser did not reach the nested ERM",
                )
            )
        else:
            rows.append(
                _row(
                    "P5",
                    st,
                    sl,
                    **kw,
                    holds="true" if violations == 0 else "false",
                    detail=f"violations counted (tolerance {tol:.2g})",
                )
            )
    return rows


# ---------------------------------------------------------------------------- P6
def _holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone)."""
    order = np.argsort(pvalues)
    k = len(pvalues)
    adj = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * pvalues[i]))
        adj[i] = running
    return adj.tolist()


def p6_small_sample(sl: Slice) -> list[dict]:
    """P6: at small m a larger subset can have higher risk. Per nested pair, one-sided paired
    t-tests of r_M > r_N at each small size (the smaller half of the grid, the largest size
    excluded), Holm-corrected over those sizes: true if any rejects; false if M is
    significantly better at every small size; untestable otherwise."""
    rows = []
    col = sl.risk_column
    st = "small m: the larger subset has higher risk"
    sizes = sl.sizes
    small = [m for m in sizes[: max(1, len(sizes) // 2)] if m != sizes[-1]]
    for n_sub, m_sub in sl.pairs():
        if not small:
            rows.append(
                _row(
                    "P6",
                    st,
                    sl,
                    M=m_sub,
                    N=n_sub,
                    holds="untestable",
                    reason="the grid has one size: no small m to test",
                )
            )
            continue
        tests = []
        for m in small:
            d = sl.paired(m_sub, n_sub, m, col)
            if len(d) < 2:
                continue
            iv = interval(d, method="t")
            if np.all(d == d[0]):
                p = 0.0 if d[0] > 0 else 1.0
            else:
                p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
            tests.append((m, d, iv, p))
        if not tests:
            rows.append(
                _row(
                    "P6",
                    st,
                    sl,
                    M=m_sub,
                    N=n_sub,
                    holds="untestable",
                    reason="needs at least 2 seeds for an interval",
                )
            )
            continue
        adjusted = _holm([t[3] for t in tests])
        best = int(np.argmin(adjusted))
        m, d, iv, _ = tests[best]
        kw = dict(M=m_sub, N=n_sub, m=m, n=len(d), stat=iv.estimate, lo=iv.low, hi=iv.high)
        what = f"mean {col}_M - {col}_N, t; Holm over m = {[t[0] for t in tests]}"
        if adjusted[best] < 1 - LEVEL:
            rows.append(
                _row(
                    "P6",
                    st,
                    sl,
                    **kw,
                    holds="true",
                    detail=f"{what}; adjusted p = {adjusted[best]:.3g}",
                )
            )
        elif all(t[2].high < 0 for t in tests):
            rows.append(
                _row(
                    "P6",
                    st,
                    sl,
                    **kw,
                    holds="false",
                    detail=f"{what}; M is significantly better at every small m",
                )
            )
        else:
            rows.append(
                _row(
                    "P6",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason="inconclusive at these sizes: no small m shows M "
                    "significantly worse after Holm correction",
                    detail=what,
                )
            )
    return rows


# ---------------------------------------------------------------------------- P7
@dataclass
class Crossing:
    """The crossing after which M stays better than N, from paired gaps over seeds.

    ``point``: the last zero of the mean gap (interpolated linearly in 1/m); NaN when the
    mean gap does not cross inside the grid. ``low``/``high``: the interval of m* from test
    inversion: ``low`` is the last m where M is significantly worse, ``high`` the first m
    from which M is significantly better for good (both at the pointwise
    :data:`CROSSING_POINTWISE_LEVEL`). ``below`` / ``above``: the interval is censored at
    the grid's ends (M never significantly worse / not yet significantly better, at that
    level). ``worse_before``: M is significantly worse somewhere (at the verdict's level).
    """

    point: float
    low: float
    high: float
    below: bool
    above: bool
    worse_at_max: bool
    better_at_max: bool
    better_before: bool
    growing: bool
    n_seeds: int
    worse_before: bool = True


#: Pointwise level of the t-tests whose inversion gives P7's interval of m*. Each end of the
#: interval is the extreme of many correlated tests (the last m where M is worse, the
#: first from which it is better for good), so pointwise 95% covered the exact m* of
#: linear worlds in only 91.7% of 240 independent 20-seed tables; pointwise 98% 94.6%,
#: 98.5% 95.0%, 99% 97.5%. At 99%: 98.0% of 790 tables with m* > p_M + 10 on six worlds
#: (benchmarks/interval_coverage.md); nearer the threshold no mean-based interval covers.
CROSSING_POINTWISE_LEVEL = 0.99


def crossover(
    sizes: list[int],
    gaps: np.ndarray,
    *,
    level: float = LEVEL,
    interval_level: float = CROSSING_POINTWISE_LEVEL,
    per_interval: int = 24,
) -> Crossing:
    """The last crossing of paired gaps ``gaps`` (seeds, sizes) = r_M - r_N.

    Between adjacent sizes each seed's gap is interpolated linearly in 1/m (the leading
    behaviour of least-squares risks, s2 (1 + p/m)); at every point of that dense curve the
    mean gap gets a t-interval over seeds. The verdict flags (significantly worse at the
    largest m, better at it, never worse) use ``level``. The interval of m* is where the
    gap is not significantly signed at the last crossing (test inversion, as Fieller's
    interval) at the pointwise ``interval_level``, chosen so that the interval reaches
    ``level`` coverage (see :data:`CROSSING_POINTWISE_LEVEL`).
    """
    sizes = [float(m) for m in sizes]
    S = gaps.shape[0]
    u = [1.0 / sizes[0]]
    dense = [gaps[:, 0]]
    for j in range(len(sizes) - 1):
        u0, u1 = 1 / sizes[j], 1 / sizes[j + 1]
        for t in np.linspace(0, 1, per_interval + 1)[1:]:
            u.append(u0 + t * (u1 - u0))
            dense.append((1 - t) * gaps[:, j] + t * gaps[:, j + 1])
    D = np.stack(dense, axis=1)  # (S, points), m increasing
    ms = 1 / np.array(u)
    mean = D.mean(0)
    se = D.std(0, ddof=1) / math.sqrt(S)
    crit = stats.t.ppf(0.5 + level / 2, S - 1)
    sig_pos = mean - crit * se > 0
    sig_neg = mean + crit * se < 0
    wide = stats.t.ppf(0.5 + interval_level / 2, S - 1)
    out_pos = mean - wide * se > 0  # the interval's tests, at the pointwise level
    out_neg = mean + wide * se < 0
    positive = np.flatnonzero(mean > 0)
    if len(positive) == 0 or positive[-1] == len(mean) - 1:
        point = float("nan")
    else:
        i = positive[-1]
        w = mean[i] / (mean[i] - mean[i + 1])
        point = float(1 / (u[i] + w * (u[i + 1] - u[i])))
    worse = np.flatnonzero(sig_pos)
    beyond = np.flatnonzero(out_pos)
    low = float(ms[beyond[-1]]) if len(beyond) else float("nan")
    tail = np.flatnonzero(~out_neg)
    if not out_neg[-1]:
        high = float("nan")
    else:
        first = tail[-1] + 1 if len(tail) else 0
        high = float(ms[first])
    better_before = bool(sig_neg[: len(sig_neg) // 2].any())
    half = len(sizes) // 2
    trend = gaps[:, -1] - gaps[:, half]
    growing = bool(S >= 2 and interval(trend, method="t").low > 0) if len(sizes) >= 3 else False
    return Crossing(
        point,
        low,
        high,
        not len(beyond),
        not out_neg[-1],
        bool(sig_pos[-1]),
        bool(sig_neg[-1]),
        better_before,
        growing,
        S,
        bool(len(worse)),
    )


def p7_crossover(sl: Slice) -> list[dict]:
    """P7: a sample size m* past which the larger subset wins (and stays better).

    true: M is significantly worse somewhere and significantly better at the largest m (m*
    and its interval reported). false: M is significantly worse at the largest m and its
    disadvantage is significantly growing over the upper half of the grid (the gap moves
    away from a crossing). untestable: the grid has no m below the crossing, or ends before
    it, or a pair whose exact limits are equal (no crossover is predicted), or too few seeds.
    """
    rows = []
    col = sl.risk_column
    st = "crossover m* past which the larger subset wins"
    sizes = sl.sizes
    for n_sub, m_sub in sl.pairs():
        # each seed's gap curve over the sizes: seeds paired by seed, not by row position
        # (a table's rows need not be in seed order), over the seeds every size has
        per_size = [sl.paired_by_seed(m_sub, n_sub, m, col) for m in sizes]
        per_size = [g[~g.index.duplicated()] for g in per_size]
        every = set.intersection(*(set(g.index) for g in per_size)) if per_size else set()
        seeds = sorted(every, key=_seed_key)
        n = len(seeds)
        base = dict(M=m_sub, N=n_sub, m="")
        if n < 2 or len(sizes) < 2:
            why = "needs at least 2 seeds and 2 sizes"
            if len(sizes) >= 2 and min(len(g) for g in per_size) >= 2:
                why = (
                    f"needs at least 2 seeds measured at every size (a seed's gap curve "
                    f"spans all {len(sizes)}); {n} are"
                )
            rows.append(_row("P7", st, sl, **base, n=n, holds="untestable", reason=why))
            continue
        gaps = np.stack([g.loc[seeds].to_numpy(dtype=float) for g in per_size], axis=1)
        cx = crossover(sizes, gaps)
        kw = dict(**base, n=n, stat=cx.point, lo=cx.low, hi=cx.high)
        limit = sl.eta_inf(n_sub) - sl.eta_inf(m_sub)
        censor = (
            f"interval {'< ' + str(sizes[0]) if cx.below else f'{cx.low:.4g}'} .. "
            f"{'> ' + str(sizes[-1]) if cx.above else f'{cx.high:.4g}'}"
        )
        what = (
            f"{col}; last crossing, interval by inverting pointwise "
            f"{100 * CROSSING_POINTWISE_LEVEL:.0f}% t-tests over {n} seeds; {censor}"
        )
        if np.isfinite(limit) and abs(limit) <= _ZERO * sl.scale and not cx.better_at_max:
            rows.append(
                _row(
                    "P7",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason="M adds nothing in the limit (exact eta_inf equal): no "
                    "crossover is predicted",
                    detail=what,
                )
            )
        elif cx.better_at_max and cx.worse_before:
            rows.append(_row("P7", st, sl, **kw, holds="true", detail=what))
        elif cx.better_at_max:
            rows.append(
                _row(
                    "P7",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason=f"the grid has no m below the crossing (M is never "
                    f"significantly worse from m = {sizes[0]})",
                    detail=what,
                )
            )
        elif cx.worse_at_max and cx.growing:
            rows.append(
                _row(
                    "P7",
                    st,
                    sl,
                    **kw,
                    holds="false",
                    detail=f"{what}; M is significantly worse at m = {sizes[-1]} and "
                    "its disadvantage grows over the upper half of the grid",
                )
            )
        elif cx.worse_at_max:
            rows.append(
                _row(
                    "P7",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason=f"the grid ends before the crossing (M still significantly "
                    f"worse at m = {sizes[-1]})",
                    detail=what,
                )
            )
        else:
            rows.append(
                _row(
                    "P7",
                    st,
                    sl,
                    **kw,
                    holds="untestable",
                    reason=f"inconclusive at m = {sizes[-1]}: the gap's interval contains 0",
                    detail=what,
                )
            )
    return rows


def p7_shrinks_with_gain(slices: list[Slice], rows7: list[dict]) -> list[dict]:
    """P7's second half: m* shrinks as the empirical-loss gain L^_N - L^_M grows, across the
    worlds of one learner and pair (Spearman's rank correlation, exact permutation p-value;
    at least 4 worlds with a crossing found)."""
    found = pd.DataFrame([r for r in rows7 if r["holds"] == "true"])
    out: list[dict] = []
    if found.empty:
        return out
    by_id = {sl.keys.get("world_id"): sl for sl in slices}
    for (learner, m_sub, n_sub), g in found.groupby(["learner", "M", "N"]):
        pts = []
        for r in g.itertuples():
            sl = by_id.get(r.world_id)
            if sl is None:
                continue
            gain = -np.mean(sl.paired(m_sub, n_sub, sl.sizes[-1], "train_risk"))
            pts.append((gain, r.statistic))
        st = "m* shrinks as the empirical-loss gain grows"
        sl0 = Slice(
            pd.DataFrame(),
            {"world": "several", "world_id": "several", "learner": learner},
            f"learner={learner}",
        )
        if len(pts) < 4:
            if len(slices) > 1:
                out.append(
                    _row(
                        "P7",
                        st,
                        sl0,
                        M=m_sub,
                        N=n_sub,
                        n=len(pts),
                        holds="untestable",
                        reason="needs a crossing in at least 4 worlds of this pair",
                    )
                )
            continue
        gain, mstar = np.array(pts).T
        rho = stats.spearmanr(gain, mstar).statistic
        perms = (
            [
                stats.spearmanr(gain, mstar[list(p)]).statistic
                for p in itertools.permutations(range(len(pts)))
            ]
            if len(pts) <= 8
            else None
        )
        if perms is not None:
            p_neg = float(np.mean(np.array(perms) <= rho + 1e-12))
            p_pos = float(np.mean(np.array(perms) >= rho - 1e-12))
        else:
            res = stats.spearmanr(gain, mstar)
            p_neg = p_pos = float(res.pvalue) / 2
        kw = dict(M=m_sub, N=n_sub, n=len(pts), stat=float(rho))
        detail = f"Spearman correlation of m* with the gain over {len(pts)} worlds"
        if p_neg < 1 - LEVEL:
            out.append(_row("P7", st, sl0, **kw, holds="true", detail=f"{detail}; p = {p_neg:.3g}"))
        elif p_pos < 1 - LEVEL:
            out.append(
                _row("P7", st, sl0, **kw, holds="false", detail=f"{detail}; p = {p_pos:.3g}")
            )
        else:
            out.append(
                _row(
                    "P7",
                    st,
                    sl0,
                    **kw,
                    holds="untestable",
                    reason="inconclusive: the rank correlation is not significant",
                    detail=detail,
                )
            )
    return out


# ---------------------------------------------------------------------------- P8
def p8_overlap(df: pd.DataFrame, keys: dict, label: str) -> list[dict]:
    """P8 on a table of overlap worlds (one learner): higher overlap, lower eta for every
    incomplete subset (paired over seeds between adjacent overlaps); at full overlap one
    modality suffices (eta = 0); at zero overlap eta grows linearly with the number of
    missing modalities (R^2 of a line >= 0.99)."""
    sl = Slice(df, keys, label)
    rows: list[dict] = []
    m_big = int(df.m.max())
    big = df[df.m == m_big]
    overlaps = sorted(big.overlap.unique())
    universe = max(big.subset.unique(), key=label_size)
    K = label_size(universe)
    # by size, then label: neither the verdict nor its text depends on the row order
    partial = sorted(
        (s for s in big.subset.unique() if label_size(s) < K), key=lambda s: (label_size(s), s)
    )
    tol = _ZERO * sl.scale
    st = "higher overlap, lower eta for every incomplete subset"
    if len(overlaps) < 2:
        rows.append(
            _row("P8", st, sl, m=m_big, holds="untestable", reason="needs several overlap values")
        )
        return rows
    worst, inconclusive = None, []
    for sub in partial:
        for lo_w, hi_w in zip(overlaps, overlaps[1:]):
            a = big[(big.subset == sub) & (big.overlap == hi_w)].set_index("seed").eta
            b = big[(big.subset == sub) & (big.overlap == lo_w)].set_index("seed").eta
            common = a.index.intersection(b.index)
            gap = _in_seed_order(a.loc[common] - b.loc[common])
            iv = interval(gap.to_numpy(float), method="t")
            side = _sign(iv, tol)
            if side == "pos":
                worst = (sub, lo_w, hi_w, iv)
            elif side == "unknown" or iv.n < 2:
                inconclusive.append((sub, lo_w, hi_w))
    n_checks = len(partial) * (len(overlaps) - 1)
    if worst is not None:
        sub, lo_w, hi_w, iv = worst
        rows.append(
            _row(
                "P8",
                st,
                sl,
                M=sub,
                m=m_big,
                n=n_checks,
                stat=iv.estimate,
                lo=iv.low,
                hi=iv.high,
                holds="false",
                detail=f"eta rises from overlap {lo_w:g} to {hi_w:g} (significantly)",
            )
        )
    elif inconclusive:
        rows.append(
            _row(
                "P8",
                st,
                sl,
                M=", ".join(partial),
                m=m_big,
                n=n_checks,
                holds="untestable",
                reason=f"inconclusive for {len(inconclusive)} of {n_checks} adjacent overlap pairs",
            )
        )
    else:
        rows.append(
            _row(
                "P8",
                st,
                sl,
                M=", ".join(partial),
                m=m_big,
                n=n_checks,
                stat=1.0,
                holds="true",
                detail="eta lower at every higher overlap (t over seeds)",
            )
        )
    eta = big.groupby(["overlap", "subset"]).eta.mean().unstack("subset")
    st = "full overlap: one modality suffices (eta = 0)"
    if 1.0 in eta.index:
        singles = [s for s in eta.columns if label_size(s) == 1]
        worst_eta = float(eta.loc[1.0, singles].abs().max())
        zero_tol = 1e-6 * max(float(eta.abs().max().max()), 1e-300)
        rows.append(
            _row(
                "P8",
                st,
                sl,
                M=", ".join(singles),
                m=m_big,
                n=len(singles),
                stat=worst_eta,
                holds="true" if worst_eta <= zero_tol else "false",
                detail=f"largest |eta| of one modality at overlap 1 (tolerance "
                f"{zero_tol:.2g}: 1e-6 of the table's largest eta)",
            )
        )
    else:
        rows.append(
            _row(
                "P8",
                st,
                sl,
                m=m_big,
                holds="untestable",
                reason="the table has no world with overlap 1",
            )
        )
    st = "zero overlap: eta linear in the number of missing modalities"
    if 0.0 in eta.index and len(eta.columns) >= 3:
        e0 = eta.loc[0.0].dropna()
        missing = np.array([K - label_size(s) for s in e0.index], dtype=float)
        if len(np.unique(missing)) < 3:
            rows.append(
                _row(
                    "P8",
                    st,
                    sl,
                    m=m_big,
                    holds="untestable",
                    reason="needs subsets missing at least 3 different counts",
                )
            )
        else:
            fit = stats.linregress(missing, e0.to_numpy(float))
            r2 = float(fit.rvalue**2)
            rows.append(
                _row(
                    "P8",
                    st,
                    sl,
                    m=m_big,
                    n=len(e0),
                    stat=r2,
                    holds="true" if r2 >= 0.99 else "false",
                    detail=f"R^2 of a line of eta on the missing count (threshold "
                    f"0.99); slope {fit.slope:.4g}",
                )
            )
    else:
        rows.append(
            _row(
                "P8",
                st,
                sl,
                m=m_big,
                holds="untestable",
                reason="the table has no world with overlap 0 (or too few subsets)",
            )
        )
    return rows


# ---------------------------------------------------------------------------- P9
def p9_eta_vanishes(sl: Slice) -> list[dict]:
    """P9: with all modalities and a well-specified model, eta(g_[K]) -> 0: eta of the full
    set falls significantly from the smallest to the largest m (a paired t-interval of the
    log ratio over seeds: "-> 0" is a multiplicative fall), and the model is well specified
    (exact eta_inf([K]) = 0). Untestable on real data (Bayes risk unknown), with a Bayes
    risk that is only a bound, without the full set, for a misspecified model, or where
    eta_inf is unknown (nothing confirms the model is well specified)."""
    st = "eta(g_[K]) -> 0 with all modalities"
    universe = sorted({n for s in sl.subsets for n in label_names(s)})
    full = [s for s in sl.subsets if set(label_names(s)) == set(universe)]
    sizes = sl.sizes
    if not full:
        return [
            _row(
                "P9",
                st,
                sl,
                holds="untestable",
                reason="the table has no subset with all modalities",
            )
        ]
    full_set = full[0]
    method = sl.bayes_method
    base = dict(M=full_set, m=sizes[-1])
    if method == "unknown":
        return [
            _row("P9", st, sl, **base, holds="untestable", reason="Bayes risk unknown on real data")
        ]
    if method in ("lower_bound", "best_linear"):
        return [
            _row(
                "P9",
                st,
                sl,
                **base,
                holds="untestable",
                reason=f"the world's Bayes risk is a {method.replace('_', ' ')} here, so "
                "eta is not measured against the true model",
            )
        ]
    limit = sl.eta_inf(full_set)
    if np.isfinite(limit) and limit > _ZERO * sl.scale:
        return [
            _row(
                "P9",
                st,
                sl,
                **base,
                stat=limit,
                holds="untestable",
                reason=f"the model is not well specified: exact eta_inf([K]) = {limit:.4g} > 0",
            )
        ]
    if len(sizes) < 2:
        return [_row("P9", st, sl, **base, holds="untestable", reason="needs at least 2 sizes")]
    if not np.isfinite(limit):
        return [
            _row(
                "P9",
                st,
                sl,
                **base,
                holds="untestable",
                reason="cannot confirm the model is well specified: no exact eta_inf "
                "for this world",
            )
        ]
    big = sl.values(full_set, sizes[-1], "eta")
    small = sl.values(full_set, sizes[0], "eta")
    common = big.index.intersection(small.index)
    b, s_ = big.loc[common].to_numpy(float), small.loc[common].to_numpy(float)
    logs = bool(np.all(b > 0) and np.all(s_ > 0))
    change = np.log(b / s_) if logs else b - s_
    iv = interval(change, method="t")
    end = interval(big.to_numpy(float), method="t")
    kw = dict(**base, n=len(big), stat=end.estimate, lo=end.low, hi=end.high)
    what = (
        f"{'log ratio' if logs else 'difference'} of eta at m = {sizes[-1]} to eta at "
        f"m = {sizes[0]}: {iv.estimate:.4g} [{iv.low:.4g}, {iv.high:.4g}]"
    )
    if iv.n < 2:
        return [
            _row(
                "P9",
                st,
                sl,
                **kw,
                holds="untestable",
                reason="needs at least 2 seeds for an interval",
            )
        ]
    if iv.high < 0:
        return [_row("P9", st, sl, **kw, holds="true", detail=f"{what}: eta falls toward 0")]
    if iv.low > 0:
        return [_row("P9", st, sl, **kw, holds="false", detail=f"{what}: eta grows with m")]
    return [
        _row(
            "P9",
            st,
            sl,
            **kw,
            holds="untestable",
            reason=_inconclusive(iv, "the change"),
            detail=what,
        )
    ]


# ------------------------------------------------------------------------ driver
def slices(results: pd.DataFrame) -> list[Slice]:
    """The (world_id, learner) slices of a results table, with row labels."""
    df = results
    if "test_accuracy" in df.columns:
        df = df.assign(test_error=1 - df.test_accuracy)
    ident = ["world_id"] if "world_id" in df.columns else []
    keys = ["world", *ident, "learner"]
    varying = [c for c in LABEL_PARAMS if c in df.columns and df[c].nunique(dropna=False) > 1]
    out = []
    for key, g in df.groupby(keys, dropna=False, sort=False):
        kd = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        params = {c: g[c].iloc[0] for c in varying}
        label = ", ".join(f"{k}={v}" for k, v in {**kd, **params}.items() if k != "world_id")
        out.append(Slice(g, kd, label))
    return out


def prediction_rows(results: pd.DataFrame) -> list[dict]:
    """P1, P2, P5, P6, P7, P8 and P9 rows of a results table (P3/P4 come from the bounds)."""
    rows: list[dict] = []
    all_slices = slices(results)
    rows7: list[dict] = []
    for sl in all_slices:
        rows += p1_latent_gap(sl) + p2_sign_agreement(sl) + p5_empirical_loss(sl)
        rows += p6_small_sample(sl)
        r7 = p7_crossover(sl)
        rows7 += r7
        rows += r7 + p9_eta_vanishes(sl)
    rows += p7_shrinks_with_gain(all_slices, rows7)
    if "overlap" in results.columns and results.overlap.notna().any():
        for learner, g in results[results.overlap.notna()].groupby("learner"):
            keys = {"world": g.world.iloc[0], "world_id": "several", "learner": learner}
            rows += p8_overlap(g, keys, f"world={keys['world']}, learner={learner}")
    return rows
