"""Theory beside measurement: predicted risks and crossovers against what a sweep measured.

:func:`risk_vs_measured` joins :func:`~mmtheory.theory.predicted.predict` to a results
table cell by cell (world, learner, subset, m): the mean test risk over seeds with its
t-interval, the predicted expected risk, whether the prediction lies inside the interval,
and the relative error. :func:`crossover_vs_measured` does the same for m*: P7's measured
last crossing with its test-inversion interval beside the predicted m*. Rows whose
prediction has regime "none" keep NaN predictions and say so; they never count as hits.
:func:`theory_vs_measured` builds both from results and the worlds that produced them;
:func:`accuracy_summary` condenses them into the numbers a report states.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mmtheory.core.subsets import label_size
from mmtheory.theory.predicted import predict, predict_crossovers
from mmtheory.theory.statistics import LEVEL

__all__ = [
    "RISK_COLUMNS",
    "CROSSOVER_VS_COLUMNS",
    "PHASE_CLASSES",
    "accuracy_summary",
    "crossover_vs_measured",
    "phase_agreement",
    "phase_table",
    "predicted_larger_better",
    "risk_vs_measured",
    "theory_vs_measured",
]

RISK_COLUMNS = [
    "world",
    "world_id",
    "learner",
    "subset",
    "m",
    "p",
    "n_seeds",
    "test_risk_measured",
    "test_risk_ci_low",
    "test_risk_ci_high",
    "test_risk_sd_measured",
    "test_risk_predicted",
    "test_risk_sd_predicted",
    "regime",
    "inside",
    "rel_error",
    "reason",
]
CROSSOVER_VS_COLUMNS = [
    "world",
    "world_id",
    "learner",
    "M",
    "N",
    "p_M",
    "p_N",
    "n_seeds",
    "m_star_measured",
    "m_star_ci_low",
    "m_star_ci_high",
    "censored",
    "p7_holds",
    "m_star_predicted",
    "m_star_se_predicted",
    "exists_predicted",
    "regime",
    "inside",
    "rel_error",
    "reason",
]


def risk_vs_measured(results: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """One row per (world_id, learner, subset, m) of ``results``: the measured mean test
    risk with its t-interval over seeds (level :data:`LEVEL`) beside ``predicted``'s
    expected risk; ``inside`` is True when the prediction lies in the interval (NaN where
    there is no prediction or fewer than 2 seeds)."""
    keys = ["world_id", "learner", "subset", "m"]
    rows = []
    for key, g in results.groupby(keys, sort=True):
        v = g.test_risk.to_numpy(float)
        v = v[np.isfinite(v)]
        n = len(v)
        mean = float(v.mean()) if n else math.nan
        sd = float(v.std(ddof=1)) if n > 1 else math.nan
        half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
        rows.append(
            dict(
                zip(keys, key, strict=True),
                world=g.world.iloc[0],
                n_seeds=n,
                test_risk_measured=mean,
                test_risk_ci_low=mean - half,
                test_risk_ci_high=mean + half,
                test_risk_sd_measured=sd,
            )
        )
    measured = pd.DataFrame(rows)
    pred = predicted.rename(
        columns={"test_risk": "test_risk_predicted", "test_risk_sd": "test_risk_sd_predicted"}
    )[keys + ["p", "test_risk_predicted", "test_risk_sd_predicted", "regime", "reason"]]
    out = measured.merge(pred, on=keys, how="left")
    out["regime"] = out.regime.fillna("none")
    out["reason"] = out.reason.fillna("no prediction for this cell")
    have = out.test_risk_predicted.notna() & (out.n_seeds > 1)
    out["inside"] = np.where(
        have,
        (out.test_risk_predicted >= out.test_risk_ci_low)
        & (out.test_risk_predicted <= out.test_risk_ci_high),
        np.nan,
    )
    out["rel_error"] = out.test_risk_predicted / out.test_risk_measured - 1
    return out[RISK_COLUMNS]


def crossover_vs_measured(
    predictions: pd.DataFrame, crossovers: pd.DataFrame, margin: int = 10
) -> pd.DataFrame:
    """P7's measured m* (``predictions`` from :func:`mmtheory.theory.check.check`) beside
    the predicted m* (:func:`~mmtheory.theory.predicted.predict_crossovers`). An interval
    censored by the grid is open on that side (``censored``: "below", "above", "both");
    ``inside`` treats an open side as unbounded. Pairs without a measured crossing (P7 not
    true) keep the prediction and say why in ``reason``. Pairs whose predicted m* is within
    ``margin`` of the interpolation threshold (m* <= p_M + ``margin``) are not scored
    (``inside`` NaN, ``reason`` says why): there the risk of M has too few finite moments
    for a mean over seeds, and the measured interval covered the exact m* in 38% of 47
    simulated tables (98.0% of 790 beyond; benchmarks/interval_coverage.md)."""
    p7 = predictions[predictions.prediction == "P7"]
    rows = []
    for r in crossovers.itertuples(index=False):
        hit = p7[
            (p7.world_id == r.world_id) & (p7.learner == r.learner) & (p7.M == r.M) & (p7.N == r.N)
        ]
        base = dict(r._asdict())
        base["m_star_predicted"] = base.pop("m_star")
        base["m_star_se_predicted"] = base.pop("m_star_se")
        base["exists_predicted"] = base.pop("exists")
        base.pop("method", None)
        if hit.empty:
            rows.append(dict(base, n_seeds=0, p7_holds="", reason=base["reason"] or "not measured"))
            continue
        h = hit.iloc[0]
        lo, hi = float(h.ci_low), float(h.ci_high)
        censored = {(True, True): "both", (True, False): "below", (False, True): "above"}.get(
            (math.isnan(lo), math.isnan(hi)), ""
        )
        row = dict(
            base,
            n_seeds=int(h.n_trials) if str(h.n_trials) not in ("", "nan") else 0,
            m_star_measured=float(h.statistic),
            m_star_ci_low=lo,
            m_star_ci_high=hi,
            censored=censored,
            p7_holds=h.holds,
        )
        pred = base["m_star_predicted"]
        p_M = base.get("p_M", math.nan)
        near = np.isfinite(pred) and pd.notna(p_M) and pred <= float(p_M) + margin
        if h.holds == "true" and r.regime != "none" and np.isfinite(pred) and near:
            row["rel_error"] = pred / float(h.statistic) - 1
            row["reason"] = (base["reason"] + "; " if base["reason"] else "") + (
                f"not scored: m* within {margin} of the interpolation threshold p_M = "
                f"{int(p_M)}, where a mean over seeds has too few finite moments for an "
                "interval that covers"
            )
        elif h.holds == "true" and r.regime != "none" and np.isfinite(pred):
            low = -math.inf if math.isnan(lo) else lo
            high = math.inf if math.isnan(hi) else hi
            row["inside"] = bool(low <= pred <= high)
            row["rel_error"] = pred / float(h.statistic) - 1
        elif h.holds != "true":
            row["reason"] = (base["reason"] + "; " if base["reason"] else "") + (
                f"no measured crossing (P7 {h.holds}: {h.reason or h.detail})"
            )
        rows.append(row)
    out = pd.DataFrame(rows, columns=CROSSOVER_VS_COLUMNS)
    return out


def theory_vs_measured(
    results: pd.DataFrame, worlds, predictions: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(risk table, crossover table) for ``results`` produced by ``worlds`` (a list of
    World objects, matched by ``world_id``; learners are the table's learner labels, which
    must be presets or the default names). ``predictions``: the check's table (computed
    when not given)."""
    from mmtheory.theory.check import check

    by_id = {w.world_id: w for w in worlds}
    risk_parts, cross_parts = [], []
    for (wid, learner), g in results.groupby(["world_id", "learner"], sort=True):
        world = by_id.get(wid)
        if world is None:
            continue
        sizes = sorted(int(v) for v in g.m.unique())
        subsets = sorted(g.subset.unique(), key=lambda s: (label_size(s), s))
        try:
            pred = predict(world, learner, subsets, sizes)
            cross = predict_crossovers(world, learner, subsets, seeds=int(g.seed.nunique()))
        except ValueError:  # a learner label that is not a preset: no prediction
            continue
        risk_parts.append(pred)
        cross_parts.append(cross)
    predicted = pd.concat(risk_parts, ignore_index=True) if risk_parts else None
    if predicted is None:
        return (
            pd.DataFrame(columns=RISK_COLUMNS),
            pd.DataFrame(columns=CROSSOVER_VS_COLUMNS),
        )
    if predictions is None:
        _, predictions = check(results)
    risk = risk_vs_measured(results, predicted)
    cross = crossover_vs_measured(predictions, pd.concat(cross_parts, ignore_index=True))
    return risk, cross


