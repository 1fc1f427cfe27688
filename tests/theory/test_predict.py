"""mmtheory.predict and the theory-vs-measured tables: values against closed forms and
simulation with derived tolerances, regimes, and negative controls (a wrong prediction must
be reported outside the measured interval)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import synthetic
from mmtheory import sweep
from mmtheory.theory import predicted as P
from mmtheory.theory.check import check, selection_table
from mmtheory.theory.predicted import (
    deterministic_risk,
    expected_risk_ls,
    predict,
    predict_crossovers,
)
from mmtheory.theory.versus import (
    accuracy_summary,
    crossover_vs_measured,
    phase_agreement,
    phase_table,
    risk_vs_measured,
)


def _small_world(**kw):
    args = dict(latent_dim=2, rho=0.3, noise=(0.2, 1.2), strength=(1.0, 0.6), label_noise=0.5)
    args.update(kw)
    return synthetic.LinearWorld((3, 6), seed=7, **args)


def test_ridge_equivalent_matches_simulation():
    """Ridge risk on isotropic Gaussian features against 400 simulated fits: within 4
    standard errors plus the equivalent's O(1/n) error (3% here, p = 40, n = 60)."""
    rng = np.random.default_rng(0)
    p, n, ridge, s2 = 40, 60, 0.05, 0.5
    w = rng.normal(size=p) / math.sqrt(p)
    risks = []
    for _ in range(400):
        X = rng.normal(size=(n, p))
        y = X @ w + math.sqrt(s2) * rng.normal(size=n)
        what = np.linalg.solve(X.T @ X / n + ridge * np.eye(p), X.T @ y / n)
        risks.append(s2 + float(((what - w) ** 2).sum()))
    mc, se = np.mean(risks), np.std(risks, ddof=1) / math.sqrt(len(risks))
    de = deterministic_risk(np.ones(p), w**2, s2, n, ridge)
    assert abs(mc - de) < 4 * se + 0.03 * de, (mc, se, de)
    # ridge 0 above the threshold is the asymptotic s2 n / (n - p)
    assert deterministic_risk(np.ones(p), w**2, s2, 200, 0.0) == pytest.approx(s2 * 200 / 160)


def test_predict_regimes_and_values():
    world = _small_world()
    pred = predict(world, "linear", "all", [3, 6, 9, 10, 40])
    both = pred[pred.subset == "m1+m2"].set_index("m")
    # p = 9: m <= 6 approximate (min-norm), 9 and 10 near the threshold (none), 40 exact
    assert both.loc[6, "regime"] == "approximate"
    assert both.loc[9, "regime"] == "none" and np.isnan(both.loc[9, "test_risk"])
    assert "interpolation threshold" in both.loc[10, "reason"]
    s2 = world.bayes_risk() + world.eta_inf("m1+m2")
    assert both.loc[40, "regime"] == "exact"
    assert both.loc[40, "test_risk"] == pytest.approx(expected_risk_ls(s2, 9, 40), rel=1e-12)
    assert both.loc[40, "eta"] == pytest.approx(both.loc[40, "test_risk"] - world.bayes_risk())
    # columns shared with the measured table
    for col in ("world", "world_id", "learner", "subset", "m", "test_risk", "eta"):
        assert col in pred


def test_predict_says_no_prediction_for_adam_late_fusion():
    world = _small_world()
    pred = predict(world, "late_fusion", "all", [100])
    assert (pred.regime == "none").all() and pred.test_risk.isna().all()
    assert pred.reason.str.contains("no prediction").all()


def test_predicted_expected_risk_matches_the_sweep():
    """The exact formula against the mean test risk of 80 closed-form fits per size: the
    prediction lies within 4 standard errors of the measured mean (m > p + 10)."""
    world = _small_world()
    sizes = [21, 80]
    res = sweep(world, "linear", "all", m=sizes, seeds=80, dtype="float64", progress=False)
    risk = risk_vs_measured(res, predict(world, "linear", "all", sizes))
    for r in risk.itertuples():
        se = r.test_risk_sd_measured / math.sqrt(r.n_seeds)
        assert abs(r.test_risk_predicted - r.test_risk_measured) < 4 * se, r
    # the predicted spread agrees with the measured one (approximate: 25%)
    far = risk[risk.m == 80]
    np.testing.assert_allclose(far.test_risk_sd_predicted, far.test_risk_sd_measured, rtol=0.25)


def test_risk_negative_control_a_wrong_prediction_is_outside():
    world = _small_world()
    res = sweep(world, "linear", "all", m=[30, 60], seeds=20, dtype="float64", progress=False)
    pred = predict(world, "linear", "all", [30, 60])
    ok = risk_vs_measured(res, pred)
    assert ok.inside.astype(bool).mean() >= 0.5
    wrong = risk_vs_measured(res, pred.assign(test_risk=pred.test_risk * 1.3))
    assert not wrong.inside.astype(bool).any()


