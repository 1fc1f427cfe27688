"""mt.summary and mt.plot on any results table."""

from __future__ import annotations

import pandas as pd

import mmtheory as mt


def _table(gap: float) -> pd.DataFrame:
    rows = []
    for m in (10, 100):
        for seed in range(6):
            noise = 0.01 * ((seed * 7) % 5)
            rows += [
                dict(
                    world="w",
                    world_id="w",
                    learner="linear",
                    subset="a",
                    m=m,
                    seed=seed,
                    test_risk=1.0 + noise,
                    n_modalities=1,
                ),
                dict(
                    world="w",
                    world_id="w",
                    learner="linear",
                    subset="a+b",
                    m=m,
                    seed=seed,
                    test_risk=1.0 + noise + (gap if m == 10 else -gap),
                    n_modalities=2,
                ),
            ]
    return pd.DataFrame(rows)


def test_best_subsets_names_the_winner_and_distinguishability():
    from mmtheory.reporting.summary import best_subsets

    best = best_subsets(_table(0.2)).set_index("m")
    assert best.loc[10, "best"] == "a" and best.loc[100, "best"] == "a+b"
    assert best.loc[100, "distinguishable"]
    # negative control: equal subsets are not distinguishable
    tie = best_subsets(_table(0.0)).set_index("m")
    assert not tie.distinguishable.any()


def test_plot_draws_one_panel_per_learner():
    fig = mt.plot(_table(0.2))
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_lines()) >= 2