def accuracy_summary(risk: pd.DataFrame, cross: pd.DataFrame, margin: int = 10) -> pd.DataFrame:
    """The numbers a report states, per regime: the share of (subset, m) cells whose
    predicted expected risk lies inside the measured interval (cells with m > p + ``margin``
    for the exact regime are what the accuracy target speaks to; all cells are counted
    here, by regime), their median relative error, and for crossovers the share of
    measured m* intervals containing the prediction and the median relative error."""
    rows = []
    scored = risk[risk.inside.notna()]
    far = scored[(scored.regime == "exact") & (scored.m > scored.p + margin)]
    if len(far):
        rows.append(
            dict(
                quantity=f"expected test risk, m > p + {margin}",
                regime="exact",
                n=len(far),
                inside_share=float(far.inside.astype(bool).mean()),
                median_abs_rel_error=float(far.rel_error.abs().median()),
            )
        )
    for regime, g in scored.groupby("regime"):
        rows.append(
            dict(
                quantity="expected test risk",
                regime=regime,
                n=len(g),
                inside_share=float(g.inside.astype(bool).mean()),
                median_abs_rel_error=float(g.rel_error.abs().median()),
            )
        )
    c = cross[cross.inside.notna()] if "inside" in cross else cross.iloc[0:0]
    if "p_M" in c and c.p_M.notna().any():
        # within `margin` of the interpolation threshold the risk of M has few finite
        # moments (its variance is infinite for m <= p_M + 4): a mean over 20 seeds sits
        # far below its expectation, and no interval from it covers (measured: 38% of 47
        # tables with m* <= p_M + 10, 98.0% of 790 beyond; benchmarks/interval_coverage.md)
        far = c.m_star_predicted > c.p_M + margin
        for label, g in (
            (f"m* > p_M + {margin}", c[far]),
            (f"m* <= p_M + {margin}", c[~far & c.p_M.notna()]),
        ):
            if len(g):
                rows.append(
                    dict(
                        quantity=f"crossover m*, {label}",
                        regime="all",
                        n=len(g),
                        inside_share=float(g.inside.astype(bool).mean()),
                        median_abs_rel_error=float(g.rel_error.abs().median()),
                    )
                )
    for regime, g in c.groupby("regime"):
        rows.append(
            dict(
                quantity="crossover m*",
                regime=regime,
                n=len(g),
                inside_share=float(g.inside.astype(bool).mean()),
                median_abs_rel_error=float(g.rel_error.abs().median()),
            )
        )
    return pd.DataFrame(
        rows, columns=["quantity", "regime", "n", "inside_share", "median_abs_rel_error"]
    )