def test_crossover_prediction_and_negative_control():
    world = _small_world()
    cross = predict_crossovers(world, seeds=30)
    row = cross[(cross.M == "m1+m2") & (cross.N == "m1")].iloc[0]
    pm = world.dims["m1"] + world.dims["m2"]
    s2m = world.bayes_risk() + world.eta_inf("m1+m2")
    s2n = world.bayes_risk() + world.eta_inf("m1")
    assert row.m_star == pytest.approx(pm + 2 + (pm - 3) * s2m / (s2n - s2m))
    assert (row.p_M, row.p_N) == (pm, 3)
    assert row.regime == "exact" and row.exists
    sizes = sorted({*np.geomspace(14, 6 * row.m_star, 12).round().astype(int)})
    res = sweep(
        world, "linear", ["m1", "m1+m2"], m=sizes, seeds=20, dtype="float64", progress=False
    )
    _, preds = check(res)
    good = crossover_vs_measured(preds, cross)
    g = good[(good.M == "m1+m2") & (good.N == "m1")].iloc[0]
    assert g.p7_holds == "true" and g.inside, g
    # negative control: a prediction 2x too large must fall outside the measured interval
    bad = crossover_vs_measured(preds, cross.assign(m_star=cross.m_star * 2))
    b = bad[(bad.M == "m1+m2") & (bad.N == "m1")].iloc[0]
    assert b.inside is False or b.inside == 0


def test_no_crossover_is_predicted_when_the_modality_adds_nothing():
    """A pure-noise modality: eta_inf(M) = eta_inf(N), m* infinite, exists False."""
    world = synthetic.LinearWorld(
        (4, 4), latent_dim=2, n_noise_modalities=1, noise_dim=5, noise=0.3, seed=3
    )
    cross = predict_crossovers(world)
    noise_pairs = cross[cross.M.str.contains("noise") & ~cross.N.str.contains("noise")]
    adds_nothing = noise_pairs[
        noise_pairs.apply(lambda r: set(r.M.split("+")) - set(r.N.split("+")), axis=1).map(
            lambda s: all("noise" in k for k in s)
        )
    ]
    assert len(adds_nothing) and not adds_nothing.exists.any()
    assert np.isinf(adds_nothing.m_star).all()


def test_selection_scores_the_prediction_rule():
    world = _small_world()
    sizes = [12, 20, 40, 80, 160]
    res = sweep(world, "linear", "all", m=sizes, seeds=6, dtype="float64", progress=False)
    bounds, _ = check(res)
    pred = predict(world, "linear", "all", sizes)
    sel = selection_table(res, bounds, pred)
    assert {"predicted_accuracy", "predicted_picks_M"} <= set(sel.columns)
    scored = sel.dropna(subset=["predicted_accuracy"])
    assert len(scored) and scored.predicted_accuracy.between(0, 1).all()
    assert "predicted_accuracy" not in selection_table(res, bounds).columns


def test_phase_table_classes_and_agreement():
    rows = []
    for rho, shift in ((0.0, -1.0), (0.5, 1.0)):
        for m in (10, 100):
            for seed in range(5):
                base = 1.0 + 0.01 * seed
                gap = shift if m == 100 else -shift
                rows += [
                    dict(
                        rho=rho,
                        world_id=f"w{rho}",
                        m=m,
                        seed=seed,
                        subset="a+b",
                        test_risk=base + gap,
                    ),
                    dict(rho=rho, world_id=f"w{rho}", m=m, seed=seed, subset="a", test_risk=base),
                ]
    phase = phase_table(pd.DataFrame(rows), "a+b", "a", "rho")
    got = phase.set_index(["rho", "m"]).phase
    assert got[(0.0, 100)] == "larger better" and got[(0.0, 10)] == "smaller better"
    assert got[(0.5, 100)] == "smaller better"

    # theory: the larger subset better from m = 50 on at every rho; no prediction at m = 10
    # for rho 0.5
    def larger_better(rho, m):
        return None if (rho == 0.5 and m == 10) else m > 50

    agree = phase_agreement(phase, larger_better, "rho").set_index("phase")
    # rho 0 agrees in both cells; rho 0.5 disagrees at m = 100 and has no prediction at 10
    assert agree.loc["larger better", "cells"] == 2
    assert agree.loc["larger better", "with_prediction"] == 1
    assert agree.loc["larger better", "on_predicted_side"] == 1
    assert agree.loc["smaller better", "cells"] == 2
    assert agree.loc["smaller better", "with_prediction"] == 2
    assert agree.loc["smaller better", "on_predicted_side"] == 1


def test_softmax_asymptotics_well_specified_counts_parameters(monkeypatch):
    """Noise-free modalities make the linear softmax model well specified, so H = G at the
    optimum and tr(H^+ G) is the number of free parameters (rank(x) + 1)(C - 1) (the features
    span 4 of 5 dimensions here); a Monte Carlo estimate, 10%."""
    monkeypatch.setattr(P, "PLUGIN_SAMPLES", 20_000)
    world = synthetic.LinearWorld(
        (2, 3), latent_dim=2, noise=0.0, task="classification", n_classes=3, seed=5
    )
    r_inf, k_eff, k = P.softmax_asymptotics(world, "m1+m2")
    assert k == (4 + 1) * 2
    assert k_eff == pytest.approx(k, rel=0.1)
    assert 0 < r_inf < math.log(3)


