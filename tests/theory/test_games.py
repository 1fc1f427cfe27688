"""Contribution games: exact Shapley values and interactions, and the peers' conventions,
each transcribed from its source text onto games small enough to compute by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mmtheory.theory.contributions import interaction_indices, shapley_values
from mmtheory.theory.game_tables import (
    game_rows,
    imbalance_rows,
    masked_values,
    results_games,
    retrain_values,
)
from mmtheory.theory.games import (
    agm_responses,
    balancebenchmark_shapley,
    coalition,
    interactions,
    intershap_matrix,
    intershap_score,
    mmshap_shares,
    n_players,
    shapley,
)

# K = 2, bit 0 = modality 1, bit 1 = modality 2: v(empty) = 0, v(1) = 1, v(2) = 2, v(12) = 6
GAME = np.array([0.0, 1.0, 2.0, 6.0])


def test_shapley_and_interaction_by_hand():
    # phi_1 = 1/2 (1 - 0) + 1/2 (6 - 2) = 2.5, phi_2 = 1/2 (2 - 0) + 1/2 (6 - 1) = 3.5
    np.testing.assert_allclose(shapley(GAME), [2.5, 3.5])
    # Grabisch: 6 - 1 - 2 + 0 = 3; InterSHAP: half of it
    np.testing.assert_allclose(interactions(GAME, "grabisch"), [3.0])
    np.testing.assert_allclose(interactions(GAME, "intershap_half"), [1.5])


def test_three_player_interaction_weights_by_hand():
    """K = 3: Grabisch weights 1/2, 1/2 over S = {} and {3}; InterSHAP's 1/4, 1/4
    (s! (K - s - 2)! / (2 (K - 1)!))."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=8)
    inner = v[3] - v[1] - v[2] + v[0]  # S = {}
    outer = v[7] - v[5] - v[6] + v[4]  # S = {3}
    assert interactions(v)[0] == pytest.approx(0.5 * inner + 0.5 * outer)
    assert interactions(v, "intershap_half")[0] == pytest.approx(0.25 * inner + 0.25 * outer)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_matches_the_dict_implementation_and_is_efficient(K):
    rng = np.random.default_rng(K)
    v = rng.normal(size=2**K)
    players = [f"p{k}" for k in range(K)]
    game = {
        frozenset(p for k, p in enumerate(players) if c >> k & 1): float(v[c]) for c in range(2**K)
    }
    phi_dict = shapley_values(game, players)
    np.testing.assert_allclose(shapley(v), [phi_dict[p] for p in players], atol=1e-12)
    inter = interaction_indices(game, players)
    np.testing.assert_allclose(
        interactions(v), [inter[pair] for pair in itertools.combinations(players, 2)], atol=1e-12
    )
    assert shapley(v).sum() == pytest.approx(v[-1] - v[0])


def test_symmetry_dummy_and_batching():
    rng = np.random.default_rng(1)
    # players 1 and 2 symmetric, player 3 a dummy: v depends on the count of {1, 2} present
    base = rng.normal(size=3)
    v = np.array([base[(c & 1) + (c >> 1 & 1)] for c in range(8)])
    phi = shapley(v)
    assert phi[0] == pytest.approx(phi[1]) and phi[2] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(interactions(v)[1:], 0.0, atol=1e-12)  # pairs with the dummy
    batch = rng.normal(size=(5, 7, 8))
    np.testing.assert_allclose(shapley(batch).mean(axis=1), shapley(batch.mean(axis=1)))


def test_bad_game_sizes_are_refused():
    with pytest.raises(ValueError, match="2\\^K"):
        n_players(np.zeros(6))
    with pytest.raises(ValueError, match="convention"):
        interactions(GAME, "half")
    with pytest.raises(ValueError, match="out of range"):
        coalition([2], 2)


# ---------------------------------------------------------------- the peers' conventions
def test_intershap_matrix_and_scores():
    """InterSHAP (paper repository and package): off-diagonal = half Grabisch, diagonal =
    phi_i - sum of the row's off-diagonal entries; scores count pairs twice or once."""
    m = intershap_matrix(GAME)
    np.testing.assert_allclose(m, [[1.0, 1.5], [1.5, 2.0]])
    assert m.sum() == pytest.approx(GAME[-1] - GAME[0])
    # repository: |off| = 3 of |all| = 6; package: 1.5 / (1.5 + 1 + 2)
    assert intershap_score(GAME) == pytest.approx(0.5)
    assert intershap_score(GAME, pairs_counted="once") == pytest.approx(1 / 3)
    additive = np.array([0.0, 1.0, 2.0, 3.0])  # no interaction
    assert intershap_score(additive) == pytest.approx(0.0)


def test_mmshap_shares():
    """MM-SHAP: |phi_k| / sum_j |phi_j| (modality-level players)."""
    np.testing.assert_allclose(mmshap_shares(shapley(GAME)), [2.5 / 6, 3.5 / 6])
    np.testing.assert_allclose(mmshap_shares(np.array([-1.0, 3.0])), [0.25, 0.75])
    np.testing.assert_allclose(mmshap_shares(np.zeros(2)), [0.5, 0.5])


