"""What a protocol table (``experiments.protocol``) says about a dataset's modalities.

- :func:`best_subsets`: at each size, the subset of least mean risk, its interval, the
  runner-up and a paired interval of their difference over splits (distinguishable when it
  excludes 0);
- :func:`subset_curves`: per subset, the mean risk at each measured size and the fitted
  learning curve (``theory.learning_curves``);
- :func:`adding_table`: for each modality X and each subset S without X, the change in risk
  r_{S+X} - r_S now (measured, paired over splits) and at larger sizes (extrapolated by the
  fitted curves, bootstrap over splits); verdict "helps", "hurts" or "cannot tell yet";
- :func:`contributions`: Shapley values of the risk reduction over the best constant at the
  largest size, with intervals over splits.

All intervals are 95%; those over splits are the corrected resampled t-intervals, and the
bootstrap of extrapolations is widened by the same correction factor and expanded for the
number of splits (Hesterberg's expanded percentile interval).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mmtheory.core.seeding import as_generator
from mmtheory.core.subsets import join_label, label_names
from mmtheory.theory.games import shapley
from mmtheory.theory.learning_curves import (
    MIN_SIZES,
    corrected_interval,
    fit_power_law,
    power_law,
)

__all__ = [
    "best_subsets",
    "subset_curves",
    "adding_table",
    "contributions",
    "verdict",
    "FACTORS",
]

#: Multiples of the current training size at which adding a modality is judged.
FACTORS = (1, 2, 5, 10)


def verdict(lo: float, hi: float) -> str:
    """ "helps" (the change in risk is surely negative), "hurts" or "cannot tell yet"."""
    if np.isfinite(hi) and hi < 0:
        return "helps"
    if np.isfinite(lo) and lo > 0:
        return "hurts"
    return "cannot tell yet"


def _pivot(results: pd.DataFrame, m: int) -> pd.DataFrame:
    """(splits, subsets) risks at size m."""
    return results[results.m == m].pivot(index="split", columns="subset", values="risk")


def best_subsets(results: pd.DataFrame, test_fraction: float) -> pd.DataFrame:
    """One row per size m: best subset, its mean risk and interval, the runner-up, the
    paired difference runner-up - best with its interval, and ``distinguishable``."""
    rows = []
    for m in sorted(results.m.unique()):
        piv = _pivot(results, m)
        order = piv.mean().sort_values()
        best = order.index[0]
        mean, lo, hi = corrected_interval(piv[best], test_fraction)
        row = {"m": int(m), "best": best, "risk": mean, "ci_low": max(lo, 0.0), "ci_high": hi}
        if len(order) > 1:
            second = order.index[1]
            d, dlo, dhi = corrected_interval(piv[second] - piv[best], test_fraction)
            row.update(
                runner_up=second,
                runner_up_risk=float(order.iloc[1]),
                gap=d,
                gap_low=dlo,
                gap_high=dhi,
                distinguishable=bool(np.isfinite(dlo) and dlo > 0),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _curve_params(mean_by_m: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """subset -> (e, a, alpha) fit to a (sizes, subsets) table of mean risks."""
    m = mean_by_m.index.to_numpy(dtype=float)
    return {s: fit_power_law(m, mean_by_m[s].to_numpy()) for s in mean_by_m.columns}


def _mean_table(results: pd.DataFrame) -> pd.DataFrame:
    return results.groupby(["m", "subset"]).risk.mean().unstack("subset").sort_index()


def _anchor(m: np.ndarray, risk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Risk at ``targets`` of one subset whose mean risks at the sizes ``m`` (ascending)
    are ``risk``: the mean at the largest m plus the fitted curve's change from there
    (``theory.learning_curves``)."""
    e, a, alpha = fit_power_law(m, risk)
    return float(risk[-1]) + power_law(targets, e, a, alpha) - power_law(m[-1], e, a, alpha)


def _anchored(means: pd.DataFrame, targets: np.ndarray) -> dict[str, np.ndarray]:
    """subset -> risk at ``targets`` (:func:`_anchor`) from a (sizes, subsets) table."""
    m = means.index.to_numpy(dtype=float)
    return {s: _anchor(m, means[s].to_numpy(dtype=float), targets) for s in means.columns}