def test_accuracy_summary_counts_only_scored_cells():
    risk = pd.DataFrame(
        dict(
            regime=["exact", "exact", "none"],
            m=[40, 50, 9],
            p=[9, 9, 9],
            inside=[1.0, 0.0, np.nan],
            rel_error=[0.01, -0.03, np.nan],
        )
    )
    cross = pd.DataFrame(
        dict(
            regime=["exact", "exact"],
            inside=[True, False],
            rel_error=[0.02, 0.1],
            m_star_predicted=[100.0, 30.0],
            p_M=[20, 20],
        )
    )
    s = accuracy_summary(risk, cross).set_index("quantity")
    assert s.loc["expected test risk, m > p + 10", "n"] == 2
    assert s.loc["crossover m*", "inside_share"] == 0.5
    assert s.loc["crossover m*, m* > p_M + 10", "inside_share"] == 1.0
    assert s.loc["crossover m*, m* <= p_M + 10", "inside_share"] == 0.0


def test_interval_coverage_by_simulation_and_negative_controls(monkeypatch):
    """Coverage over independent groups of seeds: the true closed forms are covered at
    about the intervals' level; a prediction 30% too high (risk) or 2x too large (m*) is
    covered almost never, so the coverage study can say "undercovers"."""
    from mmtheory.theory import versus

    world = _small_world()
    cross = predict_crossovers(world)
    m_star = float(cross[(cross.M == "m1+m2") & (cross.N == "m1")].m_star.iloc[0])
    sizes = sorted({*np.geomspace(14, 6 * m_star, 8).round().astype(int)})
    res = sweep(
        world, "linear", ["m1", "m1+m2"], m=sizes, seeds=60, dtype="float64", progress=False
    )
    cov = versus.interval_coverage(res, [world], group_size=10).set_index("quantity")
    assert cov.loc["risk, m > p + 10"].groups == 6
    far = cov.loc["risk, m > p + 10"]
    assert far.trials > 0 and far.trials % 6 == 0
    assert far.coverage_ci_high >= 0.9 and far.coverage >= 0.8
    cx = cov.loc["crossover m*, all"]
    assert cx.trials >= 3 and cx.coverage >= 0.5

    real_predict, real_cross = versus.predict, versus.predict_crossovers
    monkeypatch.setattr(
        versus, "predict", lambda *a: real_predict(*a).assign(test_risk=lambda d: d.test_risk * 1.3)
    )
    monkeypatch.setattr(
        versus,
        "predict_crossovers",
        lambda *a: real_cross(*a).assign(m_star=lambda d: d.m_star * 2),
    )
    bad = versus.interval_coverage(res, [world], group_size=10).set_index("quantity")
    assert bad.loc["risk, m > p + 10"].coverage < 0.2
    assert bad.loc["crossover m*, all"].coverage < 0.2
    with pytest.raises(ValueError, match="at least 2 groups"):
        versus.interval_coverage(res, [world], group_size=40)


def test_coverage_part_writes_its_table(tmp_path, monkeypatch):
    from mmtheory.studies import prediction

    world = _small_world()
    monkeypatch.setattr(prediction, "accuracy_worlds", lambda quick=False: [world])
    monkeypatch.setattr(prediction, "crossover_sizes", lambda w, per_decade: [16, 30, 60, 120])
    cfg = dict(prediction._settings(True), seeds=4, coverage_groups=2)
    table = prediction.coverage_part(tmp_path, cfg, progress=False)
    assert (tmp_path / "coverage.csv").exists()
    assert set(table.group_size) == {4} and table.trials.gt(0).all()
    text = "\n".join(prediction.coverage_markdown(table))
    assert "2 x 4" in text and "risk, m > p + 10" in text


def test_crossovers_near_the_threshold_are_not_scored():
    """A pair whose predicted m* is within 10 of p_M gets no verdict (the measured interval
    cannot cover there); with margin 0 the same pair is scored, and a pair beyond the
    margin is scored as before."""
    p7 = pd.DataFrame(
        dict(
            prediction="P7",
            world_id="w",
            learner="linear",
            M=["a+b", "a+c"],
            N=["a", "a"],
            statistic=[100.0, 26.0],
            ci_low=[90.0, 24.0],
            ci_high=[110.0, 28.0],
            n_trials=[20, 20],
            holds="true",
            reason="",
            detail="",
        )
    )
    cross = pd.DataFrame(
        dict(
            world="w",
            world_id="w",
            learner="linear",
            M=["a+b", "a+c"],
            N=["a", "a"],
            p_M=[20, 20],
            p_N=[10, 10],
            m_star=[100.0, 25.0],
            m_star_se=[5.0, 1.0],
            exists=True,
            regime="exact",
            reason="",
        )
    )
    out = crossover_vs_measured(p7, cross).set_index("M")
    assert out.loc["a+b", "inside"] == 1
    assert pd.isna(out.loc["a+c", "inside"]) and "not scored" in out.loc["a+c", "reason"]
    scored = crossover_vs_measured(p7, cross, margin=0).set_index("M")
    assert scored.loc["a+c", "inside"] == 1