PHASE_CLASSES = ("larger better", "smaller better", "inconclusive")


def phase_table(results: pd.DataFrame, M: str, N: str, by: str) -> pd.DataFrame:
    """The measured phase diagram of M against N over (``by``, m): per cell the mean paired
    gap r_M - r_N over seeds, its t-interval, and the phase: "larger better" (interval
    below 0), "smaller better" (above 0) or "inconclusive". ``by`` is a world-parameter
    column of ``results`` (e.g. ``rho``)."""
    rows = []
    crit_cache: dict[int, float] = {}
    for (value, wid, m), g in results.groupby([by, "world_id", "m"], sort=True):
        a = g[g.subset == M].set_index("seed").test_risk
        b = g[g.subset == N].set_index("seed").test_risk
        gap = (a - b).dropna().to_numpy(float)
        n = len(gap)
        if n < 2:
            continue
        crit = crit_cache.setdefault(n, float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)))
        mean, half = float(gap.mean()), crit * float(gap.std(ddof=1)) / math.sqrt(n)
        phase = (
            "larger better"
            if mean + half < 0
            else "smaller better"
            if mean - half > 0
            else "inconclusive"
        )
        rows.append(
            {
                by: float(value),
                "world_id": wid,
                "m": int(m),
                "M": M,
                "N": N,
                "n_seeds": n,
                "gap": mean,
                "gap_ci_low": mean - half,
                "gap_ci_high": mean + half,
                "phase": phase,
            }
        )
    return pd.DataFrame(rows)