def _bootstrap_predictions(
    results: pd.DataFrame, targets: np.ndarray, n_boot: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Point predictions (subset -> (targets,)) and bootstrap draws (subset -> (B, targets))
    of the anchored curves, resampling whole splits (the same resample for every subset).

    A resample's mean risk per (m, subset) is that of every row of the drawn splits, a
    split drawn twice counting twice: sums and counts per (split, m, subset) weighted by
    how often each split is drawn (the rows of ``_mean_table`` over the drawn splits, in
    one product instead of a table per resample). As there, a NaN risk is skipped, a
    cell with none but NaN risks is NaN, and a size is kept when the drawn splits have any
    row at it."""
    split_ids = np.sort(results.split.unique())
    means = _mean_table(results)
    point = _anchored(means, targets)
    cells = results.groupby(["split", "m", "subset"]).risk.agg(["sum", "count", "size"])
    full = pd.MultiIndex.from_product([split_ids, means.index, means.columns])
    cells = cells.reindex(full, fill_value=0)
    shape = (len(split_ids), len(means.index), len(means.columns))
    sums, counts, sizes = (cells[c].to_numpy(dtype=float).reshape(shape) for c in cells)
    m = means.index.to_numpy(dtype=float)
    rng = as_generator(seed, "curve-bootstrap")
    draws = np.empty((len(means.columns), n_boot, len(targets)))
    for b in range(n_boot):
        pick = rng.choice(split_ids, size=len(split_ids), replace=True)
        times = np.bincount(np.searchsorted(split_ids, pick), minlength=len(split_ids))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.tensordot(times, sums, 1) / np.tensordot(times, counts, 1)
        rows = np.tensordot(times, sizes, 1).any(1)  # sizes with rows (the table's index)
        for k in range(len(means.columns)):
            draws[k, b] = _anchor(m[rows], mean_b[rows, k], targets)
    return point, {s: draws[k] for k, s in enumerate(means.columns)}


def subset_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Per subset: the fitted (e, a, alpha) and, per measured m, the mean risk and the
    curve's value there (long format: subset, m, risk, fitted, e, a, alpha)."""
    means = _mean_table(results)
    params = _curve_params(means)
    rows = []
    for s in means.columns:
        e, a, alpha = params[s]
        for m in means.index:
            rows.append(
                {
                    "subset": s,
                    "n_modalities": len(label_names(s)),
                    "m": int(m),
                    "risk": float(means.loc[m, s]),
                    "fitted": float(power_law(m, e, a, alpha)),
                    "e": e,
                    "a": a,
                    "alpha": alpha,
                }
            )
    return pd.DataFrame(rows)


def adding_table(
    results: pd.DataFrame,
    test_fraction: float,
    *,
    factors: Sequence[float] = FACTORS,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """For each modality X and subset S without X (S may not be empty), the change in risk
    of adding X at ``factor`` x the largest measured m. factor 1 is measured (paired over
    splits); larger factors are extrapolated (``extrapolated`` True), their interval the
    bootstrap over splits of the fitted curves widened by the split-overlap correction.
    With fewer than :data:`MIN_SIZES` measured sizes no curve can be fitted, so only
    factor 1 is reported (extrapolating a constant would claim the change stays as it is
    now, which nothing measured supports)."""
    if results.m.nunique() < MIN_SIZES:
        factors = [f for f in factors if f == 1]
    subsets = list(results.subset.unique())
    universe = tuple(dict.fromkeys(n for s in subsets for n in label_names(s)))
    m_now = int(results.m.max())
    targets = np.array([f * m_now for f in factors], dtype=float)
    point, draws = (
        _bootstrap_predictions(results, targets, n_boot, seed)
        if any(f != 1 for f in factors)
        else ({}, {})
    )
    piv = _pivot(results, m_now)
    J = piv.shape[0]
    # the split-overlap correction, then the expanded percentile interval (Hesterberg
    # 2015): a bootstrap over J splits underestimates the spread by sqrt((J-1)/J) and uses
    # normal instead of t quantiles; with 3 splits the plain percentile interval covered
    # the true change in 72-87% of cases (benchmarks/diagnose_accuracy-3.md)
    widen = np.sqrt(1.0 + J * test_fraction / (1.0 - test_fraction))
    if J > 1:
        widen *= np.sqrt(J / (J - 1)) * stats.t.ppf(0.975, J - 1) / stats.norm.ppf(0.975)
    rows = []
    for x in universe:
        for s in subsets:
            names = label_names(s)
            if x in names:
                continue
            big = join_label(n for n in universe if n in names or n == x)
            if big not in subsets:
                continue
            for j, f in enumerate(factors):
                if f == 1:
                    d, lo, hi = corrected_interval(piv[big] - piv[s], test_fraction)
                else:
                    d = float(point[big][j] - point[s][j])
                    boot = draws[big][:, j] - draws[s][:, j]
                    qlo, qhi = np.quantile(boot, [0.025, 0.975])
                    lo, hi = d + widen * (qlo - d), d + widen * (qhi - d)
                rows.append(
                    {
                        "modality": x,
                        "to": s,
                        "with": big,
                        "factor": f,
                        "m": int(round(f * m_now)),
                        "extrapolated": f != 1,
                        "change": d,
                        "ci_low": float(lo),
                        "ci_high": float(hi),
                        "verdict": verdict(float(lo), float(hi)),
                    }
                )
    return pd.DataFrame(rows)


def contributions(results: pd.DataFrame, test_fraction: float) -> pd.DataFrame:
    """Shapley value of each modality in the game v(S) = baseline risk - risk(S) at the
    largest m (v(empty) = 0), per split, then mean and interval over splits. The values of
    all modalities add up to the full set's risk reduction."""
    m_now = results.m.max()
    at = results[results.m == m_now]
    subsets = list(at.subset.unique())
    universe = tuple(dict.fromkeys(n for s in subsets for n in label_names(s)))
    K = len(universe)
    per_split = []
    for _, g in at.groupby("split"):
        v = np.zeros(2**K)
        risk = dict(zip(g.subset, g.risk))
        base = float(g.baseline_risk.iloc[0])
        for c in range(1, 2**K):
            label = join_label(universe[i] for i in range(K) if c >> i & 1)
            v[c] = base - risk.get(label, np.nan)
        per_split.append(shapley(v))
    phi = np.asarray(per_split)
    rows = []
    for i, x in enumerate(universe):
        mean, lo, hi = corrected_interval(phi[:, i], test_fraction)
        rows.append({"modality": x, "m": int(m_now), "shapley": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)
