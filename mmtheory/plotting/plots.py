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

from mmtheory.core.subsets import label_size  # noqa: E402
from mmtheory.theory.statistics import mean_ci  # noqa: E402

__all__ = [
    "plot_overlap_mse",
    "plot_accuracy_vs_ratio",
    "plot_eta_vs_rho",
    "plot_mstar_vs_rho",
    "plot_bounds",
    "palette",
]


def palette(n: int):
    """n distinct colours: seaborn's colour-blind palette up to its 10, else n evenly
    spaced hues (the colour-blind one would repeat: two lines, one colour)."""
    return sns.color_palette("colorblind" if n <= 10 else "husl", n)


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
            ax.plot(
                ref.n_modalities,
                ref.paper_mse,
                linestyle="none",
                marker="x",
                color="black",
                markersize=8,
                markeredgewidth=1.2,
                zorder=5,
            )
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


def plot_accuracy_vs_ratio(
    table: pd.DataFrame,
    ax=None,
    *,
    total: int | None = None,
    metric: str = "test_accuracy",
    subsets: list[str] | None = None,
):
    """Fig. 2a analogue: test accuracy against training-sample ratio (log x), 95% CI bands.

    table : rows with ``subset``, ``m``, ``metric`` (one per seed).
    total : the full training-set size (x = m / total); default the largest m.
    """
    ax = ax or plt.gca()
    total = total or int(table.m.max())
    names = subsets or sorted(table.subset.unique(), key=lambda s: (label_size(s), s))
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
    ax.legend(title="modalities", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_eta_vs_rho(eta: pd.DataFrame, ax=None):
    """Exact large-sample eta_inf(M) against the correlation rho, one line per subset."""
    ax = ax or plt.gca()
    subsets = sorted(eta.subset.unique(), key=lambda s: (label_size(s), s))
    for colour, sub in zip(palette(len(subsets)), subsets):
        g = eta[eta.subset == sub].sort_values("rho")
        ax.plot(
            g.rho,
            g.eta_inf,
            "-o",
            color=colour,
            markersize=4,
            label=f"{sub} (|M| = {label_size(sub)})",
        )
    ax.set_xlabel("correlation between modalities rho")
    ax.set_ylabel("eta_inf(M) (excess squared risk)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_mstar_vs_rho(mstar: pd.DataFrame, ax=None):
    """Crossover sample size m* (the pair starts to beat the clean modality for good) against
    rho: measured (last crossing, interval over seeds; an open end where the interval is
    censored by the grid) and, when present, the exact prediction of least-squares theory
    (``m_star_predicted``). rho values with no measured crossing are marked at the axis."""
    ax = ax or plt.gca()
    colour = palette(2)
    ok = mstar.dropna(subset=["m_star"])
    lo = ok.ci_low.fillna(ok.m_star)
    hi = ok.ci_high.fillna(ok.m_star)
    ax.errorbar(
        ok.rho,
        ok.m_star,
        yerr=[ok.m_star - lo, hi - ok.m_star],
        fmt="o",
        color=colour[0],
        capsize=3,
        markersize=5,
        label="measured (95% interval)",
    )
    if "m_star_predicted" in mstar:
        pred = mstar[np.isfinite(mstar.m_star_predicted)]
        ax.plot(
            pred.rho,
            pred.m_star_predicted,
            "--x",
            color=colour[1],
            markersize=6,
            label="predicted (least-squares theory)",
        )
    none = mstar[mstar.m_star.isna()]
    for r in none.rho:
        ax.annotate(
            "none",
            (r, 0.04),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=8,
            color="0.3",
        )
        ax.axvline(r, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlim(min(mstar.rho) - 0.05, max(mstar.rho) + 0.05)
    ax.set_yscale("log")
    ax.set_xlabel("correlation between modalities rho")
    ax.set_ylabel("crossover sample size m*")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_bounds(summary: pd.DataFrame, axes=None):
    """Theorem 1 and 2: right sides against the measured left sides over m (log axes)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    c = palette(2)
    a1, a2 = axes
    a1.plot(
        summary.m, summary.thm1_rhs, "-o", color=c[0], markersize=4, label="Theorem 1 right side"
    )
    a1.plot(
        summary.m,
        summary.thm1_lhs.abs(),
        "--s",
        color=c[1],
        markersize=4,
        label="|r_M - r_N| measured (mean)",
    )
    a2.plot(
        summary.m, summary.thm2_rhs, "-o", color=c[0], markersize=4, label="Theorem 2 right side"
    )
    a2.plot(
        summary.m,
        summary.thm2_lhs,
        "--s",
        color=c[1],
        markersize=4,
        label="eta(g_M) measured (mean)",
    )
    for ax, title, col in (
        (a1, "Theorem 1", "thm1_violation_rate"),
        (a2, "Theorem 2", "thm2_violation_rate"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training samples m")
        ax.set_ylabel("squared risk")
        worst = summary[col].max()
        ax.set_title(f"{title}: worst violation rate {worst:.3f}", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3, which="both")
    return axes
