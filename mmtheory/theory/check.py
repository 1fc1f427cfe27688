"""``check``: the bound table and the prediction report from a sweep's results.

``bounds.csv`` has one row per (world, learner, N subset of M, m, seed) for runs that carry
the oracle columns (exact least squares in linear regression worlds, any number of
outputs): the risk gap, gamma, the complexity term of H o G_M for the a priori ball
(radius recorded, with its source), L, C, both theorems' right sides, whether the fit lies
in the class, and whether the constants are rigorous for that row. ``predictions.csv`` has
one row per (prediction, world, learner, pair) the table can speak to, with ``holds`` in
{"true", "false", "untestable"} (docs/theory.md section 4; :mod:`mmtheory.theory.predictions`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.core.subsets import nested_label_pairs
from mmtheory.theory.bounds import THM2, ball_complexity, thm1_rhs, thm2_rhs
from mmtheory.theory.predictions import PREDICTION_COLUMNS, _row, prediction_rows, slices
from mmtheory.theory.statistics import binomial_interval

__all__ = [
    "BOUND_COLUMNS",
    "PREDICTION_COLUMNS",
    "SELECTION_COLUMNS",
    "bounds_table",
    "check",
    "predictions_table",
    "selection_table",
]

BOUND_COLUMNS = [
    "M",
    "N",
    "m",
    "seed",
    "risk_gap",
    "gamma",
    "rademacher_M",
    "L",
    "C",
    "delta",
    "thm1_rhs",
    "thm1_holds",
    "eta_M",
    "thm2_rhs",
    "thm2_holds",
]
SELECTION_COLUMNS = ["M", "N", "m", "n_cells", "rule_accuracy", "larger_accuracy", "rule_picks_M"]
_NEED = {
    "param_norm",
    "feature_energy",
    "feature_energy_all",
    "oracle_train_risk",
    "feature_bound_all",
    "target_bound",
    "bounded_world",
    "radius_apriori",
}


def _valid(df: pd.DataFrame) -> pd.DataFrame:
    if "diverged" in df.columns:
        return df[~df.diverged.astype(bool)]
    return df


#: The columns the checks read from each results row (itertuples over only these: a
#: results table has dozens, and its string columns cost most of a row's conversion).
_CELL_COLUMNS = {
    "m",
    "seed",
    "subset",
    "param_norm",
    "feature_energy",
    "feature_energy_all",
    "eta",
    "test_risk",
    "train_risk",
    "oracle_train_risk",
}
_SELECTION_RESULT_COLUMNS = {
    "world_id",
    "learner",
    "subset",
    "m",
    "seed",
    "train_risk",
    "oracle_train_risk",
    "test_risk",
}


def _tuples(t: pd.DataFrame, columns: set[str]):
    """``t.itertuples(index=False)`` over those of ``columns`` that ``t`` has."""
    return t[[c for c in t.columns if c in columns]].itertuples(index=False)


def _cells(t: pd.DataFrame):
    """``t``'s rows by (m, seed), sorted as ``groupby`` sorts them: ((m, seed), {subset:
    row}) with each cell's subsets in row order (plain lookups: ``DataFrame.loc`` per
    pair cost most of the check)."""
    cells: dict[tuple, dict] = {}
    for r in _tuples(t, _CELL_COLUMNS):
        cells.setdefault((r.m, r.seed), {})[r.subset] = r
    return sorted(cells.items(), key=lambda kv: kv[0])


def bounds_table(
    results: pd.DataFrame, delta: float = 0.05, radius: float | None = None
) -> pd.DataFrame:
    """Theorems 1 and 2 per (N subset of M, m, seed); empty when no run has oracle columns.

    ``radius``: the norm radius R of the class; default the world's a priori radius
    (``radius_apriori``: fixed by the world before any data). A user-given radius is
    a priori too as long as it was not chosen from these fits.
    """
    if radius is not None and not radius > 0:
        raise ValueError(f"radius must be a number > 0, got {radius!r}")
    if not _NEED <= set(results.columns):
        return pd.DataFrame(columns=BOUND_COLUMNS)
    df = _valid(results).dropna(subset=sorted(_NEED))
    rows = []
    for sl in slices(df):
        t = sl.table
        R = float(radius) if radius is not None else float(t.radius_apriori.iloc[0])
        X, By = float(t.feature_bound_all.iloc[0]), float(t.target_bound.iloc[0])
        bounded = bool(t.bounded_world.astype(bool).all())
        outputs = int(t.n_outputs.iloc[0]) if "n_outputs" in t.columns else 1
        span = R * X + By  # |f(x)| <= R X on the class, ||y|| <= B_y
        L, C = 2.0 * span, span**2
        for (m, seed), runs in _cells(t):
            for n_sub, m_sub in nested_label_pairs(list(runs)):
                a, b = runs[m_sub], runs[n_sub]
                in_class = bool(a.param_norm <= R and b.param_norm <= R)
                rad_M = ball_complexity(R, float(a.feature_energy), int(m), outputs)
                rad_G = ball_complexity(R, float(a.feature_energy_all), int(m), outputs)
                gamma = float(a.eta - b.eta)
                gap = float(a.test_risk - b.test_risk)
                r1 = thm1_rhs(gamma, rad_M, L, C, int(m), delta)
                L_hat = float(a.train_risk - a.oracle_train_risk)
                r2 = thm2_rhs(rad_M, rad_G, L, C, int(m), delta, L_hat)
                rows.append(
                    {
                        **sl.keys,
                        "M": m_sub,
                        "N": n_sub,
                        "m": int(m),
                        "seed": int(seed),
                        "risk_gap": gap,
                        "gamma": gamma,
                        "rademacher_M": rad_M,
                        "rademacher_G": rad_G,
                        "L": L,
                        "C": C,
                        "delta": delta,
                        "thm1_rhs": r1,
                        "thm1_holds": bool(gap <= r1),
                        "thm1_slack": r1 - gap,
                        "eta_M": float(a.eta),
                        "L_hat_M": L_hat,
                        "thm2_rhs": r2,
                        "thm2_holds": bool(a.eta <= r2),
                        "thm2_ratio": r2 / a.eta if a.eta > 0 else np.inf,
                        "radius": R,
                        "radius_source": "user" if radius is not None else "a priori",
                        "param_norm_M": float(a.param_norm),
                        "in_class": in_class,
                        "outputs": outputs,
                        "bounded_world": bounded,
                        "constants_rigorous": bool(bounded and in_class),
                    }
                )
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=BOUND_COLUMNS)
    first = [c for c in BOUND_COLUMNS if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


def _theorem_rows(bounds: pd.DataFrame, delta: float) -> list[dict]:
    """P3 and P4 from the bounds table: a violation rate per (pair, m) with an exact binomial
    interval, over the rows where the constants are rigorous; the slack as the headline."""
    rows: list[dict] = []
    if bounds.empty:
        return rows
    for sl in slices(bounds.assign(test_risk=0.0)):
        t = sl.table
        for theorem, name, level, groups, holds_col, slack in (
            ("P3", "Theorem 1", delta / 2, ["M", "N", "m"], "thm1_holds", "thm1_slack"),
            ("P4", "Theorem 2", delta, ["M", "m"], "thm2_holds", "thm2_ratio"),
        ):
            table = t if theorem == "P3" else t.drop_duplicates(["M", "m", "seed"])
            st = f"{name} violation rate <= {'delta/2' if theorem == 'P3' else 'delta'} = {level:g}"
            for key, g in table.groupby(groups):
                keyd = dict(zip(groups, key))
                base = dict(M=keyd["M"], N=keyd.get("N", ""), m=int(keyd["m"]))
                rig = g[g.constants_rigorous.astype(bool)]
                outside = int((~g.in_class.astype(bool)).sum())
                headline = (
                    f"median slack {'(rhs - lhs)' if theorem == 'P3' else '(rhs / eta)'} "
                    f"{g[slack].median():.4g}; {outside} of {len(g)} fits outside the "
                    f"class radius {g.radius.iloc[0]:.4g} ({g.radius_source.iloc[0]})"
                )
                if rig.empty:
                    if not g.bounded_world.astype(bool).any():
                        why = (
                            "the world is unbounded (Gaussian): the loss constants are "
                            "assumed, not rigorous"
                        )
                    else:
                        why = (
                            "every fit lies outside the class radius: no row is an ERM of the class"
                        )
                    rows.append(
                        _row(
                            theorem,
                            st,
                            sl,
                            **base,
                            n=len(g),
                            holds="untestable",
                            reason=why,
                            detail=headline,
                        )
                    )
                    continue
                k = int((~rig[holds_col].astype(bool)).sum())
                n = len(rig)
                lo, hi = binomial_interval(k, n)
                kw = dict(**base, n=n, stat=k / n, lo=lo, hi=hi, detail=headline)
                if hi <= level:
                    rows.append(_row(theorem, st, sl, **kw, holds="true"))
                elif lo > level:
                    rows.append(_row(theorem, st, sl, **kw, holds="false"))
                else:
                    rows.append(
                        _row(
                            theorem,
                            st,
                            sl,
                            **kw,
                            holds="untestable",
                            reason=f"too few trials: {k} violations in {n} give an "
                            f"exact interval [{lo:.3g}, {hi:.3g}] around "
                            f"{level:g}",
                        )
                    )
    return rows


def predictions_table(
    results: pd.DataFrame, bounds: pd.DataFrame, delta: float = 0.05
) -> pd.DataFrame:
    """P1-P9 from the results (and bounds) tables; one row per tested statement."""
    rows = prediction_rows(_valid(results)) + _theorem_rows(bounds, delta)
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS + ["reason"])
    out = out.sort_values("prediction", kind="stable").reset_index(drop=True)
    first = ["prediction", *[c for c in ("world", "world_id", "learner") if c in out.columns]]
    rest = [c for c in PREDICTION_COLUMNS if c not in first]
    return out[first + rest + [c for c in out.columns if c not in first + rest]]


def selection_table(
    results: pd.DataFrame, bounds: pd.DataFrame, predicted: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The paper's modality-selection rule scored against the truth, beside the trivial
    rule "always take the larger subset": per (world, learner, N subset of M, m), the
    fraction of seeds on which each rule picks the subset with the lower test risk.

    The rule picks M when L^_N - L^_M >= 4 L (R_M - R_N) (the exact comparison of the two
    Theorem-2 bounds); it needs the bounds table's complexity terms. With ``predicted``
    (:func:`mmtheory.theory.predicted.predict` rows), a third rule is scored: pick M when
    its predicted expected risk is lower (``predicted_accuracy``; NaN where either subset
    has no prediction), a rule that uses the world's truth, not the sample."""
    expected = (
        predicted.dropna(subset=["test_risk"])
        .set_index(["world_id", "learner", "subset", "m"])
        .test_risk.to_dict()
        if predicted is not None
        else None
    )
    if bounds.empty:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    res = {
        (r.world_id, r.learner, r.subset, r.m, r.seed): r
        for r in _tuples(_valid(results), _SELECTION_RESULT_COLUMNS)
    }
    rows = []
    for sl in slices(bounds.assign(test_risk=0.0)):
        t = sl.table
        comp = {
            (r.M, r.m, r.seed): r.rademacher_M
            for r in t.drop_duplicates(["M", "m", "seed"]).itertuples(index=False)
        }
        for (m_sub, n_sub, m), g in t.groupby(["M", "N", "m"]):
            right, larger, picks, pred_right = 0, 0, 0, 0
            key = (sl.keys["world_id"], sl.keys["learner"])
            e_m = expected.get((*key, m_sub, m)) if expected is not None else None
            e_n = expected.get((*key, n_sub, m)) if expected is not None else None
            for r in g[["seed", "L", "rademacher_M"]].itertuples(index=False):
                key = (sl.keys["world_id"], sl.keys["learner"])
                rm = res[(*key, m_sub, m, r.seed)]
                rn = res[(*key, n_sub, m, r.seed)]
                lhat_m = float(rm.train_risk - rm.oracle_train_risk)
                lhat_n = float(rn.train_risk - rn.oracle_train_risk)
                rad_n = comp.get((n_sub, m, r.seed), np.nan)
                pick_m = bool(
                    lhat_n - lhat_m >= THM2["rademacher_M"] * r.L * (r.rademacher_M - rad_n)
                )
                truth_m = bool(rm.test_risk < rn.test_risk)
                right += pick_m == truth_m
                larger += truth_m
                picks += pick_m
                if e_m is not None and e_n is not None:
                    pred_right += (e_m < e_n) == truth_m
            n = len(g)
            row = {
                **sl.keys,
                "M": m_sub,
                "N": n_sub,
                "m": int(m),
                "n_cells": n,
                "rule_accuracy": right / n,
                "larger_accuracy": larger / n,
                "rule_picks_M": picks / n,
            }
            if expected is not None:
                have = e_m is not None and e_n is not None
                row["predicted_accuracy"] = pred_right / n if have else np.nan
                row["predicted_picks_M"] = float(e_m < e_n) if have else np.nan
            rows.append(row)
    out = pd.DataFrame(rows)
    return out if not out.empty else pd.DataFrame(columns=SELECTION_COLUMNS)


def check(results: pd.DataFrame, delta: float = 0.05, radius: float | None = None):
    """(bounds, predictions) DataFrames with the columns of bounds.csv and predictions.csv.

    Diverged runs are excluded (``mmtheory check`` prints how many); the modality
    contributions are :func:`mmtheory.theory.contributions.contributions_table`, the
    selection rule's score :func:`selection_table`."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    missing = {"subset", "m", "seed", "test_risk", "eta", "train_risk"} - set(results.columns)
    if missing:
        raise ValueError(f"results table lacks column(s) {sorted(missing)}")
    bounds = bounds_table(results, delta, radius)
    return bounds, predictions_table(results, bounds, delta)
