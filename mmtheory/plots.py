"""Plot functions: tidy data in, axes out. They neither show nor save.

Colour-blind-safe palette (seaborn "colorblind"), labelled axes with units, log axes
where the paper uses them.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

__all__ = ["mean_ci", "plot_overlap_mse", "plot_accuracy_vs_ratio", "palette"]


def palette(n: int):
    return sns.color_palette("colorblind", n)


def mean_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval over seeds (the variation between seeds:
    training sample, initialisation and minibatch order)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return mean, mean - half, mean + half


def plot_overlap_mse(table: pd.DataFrame, ax=None, *, paper: pd.DataFrame | None = None):
    """Fig. 2b: latent-quality MSE against the number of modalities, one line per overlap.

    table : rows with ``overlap``, ``n_modalities`` and ``test_risk`` (one per seed).
    paper : optional rows with ``overlap``, ``n_modalities``, ``paper_mse`` (drawn as markers).
    """
    ax = ax or plt.gca()
    overlaps = sorted(table.overlap.unique(), reverse=True)
    colours = palette(len(overlaps))
    for colour, w in zip(colours, overlaps):
        sub = table[table.overlap == w]
        agg = sub.groupby("n_modalities").test_risk.apply(mean_ci)
        k = agg.index.to_numpy()
        mean = np.array([v[0] for v in agg])
        lo, hi = np.array([v[1] for v in agg]), np.array([v[2] for v in agg])
        ax.plot(k, mean, "-o", color=colour, markersize=4, label=f"overlap {w:g}")
        ax.fill_between(k, lo, hi, color=colour, alpha=0.2, linewidth=0)
        if paper is not None:
            ref = paper[paper.overlap == w].sort_values("n_modalities")
            ax.plot(ref.n_modalities, ref.paper_mse, linestyle="none", marker="x", color="black",
                    markersize=8, markeredgewidth=1.2, zorder=5)
    ax.set_xlabel("number of modalities |M| (added cumulatively)")
    ax.set_ylabel("latent MSE (sum over 100 dims)")
    ax.set_xticks(sorted(table.n_modalities.unique()))
    handles, labels = ax.get_legend_handles_labels()
    if paper is not None:
        handles.append(plt.Line2D([], [], linestyle="none", marker="x", color="black"))
        labels.append("paper (Table 4)")
    ax.legend(handles, labels, frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_accuracy_vs_ratio(table: pd.DataFrame, ax=None, *, total: int | None = None,
                           metric: str = "test_accuracy", subsets: list[str] | None = None):
    """Fig. 2a analogue: test accuracy against training-sample ratio (log x), 95% CI bands.

    table : rows with ``subset``, ``m``, ``metric`` (one per seed).
    total : the full training-set size (x = m / total); default the largest m.
    """
    ax = ax or plt.gca()
    total = total or int(table.m.max())
    names = subsets or sorted(table.subset.unique(), key=lambda s: (s.count("+"), s))
    colours = palette(len(names))
    for colour, name in zip(colours, names):
        sub = table[table.subset == name]
        agg = sub.groupby("m")[metric].apply(mean_ci)
        x = agg.index.to_numpy() / total
        mean = np.array([v[0] for v in agg])
        lo, hi = np.array([v[1] for v in agg]), np.array([v[2] for v in agg])
        ax.plot(x, 100 * mean, "-o", color=colour, markersize=4, label=name)
        ax.fill_between(x, 100 * lo, 100 * hi, color=colour, alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel(f"training-sample ratio (fraction of {total:,} samples)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(title="modalities", frameon=False, ncol=2)
    ax.grid(alpha=0.3, which="both")
    return ax
