"""Plots of the contribution games and the PID check: tidy tables in, axes out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.plotting.plots import palette, plt

__all__ = ["plot_imbalance_gaps", "plot_pid_estimates"]


def plot_imbalance_gaps(table: pd.DataFrame, ax=None):
    """The imbalance score of every (dataset, modality): retrain-Shapley minus
    reliance-Shapley, mean over seeds with its 95% interval; flagged modalities filled.

    table : rows of ``imbalance.csv`` for one mask and value (columns ``dataset``,
        ``modality``, ``gap``, ``ci_low``, ``ci_high``, ``flagged``; ``learner`` names the
        rows of a dataset with several learners).
    """
    ax = ax or plt.gca()
    rows = table.reset_index(drop=True)
    datasets = list(dict.fromkeys(rows.dataset))
    colours = dict(zip(datasets, palette(len(datasets))))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows.itertuples()):
        c = colours[r.dataset]
        err = [[r.gap - r.ci_low], [r.ci_high - r.gap]] if np.isfinite(r.ci_low) else None
        ax.errorbar(
            r.gap,
            yi,
            xerr=err,
            fmt="o",
            color=c,
            mfc=c if r.flagged else "white",
            capsize=2,
            markersize=5,
        )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y)
    several = rows.groupby("dataset").learner.nunique() > 1 if "learner" in rows else {}
    ax.set_yticklabels(
        [
            f"{r.dataset} ({r.learner}): {r.modality}"
            if several.get(r.dataset, False)
            else f"{r.dataset}: {r.modality}"
            for r in rows.itertuples()
        ],
        fontsize=8,
    )
    ax.set_xlabel("imbalance score: phi(retrain) - phi(masked), nats")
    return ax


def plot_pid_estimates(table: pd.DataFrame, ax=None, *, estimator: str = "mmi_plugin"):
    """Estimated against exact PID atoms, one colour per atom, the diagonal for reference.

    table : rows of ``pid.csv`` (columns ``estimator``, ``atom``, ``exact``, ``estimate``).
    """
    ax = ax or plt.gca()
    rows = table[table.estimator == estimator]
    atoms = list(dict.fromkeys(rows.atom))
    for colour, atom in zip(palette(len(atoms)), atoms):
        sub = rows[rows.atom == atom]
        ax.plot(sub.exact, sub.estimate, "o", color=colour, markersize=4, label=atom)
    hi = float(np.nanmax(np.r_[rows.exact, rows.estimate, 0.1]))
    ax.plot([0, hi], [0, hi], color="grey", linewidth=0.8)
    ax.set_xlabel("exact (Gaussian MMI), nats")
    ax.set_ylabel(f"estimate ({estimator}), nats")
    ax.legend(fontsize=8, frameon=False)
    return ax