def phase_agreement(phase: pd.DataFrame, larger_better, by: str) -> pd.DataFrame:
    """How the measured phases agree with theory cell by cell: ``larger_better(value, m)``
    says whether the larger subset is predicted better at that cell (True / False), or None
    where there is no prediction (near the interpolation threshold). Per measured phase: the
    cells, those with a prediction, and those on the predicted side (inconclusive cells are
    counted apart)."""
    out = []
    preds = [larger_better(getattr(r, by), int(r.m)) for r in phase.itertuples()]
    for label in PHASE_CLASSES:
        sel = [i for i, r in enumerate(phase.itertuples()) if r.phase == label]
        have = [i for i in sel if preds[i] is not None]
        if label == "larger better":
            agree = sum(bool(preds[i]) for i in have)
        elif label == "smaller better":
            agree = sum(not preds[i] for i in have)
        else:
            agree = 0
        out.append(
            {
                "phase": label,
                "cells": len(sel),
                "with_prediction": len(have),
                "on_predicted_side": agree,
            }
        )
    return pd.DataFrame(out)


def predicted_larger_better(predicted: pd.DataFrame, M: str, N: str):
    """``larger_better(value, m)`` for :func:`phase_agreement` from :func:`predict` rows
    keyed by a ``value`` column: True where E r_M < E r_N, None without a prediction."""
    table = predicted.set_index(["value", "subset", "m"]).test_risk

    def larger_better(value, m):
        try:
            a, b = table[(value, M, m)], table[(value, N, m)]
        except KeyError:
            return None
        if not (np.isfinite(a) and np.isfinite(b)):
            return None
        return bool(a < b)

    return larger_better


COVERAGE_COLUMNS = [
    "quantity",
    "group_size",
    "groups",
    "trials",
    "covered",
    "coverage",
    "coverage_ci_low",
    "coverage_ci_high",
    "level",
]


