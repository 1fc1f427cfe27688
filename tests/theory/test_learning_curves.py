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


def _plain_anchored(means: pd.DataFrame, targets: np.ndarray) -> dict[str, np.ndarray]:
    """The anchored prediction written out here (not the module's): the mean at the
    largest measured m plus the fitted power law's change from there."""
    m = means.index.to_numpy(dtype=float)
    out = {}
    for s in means.columns:
        r = means[s].to_numpy(dtype=float)
        e, a, alpha = fit_power_law(m, r)
        out[s] = r[-1] + power_law(targets, e, a, alpha) - power_law(m[-1], e, a, alpha)
    return out


@pytest.mark.parametrize("case", ["balanced", "unbalanced", "nan"])
def test_the_split_bootstrap_is_the_mean_table_of_every_resample(case):
    """The bootstrap's draws and point equal the anchored curves of the plain pandas mean
    table over each resample's rows (a split drawn twice counts twice; NaN risks skipped
    as ``mean`` skips them), recomputed here from the same resamples. ``unbalanced``: a
    split missing a cell, and the largest size measured on one split only (a third of
    the resamples lack it); ``nan``: a size whose risks are NaN on all but one split, and
    a split whose risks are all NaN."""
    from mmtheory.core.seeding import as_generator
    from mmtheory.theory.diagnosis import _bootstrap_predictions

    results = _table(-0.1, 0.02, seed=3)
    if case == "unbalanced":
        gone = ((results.split == 1) & (results.subset == "b") & (results.m == 40)) | (
            (results.split <= 4) & (results.m == 160)
        )
        results = results[~gone]
    if case == "nan":
        results = results.copy()
        results.loc[(results.m == 40) & (results.split < 5), "risk"] = np.nan
        results.loc[results.split == 2, "risk"] = np.nan
    targets = np.array([160.0, 320.0, 1600.0])
    point, draws = _bootstrap_predictions(results, targets, 40, seed=7)
    # rtol 1e-12: the same means summed in another order (pandas' groupby mean compensates,
    # the weighted product does not), a few ulps, carried through the power-law fit; a
    # wrong weighting or anchor is off by O(noise) = 1e-3 here
    plain = results.groupby(["m", "subset"]).risk.mean().unstack("subset")
    for s, v in _plain_anchored(plain, targets).items():
        np.testing.assert_allclose(point[s], v, rtol=1e-12, atol=1e-15)
    split_ids = np.sort(results.split.unique())
    rng = as_generator(7, "curve-bootstrap")
    for b in range(40):
        pick = rng.choice(split_ids, size=len(split_ids), replace=True)
        rows = results.set_index("split").loc[list(pick)]
        table = rows.groupby(["m", "subset"]).risk.mean().unstack("subset")
        for s, v in _plain_anchored(table, targets).items():
            np.testing.assert_allclose(draws[s][b], v, rtol=1e-12, atol=1e-15)


def test_two_sizes_extrapolate_nothing():
    """A power law has three parameters: with two measured sizes the adding table stops at
    the largest size (a constant 'curve' would claim the change stays as it is now); with
    three it extrapolates (the negative control)."""
    two = _table(-0.1, 0.005)
    two = two[two.m.isin([80, 160])]
    table = adding_table(two, 0.25, n_boot=20)
    assert (table.factor == 1).all() and not table.extrapolated.any()
    three = adding_table(_table(-0.1, 0.005)[lambda d: d.m >= 40], 0.25, n_boot=20)
    assert three.extrapolated.any() and set(three.factor) == {1, 2, 5, 10}
    from mmtheory.theory.learning_curves import too_few_sizes

    assert "measured 2" in too_few_sizes(2) and too_few_sizes(3) == ""
