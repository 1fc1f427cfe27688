"""Theory drawn over measurement: risk curves with their predictions, phase diagrams with
the predicted boundary, double descent. Tidy tables in, axes out; predictions are drawn
only where their regime is not "none" (never across the interpolation threshold).
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd

from mmtheory.core.subsets import label_size
from mmtheory.plotting.plots import palette, plt

__all__ = ["plot_phase", "plot_risk_vs_predicted"]

_REGIME_STYLE = {"exact": "-", "approximate": "--", "plug-in": ":"}


def _segments(x: np.ndarray, y: np.ndarray, regime: np.ndarray):
    """Runs of consecutive points sharing one drawable regime."""
    start = 0
    for i in range(1, len(x) + 1):
        if i == len(x) or regime[i] != regime[start]:
            if regime[start] in _REGIME_STYLE and np.isfinite(y[start:i]).any():
                yield x[start:i], y[start:i], regime[start]
            start = i


def plot_risk_vs_predicted(table: pd.DataFrame, ax=None, *, subsets=None, logy: bool = True):
    """Measured mean test risk over seeds with its 95% interval (markers, band) and the
    predicted expected risk (lines: solid exact, dashed approximate, dotted plug-in), one
    colour per subset. ``table``: :func:`mmtheory.theory.versus.risk_vs_measured` rows of
    one world and learner."""
    ax = ax or plt.gca()
    labels = subsets or sorted(table.subset.unique(), key=lambda s: (label_size(s), s))
    for colour, sub in zip(palette(len(labels)), labels, strict=False):
        g = table[table.subset == sub].sort_values("m")
        m = g.m.to_numpy(float)
        ax.errorbar(
            m,
            g.test_risk_measured,
            yerr=[
                g.test_risk_measured - g.test_risk_ci_low,
                g.test_risk_ci_high - g.test_risk_measured,
            ],
            fmt="o",
            markersize=3,
            capsize=2,
            color=colour,
            label=f"{sub} measured",
        )
        for xs, ys, regime in _segments(
            m, g.test_risk_predicted.to_numpy(float), g.regime.to_numpy(str)
        ):
            ax.plot(xs, ys, _REGIME_STYLE[regime], color=colour, linewidth=1.3)
    for regime, style in _REGIME_STYLE.items():
        if (table.regime == regime).any():
            ax.plot([], [], style, color="0.3", label=f"predicted ({regime})")
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training samples m")
    ax.set_ylabel("test risk (MSE)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    return ax


_PHASE_COLOURS = {
    "larger better": palette(3)[2],
    "smaller better": palette(3)[1],
    "inconclusive": (0.85, 0.85, 0.85),
}


def plot_phase(
    phase: pd.DataFrame,
    boundary: pd.DataFrame | None,
    by: str,
    ax=None,
    *,
    ylabel: str | None = None,
):
    """A phase diagram over (m, ``by``): each measured cell coloured by which subset is
    significantly better (grey: inconclusive), with the predicted boundary m*(``by``)
    drawn on top (``boundary``: columns ``by`` and ``m_star``; infinite m* not drawn)."""
    ax = ax or plt.gca()
    values = np.sort(phase[by].unique())
    sizes = np.sort(phase.m.unique())
    order = list(_PHASE_COLOURS)
    grid = np.full((len(values), len(sizes)), np.nan)
    vi = {v: i for i, v in enumerate(values)}
    mi = {m: j for j, m in enumerate(sizes)}
    for r in phase.itertuples():
        grid[vi[getattr(r, by)], mi[r.m]] = order.index(r.phase)

    def edges(c: np.ndarray, log: bool) -> np.ndarray:
        t = np.log(c) if log else c.astype(float)
        if len(t) == 1:
            e = np.array([t[0] - 0.5, t[0] + 0.5])
        else:
            mid = (t[1:] + t[:-1]) / 2
            e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
        return np.exp(e) if log else e

    cmap = mcolors.ListedColormap([_PHASE_COLOURS[k] for k in order])
    ax.pcolormesh(
        edges(sizes, True),
        edges(values, False),
        grid,
        cmap=cmap,
        vmin=-0.5,
        vmax=len(order) - 0.5,
        shading="flat",
    )
    if boundary is not None and len(boundary):
        b = boundary[np.isfinite(boundary.m_star)].sort_values(by)
        ax.plot(b.m_star, b[by], "-", color="black", linewidth=1.6, label="predicted m*")
    for label in order:
        ax.fill_between([], [], color=_PHASE_COLOURS[label], label=f"measured: {label}")
    ax.set_xscale("log")
    ax.set_xlim(sizes.min() * 0.8, sizes.max() * 1.25)
    ax.set_xlabel("training samples m")
    ax.set_ylabel(ylabel or by)
    ax.legend(fontsize=7, frameon=True, loc="lower right")
    return ax
