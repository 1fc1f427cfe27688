"""The theory parts of ``mmtheory reproduce``: correlation, bound checks, predictions.

- correlation: a linear world with a clean 10-d modality and a noisy 40-d one, for
  rho in {0, 0.25, 0.5, 0.75, 1}: exact eta_inf(M) against rho, and the crossover m*
  (from which sample size the pair beats the clean modality alone) against rho;
- bounds: a bounded (uniform) linear world, 200 independent training samples per
  sample size: Theorem 1 and 2 right sides against the measured left sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmtheory.core.io import write_csv_atomic
from mmtheory.core.subsets import label_size
from mmtheory.experiments.sweep import sweep
from mmtheory.theory.check import check, selection_table
from mmtheory.theory.contributions import contributions_table
from mmtheory.theory.predicted import predict
from mmtheory.theory.versus import (
    accuracy_summary,
    phase_agreement,
    phase_table,
    predicted_larger_better,
    theory_vs_measured,
)

__all__ = ["correlation_part", "correlation_boundary", "bounds_part", "RHO_GRID", "BOUND_SIZES"]

RHO_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Dense around the crossings (exact m* 347, 371, 477, 906 and 11,806 for the five rho
#: values), so that the last crossing is located, not guessed over a wide gap.
CORRELATION_SIZES = [
    12,
    16,
    20,
    30,
    45,
    70,
    100,
    150,
    200,
    250,
    300,
    350,
    400,
    450,
    500,
    600,
    700,
    800,
    900,
    1000,
    1200,
]
BOUND_SIZES = [20, 50, 100, 300, 1000, 3000]


def correlation_world(rho: float):
    import synthetic

    return synthetic.LinearWorld(
        (10, 40),
        latent_dim=3,
        rho=rho,
        noise=(0.3, 1.5),
        strength=(1.0, 0.7),
        label_noise=0.5,
        seed=4,
    )


def _predicted_mstar(world) -> float:
    """The exact m* of m1+m2 over m1 for least squares with an intercept (Gaussian world):
    p_M + 2 + (p_M - p_N) s2_M / (eta_inf(N) - eta_inf(M)), s2 = Bayes risk + eta_inf."""
    from mmtheory.theory.predicted import crossover_ls

    dims = world.dims
    bayes = world.bayes_risk()
    return crossover_ls(
        bayes + world.eta_inf("m1+m2"),
        dims["m1"] + dims["m2"],
        bayes + world.eta_inf("m1"),
        dims["m1"],
    )


#: rho values at which the predicted phase boundary m*(rho) is drawn
BOUNDARY_RHO = tuple(float(v) for v in np.round(np.linspace(0.0, 1.0, 41), 3))


def correlation_boundary() -> pd.DataFrame:
    """The predicted boundary of the (m, rho) phase diagram: m*(rho) of m1+m2 over m1."""
    return pd.DataFrame(
        {
            "rho": BOUNDARY_RHO,
            "m_star": [_predicted_mstar(correlation_world(r)) for r in BOUNDARY_RHO],
        }
    )


def correlation_part(out: Path, seeds: int, progress: bool) -> dict[str, pd.DataFrame]:
    tables, etas = [], []
    worlds = [correlation_world(rho) for rho in RHO_GRID]
    for rho in RHO_GRID:
        world = correlation_world(rho)
        tables.append(
            sweep(
                world,
                "linear",
                "all",
                m=CORRELATION_SIZES,
                seeds=seeds,
                dtype="float64",
                out=out / "correlation",
                progress=progress,
            )
        )
        for sub in ("m1", "m2", "m1+m2"):
            etas.append(
                {
                    "rho": rho,
                    "subset": sub,
                    "n_modalities": label_size(sub),
                    "eta_inf": world.eta_inf(sub),
                    "bayes_risk": world.bayes_risk(),
                }
            )
    results = pd.concat(tables, ignore_index=True)
    write_csv_atomic(results, out / "correlation" / "results.csv")
    eta = pd.DataFrame(etas)
    write_csv_atomic(eta, out / "correlation_eta.csv")
    bounds, preds = check(results)
    risk_vs, cross_vs = theory_vs_measured(results, worlds, preds)
    rho_of = results.drop_duplicates("world_id").set_index("world_id").rho
    risk_vs["rho"] = risk_vs.world_id.map(rho_of)
    cross_vs["rho"] = cross_vs.world_id.map(rho_of)
    write_csv_atomic(risk_vs, out / "correlation" / "theory_vs_measured.csv")
    write_csv_atomic(cross_vs, out / "correlation" / "crossover_vs_measured.csv")
    predicted = pd.concat(
        [predict(w, "linear", "all", CORRELATION_SIZES) for w in worlds], ignore_index=True
    )
    selection = selection_table(results, bounds, predicted)
    write_csv_atomic(selection, out / "correlation" / "selection.csv")
    phase = phase_table(results, "m1+m2", "m1", "rho")
    write_csv_atomic(phase, out / "correlation_phase.csv")
    boundary = correlation_boundary()
    write_csv_atomic(boundary, out / "correlation_boundary.csv")
    crossing = preds[(preds.prediction == "P7") & (preds.M == "m1+m2") & (preds.N == "m1")].copy()
    crossing["rho"] = crossing.world_id.map(rho_of)
    mstar = pd.DataFrame({"rho": list(RHO_GRID)}).merge(
        crossing[["rho", "statistic", "ci_low", "ci_high", "holds", "reason", "detail"]],
        on="rho",
        how="left",
    )
    mstar = mstar.rename(columns={"statistic": "m_star"})
    mstar["m_star_predicted"] = [_predicted_mstar(correlation_world(r)) for r in mstar.rho]
    pair = cross_vs[(cross_vs.M == "m1+m2") & (cross_vs.N == "m1")].set_index("rho")
    mstar["predicted_inside"] = mstar.rho.map(pair.inside)
    write_csv_atomic(mstar, out / "correlation_mstar.csv")
    write_csv_atomic(preds, out / "correlation" / "predictions.csv")
    write_csv_atomic(contributions_table(results), out / "correlation" / "contributions.csv")
    return {
        "eta": eta,
        "mstar": mstar,
        "predictions": preds,
        "selection": selection,
        "theory_vs_measured": risk_vs,
        "crossover_vs_measured": cross_vs,
        "phase": phase,
        "boundary": boundary,
        "accuracy": accuracy_summary(risk_vs, cross_vs),
        "phase_agreement": phase_agreement(
            phase,
            predicted_larger_better(
                predicted.assign(value=predicted.world_id.map(rho_of)), "m1+m2", "m1"
            ),
            "rho",
        ),
    }


def bounds_part(
    out: Path, seeds: int, progress: bool, delta: float = 0.05
) -> dict[str, pd.DataFrame]:
    import synthetic

    world = synthetic.LinearWorld(
        (3, 3, 3), latent_dim=2, rho=0.4, noise=0.3, label_noise=0.3, latent="uniform", seed=1
    )
    results = sweep(
        world,
        "linear",
        "all",
        m=BOUND_SIZES,
        seeds=seeds,
        dtype="float64",
        out=out / "bounds",
        progress=progress,
    )
    write_csv_atomic(results, out / "bounds" / "results.csv")
    bounds, preds = check(results, delta=delta)
    selection = selection_table(results, bounds)
    write_csv_atomic(bounds, out / "bounds" / "bounds.csv")
    write_csv_atomic(preds, out / "bounds" / "predictions.csv")
    write_csv_atomic(selection, out / "bounds" / "selection.csv")
    rigorous = bounds[bounds.constants_rigorous.astype(bool)]
    summary = (
        rigorous.groupby("m")
        .agg(
            n=("seed", "size"),
            thm1_lhs=("risk_gap", "mean"),
            thm1_rhs=("thm1_rhs", "mean"),
            thm1_violation_rate=("thm1_holds", lambda v: 1 - v.mean()),
            thm2_lhs=("eta_M", "mean"),
            thm2_rhs=("thm2_rhs", "mean"),
            thm2_violation_rate=("thm2_holds", lambda v: 1 - v.mean()),
            thm2_slack_ratio=("thm2_ratio", "median"),
        )
        .reset_index()
    )
    outside = bounds.groupby("m").in_class.agg(lambda v: int((~v.astype(bool)).sum()))
    summary["outside_class"] = summary.m.map(outside).fillna(0).astype(int)
    summary["radius"] = float(bounds.radius.iloc[0]) if len(bounds) else float("nan")
    write_csv_atomic(summary, out / "bounds_summary.csv")
    return {"summary": summary, "predictions": preds, "bounds": bounds, "selection": selection}