def test_balancebenchmark_conventions():
    """Calculate_Shapley: unweighted marginals over non-empty S (empty only on request);
    Calculate_Shapley_Sample: Shapley weights, S = empty skipped."""
    np.testing.assert_allclose(balancebenchmark_shapley(GAME), [6 - 2, 6 - 1])
    np.testing.assert_allclose(balancebenchmark_shapley(GAME, include_empty=True), [4 + 1, 5 + 2])
    np.testing.assert_allclose(balancebenchmark_shapley(GAME, per_sample=True), [2.0, 2.5])
    v = np.random.default_rng(2).normal(size=8)  # A = bit 0, V = bit 1, T = bit 2
    V, T, AV, AT, VT, AVT = v[2], v[4], v[3], v[5], v[6], v[7]
    assert balancebenchmark_shapley(v)[0] == pytest.approx((AV - V) + (AT - T) + (AVT - VT))
    assert balancebenchmark_shapley(v, per_sample=True)[0] == pytest.approx(
        (AV - V) / 6 + (AT - T) / 6 + (AVT - VT) / 3
    )


def test_agm_responses_transcribed():
    """AGM's Modality_Audio: 1/3 (AVT - VT) + 1/6 (AV - V + AT - T) + 1/3 A; for K = 2,
    1/2 (total - pad_audio + pad_visual): the Shapley value with v(empty) := 0."""
    v = np.random.default_rng(3).normal(size=8)
    A, V, T, AV, AT, VT, AVT = v[1], v[2], v[4], v[3], v[5], v[6], v[7]
    expected = (AVT - VT) / 3 + (AV - V + AT - T) / 6 + A / 3
    assert agm_responses(v)[0] == pytest.approx(expected)
    two = np.array([10.0, 1.0, 2.0, 6.0])  # f(all zero) = 10 is ignored
    np.testing.assert_allclose(agm_responses(two), [0.5 * (6 - 2 + 1), 0.5 * (6 - 1 + 2)])
    assert agm_responses(two).sum() == pytest.approx(6.0)  # adds up to the joint output
    assert shapley(two)[0] != pytest.approx(agm_responses(two)[0])


# ---------------------------------------------------------------- tables
def test_value_assembly_and_empty_conventions():
    names = ["a", "b"]
    sub = np.array([[[1.0, 3.0], [2.0, 4.0], [5.0, 7.0]]])  # (G=1, S=3, n=2)
    empty = np.array([[0.0, 1.0]])
    v = retrain_values(sub, [("a",), ("b",), ("a", "b")], names, empty)
    np.testing.assert_allclose(v[0], [[0, 1, 2, 5], [1, 3, 4, 7]])
    with pytest.raises(ValueError, match="all 3 subsets"):
        retrain_values(sub[:, :2], [("a",), ("b",)], names, empty)
    coal = np.full((1, 2, 4), 9.0)
    assert masked_values(coal, empty, "constant")[0, 1, 0] == 1.0
    assert masked_values(coal, empty, "masked")[0, 1, 0] == 9.0
    assert masked_values(coal, empty, "zero")[0, 1, 0] == 0.0
    rows = game_rows(v, names, game="retrain", mask="none", empty="constant", value="neg_risk")
    assert {r["convention"] for r in rows} == {"shapley", "grabisch", "intershap_half"}
    grab = next(r for r in rows if r["convention"] == "grabisch")
    half = next(r for r in rows if r["convention"] == "intershap_half")
    assert grab["estimate"] == pytest.approx(2 * half["estimate"])


def _gaps(per_seed_gap: np.ndarray) -> np.ndarray:
    """Retrain and masked games (G, 1, 4) whose Shapley gap of modality 0 is ``per_seed_gap``."""
    G = len(per_seed_gap)
    masked = np.tile(GAME, (G, 1, 1))
    retrain = masked.copy()
    # raising v({a}) by 2g raises phi_a by g and lowers phi_b by g (v(N) unchanged)
    retrain[:, 0, 1] += 2 * per_seed_gap
    return retrain, masked


def test_imbalance_flag_needs_a_sign_test():
    rng = np.random.default_rng(4)
    g = np.abs(rng.normal(1.0, 0.1, size=20))
    g[0] = -0.1  # positive in 19 of 20 seeds
    rows = imbalance_rows(*_gaps(g), ["a", "b"], mask="zero", value="neg_risk")
    assert rows[0]["flagged"] and not rows[1]["flagged"]
    assert rows[0]["gap"] == pytest.approx(-rows[1]["gap"])  # the scores add up to 0
    four = imbalance_rows(*_gaps(np.ones(4)), ["a", "b"], mask="zero", value="neg_risk")
    assert four[0]["positive_rate"] == 1.0 and not four[0]["flagged"]  # 4 of 4: no evidence


def test_imbalance_negative_control_same_game_flags_nothing():
    retrain, masked = _gaps(np.zeros(20))
    rows = imbalance_rows(retrain, masked, ["a", "b"], mask="zero", value="neg_risk")
    assert not any(r["flagged"] for r in rows) and all(r["gap"] == 0 for r in rows)


def test_results_games_agree_with_the_contributions_table():
    """The retrain game of a sweep's table: the same Shapley means as ``mmtheory check``."""
    from mmtheory.theory.contributions import contributions_table

    results = pd.read_csv("tests/golden/data/results.csv")
    ours = results_games(results)
    theirs = contributions_table(results)
    theirs = theirs[(theirs.kind == "shapley") & (theirs["value"] == "risk")]
    mine = ours[ours.kind == "shapley"]
    assert len(mine) > 0
    for r in theirs.itertuples():
        match = mine[(mine.world == r.world) & (mine.m == r.m) & (mine.modality == r.modality)]
        match = match[match.learner == r.learner]
        if "rho" in results.columns and len(match) > 1:
            continue  # several worlds of one kind: compared per world_id elsewhere
        assert match.estimate.iloc[0] == pytest.approx(r.estimate, rel=1e-9, abs=1e-12)
