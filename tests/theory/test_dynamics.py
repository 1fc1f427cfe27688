"""The dynamics oracles on hand-computable cases, the read-off of measured quantities on
hand-built trajectories, and the verdicts with their negative controls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import synthetic
from mmtheory.engine import Trajectory
from mmtheory.models import Learner
from mmtheory.theory.dynamics import (
    COLUMNS,
    DynamicsRun,
    PairMoments,
    Tolerances,
    dynamics_verdicts,
    fusion_layers,
    fusion_order_verdict,
    measured_dynamics,
    misattribution_scalar,
    predicted_dynamics,
    read_times,
    time_ratio_depth,
    time_ratio_scalar,
)


# ------------------------------------------------------------------ closed forms
def test_scalar_closed_forms_by_hand():
    assert time_ratio_scalar(2.0, 1.0, 0.0) == 4.0  # k = 4
    assert math.isclose(time_ratio_scalar(2.0, 1.0, 0.5), 1 + 3 / 0.75)
    assert math.isclose(time_ratio_scalar(3.0, 1.0, -0.5), 1 + 8 / 0.75)  # even in rho
    assert time_ratio_scalar(1.0, 1.0, 0.9) == 1.0  # equal variances: no unimodal phase
    assert math.isclose(misattribution_scalar(2.0, 1.0, 0.5), 0.25)
    assert math.isclose(misattribution_scalar(2.0, 1.0, -0.5), -0.25)
    with pytest.raises(ValueError, match="rho must be in"):
        time_ratio_scalar(2.0, 1.0, 1.0)


@pytest.mark.parametrize("rho", [-0.9, -0.6, -0.2, 0.0, 0.3, 0.8])
@pytest.mark.parametrize("ratio", [1.2, 2.0, 3.0])
def test_moment_forms_equal_the_scalar_closed_forms(rho, ratio):
    """The general forms, computed from the world's second moments, reduce to the paper's
    scalar formulas for every sign of rho (B's direction shrinking while A is learned
    when sigma_B + rho sigma_A < 0)."""
    world = synthetic.GaussianPairWorld(ratio * 0.7, 0.7, rho)  # any common scale
    pm = PairMoments.of(world, world.names)
    assert pm.first == "A"
    assert math.isclose(pm.time_ratio(), time_ratio_scalar(ratio, 1.0, rho), rel_tol=1e-12)
    plateau = world.best_linear(["A"])[0, 0]
    final = world.best_linear()[0, 0]
    assert math.isclose(pm.unimodal_first.item(), plateau, rel_tol=1e-12)
    assert math.isclose(plateau - final, misattribution_scalar(ratio, 1.0, rho), abs_tol=1e-12)


def test_the_larger_input_output_correlation_is_learned_first():
    world = synthetic.GaussianPairWorld(1.0, 2.0, 0.3)
    pm = PairMoments.of(world, ("A", "B"))
    assert (pm.first, pm.second) == ("B", "A")
    assert math.isclose(pm.time_ratio(), time_ratio_scalar(2.0, 1.0, 0.3))


def test_multidimensional_time_ratio_by_hand():
    # sigma_A = (2, 1), sigma_B = (1, 1), rho = 0: Sigma_yA = (4, 1), Sigma_yB = (1, 1),
    # Sigma_AB = 0, so the plateau residual is Sigma_yB: 1 + (sqrt 17 - sqrt 2) / sqrt 2
    world = synthetic.GaussianPairWorld([2.0, 1.0], [1.0, 1.0], 0.0)
    pm = PairMoments.of(world, world.names)
    assert math.isclose(pm.time_ratio(), math.sqrt(17 / 2), rel_tol=1e-12)
    # d identical copies of a scalar pair: every norm scales by sqrt(d), the ratio does not
    copies = synthetic.GaussianPairWorld([1.5] * 3, [1.0] * 3, [0.4] * 3)
    scalar = synthetic.GaussianPairWorld(1.5, 1.0, 0.4)
    assert math.isclose(
        PairMoments.of(copies, copies.names).time_ratio(),
        PairMoments.of(scalar, scalar.names).time_ratio(),
        rel_tol=1e-12,
    )


def test_depth_formula_limits_and_ordering():
    pm = PairMoments.of(*_world_and_names(2.0, 0.3))
    closed = pm.time_ratio()
    assert time_ratio_depth(pm, 4, 1, 0.05) == 1.0  # early fusion
    assert time_ratio_depth(pm, 4, 4, 0.05) == closed  # last-layer fusion, any depth
    assert time_ratio_depth(pm, 2, 2, 0.3) == closed  # two layers, any initial scale
    # intermediate fusion: between early and late, longer the later the fusion
    r2, r3 = time_ratio_depth(pm, 4, 2, 0.05), time_ratio_depth(pm, 4, 3, 0.05)
    assert 1.0 < r2 < r3 < closed
    # a smaller start lengthens A's time faster than B's lag when L > L_f: towards 1
    assert time_ratio_depth(pm, 4, 2, 1e-4) < r2
    with pytest.raises(ValueError, match="fusion layer must be"):
        time_ratio_depth(pm, 3, 4, 0.1)
    with pytest.raises(ValueError, match="u0"):
        time_ratio_depth(pm, 3, 2, 1.5)


def test_depth_formula_lag_at_two_layers_of_modality_specific_weights():
    """L_f = 2 < L: lag = (1 - k) ln(1/u0) / (g_B' |W_A^uni|^((L - 2) / L)), k = g_B / g_A,
    and A's time the integral; check 1 + lag / I against a direct quadrature by hand."""
    pm = PairMoments.of(*_world_and_names(1.5, 0.0))
    g_a, g_b, g_res = pm.rates  # rho = 0: g_A = sigma_A^2, g_B = sigma_B^2 = g_B'
    assert math.isclose(g_b, g_res)
    L, u0 = 3, 0.02
    k = g_b / g_a
    u = np.geomspace(u0, 1.0, 200_001)
    ub = u**k * u0 ** (1 - k)
    f = 1.0 / (g_a * u * np.sqrt(u**2 + ub**2))
    time_a = np.sum((f[1:] + f[:-1]) / 2 * np.diff(u))  # trapezoid, relative error ~1e-9
    lag = (1 - k) * math.log(1 / u0) / (g_res * abs(pm.unimodal_first.item()) ** (1 / 3))
    assert math.isclose(time_ratio_depth(pm, L, 2, u0), 1 + lag / time_a, rel_tol=1e-6)


def test_fusion_layers_in_the_papers_notation():
    assert fusion_layers(Learner(kind="late_fusion")) == (2, 2)
    assert fusion_layers(Learner(kind="late_fusion", encoder="mlp")) == (3, 3)
    assert fusion_layers(Learner(kind="late_fusion", encoder="mlp", depth=3)) == (4, 4)
    assert fusion_layers(Learner(kind="late_fusion", head_layers=2)) == (4, 2)
    assert fusion_layers(Learner(kind="early_fusion", head_layers=1)) == (3, 1)
    with pytest.raises(ValueError, match="late and early fusion"):
        fusion_layers(Learner(kind="linear"))


def _world_and_names(ratio, rho):
    w = synthetic.GaussianPairWorld(ratio, 1.0, rho)
    return w, w.names


# ------------------------------------------------------- read-off, by hand
def _hand_trajectory() -> Trajectory:
    """sigma_A = 2, sigma_B = 1, rho = 0.5 (plateau W_A = 1.25, final (1, 1)):
    W_A: 0 -> 1.25 over steps 0..100, flat, -> 1 over 400..500; W_B: 0 until 400, -> 1 at
    500. Piecewise linear on the recorded steps, so interpolation is exact."""
    steps = np.array([0, 50, 100, 250, 400, 450, 500, 1000])
    wa = np.array([0.0, 0.625, 1.25, 1.25, 1.25, 1.125, 1.0, 1.0])
    wb = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    T = len(steps)
    weights = np.stack([wa, wb], axis=-1)[None, None, :, :, None]  # (1, 1, T, 2, 1)
    return Trajectory(
        steps=steps,
        loss=np.zeros((1, 1, T)),
        branch_loss=None,
        weights=weights,
        bias=np.zeros((1, 1, T, 1)),
        names=("A", "B"),
        dims=(1, 1),
    )


def _hand_run(rho=0.5) -> DynamicsRun:
    world = synthetic.GaussianPairWorld(2.0, 1.0, rho)
    return DynamicsRun(_hand_trajectory(), 0, [world], ("A", "B"), Learner(kind="late_fusion"))


def test_times_and_measured_quantities_by_hand():
    times = read_times(_hand_run())
    assert times.loc[0, "t_first"] == 50.0  # |W_A| = 1.25 / 2
    assert times.loc[0, "t_second"] == 450.0  # |W_B| = 1 / 2
    assert times.loc[0, "t_plateau"] == 250.0
    m = measured_dynamics(_hand_run())
    assert list(m.columns) == list(COLUMNS)
    assert m.loc[0, "time_ratio"] == 9.0
    assert m.loc[0, "misattribution"] == 0.25  # 1.25 - 1
    assert (m.loc[0, "plateau_first"], m.loc[0, "plateau_second"]) == (1.25, 0.0)
    assert m.loc[0, "plateau_gap"] < 1e-15 and m.loc[0, "final_gap"] < 1e-15  # pinv rounding
    p = predicted_dynamics(_hand_run())
    assert p.shape == m.shape and list(p.columns) == list(m.columns)
    assert math.isclose(p.loc[0, "time_ratio"], 5.0)  # 1 + (4 - 1) / (1 - 0.25)
    assert math.isclose(p.loc[0, "misattribution"], 0.25)
    assert math.isclose(p.loc[0, "plateau_first"], 1.25)


def test_a_time_never_reached_is_missing():
    run = _hand_run()
    run.trajectory.weights[..., 1, :] = 0.0  # B never learned
    times = read_times(run)
    assert math.isnan(times.loc[0, "t_second"])


# --------------------------------------------------- verdicts, negative controls
def test_verdicts_hold_on_agreement_and_fail_on_the_hand_trajectory():
    run = _hand_run()
    m, p = measured_dynamics(run), predicted_dynamics(run)
    v = dynamics_verdicts(p, m).set_index("check")
    # the hand-built trajectory has the right plateau but a ratio of 9, not 5
    assert not v.loc["time_ratio", "holds"] and v.loc["time_ratio", "value"] == 0.0
    assert v.loc["plateau", "holds"] and v.loc["misattribution", "holds"]
    assert v.loc["converged", "holds"]
    assert dynamics_verdicts(p, p).holds.all()  # the theory agrees with itself


def test_a_wrong_rho_makes_every_prediction_check_fail():
    run = _hand_run()
    m = measured_dynamics(run)
    wrong = predicted_dynamics(_hand_run(rho=0.0))  # plateau 1, misattribution 0, ratio 4
    v = dynamics_verdicts(wrong, m).set_index("check")
    assert not v.loc["plateau", "holds"] and math.isclose(v.loc["plateau", "value"], 0.25)
    assert not v.loc["misattribution", "holds"]
    assert v.loc["converged", "holds"]  # a measured property: the control leaves it alone


def test_time_ratio_verdict_counts_the_share_within_tolerance():
    idx = pd.RangeIndex(10, name="group")
    p = pd.DataFrame({c: np.ones(10) for c in COLUMNS}, index=idx)
    m = p.copy()
    m.loc[0, "time_ratio"] = 1.2  # one row off by 20%: 90% within 10% holds
    assert dynamics_verdicts(p, m).set_index("check").loc["time_ratio", "holds"]
    m.loc[1, "time_ratio"] = math.nan  # a missing time counts as a failure: 80%
    v = dynamics_verdicts(p, m).set_index("check").loc["time_ratio"]
    assert not v.holds and math.isclose(v.value, 0.8)
    v = dynamics_verdicts(p, m, Tolerances(ratio=0.25, fraction=0.8))
    assert v.set_index("check").loc["time_ratio", "holds"]
    with pytest.raises(ValueError, match="same rows"):
        dynamics_verdicts(p, m.iloc[:5])


def test_fusion_order_verdict_by_hand():
    rows = [  # two runs: one increasing in L_f, one not
        {"rho": 0.0, "sigma_ratio": 2.0, "seed": 0, "fuse": f, "time_ratio_measured": v}
        for f, v in [(1, 1.0), (2, 1.5), (3, 4.0)]
    ] + [
        {"rho": 0.5, "sigma_ratio": 2.0, "seed": 0, "fuse": f, "time_ratio_measured": v}
        for f, v in [(1, 1.1), (2, 1.0), (3, 5.0)]
    ]
    table = pd.DataFrame(rows)
    v = fusion_order_verdict(table).iloc[0]
    assert v.check == "deeper_fusion" and v.value == 0.5 and not v.holds
    v = fusion_order_verdict(table[table.rho == 0.0]).iloc[0]
    assert v.value == 1.0 and v.holds
    # negative control: the order of fusion layers reversed must fail
    flipped = table[table.rho == 0.0].assign(fuse=lambda t: 4 - t.fuse)
    assert not fusion_order_verdict(flipped).iloc[0].holds
