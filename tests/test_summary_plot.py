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


def test_fig_sweep_of_every_subset_of_six_modalities_draws_the_singles_and_the_best(tmp_path):
    """63 subsets: the panel draws 12 (the 6 singles and the 6 lowest risks at the largest
    m), says so in its title, and lays out without matplotlib's tight-layout warning (an
    error under pytest's settings)."""
    from itertools import combinations

    from mmtheory.plotting.curves import curve_subsets
    from mmtheory.plotting.figures import write_figure

    names = list("abcdef")
    subs = ["+".join(c) for k in range(1, 7) for c in combinations(names, k)]
    rows = [
        dict(subset=s, m=m, seed=seed, test_risk=1.0 / (len(s) + 1) + 1e-3 * seed + 1 / m)
        for s in subs
        for m in (20, 80)
        for seed in range(3)
    ]
    results = pd.DataFrame(rows)
    results.to_csv(tmp_path / "results.csv", index=False)
    shown = curve_subsets(results, 12, column="test_risk")
    assert len(shown) == 12 and set(names) <= set(shown)
    assert shown[0] == "a+b+c+d+e+f"  # the lowest risk first
    assert write_figure("fig_sweep", tmp_path)[0].stat().st_size > 10_000
    # a single modality not measured at the largest m is still drawn
    late = results[~((results.subset == "f") & (results.m == 80))]
    assert set(names) <= set(curve_subsets(late, 12, column="test_risk"))
    # twelve lines, twelve colours (the colour-blind palette has ten)
    from mmtheory.plotting.plots import palette

    assert len(set(palette(12))) == 12 and len(set(palette(10))) == 10
    # negative control: a sweep with few subsets keeps every one
    few = results[results.subset.isin(["a", "b", "a+b"])]
    assert sorted(curve_subsets(few, 12, column="test_risk")) == ["a", "a+b", "b"]


def test_fig_curves_title_names_the_dataset_and_the_subsets_it_draws(tmp_path, monkeypatch):
    """The learning-curve figure's title names the dataset (the curves table's ``dataset``
    column) and, where the curves are a selection, how many of how many subsets; a table
    without the column (an older run) still draws, untitled by name."""
    from itertools import combinations

    from mmtheory.plotting import figures

    names = list("abcd")
    subs = ["+".join(c) for k in range(1, 5) for c in combinations(names, k)]
    rows = [
        dict(dataset="toy", subset=s, m=m, risk=0.5 / len(s) + 1 / m, e=0.1, a=1.0, alpha=0.5)
        for s in subs
        for m in (20, 80, 320)
    ]
    titles = []

    def keep_title(fig, run_dir, name):
        titles.append(fig.axes[0].get_title())
        figures.plt.close(fig)
        return []

    monkeypatch.setattr(figures, "save_figure", keep_title)
    pd.DataFrame(rows).to_csv(tmp_path / "curves.csv", index=False)
    figures.write_figure("fig_curves", tmp_path)
    assert titles[-1].startswith("toy: learning curve per subset (8 of 15: the singles")
    assert "extrapolated" in titles[-1]
    few = [r for r in rows if r["subset"] in ("a", "b", "a+b")]
    pd.DataFrame(few).drop(columns="dataset").to_csv(tmp_path / "curves.csv", index=False)
    figures.write_figure("fig_curves", tmp_path)
    assert titles[-1] == "learning curve per subset (dashed: extrapolated)"
    # a name with dollar signs is text, not mathtext (which would refuse to draw it)
    monkeypatch.undo()
    pd.DataFrame(few).assign(dataset="cost_$5_$10").to_csv(tmp_path / "curves.csv", index=False)
    assert figures.write_figure("fig_curves", tmp_path)[0].stat().st_size > 10_000
