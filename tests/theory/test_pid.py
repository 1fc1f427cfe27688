"""Partial information decomposition: Gaussian closed forms, the classic discrete gates,
the estimator's bias correction, and the identities that tie the atoms to eta_inf."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic
from mmtheory.theory.game_tables import population_games
from mmtheory.theory.games import interactions, shapley
from mmtheory.theory.pid import (
    discrete_pid,
    discretized_pid,
    gaussian_mi,
    gaussian_pid,
    linear_scores,
    mi_from_risks,
    mmi_pid,
)

LOG2 = np.log(2.0)


def test_gaussian_pid_by_hand():
    """y = x1 + x2 + e, all independent with unit variance: Var y = 3, I(y; x_k) =
    1/2 log(3/2), I(y; x1, x2) = 1/2 log 3; MMI: R = 1/2 log 1.5, U = 0, S = 1/2 log 2."""
    cov = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 3.0]])  # x1, x2, y
    assert gaussian_mi(cov, [2], [0]) == pytest.approx(0.5 * np.log(1.5))
    assert gaussian_mi(cov, [2], [0, 1]) == pytest.approx(0.5 * np.log(3.0))
    pid = mmi_pid(
        gaussian_mi(cov, [2], [0]), gaussian_mi(cov, [2], [1]), gaussian_mi(cov, [2], [0, 1])
    )
    assert pid.redundancy == pytest.approx(0.5 * np.log(1.5))
    assert pid.unique_1 == pytest.approx(0.0) and pid.unique_2 == pytest.approx(0.0)
    assert pid.synergy == pytest.approx(0.5 * np.log(2.0))
    # a target the sources determine carries infinite information
    det = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 2.0]])
    assert gaussian_mi(det, [2], [0, 1]) == np.inf


def test_world_pid_equals_the_pid_of_its_sufficient_scalars():
    """latent_dim = 1: A_k' x_k is sufficient, so the 3 x 3 covariance gives the same PID."""
    w = synthetic.LinearWorld((3, 5), latent_dim=1, rho=0.4, noise=(0.3, 0.8), strength=(1, 0.5))
    full = gaussian_pid(w)
    sigma, sxy, syy = w.second_moments()
    sl = w.feature_slices()
    # each modality's direction: its (rank-one) signal covariance's top eigenvector
    P = np.zeros((sigma.shape[0], 2))
    for k, name in enumerate(w.names):
        block = sigma[sl[name], sl[name]]
        P[sl[name], k] = np.linalg.eigh(block)[1][:, -1]
    cov = np.block([[P.T @ sigma @ P, P.T @ sxy], [sxy.T @ P, syy]])
    small = mmi_pid(
        gaussian_mi(cov, [2], [0]), gaussian_mi(cov, [2], [1]), gaussian_mi(cov, [2], [0, 1])
    )
    np.testing.assert_allclose(
        list(full.as_dict().values()), list(small.as_dict().values()), atol=1e-10
    )


def test_groups_and_a_noise_modality_negative_control():
    """A pure-noise modality adds no information: as a second group it has no unique, no
    redundant and no synergistic information."""
    w = synthetic.LinearWorld((4, 4), latent_dim=2, rho=0.3, n_noise_modalities=1, noise_dim=3)
    pid = gaussian_pid(w, groups=[["m1", "m2"], ["noise1"]])
    assert pid.mi_2 == pytest.approx(0.0, abs=1e-12)
    for atom in ("redundancy", "unique_2", "synergy"):
        assert getattr(pid, atom) == pytest.approx(0.0, abs=1e-12)
    assert pid.unique_1 > 0.1
    with pytest.raises(ValueError, match="groups"):
        gaussian_pid(w)
    with pytest.raises(ValueError, match="share"):
        gaussian_pid(w, groups=[["m1"], ["m1", "m2"]])
    with pytest.raises(ValueError, match="unknown modality"):
        gaussian_pid(w, groups=[["m1"], ["audio"]])


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_atoms_eta_inf_and_game_identities(rho):
    w = synthetic.LinearWorld((3, 3), latent_dim=2, rho=rho, noise=(0.4, 0.9), strength=(1, 0.6))
    pid = gaussian_pid(w)
    b, var_y = w.bayes_risk(), float(w.second_moments()[2][0, 0])
    r = {k: b + w.eta_inf(k) for k in ("m1", "m2", "all")}
    assert mi_from_risks(var_y, r["m1"]) == pytest.approx(pid.mi_1, abs=1e-12)
    # dropping m2 raises the risk by exp(2 (U_2 + S)); redundancy never raises it
    assert mi_from_risks(r["m1"], r["all"]) == pytest.approx(pid.unique_2 + pid.synergy, abs=1e-12)
    assert mi_from_risks(r["m2"], r["all"]) == pytest.approx(pid.unique_1 + pid.synergy, abs=1e-12)
    info = np.array([0.0, pid.mi_1, pid.mi_2, pid.mi_12])
    assert shapley(info)[0] == pytest.approx(pid.unique_1 + (pid.redundancy + pid.synergy) / 2)
    assert interactions(info)[0] == pytest.approx(pid.synergy - pid.redundancy)


