"""Power-law learning curves, corrected intervals and the diagnosis tables."""

import numpy as np
import pandas as pd
import pytest

from mmtheory.theory.diagnosis import adding_table, best_subsets, contributions, verdict
from mmtheory.theory.learning_curves import corrected_interval, fit_power_law, power_law


def test_power_law_fit_recovers_a_noiseless_curve():
    m = np.array([10, 20, 50, 100, 200, 500])
    e, a, alpha = fit_power_law(m, power_law(m, 0.1, 2.0, 0.5))
    assert power_law(5000, e, a, alpha) == pytest.approx(power_law(5000, 0.1, 2.0, 0.5), abs=2e-3)
    assert fit_power_law([10, 20], [0.3, 0.2])[1] == 0  # too few points: a constant


def test_corrected_interval_by_hand():
    v = np.array([1.0, 2.0, 3.0])
    mean, lo, hi = corrected_interval(v, 0.25)
    half = 4.302652729911275 * np.sqrt((1 / 3 + 1 / 3) * 1.0)  # t_{0.975, 2}, s^2 = 1
    assert mean == 2 and hi - mean == pytest.approx(half)


def test_verdicts_and_negative_control():
    assert verdict(-0.3, -0.1) == "helps" and verdict(0.1, 0.2) == "hurts"
    assert verdict(-0.1, 0.1) == "cannot tell yet"


def _table(effect_b: float, noise: float, seed: int = 0) -> pd.DataFrame:
    """Risks of subsets a, b, a+b over 6 splits and 4 sizes: b adds ``effect_b``."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(6):
        for m in (20, 40, 80, 160):
            base = 0.2 + 2.0 * m**-0.5
            for sub, r in (("a", base), ("b", 0.6), ("a+b", base + effect_b)):
                rows.append(
                    {
                        "split": s,
                        "m": m,
                        "subset": sub,
                        "risk": r + noise * rng.standard_normal(),
                        "baseline_risk": 0.7,
                    }
                )
    return pd.DataFrame(rows)


def test_adding_a_useful_modality_is_called_helps_and_a_useless_one_is_not():
    helps = adding_table(_table(-0.1, 0.005), 0.25, n_boot=50)
    row = helps[(helps.modality == "b") & (helps.to == "a")]
    assert (row.verdict == "helps").all()
    assert row.extrapolated.tolist() == [False, True, True, True]
    # negative control: b adds nothing, the noise is real: never "helps" nor "hurts"
    null = adding_table(_table(0.0, 0.02), 0.25, n_boot=50)
    row = null[(null.modality == "b") & (null.to == "a")]
    assert (row.verdict == "cannot tell yet").all()


def test_best_subset_and_contributions():
    best = best_subsets(_table(-0.1, 0.005), 0.25)
    assert (best.best == "a+b").all() and best.distinguishable.all()
    tie = best_subsets(_table(0.0, 0.02), 0.25)
    assert not tie.distinguishable.iloc[-1]
    phi = contributions(_table(-0.1, 0.0), 0.25).set_index("modality").shapley
    at = 0.2 + 2.0 * 160**-0.5
    assert phi.sum() == pytest.approx(0.7 - (at - 0.1))  # efficiency: adds up to v(full)


@pytest.mark.parametrize("drop", [False, True])
def test_the_split_bootstrap_is_the_mean_table_of_every_resample(drop):
    """The bootstrap's draws equal the anchored curves of the mean table over each
    resample's rows (a split drawn twice counts twice), here recomputed the plain way
    from the same resamples; ``drop``: an unbalanced table (a split missing a cell, and
    the largest size measured on one split only: a third of the resamples lack it)."""
    from mmtheory.core.seeding import as_generator
    from mmtheory.theory.diagnosis import _anchored, _bootstrap_predictions, _mean_table

    results = _table(-0.1, 0.02, seed=3)
    if drop:
        gone = ((results.split == 1) & (results.subset == "b") & (results.m == 40)) | (
            (results.split <= 4) & (results.m == 160)
        )
        results = results[~gone]
    targets = np.array([160.0, 320.0, 1600.0])
    point, draws = _bootstrap_predictions(results, targets, 40, seed=7)
    split_ids = np.sort(results.split.unique())
    rng = as_generator(7, "curve-bootstrap")
    for b in range(40):
        pick = rng.choice(split_ids, size=len(split_ids), replace=True)
        rows = results.set_index("split").loc[list(pick)]
        ref = _anchored(rows.groupby(["m", "subset"]).risk.mean().unstack("subset"), targets)
        for s, v in ref.items():
            np.testing.assert_allclose(draws[s][b], v, rtol=1e-12, atol=1e-15)
    for s, v in _anchored(_mean_table(results), targets).items():
        np.testing.assert_array_equal(point[s], v)
