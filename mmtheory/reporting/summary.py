"""``mt.summary(table)``: the one-call answer for a results table, as DataFrames.

For every (world, learner, m): the best subset by mean test risk over seeds with its 95%
t-interval, the runner-up, and whether the two are distinguishable (a paired t-interval of
their difference over seeds that excludes 0); then the verdicts of P1-P9 (counts and rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.reporting.predictions import verdict_counts
from mmtheory.theory.statistics import interval

__all__ = ["Summary", "best_subsets", "summary"]

_KEYS = ["world_id", "learner", "m"]


def best_subsets(table: pd.DataFrame, value: str = "test_risk") -> pd.DataFrame:
    """Per (world_id, learner, m): the subset with the lowest mean ``value`` over seeds,
    its t-interval, the runner-up, the paired difference (runner-up minus best) with its
    t-interval, and ``distinguishable`` (that interval excludes 0; False with one seed)."""
    rows = []
    keys = [k for k in _KEYS if k in table]
    for key, g in table.groupby(keys, sort=True):
        wide = g.pivot_table(index="seed", columns="subset", values=value, aggfunc="first")
        means = wide.mean().sort_values()
        best = means.index[0]
        iv = interval(wide[best], method="t")
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(
            world=g.world.iloc[0] if "world" in g else "",
            best=best,
            best_mean=iv.estimate,
            best_ci_low=iv.low,
            best_ci_high=iv.high,
            n_seeds=iv.n,
        )
        if len(means) > 1:
            second = means.index[1]
            diff = interval((wide[second] - wide[best]).to_numpy(float), method="t")
            row.update(
                runner_up=second,
                runner_up_mean=float(means.iloc[1]),
                gap=diff.estimate,
                gap_ci_low=diff.low,
                gap_ci_high=diff.high,
                distinguishable=bool(diff.excludes(0.0)),
            )
        else:
            row.update(
                runner_up="",
                runner_up_mean=np.nan,
                gap=np.nan,
                gap_ci_low=np.nan,
                gap_ci_high=np.nan,
                distinguishable=False,
            )
        rows.append(row)
    return pd.DataFrame(rows)


class Summary(dict):
    """A dict of DataFrames (``best``, ``verdicts``, ``predictions``) that prints itself."""

    def __repr__(self) -> str:
        best = self["best"]
        parts = ["best subset per size (mean test risk, 95% t-interval over seeds):"]
        for r in best.itertuples():
            tag = "" if r.distinguishable else " (not distinguishable from the runner-up)"
            parts.append(
                f"  {r.learner} m={r.m}: {r.best} {r.best_mean:.4g} "
                f"[{r.best_ci_low:.4g}, {r.best_ci_high:.4g}]{tag}"
            )
        v = self["verdicts"]
        parts.append("verdicts (rows true / false / untestable):")
        for r in v[v.rows > 0].itertuples():
            parts.append(f"  {r.prediction} {r.statement}: {r.true} / {r.false} / {r.untestable}")
        return "\n".join(parts)


def summary(table: pd.DataFrame, *, delta: float = 0.05) -> Summary:
    """The best subset per size with intervals, and the verdicts of P1-P9 on ``table`` (a
    results table from :func:`mmtheory.sweep` or a ``results.csv``)."""
    from mmtheory.theory.check import check

    _, predictions = check(table, delta=delta)
    return Summary(
        best=best_subsets(table),
        verdicts=verdict_counts(predictions),
        predictions=predictions,
    )
