"""Every prediction can fail: for each of P1-P9 a case built so that it is false, where the
check must say false, beside cases where it must say true or untestable (with the reason)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import synthetic
from mmtheory import check, sweep
from mmtheory.theory import bounds as bounds_module
from mmtheory.theory.predictions import HOLDS


def _table(
    cells,
    *,
    learner="late_fusion-linear",
    kind="late_fusion",
    solver="adam",
    bayes_method="exact",
    world_id="w0",
    eta_inf=None,
):
    """A hand-built results table: cells maps (subset, m) to per-seed dicts of columns."""
    rows = []
    for (subset, m), per_seed in cells.items():
        for seed, values in enumerate(per_seed):
            row = {
                "world": "hand",
                "world_id": world_id,
                "learner": learner,
                "learner_kind": kind,
                "solver": solver,
                "subset": subset,
                "m": m,
                "seed": seed,
                "bayes_risk_method": bayes_method,
                "null_risk": 1.0,
                "train_risk": 0.5,
                "test_risk": 0.5,
                "eta": 0.1,
            }
            if eta_inf is not None:
                row["eta_inf"] = eta_inf[subset]
            row.update(values)
            rows.append(row)
    return pd.DataFrame(rows)


def _verdicts(table, prediction):
    _, preds = check(table)
    got = preds[preds.prediction == prediction]
    assert set(got.holds) <= set(HOLDS)
    return got


def _noise(rng, n, scale=0.01):
    return rng.normal(0, scale, n)


# ---------------------------------------------------------------------------- P1
def test_p1_true_for_an_informative_modality_false_for_pure_noise():
    world = synthetic.LinearWorld(
        (4, 4), latent_dim=2, rho=0.2, n_noise_modalities=1, noise_dim=6, seed=3
    )
    t = sweep(world, "linear", ["m1", "m1+m2", "m1+noise1"], m=[40], seeds=6, progress=False)
    p1 = _verdicts(t, "P1").set_index("M")
    assert p1.loc["m1+m2", "holds"] == "true"
    # a pure-noise modality adds parameters and nothing else: gamma > 0 at finite m
    assert p1.loc["m1+noise1", "holds"] == "false"
    assert "gamma_inf = 0" in p1.loc["m1+noise1", "detail"]


def test_p1_is_untestable_with_one_seed_or_a_straddling_interval():
    rng = np.random.default_rng(0)
    one = _table({("a", 100): [{"eta": 0.2}], ("a+b", 100): [{"eta": 0.1}]})
    assert _verdicts(one, "P1").holds.tolist() == ["untestable"]
    cells = {
        ("a", 100): [{"eta": 0.2} for _ in range(5)],
        ("a+b", 100): [{"eta": 0.2 + e} for e in _noise(rng, 5, 0.05)],
    }
    row = _verdicts(_table(cells), "P1").iloc[0]
    assert row.holds == "untestable" and "inconclusive" in row.reason


# ---------------------------------------------------------------------------- P2
def test_p2_false_when_risk_and_latent_gaps_disagree_and_untestable_for_the_composite():
    cells = {
        ("a", 100): [{"test_risk": 1.0, "eta": 0.2} for _ in range(12)],
        ("a+b", 100): [{"test_risk": 1.2, "eta": 0.1} for _ in range(12)],
    }
    assert _verdicts(_table(cells), "P2").holds.tolist() == ["false"]
    agree = {
        ("a", 100): [{"test_risk": 1.0, "eta": 0.2} for _ in range(12)],
        ("a+b", 100): [{"test_risk": 0.8, "eta": 0.1} for _ in range(12)],
    }
    assert _verdicts(_table(agree), "P2").holds.tolist() == ["true"]
    five = {k: v[:5] for k, v in agree.items()}  # 5 of 5 agree: [0.478, 1] contains 1/2
    assert _verdicts(_table(five), "P2").holds.tolist() == ["untestable"]
    composite = _table(agree, learner="linear", kind="linear", solver="closed_form")
    row = _verdicts(composite, "P2").iloc[0]
    assert row.holds == "untestable" and "by construction" in row.reason


# ---------------------------------------------------------------------------- P5
def test_p5_false_on_a_planted_violation_and_untestable_for_iterative_learners():
    world = synthetic.LinearWorld((4, 4), latent_dim=2, seed=2)
    exact = sweep(world, "linear", "all", m=[40, 200], seeds=3, progress=False)
    assert set(_verdicts(exact, "P5").holds) == {"true"}
    planted = exact.copy()
    hit = (planted.subset == "m1+m2") & (planted.m == 40) & (planted.seed == 1)
    worst = planted[(planted.m == 40) & (planted.seed == 1)].train_risk.max()
    planted.loc[hit, "train_risk"] = worst + 1e-6  # above both of its nested subsets
    p5 = _verdicts(planted, "P5")
    assert set(p5.holds) == {"false"} and (p5.statistic == 1).all()
    # both fits interpolate: differences of rounding size are not violations
    tiny = exact.copy()
    tiny["train_risk"] = 1e-20 * (1 + tiny.subset.str.len())
    assert set(_verdicts(tiny, "P5").holds) == {"true"}
    iterative = exact.assign(solver="gd", learner="linear-gd")
    row = _verdicts(iterative, "P5").iloc[0]
    assert row.holds == "untestable" and "not an exact ERM" in row.reason


# ---------------------------------------------------------------------------- P6
def test_p6_true_when_the_larger_subset_loses_at_small_m_false_when_it_always_wins():
    rng = np.random.default_rng(1)

    def cells(small_gap):
        out = {}
        for m, gap in ((20, small_gap), (50, small_gap), (200, -0.2)):
            out[("a", m)] = [{"test_risk": 1.0} for _ in range(6)]
            out[("a+b", m)] = [{"test_risk": 1.0 + gap + e} for e in _noise(rng, 6)]
        return out

    assert _verdicts(_table(cells(+0.3)), "P6").holds.tolist() == ["true"]
    assert _verdicts(_table(cells(-0.3)), "P6").holds.tolist() == ["false"]


# ---------------------------------------------------------------------------- P7
def _gap_table(gaps, sizes=(20, 40, 80, 160, 320, 640), seeds=8, eta_inf=None, scale=0.01):
    rng = np.random.default_rng(7)
    cells = {}
    for m, gap in zip(sizes, gaps):
        cells[("a", m)] = [{"test_risk": 1.0} for _ in range(seeds)]
        cells[("a+b", m)] = [{"test_risk": 1.0 + gap + e} for e in _noise(rng, seeds, scale)]
    return _table(cells, eta_inf=eta_inf)


def test_p7_verdicts_true_false_and_untestable():
    crossing = _verdicts(_gap_table([0.5, 0.3, 0.1, -0.05, -0.1, -0.15]), "P7").iloc[0]
    assert crossing.holds == "true" and 80 < crossing.statistic < 160
    assert crossing.ci_low <= crossing.statistic <= crossing.ci_high
    # the larger subset keeps losing, and by more and more: no crossover in sight
    growing = _verdicts(_gap_table([0.05, 0.1, 0.2, 0.3, 0.4, 0.5]), "P7").iloc[0]
    assert growing.holds == "false"
    # already better at the smallest size: the grid has no m below the crossing
    early = _verdicts(_gap_table([-0.2, -0.2, -0.3, -0.3, -0.3, -0.3]), "P7").iloc[0]
    assert early.holds == "untestable" and "no m below the crossing" in early.reason
    # still worse at the end, but the gap is closing: the grid ends before the crossing
    late = _verdicts(_gap_table([0.5, 0.4, 0.3, 0.2, 0.15, 0.1]), "P7").iloc[0]
    assert late.holds == "untestable" and "ends before the crossing" in late.reason
    # a pair whose exact limits are equal: no crossover is predicted at all
    flat = _gap_table([0.5, 0.4, 0.3, 0.2, 0.15, 0.1], eta_inf={"a": 0.3, "a+b": 0.3})
    row = _verdicts(flat, "P7").iloc[0]
    assert row.holds == "untestable" and "adds nothing in the limit" in row.reason


def test_p7_pairs_seeds_across_sizes_by_seed_not_by_row_position():
    """Each seed's gap curve runs over the sizes: the crossing's interval is the same for
    any row order of the table (a sweep's records come in run-id order, which hashes the
    version) and equals the one computed from the gaps stacked by seed. Seeds carry
    persistent offsets, so pairing seed i at one size with seed j at the next (the old
    positional stacking) narrows the interval: the shuffled table then disagreed."""
    from mmtheory.theory.predictions import crossover

    sizes, base = (20, 40, 80, 160, 320, 640), [0.5, 0.3, 0.1, -0.05, -0.1, -0.15]
    rng = np.random.default_rng(11)
    offsets = rng.normal(0, 0.04, 6)
    cells = {}
    for j, m in enumerate(sizes):
        cells[("a", m)] = [{"test_risk": 1.0} for _ in offsets]
        cells[("a+b", m)] = [
            {"test_risk": 1.0 + base[j] + o + e} for o, e in zip(offsets, _noise(rng, 6))
        ]
    table = _table(cells)
    ordered = _verdicts(table, "P7").iloc[0]
    gaps = np.stack(
        [
            table[(table.subset == "a+b") & (table.m == m)].sort_values("seed").test_risk.to_numpy()
            - 1.0
            for m in sizes
        ],
        axis=1,
    )
    cx = crossover(list(sizes), gaps)
    expected = [cx.point, cx.low, cx.high]
    assert ordered.holds == "true" and np.isfinite(expected).all()
    np.testing.assert_array_equal([ordered.statistic, ordered.ci_low, ordered.ci_high], expected)
    for seed in range(3):
        shuffled = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        row = _verdicts(shuffled, "P7").iloc[0]
        np.testing.assert_array_equal([row.statistic, row.ci_low, row.ci_high], expected)


def test_p7_needs_seeds_measured_at_every_size_and_says_so():
    """Each size lacks a different seed (diverged runs dropped): every size has 5 seeds
    but no seed spans all 6 sizes, so no seed's gap curve exists and P7 is untestable,
    naming that; with two seeds lost at every size but the same two, it is tested
    (negative control: the crossing is found)."""
    sizes, base = (20, 40, 80, 160, 320, 640), [0.5, 0.3, 0.1, -0.05, -0.1, -0.15]
    rng = np.random.default_rng(5)
    full = _gap_table(base, sizes=sizes, seeds=6)

    def without(table, lost):  # lost[j]: the seeds size j lacks
        drop = np.zeros(len(table), dtype=bool)
        for j, m in enumerate(sizes):
            drop |= (table.m == m).to_numpy() & table.seed.isin(lost[j]).to_numpy()
        return table[~drop].sample(frac=1.0, random_state=int(rng.integers(99)))

    row = _verdicts(without(full, [[j] for j in range(6)]), "P7").iloc[0]
    assert row.holds == "untestable" and "measured at every size" in row.reason
    assert "0 are" in row.reason
    kept = _verdicts(without(full, [[0, 1]] * 6), "P7").iloc[0]
    assert kept.holds == "true" and kept.n_trials == 4


def test_p7_reports_the_last_crossing_not_an_early_double_descent_one():
    # better at tiny m (both overparametrised), worse near the interpolation peak, better
    # for good from about m = 300: the first sign change is irrelevant
    gaps = [-0.3, 0.6, 0.4, 0.1, -0.1, -0.2]
    row = _verdicts(_gap_table(gaps), "P7").iloc[0]
    assert row.holds == "true" and 160 < row.statistic < 320


# ---------------------------------------------------------------------------- P8
def test_p8_true_on_the_overlap_world_false_when_the_ordering_is_reversed():
    tables = [
        sweep(
            synthetic.OverlapWorld(3, 5, w),
            "linear",
            "cumulative",
            m=[2000],
            seeds=3,
            progress=False,
        )
        for w in (1.0, 0.6, 0.0)
    ]
    t = pd.concat(tables)
    p8 = _verdicts(t, "P8")
    assert len(p8) == 3 and set(p8.holds) == {"true"}
    reversed_ = t.copy()
    reversed_["overlap"] = 1.0 - reversed_["overlap"]  # relabel: eta now rises with overlap
    got = _verdicts(reversed_, "P8")
    assert (got.holds == "false").sum() >= 2  # the ordering, and eta = 0 at "overlap 1"
    one = _verdicts(tables[0], "P8")
    assert "needs several overlap values" in one.iloc[0].reason


# ---------------------------------------------------------------------------- P9
def test_p9_true_false_and_untestable():
    world = synthetic.LinearWorld((4, 4), latent_dim=2, rho=0.3, noise=0.3, seed=3)
    t = sweep(world, "linear", "all", m=[50, 4000], seeds=5, progress=False)
    assert _verdicts(t, "P9").holds.tolist() == ["true"]
    growing = t.copy()
    full = growing.subset == "m1+m2"
    growing.loc[full, "eta"] = growing.loc[full, "m"] * 1e-3 + 0.01 * growing.loc[full, "seed"]
    assert _verdicts(growing, "P9").holds.tolist() == ["false"]
    real = t.assign(bayes_risk_method="unknown")
    row = _verdicts(real, "P9").iloc[0]
    assert row.holds == "untestable" and "Bayes risk unknown on real data" in row.reason
    misspecified = t.assign(eta_inf=0.5)
    assert "not well specified" in _verdicts(misspecified, "P9").iloc[0].reason


# ---------------------------------------------------------------------- P3 and P4
def _bounded_world():
    return synthetic.LinearWorld(
        (3, 3), latent_dim=2, rho=0.4, noise=0.3, label_noise=0.3, latent="uniform", seed=1
    )


def test_p3_p4_hold_on_a_bounded_world_and_fail_when_the_bound_is_too_small(monkeypatch):
    t = sweep(_bounded_world(), "linear", "all", m=[200], seeds=160, progress=False)
    bounds, preds = check(t)
    assert bounds.constants_rigorous.all() and (bounds.radius_source == "a priori").all()
    for p in ("P3", "P4"):
        assert set(preds[preds.prediction == p].holds) == {"true"}
    # a negative control: every constant of both theorems set to 0 leaves right sides that
    # the measured gaps exceed; the verdicts must turn false
    monkeypatch.setitem(bounds_module.THM1, "rademacher", 0.0)
    monkeypatch.setitem(bounds_module.THM1, "c_over_sqrt_m", 0.0)
    monkeypatch.setitem(bounds_module.THM1, "deviation", 0.0)
    monkeypatch.setitem(bounds_module.THM2, "rademacher_M", 0.0)
    monkeypatch.setitem(bounds_module.THM2, "rademacher_G", 0.0)
    monkeypatch.setitem(bounds_module.THM2, "deviation", 0.0)
    _, preds = check(t)
    assert "false" in set(preds[preds.prediction == "P4"].holds)
    assert "false" in set(preds[preds.prediction == "P3"].holds)


def test_theorems_are_untestable_on_unbounded_worlds_and_outside_the_class():
    gaussian = synthetic.LinearWorld((3, 3), latent_dim=2, seed=1)
    t = sweep(gaussian, "linear", "all", m=[50], seeds=4, progress=False)
    _, preds = check(t)
    p4 = preds[preds.prediction == "P4"].iloc[0]
    assert p4.holds == "untestable" and "unbounded" in p4.reason
    bounded = sweep(_bounded_world(), "linear", "all", m=[50], seeds=4, progress=False)
    bounds, preds = check(bounded, radius=1e-6)  # every fit lies outside this ball
    assert not bounds.in_class.any()
    assert "outside the class radius" in preds[preds.prediction == "P4"].iloc[0].reason


def test_theorems_are_evaluated_on_vector_targets():
    world = synthetic.OverlapWorld(3, 4, 0.5, latent="uniform")
    t = sweep(world, "linear", "cumulative", m=[100], seeds=3, progress=False)
    bounds, preds = check(t)
    assert len(bounds) and (bounds.outputs == 4).all() and bounds.constants_rigorous.all()
    assert (bounds.thm2_ratio > 1).all()


def test_every_prediction_has_said_false_somewhere():
    """The guard: each prediction's false branch is reached by a test in this module (the
    names of the tests above), so no verdict can only succeed."""
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    for p in ("p1", "p2", "p3", "p5", "p6", "p7", "p8", "p9"):
        assert f"def test_{p}" in source


def test_verdict_block_names_each_untestable_reason_only_when_there_are_several():
    """One untestable prediction: its reasons follow it unprefixed ("P2 (P2: ...)" said its
    name twice); several: each group of reasons is named. Held and failed are counted."""
    import pandas as pd

    from mmtheory.reporting.predictions import verdict_block

    def row(p, holds, reason=""):
        return {"prediction": p, "holds": holds, "reason": reason}

    one = pd.DataFrame(
        [row("P1", "true"), row("P6", "false"), row("P2", "untestable", "too few seeds: 3")]
    )
    text = verdict_block(one)
    assert "Held** (every testable row): P1." in text
    assert "P6 (1 of 1 rows)" in text
    assert "here: P2 (too few seeds (1)); not applicable to these tables: P3, P4" in text
    two = pd.concat([one, pd.DataFrame([row("P5", "untestable", "no nested pair: none")])])
    assert "P2, P5 (P2: too few seeds (1); P5: no nested pair (1))" in verdict_block(two)


def test_paired_lookup_equals_pandas_alignment():
    """Slice.paired's array look-ups give what pandas' seed alignment gives, in seed
    order: shuffled seed orders, seeds one cell lacks, float32 and integer columns;
    duplicated seeds take pandas' path. A wrong pairing (by position instead of by seed)
    differs on the shuffled cells."""
    from mmtheory.theory.predictions import Slice

    rng = np.random.default_rng(3)
    rows = []
    for subset, seeds in (("{A}", [4, 0, 2, 1, 3]), ("{A,B}", [0, 1, 2, 3, 5]), ("{B}", [1, 1, 2])):
        for s in seeds:
            rows.append(
                {"subset": subset, "m": 10, "seed": s, "x": rng.normal(), "k": int(rng.integers(9))}
            )
    t = pd.DataFrame(rows)
    t["x32"] = t["x"].astype(np.float32)
    sl = Slice(t, {}, "hand")

    def reference(M, N, col):
        a = t[(t.subset == M) & (t.m == 10)].set_index("seed")
        b = t[(t.subset == N) & (t.m == 10)].set_index("seed")
        common = a.index.intersection(b.index)
        return (a.loc[common, col] - b.loc[common, col]).sort_index().to_numpy(dtype=float)

    for M, N in (("{A,B}", "{A}"), ("{A}", "{A,B}"), ("{A,B}", "{B}"), ("{B}", "{A}")):
        for col in ("x", "x32", "k"):
            np.testing.assert_array_equal(sl.paired(M, N, 10, col), reference(M, N, col))
    assert len(sl.paired("{A,B}", "{A}", 10, "x")) == 4  # seeds 0-3
    assert sl.paired("{A,B}", "{A}", 99, "x").size == 0
    # a seed that is NaN pairs with nothing, on either path (a repeated seed takes pandas'
    # path); seeds of mixed types sort numbers first, then text, and do not crash
    nan = pd.DataFrame(
        {"subset": ["{A,B}"] * 3 + ["{A}"] * 3, "m": 10, "seed": [0.0, 1.0, np.nan] * 2}
    ).assign(x=[1.0, 2.0, 3.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(Slice(nan, {}, "").paired("{A,B}", "{A}", 10, "x"), [1, 2])
    again = pd.concat([nan, nan.iloc[[0]]], ignore_index=True)  # seed 0 twice in {A,B}
    got = Slice(again, {}, "").paired("{A,B}", "{A}", 10, "x")
    np.testing.assert_array_equal(got, [1, 1, 2])
    mixed = nan.assign(seed=[0, "s1", 2] * 2)
    np.testing.assert_array_equal(Slice(mixed, {}, "").paired("{A,B}", "{A}", 10, "x"), [1, 3, 2])
    assert sl.paired("{A,B}", "{A}", 10, "absent").size == 0
    by_position = t[t.subset == "{A,B}"].x.to_numpy()[:4] - t[t.subset == "{A}"].x.to_numpy()[:4]
    assert not np.allclose(np.sort(sl.paired("{A,B}", "{A}", 10, "x")), np.sort(by_position))


def test_values_equal_the_cell_lookup():
    """Slice.values reads one column at (subset, m), indexed by seed: the cell's frame
    indexed by seed (the path it replaced), in seed order."""
    from mmtheory.theory.predictions import Slice

    t = pd.DataFrame(
        {"subset": ["{A}", "{B}", "{A}", "{A}"], "m": [5, 5, 5, 7], "seed": [2, 0, 0, 0]}
    ).assign(x=[1.5, 2.0, 3.0, 4.0], k=[1, 2, 3, 4])
    sl = Slice(t, {}, "hand")
    for col in ("x", "k"):
        ref = t[(t.subset == "{A}") & (t.m == 5)].set_index("seed")[col].astype(float).sort_index()
        pd.testing.assert_series_equal(sl.values("{A}", 5, col), ref)
    assert sl.values("{A}", 6, "x").empty and sl.values("{A}", 5, "absent").empty


def test_no_verdict_depends_on_the_row_order_of_the_table():
    """The checks read seeds by seed, never by row position: the golden results (every
    prediction P1-P9, the bounds, the selection rule) checked in three shuffled row orders
    give the same tables. The golden records come in run-id order, which hashes the
    version: before 0.10.2, P7's interval moved with it (17.1 -> 18.5 at one bump)."""
    from pathlib import Path

    from mmtheory.theory.check import selection_table

    t = pd.read_csv(Path(__file__).parents[1] / "golden" / "data" / "results.csv")
    bounds, preds = check(t)
    keys = ["prediction", "world_id", "learner", "M", "N", "m"]

    def canonical(df, by):  # rows in one order: every column as text (NaN keys tie)
        order = df.astype(str).sort_values(by + list(df.columns), kind="stable").index
        return df.loc[order].reset_index(drop=True)

    for seed in range(3):
        shuffled = t.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        b2, p2 = check(shuffled)
        exact = dict(check_exact=True)  # to the last bit: sums over seeds in one order
        pd.testing.assert_frame_equal(canonical(p2, keys), canonical(preds, keys), **exact)
        bkeys = ["world_id", "learner", "M", "N", "m", "seed"]
        pd.testing.assert_frame_equal(canonical(b2, bkeys), canonical(bounds, bkeys), **exact)
        sel = ["world_id", "learner", "M", "N", "m"]
        pd.testing.assert_frame_equal(
            canonical(selection_table(shuffled, b2), sel),
            canonical(selection_table(t, bounds), sel),
            **exact,
        )