def interval_coverage(
    results: pd.DataFrame, worlds, group_size: int, *, margin: int = 10
) -> pd.DataFrame:
    """How often the measured intervals cover the truth, by simulation where it is exact.

    The seeds of ``results`` (a sweep of the closed-form learner on Gaussian linear
    worlds) are cut into independent groups of ``group_size`` consecutive seeds. In each
    group every exact-regime (subset, m) cell gets the risk t-interval a report with
    ``group_size`` seeds states, and every exact-regime nested pair P7 finds a crossing
    for gets its m* interval (:func:`~mmtheory.theory.predictions.crossover`); each is
    checked against the exact expected risk or the exact m*. Cells and pairs within one
    group are correlated (nested training sets, draws shared by worlds that differ only in
    the target), so the groups are the independent units: ``coverage`` is covered /
    trials over all cells and its interval is the t-interval of that ratio estimated from
    the groups (a cluster sample's ratio estimator).

    One row per quantity: risk cells with m > p + ``margin`` and with m <= p + ``margin``,
    crossovers with m* > p_M + ``margin`` and m* <= p_M + ``margin`` (the heavy-tailed
    side, where the risk of M has few finite moments), and all crossovers.
    """
    from mmtheory.theory.predictions import crossover

    if group_size < 2:
        raise ValueError(f"group_size must be >= 2, got {group_size}")
    by_id = {w.world_id: w for w in worlds}
    seeds = np.sort(results.seed.unique())
    n_groups = len(seeds) // group_size
    if n_groups < 2:
        raise ValueError(
            f"coverage needs at least 2 groups of {group_size} seeds; the results have "
            f"{len(seeds)} seeds"
        )
    group_of = {int(s): i // group_size for i, s in enumerate(seeds[: n_groups * group_size])}
    # hits[quantity] = list of per-group arrays of 0/1
    hits: dict[str, list[list[int]]] = {}

    def add(quantity: str, group: int, hit: bool) -> None:
        hits.setdefault(quantity, [[] for _ in range(n_groups)])[group].append(int(hit))

    crit = stats.t.ppf(0.5 + LEVEL / 2, group_size - 1)
    for (world_id, learner), res in results.groupby(["world_id", "learner"], sort=True):
        world = by_id.get(world_id)
        if world is None:
            continue
        res = res[res.seed.isin(group_of)]
        sizes = sorted(int(v) for v in res.m.unique())
        pred = predict(world, learner, "all", sizes)
        pred = pred[pred.regime == "exact"].set_index(["subset", "m"])
        risk = res.pivot_table(index=["subset", "seed"], columns="m", values="test_risk")
        for subset in risk.index.get_level_values(0).unique():
            table = risk.loc[subset]
            groups = np.array([group_of[int(s)] for s in table.index])
            for m in sizes:
                if (subset, m) not in pred.index:
                    continue
                truth = float(pred.loc[(subset, m), "test_risk"])
                far = m > pred.loc[(subset, m), "p"] + margin
                label = f"risk, m {'>' if far else '<='} p + {margin}"
                for g in range(n_groups):
                    v = table[m].to_numpy(float)[groups == g]
                    v = v[np.isfinite(v)]
                    if len(v) < 2:
                        continue  # this world has no seeds (or no finite risks) in group g
                    half = crit * v.std(ddof=1) / math.sqrt(len(v))
                    add(label, g, abs(v.mean() - truth) <= half)
        cross = predict_crossovers(world, learner)
        for r in cross.itertuples(index=False):
            if r.regime != "exact" or not np.isfinite(r.m_star):
                continue
            if r.M not in risk.index or r.N not in risk.index:
                continue
            gaps_all = risk.loc[r.M].to_numpy(float) - risk.loc[r.N].to_numpy(float)
            groups = np.array([group_of[int(s)] for s in risk.loc[r.M].index])
            far = r.m_star > r.p_M + margin
            side = f"m* {'>' if far else '<='} p_M + {margin}"
            for g in range(n_groups):
                gaps = gaps_all[groups == g]
                if len(gaps) < 2 or not np.isfinite(gaps).all():
                    continue
                cx = crossover(sizes, gaps)
                if not (cx.better_at_max and cx.worse_before):
                    continue  # P7 finds no crossing here: nothing to cover
                high = math.inf if math.isnan(cx.high) else cx.high
                hit = bool(cx.low <= r.m_star <= high)
                add(f"crossover m*, {side}", g, hit)
                add("crossover m*, all", g, hit)
    rows = []
    for quantity, per_group in hits.items():
        n_g = np.array([len(h) for h in per_group if h], dtype=float)
        c_g = np.array([sum(h) for h in per_group if h], dtype=float)
        trials, covered, G = int(n_g.sum()), int(c_g.sum()), len(n_g)
        ratio = covered / trials
        # the ratio estimator of a cluster sample: groups are the independent units and
        # hold different numbers of cells (a crossing P7 finds in one group, not another)
        if G > 1:
            se = math.sqrt(((c_g - ratio * n_g) ** 2).sum() / (G * (G - 1))) / n_g.mean()
            half = float(stats.t.ppf(0.5 + LEVEL / 2, G - 1) * se)
        else:
            half = math.nan
        rows.append(
            dict(
                quantity=quantity,
                group_size=group_size,
                groups=G,
                trials=trials,
                covered=covered,
                coverage=ratio,
                coverage_ci_low=max(0.0, ratio - half) if G > 1 else math.nan,
                coverage_ci_high=min(1.0, ratio + half) if G > 1 else math.nan,
                level=LEVEL,
            )
        )
    out = pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
    return out.sort_values("quantity", kind="stable").reset_index(drop=True)
