"""Plots of learning dynamics against their closed forms: tidy tables in, axes out.

The tables are those ``mmtheory dynamics`` writes: ``dynamics.csv`` (one row per trained
group, predicted and measured quantities) and ``trajectories.csv`` (one row per group and
recorded step).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.plotting.plots import palette, plt
from mmtheory.theory.dynamics import misattribution_scalar, time_ratio_scalar

__all__ = [
    "plot_branch_losses",
    "plot_fusion_depth",
    "plot_multidim",
    "plot_misattribution",
    "plot_time_ratio",
    "plot_weight_trajectories",
]


def plot_weight_trajectories(
    trajectories: pd.DataFrame, table: pd.DataFrame, groups: list[int], ax=None
):
    """Measured effective weights of both modalities against the step, one colour
    per group; the predicted plateau (the least-squares weight on the first modality alone)
    dotted, the predicted time of the second modality (t_first times the predicted ratio)
    as a dashed vertical line.

    trajectories : rows with ``group``, ``step``, ``w_first``, ``w_second``
    table : rows with ``group``, ``rho``, ``sigma_ratio``, ``t_first``, ``t_second``,
        ``time_ratio_predicted``, ``plateau_first_predicted``
    """
    ax = ax or plt.gca()
    colours = palette(len(groups))
    for colour, g in zip(colours, groups):
        row = table[table.group == g].iloc[0]
        tr = trajectories[(trajectories.group == g) & (trajectories.step > 0)]
        label = f"rho={row.rho:g}, sigma_A/sigma_B={row.sigma_ratio:g}"
        ax.plot(tr.step, tr.w_first, "-", color=colour, lw=1.6, label=label)
        ax.plot(tr.step, tr.w_second, "--", color=colour, lw=1.6)
        ax.axhline(row.plateau_first_predicted, color=colour, ls=":", lw=1.0)
        ax.axvline(row.t_first * row.time_ratio_predicted, color=colour, ls="--", lw=0.8)
        ax.plot([row.t_first], [0.5 * row.plateau_first_predicted], "o", color=colour, ms=4)
        ax.plot([row.t_second], [0.5 * tr.w_second.iloc[-1]], "s", color=colour, ms=4)
    shown = table[table.group.isin(groups)]
    end = float((shown.t_first * shown.time_ratio_predicted).max())
    ax.set_xlim(0, 1.35 * max(end, float(shown.t_second.max())))
    ax.set_xlabel("gradient step")
    ax.set_ylabel("effective weight (solid: A, dashed: B)")
    handles, labels = ax.get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color="grey", ls=":", lw=1.0),
        plt.Line2D([], [], color="grey", ls="--", lw=0.8),
    ]
    labels += ["predicted plateau (LS on {A})", "predicted t_B = t_A x ratio"]
    top = float(max(trajectories[trajectories.group.isin(groups)].w_first.max(), 1.0))
    ax.set_ylim(top=1.5 * top)
    ax.legend(handles, labels, frameon=False, fontsize=7, ncol=2, loc="upper center")
    ax.grid(alpha=0.3)
    return ax


def _by_grid(table: pd.DataFrame, column: str) -> pd.DataFrame:
    return (
        table.groupby(["sigma_ratio", "rho"])[column]
        .agg(["mean", "sem", "count"])
        .reset_index()
        .fillna({"sem": 0.0})
    )


def plot_time_ratio(table: pd.DataFrame, ax=None):
    """t_B / t_A against rho, one colour per sigma_A / sigma_B: the closed form
    1 + (k - 1) / (1 - rho^2) as lines, the measured ratios (mean over seeds, with their
    standard errors) as markers; log axis.

    table : rows with ``rho``, ``sigma_ratio`` and ``time_ratio_measured``
    """
    ax = ax or plt.gca()
    ratios = sorted(table.sigma_ratio.unique())
    lo, hi = table.rho.min(), table.rho.max()
    dense = np.linspace(min(lo, -0.05) - 0.05, max(hi, 0.05) + 0.05, 200)
    agg = _by_grid(table, "time_ratio_measured")
    for colour, q in zip(palette(len(ratios)), ratios):
        ax.plot(dense, [time_ratio_scalar(q, 1.0, r) for r in dense], "-", color=colour, lw=1.2)
        sub = agg[agg.sigma_ratio == q]
        ax.errorbar(
            sub.rho,
            sub["mean"],
            yerr=sub["sem"],
            fmt="o",
            color=colour,
            mfc="none",
            ms=6,
            label=f"sigma_A/sigma_B = {q:g}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("correlation rho")
    ax.set_ylabel("time ratio t_B / t_A")
    ax.legend(frameon=False, fontsize=8, title="lines: theory, o: measured", title_fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _plain_log_ticks(ax)
    return ax


def plot_misattribution(table: pd.DataFrame, ax=None):
    """W_A(plateau) - W_A(final) against rho: rho sigma_B / sigma_A as lines, measured as
    markers, one colour per sigma_A / sigma_B.

    table : rows with ``rho``, ``sigma_ratio`` and ``misattribution_measured``
    """
    ax = ax or plt.gca()
    ratios = sorted(table.sigma_ratio.unique())
    dense = np.linspace(table.rho.min() - 0.05, table.rho.max() + 0.05, 100)
    agg = _by_grid(table, "misattribution_measured")
    for colour, q in zip(palette(len(ratios)), ratios):
        ax.plot(dense, [misattribution_scalar(q, 1.0, r) for r in dense], "-", color=colour)
        sub = agg[agg.sigma_ratio == q]
        ax.plot(sub.rho, sub["mean"], "o", color=colour, mfc="none", ms=6, label=f"{q:g}")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("correlation rho")
    ax.set_ylabel("misattribution W_A(plateau) - W_A(final)")
    ax.legend(frameon=False, fontsize=8, title="sigma_A/sigma_B", title_fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_fusion_depth(depth: pd.DataFrame, ax=None):
    """t_B / t_A against the fusion layer L_f, one colour per rho: the theory as lines
    (1 at early fusion, the closed form at the last layer, the integral in between), the
    measured ratios (mean over seeds) as markers; log axis.

    depth : rows with ``fuse``, ``rho``, ``time_ratio_predicted``, ``time_ratio_measured``
    """
    ax = ax or plt.gca()
    rhos = sorted(depth.rho.unique())
    for colour, rho in zip(palette(len(rhos)), rhos):
        sub = depth[depth.rho == rho].groupby("fuse")
        pred, meas = sub.time_ratio_predicted.first(), sub.time_ratio_measured.mean()
        ax.plot(pred.index, pred.to_numpy(), "-", color=colour, lw=1.2)
        ax.plot(meas.index, meas.to_numpy(), "o", color=colour, mfc="none", label=f"rho={rho:g}")
    L = int(depth.layers.max())
    ax.set_xticks(range(1, L + 1))
    ax.set_xticklabels(
        [f"{f}" + ("\nearly" if f == 1 else "\nlate" if f == L else "") for f in range(1, L + 1)]
    )
    ax.set_yscale("log")
    ax.set_xlabel(f"fusion layer L_f (of L = {L})")
    ax.set_ylabel("time ratio t_B / t_A")
    ax.legend(frameon=False, fontsize=8, title="lines: theory, o: measured", title_fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _plain_log_ticks(ax)
    return ax


def _plain_log_ticks(ax) -> None:
    """Plain numbers on a log y axis (2, 5, 10 rather than 2 x 10^0)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def plot_multidim(multidim: pd.DataFrame, ax=None):
    """Measured against predicted time ratio of multi-dimensional worlds (one marker per
    world, coloured by the alignment of Sigma_yB with B's plateau residual), the diagonal
    and +-10% about it.

    multidim : rows with ``time_ratio_predicted``, ``time_ratio_measured``, ``alignment``
    """
    ax = ax or plt.gca()
    pred, meas = multidim.time_ratio_predicted, multidim.time_ratio_measured
    hi = 1.15 * float(max(pred.max(), meas.max()))
    line = np.linspace(1.0, hi, 50)
    ax.plot(line, line, "-", color="black", lw=0.8)
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="grey", alpha=0.2, lw=0, label="+-10%")
    points = ax.scatter(pred, meas, c=multidim.alignment, cmap="viridis", vmin=0, vmax=1, s=28)
    plt.colorbar(points, ax=ax, label="alignment cos(Sigma_yB, residual)")
    ax.set_xlim(1.0, hi)
    ax.set_ylim(1.0, hi)
    ax.set_xlabel("t_B / t_A theory (moment form)")
    ax.set_ylabel("t_B / t_A measured")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return ax


def plot_branch_losses(trajectories: pd.DataFrame, group: int, ax=None):
    """Training loss of one group's two-modality model and of each branch alone (the
    model with the other modality's branch removed) against the step; log loss axis.

    trajectories : rows with ``group``, ``step``, ``loss``, ``branch_loss_first``,
        ``branch_loss_second``
    """
    ax = ax or plt.gca()
    tr = trajectories[trajectories.group == group]
    colours = palette(3)
    ax.plot(tr.step, tr.loss, "-", color=colours[0], lw=1.8, label="model (A and B)")
    ax.plot(tr.step, tr.branch_loss_first, "--", color=colours[1], label="branch A alone")
    ax.plot(tr.step, tr.branch_loss_second, ":", color=colours[2], lw=1.8, label="branch B alone")
    ax.set_yscale("log")
    start = float(tr.loss.iloc[0])
    ax.set_ylim(bottom=max(float(tr.loss.min()), 1e-6 * start) / 2)  # past 1e-6: convergence
    ax.set_xlabel("gradient step")
    ax.set_ylabel("training loss")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax
