"""Contribution games as tidy tables: values from losses, Shapley rows, the imbalance score.

Value arrays have shape (G, n, 2^K): G independent units (seeds: each its own training
sample, initialisation and test sample), n test rows, 2^K coalitions (bitmasks, see
:mod:`mmtheory.theory.games`). The value of a coalition is minus a loss (``neg_risk``) or
the indicator of a correct prediction (``accuracy``); the game of a seed is the mean over
its rows, so per-sample Shapley values average to the seed's values exactly.

The imbalance score of modality k is phi_k(retrain) - phi_k(masked): the credit the
modality earns when a model is trained on it minus the credit the joint model gives it.
With both games valuing the empty set at the same constant predictor and sharing the joint
model as v(N), the scores of all modalities add up to 0. A modality is flagged as
under-used when its score is positive in at least :data:`FLAG_RATE` of the seeds and the
exact binomial interval of that rate lies above one half (a sign test at 5%: with few seeds
a rate of 1 is no evidence; 4 of 4 seeds is not enough, 19 of 20 is).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.core.subsets import join_label, label_names, largest_label
from mmtheory.theory.games import (
    EMPTY_CONVENTIONS,
    INTERACTION_CONVENTIONS,
    coalition,
    interactions,
    pairs,
    shapley,
)
from mmtheory.theory.statistics import binomial_interval, interval

__all__ = [
    "FLAG_RATE",
    "GAME_COLUMNS",
    "IMBALANCE_COLUMNS",
    "game_rows",
    "imbalance_rows",
    "masked_values",
    "population_games",
    "results_games",
    "retrain_values",
]

#: A modality is flagged as under-used when its gap is positive in this share of seeds.
FLAG_RATE = 0.95

GAME_COLUMNS = [
    "game",
    "mask",
    "empty",
    "value",
    "kind",
    "convention",
    "modality",
    "n_seeds",
    "estimate",
    "ci_low",
    "ci_high",
    "mc_se",
]
IMBALANCE_COLUMNS = [
    "mask",
    "value",
    "modality",
    "n_seeds",
    "gap",
    "ci_low",
    "ci_high",
    "positive_rate",
    "rate_low",
    "rate_high",
    "flagged",
]


def retrain_values(sub_values, subsets, names, empty) -> np.ndarray:
    """The retrain game: sub_values (G, S, n) per-sample values of the S subset models,
    ``subsets`` their modality-name tuples, ``empty`` (G, n) the empty coalition's values
    -> (G, n, 2^K). Every one of the 2^K - 1 subsets must be present."""
    sub_values = np.asarray(sub_values, dtype=float)
    G, S, n = sub_values.shape
    K = len(names)
    if S != 2**K - 1:
        raise ValueError(f"the retrain game needs all {2**K - 1} subsets, got {S}")
    out = np.full((G, n, 2**K), np.nan)
    out[..., 0] = np.asarray(empty, dtype=float)
    for s, sub in enumerate(subsets):
        out[..., coalition([names.index(k) for k in sub], K)] = sub_values[:, s]
    if np.isnan(out).any():
        raise ValueError("the retrain game's subsets must be distinct and cover every coalition")
    return out


def masked_values(coalition_values, empty, convention: str) -> np.ndarray:
    """The masked game: coalition_values (G, n, 2^K) of the joint model on masked inputs;
    ``convention`` "masked" keeps coalition 0 (everything masked), "constant" replaces it
    by ``empty`` (G, n), "zero" by 0."""
    if convention not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty must be one of {sorted(EMPTY_CONVENTIONS)}, got {convention!r}")
    out = np.array(coalition_values, dtype=float, copy=True)
    if convention == "constant":
        out[..., 0] = empty
    elif convention == "zero":
        out[..., 0] = 0.0
    return out


def _summary(per_seed: np.ndarray, mc_se: np.ndarray) -> dict:
    iv = interval(per_seed, method="t")
    return {
        "n_seeds": iv.n,
        "estimate": iv.estimate,
        "ci_low": iv.low,
        "ci_high": iv.high,
        "mc_se": float(np.sqrt(np.mean(mc_se**2))),
    }


def _per_seed(per_sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G, n, J) -> mean over rows (G, J) and its Monte Carlo standard error (G, J)."""
    n = per_sample.shape[1]
    mean = per_sample.mean(axis=1)
    se = per_sample.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, se


