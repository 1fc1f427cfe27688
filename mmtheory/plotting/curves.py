"""Per-subset learning curves of a real-data run: measured mean risks, the fitted power law,
and its extrapolation (dashed, on a shaded band) beyond the largest measured size."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter, ScalarFormatter

from mmtheory.core.subsets import label_size
from mmtheory.plotting.plots import palette, plt
from mmtheory.theory.learning_curves import power_law, too_few_sizes

__all__ = ["plot_subset_curves", "plot_sweep_subsets", "curve_subsets"]


def curve_subsets(table: pd.DataFrame, most: int = 8, *, column: str = "risk") -> list[str]:
    """The subsets worth drawing from a long table (subset, m, ``column``; lower is
    better): the best by mean ``column`` at the largest m, then every single modality
    (those measured there by that mean, then any other), up to ``most`` curves in all (the
    best first; with ``most`` or more single modalities, the last singles are cut)."""
    at = table[table.m == table.m.max()].groupby("subset")[column].mean().sort_values()
    singles = [s for s in at.index if label_size(s) == 1]
    singles += [s for s in dict.fromkeys(table.subset) if label_size(s) == 1 and s not in singles]
    keep = list(dict.fromkeys(list(at.index[: max(most - len(singles), 1)]) + singles))
    return keep[:most] if len(keep) > most else keep


def plot_subset_curves(
    curves: pd.DataFrame,
    ax=None,
    *,
    metric: str = "error",
    extrapolate: float = 10.0,
    subsets: list[str] | None = None,
):
    """Draw the table of ``theory.diagnosis.subset_curves``: points are measured means,
    solid lines the fitted r_S(m) over the measured sizes, dashed lines its extrapolation
    up to ``extrapolate`` x the largest size, anchored at the last measured mean (as
    ``theory.diagnosis`` extrapolates). With too few sizes (``too_few_sizes``) there is no
    curve: the means are joined, nothing is extrapolated, and the axes say so. Returns the
    axes."""
    ax = ax or plt.gca()
    subsets = subsets or curve_subsets(curves)
    m_max = float(curves.m.max())
    m_min = float(curves.m.min())
    scale = 100.0 if metric == "error" else 1.0
    note = too_few_sizes(curves.m.nunique())
    fitted = not note
    for colour, s in zip(palette(len(subsets)), subsets):
        g = curves[curves.subset == s].sort_values("m")
        if not fitted:
            ax.plot(g.m, scale * g.risk, "o-", color=colour, markersize=4, label=s)
            continue
        e, a, alpha = g[["e", "a", "alpha"]].iloc[0]
        ax.plot(g.m, scale * g.risk, "o", color=colour, markersize=4)
        inside = np.geomspace(m_min, m_max, 50)
        beyond = np.geomspace(m_max, extrapolate * m_max, 30)
        ax.plot(inside, scale * power_law(inside, e, a, alpha), "-", color=colour, label=s)
        anchored = g.risk.iloc[-1] + power_law(beyond, e, a, alpha) - power_law(m_max, e, a, alpha)
        ax.plot(beyond, scale * anchored, "--", color=colour)
    if not fitted:
        extrapolate = 1.0
        ax.text(
            0.02,
            0.02,
            "no curve fitted, " + note.replace(": ", ":\n"),
            transform=ax.transAxes,
            fontsize=8,
            color="0.35",
        )
    if extrapolate > 1:
        ax.axvspan(m_max, extrapolate * m_max, color="0.92", zorder=0)
        ax.text(
            m_max * 1.05,
            0.98,
            "extrapolated",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color="0.35",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v:.0f}%" if metric == "error" else f"{v:.3g}")
    )
    if not fitted:  # within a decade or two: label the measured sizes themselves
        ax.set_xticks(sorted(float(v) for v in curves.m.unique()))
    ax.set_xlabel("training samples m (log scale)")
    ax.set_ylabel("test error (%)" if metric == "error" else "test mean squared error")
    ax.grid(alpha=0.3, which="major")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return ax


def plot_sweep_subsets(
    results: pd.DataFrame, ax=None, *, column: str = "test_risk", subsets: list[str] | None = None
):
    """Any sweep's results.csv: ``column`` against m per subset (``subsets``, default
    all), the mean over seeds with a 95% t-interval band (log x axis with plain tick
    labels). Returns the axes."""
    from mmtheory.theory.statistics import mean_ci

    ax = ax or plt.gca()
    subsets = subsets or list(dict.fromkeys(results.subset))
    for colour, s in zip(palette(len(subsets)), subsets):
        g = results[results.subset == s]
        stats = [(m, *mean_ci(gm[column])) for m, gm in g.groupby("m")]
        m, mean, lo, hi = (np.array(v, dtype=float) for v in zip(*stats))
        ax.plot(m, mean, "-o", color=colour, markersize=3, label=s)
        ok = np.isfinite(lo)
        ax.fill_between(m[ok], lo[ok], hi[ok], color=colour, alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training samples m (log scale)")
    ax.set_ylabel(column.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return ax
