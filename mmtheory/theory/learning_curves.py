"""Learning curves r_S(m) = e_S + a_S m^(-alpha_S) fit to measured risks, their
extrapolation, and intervals over repeated splits.

An extrapolation is anchored at the measurement: the risk at f x m_now is the measured
mean at m_now plus the fitted curve's change from m_now to f m_now, so that the fit's
misfit at the measured sizes never shows up as a predicted change.

Intervals over splits use the corrected resampled t statistic (Nadeau and Bengio 2003):
shuffle splits share rows, so the spread of per-split scores understates the variance; the
corrected variance is (1/J + n_test/n_train) s^2 for J splits. Extrapolations beyond the
largest measured m carry the bootstrap over splits of the whole fit (every curve refit on
each resample of splits, the same resample for every subset, so differences are paired).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "power_law",
    "fit_power_law",
    "corrected_interval",
    "ALPHA_RANGE",
    "MIN_SIZES",
    "too_few_sizes",
]

#: Measured sizes a learning curve needs: three parameters (e, a, alpha) need three points;
#: with fewer, :func:`fit_power_law` returns a constant and nothing may be extrapolated.
MIN_SIZES = 3


def too_few_sizes(n_sizes: int) -> str:
    """Why nothing is extrapolated from ``n_sizes`` measured sizes ("" when a curve fits),
    for the reports, the screen and the figure."""
    if n_sizes >= MIN_SIZES:
        return ""
    return (
        f"nothing extrapolated: a learning curve needs {MIN_SIZES} or more sizes, "
        f"this run measured {n_sizes}"
    )


#: Bounds on the exponent alpha of a fitted learning curve.
ALPHA_RANGE = (0.05, 2.0)
_ALPHAS = np.geomspace(*ALPHA_RANGE, 60)


def power_law(m, e: float, a: float, alpha: float):
    """e + a m^(-alpha)."""
    return e + a * np.asarray(m, dtype=float) ** (-alpha)


def fit_power_law(m, r) -> tuple[float, float, float]:
    """(e, a, alpha) of the least-squares power law through the points (m, r) with e >= 0,
    a >= 0 and alpha in :data:`ALPHA_RANGE`: for each alpha on a fine grid, (e, a) is a
    non-negative least-squares problem; the best alpha wins (deterministic, no start
    values). Two or fewer points, or a flat curve, give the constant curve e = mean(r)."""
    m = np.asarray(m, dtype=float)
    r = np.asarray(r, dtype=float)
    if len(m) < MIN_SIZES or np.ptp(r) == 0:
        return float(r.mean()), 0.0, 1.0
    # two-variable non-negative least squares, for every alpha at once: the minimum is the
    # unconstrained one when feasible, else on an edge (e = 0 or a = 0)
    X = m[None, :] ** (-_ALPHAS[:, None])  # (alphas, points)
    n = len(m)
    sx, sxx, sr, sxr = X.sum(1), (X * X).sum(1), r.sum(), X @ r
    det = n * sxx - sx**2
    with np.errstate(divide="ignore", invalid="ignore"):
        e_free = (sxx * sr - sx * sxr) / det
        a_free = (n * sxr - sx * sr) / det
    cands = [
        (np.where((e_free >= 0) & (a_free >= 0) & (det > 0), e_free, np.nan), a_free),
        (np.zeros_like(sx), np.maximum(sxr / sxx, 0.0)),
        (np.full_like(sx, max(sr / n, 0.0)), np.zeros_like(sx)),
    ]
    best = (np.inf, float(r.mean()), 0.0, 1.0)
    for e, a in cands:
        sse = ((e[:, None] + a[:, None] * X - r[None, :]) ** 2).sum(1)
        sse = np.where(np.isfinite(sse), sse, np.inf)
        i = int(np.argmin(sse))
        if sse[i] < best[0] - 1e-15:
            best = (float(sse[i]), float(e[i]), float(a[i]), float(_ALPHAS[i]))
    return best[1], best[2], best[3]


def corrected_interval(
    values, test_fraction: float, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean over J splits and the corrected resampled t-interval (module docstring);
    NaN bounds for a single split; the point when there is no spread."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size == 1:
        return mean, np.nan, np.nan
    ratio = test_fraction / (1.0 - test_fraction)
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * np.sqrt(
        (1.0 / v.size + ratio) * v.var(ddof=1)
    )
    return mean, mean - half, mean + half