def game_rows(values, names, *, game: str, mask: str, empty: str, value: str) -> list[dict]:
    """Shapley values and pairwise interactions (both conventions) of a game, as rows.

    values : (G, n, 2^K); ``estimate`` is the mean over seeds of each seed's value, with a
    95% t-interval over seeds; ``mc_se`` the root-mean-square over seeds of the Monte Carlo
    standard error of a seed's value (test-sample noise only).
    """
    values = np.asarray(values, dtype=float)
    K = len(names)
    labels = {"game": game, "mask": mask, "empty": empty, "value": value}
    rows = []
    mean, se = _per_seed(shapley(values))
    for i, name in enumerate(names):
        rows.append(
            {
                **labels,
                "kind": "shapley",
                "convention": "shapley",
                "modality": name,
                **_summary(mean[:, i], se[:, i]),
            }
        )
    if K < 2:
        return rows
    for conv in INTERACTION_CONVENTIONS:
        mean, se = _per_seed(interactions(values, conv))
        for col, (i, j) in enumerate(pairs(K)):
            rows.append(
                {
                    **labels,
                    "kind": "interaction",
                    "convention": conv,
                    "modality": join_label((names[i], names[j])),
                    **_summary(mean[:, col], se[:, col]),
                }
            )
    return rows


def imbalance_rows(retrain, masked, names, *, mask: str, value: str) -> list[dict]:
    """The imbalance score phi(retrain) - phi(masked) per modality, as rows.

    retrain, masked : (G, n, 2^K) value arrays. ``gap`` is the mean over seeds with a 95%
    t-interval; ``positive_rate`` the share of seeds with a positive gap and its exact
    binomial interval; ``flagged``: the rate is at least :data:`FLAG_RATE` and its interval
    lies above one half.
    """
    gap = shapley(np.asarray(retrain).mean(axis=1)) - shapley(np.asarray(masked).mean(axis=1))
    rows = []
    for i, name in enumerate(names):
        g = gap[:, i]
        iv = interval(g, method="t")
        k, n = int((g > 0).sum()), int(np.isfinite(g).sum())
        lo, hi = binomial_interval(k, n)
        rows.append(
            {
                "mask": mask,
                "value": value,
                "modality": name,
                "n_seeds": n,
                "gap": iv.estimate,
                "ci_low": iv.low,
                "ci_high": iv.high,
                "positive_rate": k / n if n else float("nan"),
                "rate_low": lo,
                "rate_high": hi,
                "flagged": bool(n and k / n >= FLAG_RATE and lo > 0.5),
            }
        )
    return rows


def results_games(results: pd.DataFrame, value: str = "risk") -> pd.DataFrame:
    """The retrain game of any sweep's results table, as game rows per world (its
    ``world_id``), learner and m.

    v(S) = -test_risk (``value="risk"``) or -eta (``"eta"``), v(empty) = -null_risk (minus
    the Bayes risk for eta). Groups whose seeds miss a subset are skipped.
    """
    col = {"risk": "test_risk", "eta": "eta"}.get(value)
    if col is None:
        raise ValueError(f"value must be 'risk' or 'eta', got {value!r}")
    keys = ["world"] + (["world_id"] if "world_id" in results.columns else []) + ["learner", "m"]
    if "null_risk" not in results.columns:
        return pd.DataFrame(columns=[*keys, *GAME_COLUMNS])
    out = []
    for key, grp in results.groupby(keys, sort=False):
        names = list(label_names(largest_label(grp.subset.unique())))
        K = len(names)
        games = []
        for _, g in grp.groupby("seed"):
            if len(g) != 2**K - 1 or g[col].isna().any():
                continue
            v = np.zeros(2**K)
            null = g.null_risk.iloc[0] - (g.bayes_risk.iloc[0] if value == "eta" else 0.0)
            v[0] = -null
            for s, x in zip(g.subset, g[col]):
                v[coalition([names.index(k) for k in label_names(s)], K)] = -x
            games.append(v)
        if not games:
            continue
        values = np.asarray(games)[:, None, :]  # (G, 1, 2^K): no per-sample values
        for row in game_rows(
            values, names, game="retrain", mask="none", empty="constant", value=f"neg_{value}"
        ):
            out.append({**dict(zip(keys, key)), **row})
    return pd.DataFrame(out, columns=[*keys, *GAME_COLUMNS])


def population_games(world) -> tuple[np.ndarray, np.ndarray]:
    """Exact population games of a linear regression world: (retrain (2^K,), masked (2^K,)).

    Retrain: v(S) = -(bayes_risk + eta_inf(S)), the best linear predictor on S. Masked: the
    best linear predictor on all modalities, W*, with the rows outside S zeroed (zero means:
    the zero and mean masks coincide). Both value the empty set at -Var(y) (tr Sigma_yy).
    """
    oracle = world.oracle()
    if oracle is None:
        raise ValueError("population games need a linear regression world with an exact oracle")
    names = list(world.names)
    K = len(names)
    _, _, syy = oracle.second_moments()
    W = oracle.best_linear()
    sl = oracle.feature_slices()
    retrain, masked = np.zeros(2**K), np.zeros(2**K)
    retrain[0] = masked[0] = -float(np.trace(syy))
    bayes = float(world.bayes_risk())
    for c in range(1, 2**K):
        keep = [names[k] for k in range(K) if c >> k & 1]
        retrain[c] = -(bayes + oracle.eta_inf(keep))
        Wc = np.zeros_like(W)
        for k in keep:
            Wc[sl[k]] = W[sl[k]]
        masked[c] = -float(oracle.risk_linear(Wc))
    return retrain, masked