def test_population_imbalance_score_is_zero_for_independent_modalities():
    """rho = 0, zero means: the best joint linear predictor restricted to one modality is
    that modality's own best predictor, so the exact gap is 0 (the negative control);
    correlated modalities give a non-zero gap."""
    for rho, zero in ((0.0, True), (0.7, False)):
        w = synthetic.LinearWorld((3, 3), latent_dim=2, rho=rho, noise=(0.3, 0.9))
        retrain, masked = population_games(w)
        assert retrain[0] == masked[0] and retrain[-1] == pytest.approx(masked[-1])
        gap = shapley(retrain) - shapley(masked)
        assert (np.abs(gap).max() < 1e-12) == zero


# ---------------------------------------------------------------- discrete PIDs
def _pmf(rows):
    """A pmf p[y, x1, x2] from equally likely (y, x1, x2) outcomes."""
    rows = np.asarray(rows)
    p = np.zeros(tuple(rows.max(axis=0) + 1))
    for r in rows:
        p[tuple(r)] += 1.0 / len(rows)
    return p


GATES = {
    # (y, x1, x2) outcomes; Williams and Beer (2010), Table/Fig. values in bits
    "xor": [(a ^ b, a, b) for a in (0, 1) for b in (0, 1)],
    "and": [(a & b, a, b) for a in (0, 1) for b in (0, 1)],
    "copy": [(a, a, a) for a in (0, 1)],
    "unique": [(a, a, b) for a in (0, 1) for b in (0, 1)],
}


def test_classic_gates():
    xor = discrete_pid(_pmf(GATES["xor"]), redundancy="imin")
    np.testing.assert_allclose([xor.redundancy, xor.unique_1, xor.unique_2], 0, atol=1e-12)
    assert xor.synergy == pytest.approx(LOG2)
    and_ = discrete_pid(_pmf(GATES["and"]), redundancy="imin")
    # AND: I_min = 0.311 bits of redundancy, 0.5 bit of synergy, no unique information
    assert and_.redundancy / LOG2 == pytest.approx(0.3113, abs=1e-4)
    assert and_.synergy / LOG2 == pytest.approx(0.5, abs=1e-12)
    assert and_.unique_1 == pytest.approx(0.0, abs=1e-12)
    copy = discrete_pid(_pmf(GATES["copy"]))
    assert copy.redundancy == pytest.approx(LOG2) and copy.synergy == pytest.approx(0.0)
    unique = discrete_pid(_pmf(GATES["unique"]), redundancy="imin")
    assert unique.unique_1 == pytest.approx(LOG2) and unique.redundancy == pytest.approx(0.0)


def test_imin_never_exceeds_mmi():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.ones(27)).reshape(3, 3, 3)
        assert discrete_pid(p, redundancy="imin").redundancy <= discrete_pid(p).redundancy + 1e-12


def test_discrete_pid_validates():
    with pytest.raises(ValueError, match="pmf"):
        discrete_pid(np.ones((2, 2)))
    with pytest.raises(ValueError, match="redundancy"):
        discrete_pid(_pmf(GATES["xor"]), redundancy="broja")
    with pytest.raises(ValueError, match="Miller-Madow"):
        discrete_pid(_pmf(GATES["xor"]), redundancy="imin", n=10)


def test_miller_madow_removes_the_plugin_bias_on_independent_data(seed):
    """Independent y, s1, s2: every MI is 0. The plug-in I(y; s1, s2) has bias
    (B - 1)^2 (B + 1) / (2n) = 0.0394 nats here; Miller-Madow removes it. Over 30 repetitions
    the mean corrected value lies within 4.5 standard errors of 0 (false alarm < 1e-5)."""
    rng = np.random.default_rng(seed)
    n, bins, reps = 3200, 8, 30
    raw, corrected = [], []
    for _ in range(reps):
        y, s1, s2 = rng.normal(size=(3, n))
        raw.append(discretized_pid(y, s1, s2, bins=bins).mi_12)
        corrected.append(discretized_pid(y, s1, s2, bins=bins, correct=True).mi_12)
    raw, corrected = np.array(raw), np.array(corrected)
    assert raw.mean() == pytest.approx((bins - 1) ** 2 * (bins + 1) / (2 * n), rel=0.15)
    assert abs(corrected.mean()) < 4.5 * corrected.std(ddof=1) / np.sqrt(reps)


def test_linear_scores_recover_the_predictor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0
    np.testing.assert_allclose(linear_scores(x, y, x[:5]), y[:5])
