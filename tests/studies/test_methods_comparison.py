"""The methods comparison's plan and tables, on hand-made results (every verdict has a case
built to come out false)."""

import pandas as pd
import pytest

from mmtheory.models.methods import METHODS, get_method
from mmtheory.studies.methods import (
    EQUAL,
    ORIGINAL,
    PLACEBO,
    ablation_table,
    claims_table,
    plan_entries,
)


def test_plan_runs_every_method_under_both_recipes_against_its_own_erm():
    entries = {e.label: e for e in plan_entries()}
    for name in METHODS[1:]:
        assert entries[name].table == EQUAL and entries[name].baseline == "erm"
        cls = get_method(name)
        if cls.recipe:
            tagged = [e for e in entries.values() if e.method == name and e.table == ORIGINAL]
            assert tagged, name
            for e in tagged:
                base = entries[e.baseline]
                # the baseline is ERM trained with exactly the method's recipe
                assert base.method == "erm" and base.settings == e.settings, e.label
    ogm = entries["ogm_ge[sgd-m0.9]"]
    assert ogm.settings["solver"] == "sgd" and ogm.settings["momentum"] == 0.9
    assert entries["ogm_ge-noise-erm"].settings["solver"] == "adam"
    assert entries["ogm_ge-noise[sgd-m0.9]"].options == {"alpha": 0.0}
    assert entries["i2m2[sgd-clip8]"].settings["clip_norm"] == 8.0
    assert entries[PLACEBO].settings["init_name"] == "placebo"
    # every learner of the comparison shares the initial fused model
    assert {e.fields(10).get("init_name") for e in entries.values() if e.label != PLACEBO} == {
        "compare"
    }


def _toy(effects: dict[str, float], seeds: int = 5) -> pd.DataFrame:
    """Results of learners on subset a+b: test risk 1 + effect + seed jitter (the same
    jitter for every learner but the placebo, whose jitter averages to 0)."""
    rows = []
    for seed in range(seeds):
        for learner, effect in effects.items():
            jitter = 0.01 * (seed - 2) * (-1 if learner == PLACEBO else 1) ** seed
            rows.append(
                {
                    "learner": learner,
                    "subset": "a+b",
                    "m": 10,
                    "seed": seed,
                    "test_risk": 1.0
                    + effect
                    + 0.001 * seed
                    + (jitter if learner == PLACEBO else 0),
                    "eta": 0.5 + effect / 10 + 0.0005 * seed,
                }
            )
    return pd.DataFrame(rows)


def test_claims_name_the_component_and_the_negative_control_fails():
    entries = [e for e in plan_entries(("erm", "ogm_ge")) if e.method in ("erm", "ogm_ge")]
    results = _toy(
        {
            "erm": 0.0,
            PLACEBO: 0.0,
            "erm[sgd-m0.9]": 0.0,
            "ogm_ge[sgd-m0.9]": -0.10,  # the full method helps
            "ogm_ge-modulation[sgd-m0.9]": +0.05,  # the modulation alone hurts
            "ogm_ge-noise[sgd-m0.9]": -0.09,  # the noise does the work
            "ogm_ge-noise-erm": -0.02,
            "ogm_ge": 0.0,
        }
    )
    claims = claims_table(results, "toy", ("a", "b"), entries)
    risk = claims[claims.claim.str.contains("lowers the test risk")].set_index("learner")
    assert risk.loc["ogm_ge[sgd-m0.9]", "verdict"] == "reproduced"
    assert risk.loc["ogm_ge[sgd-m0.9]", "component"] == "full method"
    assert risk.loc["ogm_ge[sgd-m0.9]", "baseline"] == "erm[sgd-m0.9]"
    assert risk.loc["ogm_ge-modulation[sgd-m0.9]", "verdict"] == "contradicted"
    assert risk.loc["ogm_ge-modulation[sgd-m0.9]", "component"] == "modulation alone (no noise)"
    assert risk.loc["ogm_ge-noise[sgd-m0.9]", "verdict"] == "reproduced"
    # a method with no effect: identical numbers give a zero-width interval at 0
    assert risk.loc["ogm_ge", "verdict"] == "inconclusive"
    # the negative control: a second ERM whose differences average to 0
    assert risk.loc[PLACEBO, "verdict"] == "inconclusive"
    assert risk.loc[PLACEBO, "mean"] == pytest.approx(0.0, abs=1e-12)


def test_ablation_shares_by_hand():
    entries = [e for e in plan_entries(("erm", "ogm_ge")) if e.method in ("erm", "ogm_ge")]
    results = _toy(
        {
            "erm": 0.0,
            "erm[sgd-m0.9]": 0.0,
            "ogm_ge[sgd-m0.9]": -0.10,
            "ogm_ge-modulation[sgd-m0.9]": -0.01,
            "ogm_ge-noise[sgd-m0.9]": -0.08,
            "ogm_ge-noise-erm": -0.02,
            "ogm_ge": -0.04,
        }
    )
    tab = ablation_table(results, "toy", ("a", "b"), entries)
    risk = tab[tab.statistic == "test_risk"].set_index("learner")
    assert risk.loc["ogm_ge[sgd-m0.9]", "share_of_full"] == pytest.approx(1.0)
    assert risk.loc["ogm_ge-noise[sgd-m0.9]", "share_of_full"] == pytest.approx(0.8)
    assert risk.loc["ogm_ge-modulation[sgd-m0.9]", "share_of_full"] == pytest.approx(0.1)
    # the noise on ERM's recipe is measured against the method's common-recipe effect
    assert risk.loc["ogm_ge-noise-erm", "share_of_full"] == pytest.approx(0.5)
    assert risk.loc["ogm_ge-noise-erm", "mean"] == pytest.approx(-0.02)
