"""``mt.plot(table)``: the standard figure for any results table.

Test risk (or any column) against m, one line per subset, mean over seeds with a 95%
Student-t band (seaborn's ``lineplot`` with the interval as its ``errorbar``), one panel per
learner; log-scaled m. Returns the matplotlib figure (nothing is shown or saved).
"""

from __future__ import annotations

import pandas as pd

from mmtheory.core.subsets import label_size
from mmtheory.plotting.plots import plt, sns
from mmtheory.theory.statistics import interval

__all__ = ["plot"]


def _t_band(values) -> tuple[float, float]:
    iv = interval(values, method="t")
    return iv.low, iv.high


def plot(table: pd.DataFrame, y: str = "test_risk", *, logy: bool = False):
    """One panel per learner: ``y`` against m per subset, mean and 95% t-band over seeds."""
    learners = list(dict.fromkeys(table.learner))
    fig, axes = plt.subplots(1, len(learners), figsize=(5.2 * len(learners), 3.9), squeeze=False)
    order = sorted(table.subset.unique(), key=lambda s: (label_size(s), s))
    for ax, learner in zip(axes[0], learners, strict=True):
        sub = table[table.learner == learner]
        sns.lineplot(
            data=sub,
            x="m",
            y=y,
            hue="subset",
            hue_order=order,
            errorbar=_t_band,
            marker="o",
            markersize=4,
            palette="colorblind",
            ax=ax,
        )
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_title(learner, fontsize=10)
        ax.set_xlabel("training samples m")
        ax.set_ylabel(y.replace("_", " "))
        ax.legend(fontsize=7, frameon=False, title="subset")
    fig.tight_layout()
    return fig
