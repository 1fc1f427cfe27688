"""``mmtheory predict``: how well theory predicts what the sweeps measure.

Four parts, each a sweep of exact least squares (float64) whose records make it
resumable, each compared against :func:`mmtheory.predict` before anything is drawn:

1. accuracy: every shipped linear regression world (the correlation worlds, a K = 3 and a
   K = 4 world, a uniform-latent world, a noisy overlap world), sizes dense around every
   predicted m*, enough seeds for honest intervals: the share of (subset, m) cells whose
   predicted expected risk lies in the measured 95% interval, the share of nested pairs
   whose predicted m* lies in the measured interval, median relative errors; plug-ins on a
   nonlinear regression world and a linear softmax model on a classification world, with
   their accuracy however poor; Adam-trained late fusion gets "no prediction".
2. phase diagrams: over (m, rho) and over (m, SNR of the second modality), where m1+m2
   beats m1, measured, with the predicted boundary.
3. double descent: risk curves below, at and above the interpolation threshold, with the
   min-norm prediction where it holds.
4. selection: the paper's rule, the exact-prediction rule and "always larger" scored on
   the same sweeps.
5. coverage: the accuracy sweeps rerun with ``coverage_groups`` times the seeds; every
   group of ``seeds`` consecutive seeds is an independent replicate of the accuracy part,
   so how often its intervals cover the exact truth is measured, not assumed
   (:func:`~mmtheory.theory.versus.interval_coverage`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

import synthetic
from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.experiments.sweep import sweep
from mmtheory.plotting.figures import save_figure
from mmtheory.plotting.plots import plt
from mmtheory.plotting.theory import plot_phase, plot_risk_vs_predicted
from mmtheory.reporting.markdown import markdown_table
from mmtheory.reporting.versus import accuracy_markdown, phase_agreement_markdown
from mmtheory.theory.check import check, selection_table
from mmtheory.theory.predicted import predict, predict_crossovers
from mmtheory.theory.versus import (
    accuracy_summary,
    interval_coverage,
    phase_agreement,
    phase_table,
    predicted_larger_better,
    theory_vs_measured,
)

__all__ = [
    "accuracy_sweep",
    "accuracy_worlds",
    "coverage_part",
    "crossover_sizes",
    "run_prediction",
]


def _settings(quick: bool) -> dict:
    if quick:
        return {
            "seeds": 8,
            "per_decade": 6,
            "phase_seeds": 6,
            "dd_seeds": 8,
            "plugins": False,
            "coverage_groups": 3,
        }
    return {
        "seeds": 20,
        "per_decade": 10,
        "phase_seeds": 10,
        "dd_seeds": 20,
        "plugins": True,
        "coverage_groups": 10,
    }


def accuracy_worlds(quick: bool = False) -> list:
    """The shipped linear regression worlds the accuracy part sweeps."""
    from mmtheory.studies.reproduce_parts import RHO_GRID, correlation_world

    worlds = [correlation_world(r) for r in RHO_GRID]
    worlds.append(synthetic.LinearWorld())  # the kind "linear" defaults: K = 3, 10-d each
    if not quick:
        worlds += [
            synthetic.LinearWorld(
                (5, 20, 40, 15),
                latent_dim=4,
                rho=0.3,
                noise=(0.3, 1.0, 1.5, 0.8),
                strength=(1.0, 0.8, 0.6, 0.5),
                seed=2,
            ),
            synthetic.LinearWorld(
                (6, 12, 24), latent_dim=3, rho=0.4, noise=0.4, latent="uniform", seed=1
            ),
            synthetic.OverlapWorld(n_modalities=3, dim=20, overlap=0.5, noise=0.5),
        ]
    return worlds


def crossover_sizes(world, per_decade: int, cap: int = 30_000) -> list[int]:
    """A log grid from just above the smallest subset's dimension to 4 times the largest
    finite predicted m* (at least 20 times the largest dimension), plus points at 0.6 ..
    1.6 times every predicted m*, so every crossing is bracketed densely."""
    cross = predict_crossovers(world)
    dims = sum(world.dims.values())
    finite = cross.m_star[np.isfinite(cross.m_star)]
    top = min(cap, max(20 * dims, 4 * float(finite.max()) if len(finite) else 0))
    low = min(world.dims.values()) + 4
    grid = np.geomspace(low, top, max(int(per_decade * np.log10(top / low)), 4))
    extra = [f * v for v in finite if v < cap / 2 for f in (0.6, 0.8, 0.9, 1.1, 1.25, 1.6)]
    sizes = np.unique(np.round(np.concatenate([grid, extra])).astype(int))
    return [int(v) for v in sizes if low <= v <= cap]


def _accuracy_part(out: Path, cfg: dict, progress: bool, quick: bool) -> dict:
    worlds = accuracy_worlds(quick)
    results = []
    for world in worlds:
        sizes = crossover_sizes(world, cfg["per_decade"])
        results.append(accuracy_sweep(world, sizes, cfg["seeds"], out / "accuracy", progress))
    res = pd.concat(results, ignore_index=True)
    write_csv_atomic(res, out / "accuracy" / "results.csv")
    bounds, preds = check(res)
    risk, cross = theory_vs_measured(res, worlds, preds)
    predicted = pd.concat(
        [
            predict(w, "linear", "all", sorted(res[res.world_id == w.world_id].m.unique()))
            for w in worlds
        ],
        ignore_index=True,
    )
    selection = selection_table(res, bounds, predicted)
    return {"results": res, "risk": risk, "cross": cross, "selection": selection}


def accuracy_sweep(world, sizes, seeds: int, out: Path, progress: bool) -> pd.DataFrame:
    """Exact least squares (float64) on every subset of ``world``: the accuracy part's
    sweep, and the coverage part's with more seeds."""
    return sweep(
        world, "linear", "all", m=sizes, seeds=seeds, dtype="float64", out=out, progress=progress
    )


def coverage_part(
    out: str | Path,
    cfg: dict | None = None,
    progress: bool = True,
    quick: bool = False,
    worlds: list | None = None,
) -> pd.DataFrame:
    """The accuracy sweeps with ``coverage_groups`` x ``seeds`` seeds (their own records,
    under ``out/coverage``), cut into independent groups of ``seeds``: the coverage of the
    risk and m* intervals over the groups, with its interval. Written to coverage.csv.
    ``worlds``: a subset of :func:`accuracy_worlds` (default all)."""
    cfg = cfg or _settings(quick)
    out = Path(out)
    worlds = worlds if worlds is not None else accuracy_worlds(quick)
    n = cfg["seeds"] * cfg["coverage_groups"]
    results = [
        accuracy_sweep(w, crossover_sizes(w, cfg["per_decade"]), n, out / "coverage", progress)[
            ["world", "world_id", "learner", "subset", "m", "seed", "test_risk"]
        ]
        for w in worlds
    ]
    table = interval_coverage(pd.concat(results, ignore_index=True), worlds, cfg["seeds"])
    write_csv_atomic(table, out / "coverage.csv")
    return table


def _plugin_part(out: Path, cfg: dict, progress: bool) -> dict:
    """Plug-in predictions against sweeps: least squares on a nonlinear regression world;
    a linear softmax model (full-batch Adam, the ``linear`` learner of classification) on a
    classification world; late fusion (no prediction)."""
    nonlinear = synthetic.NonlinearWorld(task="regression")
    classif = synthetic.LinearWorld(
        (5, 8), latent_dim=2, task="classification", n_classes=3, seed=1
    )
    runs = [
        (nonlinear, "linear", [30, 60, 120, 250, 500, 1000, 2000]),
        (classif, "linear", [150, 300, 600, 1200, 2400]),
        (classif, "late_fusion", [150, 600, 2400]),
    ]
    risks = []
    for world, learner, sizes in runs:
        res = sweep(
            world,
            learner,
            "all",
            m=sizes,
            seeds=cfg["seeds"],
            dtype="float64",
            out=out / "plugins",
            progress=progress,
        )
        risk, _ = theory_vs_measured(res, [world])
        if risk.empty:  # the learner label is no preset: predict says so
            pred = predict(world, learner, "all", sizes)
            risk = pred.assign(regime="none")
        risks.append(risk.assign(learner=learner, world=world.name))
    table = pd.concat(risks, ignore_index=True)
    return {"plugins": table}


def _phase_part(out: Path, cfg: dict, progress: bool, quick: bool) -> dict:
    """(m, rho) and (m, sigma_2) phase diagrams of m1+m2 over m1 in the correlation world."""
    from mmtheory.studies.reproduce_parts import correlation_world

    sizes = [int(v) for v in np.unique(np.round(np.geomspace(14, 3000, 14 if quick else 22)))]
    rhos = np.round(np.linspace(0, 0.9, 4 if quick else 10), 3)
    noises = np.round(np.geomspace(0.5, 4.0, 4 if quick else 9), 3)

    def noise_world(sigma: float):
        return synthetic.LinearWorld(
            (10, 40),
            latent_dim=3,
            rho=0.5,
            noise=(0.3, float(sigma)),
            strength=(1.0, 0.7),
            label_noise=0.5,
            seed=4,
        )

    parts = {}
    for by, values, make in (("rho", rhos, correlation_world), ("noise_m2", noises, noise_world)):
        tables = []
        for v in values:
            t = sweep(
                make(float(v)),
                "linear",
                ["m1", "m1+m2"],
                m=sizes,
                seeds=cfg["phase_seeds"],
                dtype="float64",
                out=out / f"phase_{by}",
                progress=progress,
            )
            tables.append(t.assign(**{by: float(v)}))
        res = pd.concat(tables, ignore_index=True)
        phase = phase_table(res, "m1+m2", "m1", by)
        fine = np.linspace(values.min(), values.max(), 60)

        def boundary_of(v, make=make):
            c = predict_crossovers(make(float(v)), "linear", ["m1", "m1+m2"])
            return float(c.m_star.iloc[0])

        boundary = pd.DataFrame({by: fine, "m_star": [boundary_of(v) for v in fine]})
        predicted = pd.concat(
            [
                predict(make(float(v)), "linear", ["m1", "m1+m2"], sizes).assign(value=float(v))
                for v in values
            ],
            ignore_index=True,
        )
        parts[by] = {
            "phase": phase,
            "boundary": boundary,
            "agreement": phase_agreement(
                phase, predicted_larger_better(predicted, "m1+m2", "m1"), by
            ),
        }
        write_csv_atomic(phase, out / f"phase_{by}.csv")
        write_csv_atomic(boundary, out / f"phase_{by}_boundary.csv")
    return parts


def _double_descent_part(out: Path, cfg: dict, progress: bool) -> dict:
    """Least squares across the interpolation threshold on a 60-d (20 + 40) world."""
    world = synthetic.LinearWorld(
        (20, 40), latent_dim=5, rho=0.5, noise=(0.3, 0.6), label_noise=0.3, seed=3
    )
    sizes = sorted({*range(6, 120, 6), 58, 59, 60, 61, 62, 63, 64, 66, 70, 150, 200, 300, 500})
    res = sweep(
        world,
        "linear",
        "all",
        m=sizes,
        seeds=cfg["dd_seeds"],
        dtype="float64",
        out=out / "double_descent",
        progress=progress,
    )
    risk, _ = theory_vs_measured(res, [world])
    write_csv_atomic(risk, out / "double_descent.csv")
    return {"risk": risk}


def _figures(out: Path, acc: dict, phase: dict, dd: dict) -> list[Path]:
    written = []
    risk = acc["risk"]
    first = risk[risk.world_id == risk.world_id.iloc[0]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    plot_risk_vs_predicted(first, axes[0])
    axes[0].set_title("Correlation world (rho = 0): measured and predicted", fontsize=10)
    plot_risk_vs_predicted(dd["risk"], axes[1])
    axes[1].axvline(60, color="0.5", linewidth=0.8)
    axes[1].set_title("Double descent across p = 60 (no prediction near it)", fontsize=10)
    fig.tight_layout()
    written += save_figure(fig, out, "fig_predicted_curves")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    plot_phase(
        phase["rho"]["phase"], phase["rho"]["boundary"], "rho", axes[0], ylabel="correlation rho"
    )
    plot_phase(
        phase["noise_m2"]["phase"],
        phase["noise_m2"]["boundary"],
        "noise_m2",
        axes[1],
        ylabel="noise sd of m2 (SNR falls upward)",
    )
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_title("Where m1+m2 beats m1: measured cells, predicted m*", fontsize=10)
    fig.tight_layout()
    written += save_figure(fig, out, "fig_phase_diagrams")
    return written


def coverage_markdown(table: pd.DataFrame) -> list[str]:
    """The coverage study as report lines: what was simulated, then one row per quantity."""
    if table.empty:
        return ["No coverage study (no exact-regime cells)."]
    g = table.iloc[0]
    return [
        f"Every group of {int(g.group_size)} consecutive seeds is an independent replicate of "
        "the accuracy part above; the truth is exact (closed-form expected risk and m* of "
        "Gaussian linear worlds), so how often the stated 95% intervals cover it is "
        "measured. Cells within a group share training draws (nested sizes, worlds that "
        "differ only in the target), so a single run's share inside is one correlated "
        "draw; the coverage's interval is a t-interval over the groups.",
        "",
        markdown_table(
            ["quantity", "groups x seeds", "cells", "covered", "coverage", "95% interval"],
            [
                [
                    r.quantity,
                    f"{r.groups} x {r.group_size}",
                    r.trials,
                    r.covered,
                    f"{100 * r.coverage:.1f}%",
                    f"[{100 * r.coverage_ci_low:.1f}%, {100 * r.coverage_ci_high:.1f}%]",
                ]
                for r in table.itertuples()
            ],
            "lrrrrr",
        ),
    ]


def _report(
    out: Path,
    acc: dict,
    plugins: dict | None,
    phase: dict,
    dd: dict,
    secs: float,
    cfg: dict,
    coverage: pd.DataFrame | None = None,
) -> str:
    summary = accuracy_summary(acc["risk"], acc["cross"])
    cross = acc["cross"]
    scored = cross[cross.inside.notna()]
    none_pred = cross[~cross.exists_predicted.astype(bool)]
    lines = [
        "# Theory that predicts: accuracy report",
        "",
        f"Wall time {secs:.0f} s; settings {cfg}. Exact least squares (float64) on every "
        "shipped linear regression world; measured = mean over seeds with a 95% t-interval "
        "(risks) or the test-inversion interval of the last crossing (m*, P7).",
        "",
        "## Accuracy",
        "",
        accuracy_markdown(summary),
        "",
        f"Crossovers: {len(scored)} nested pairs with a measured crossing and a prediction; "
        f"{int(scored.inside.astype(bool).sum())} predictions inside the measured interval. "
        f"{len(none_pred)} pairs are predicted never to cross (eta_inf(M) >= eta_inf(N)); "
        f"P7 said true for {int((none_pred.p7_holds == 'true').sum())} of them.",
        "",
        markdown_table(
            ["world", "M", "N", "m* measured", "95% interval", "m* predicted", "inside"],
            [
                [
                    r.world_id,
                    r.M,
                    r.N,
                    f"{r.m_star_measured:.0f}",
                    f"[{'<' if pd.isna(r.m_star_ci_low) else f'{r.m_star_ci_low:.0f}'}, "
                    f"{'>' if pd.isna(r.m_star_ci_high) else f'{r.m_star_ci_high:.0f}'}]",
                    f"{r.m_star_predicted:.0f}",
                    "yes" if r.inside else "no",
                ]
                for r in scored.itertuples()
            ],
            "lllrlrl",
        ),
        "",
        "![curves](fig_predicted_curves.png)",
        "",
        "## Do the intervals cover? (simulation against the exact truth)",
        "",
        *(coverage_markdown(coverage) if coverage is not None else ["Not run."]),
        "",
        "## Phase diagrams",
        "",
    ]
    for by, part in phase.items():
        lines += [
            f"Over (m, {by}): measured cells against the predicted sign of E r(m1+m2) - "
            "E r(m1) at the same cell (no prediction near either interpolation threshold):",
            "",
            phase_agreement_markdown(part["agreement"]),
            "",
        ]
    lines += ["![phase](fig_phase_diagrams.png)", "", "## Selection rules", ""]
    sel = acc["selection"]
    if len(sel):
        lines += [
            f"Over {len(sel)} (pair, m) cells and {int(sel.n_cells.sum())} (pair, m, seed) "
            f"cases: the paper's rule picks the truly better subset in "
            f"{100 * sel.rule_accuracy.mean():.1f}%, the exact-prediction rule in "
            f"{100 * sel.predicted_accuracy.mean():.1f}%, 'always larger' in "
            f"{100 * sel.larger_accuracy.mean():.1f}% (truth: the lower test risk on that "
            "seed).",
            "",
        ]
    lines += ["## Double descent", ""]
    d = dd["risk"]
    scored_dd = d[d.inside.notna()]
    lines += [
        f"{len(scored_dd)} (subset, m) cells with a prediction, "
        f"{100 * scored_dd.inside.astype(bool).mean():.1f}% inside the measured interval; "
        f"{int((d.regime == 'none').sum())} cells near the threshold have no prediction.",
        "",
        "## Plug-in predictions (no closed form)",
        "",
    ]
    if plugins is None:
        lines += ["Not run in quick mode."]
    else:
        p = plugins["plugins"]
        rows = []
        for (world, learner, regime), g in p.groupby(["world", "learner", "regime"]):
            s = g[g.inside.notna()] if "inside" in g else g.iloc[0:0]
            rows.append(
                [
                    world,
                    learner,
                    regime,
                    len(g),
                    f"{100 * s.inside.astype(bool).mean():.1f}%" if len(s) else "-",
                    f"{100 * s.rel_error.abs().median():.1f}%" if len(s) else "-",
                    (g.reason.iloc[0] or "")[:90],
                ]
            )
        lines += [
            markdown_table(
                [
                    "world",
                    "learner",
                    "regime",
                    "cells",
                    "inside CI",
                    "median |rel. error|",
                    "reason",
                ],
                rows,
                "lllrrrl",
            )
        ]
    return "\n".join(lines) + "\n"


def run_prediction(
    out: str | Path = "runs/predict", quick: bool = False, progress: bool = True
) -> Path:
    """Run the four parts into ``out``; returns the report path."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _settings(quick)
    acc = _accuracy_part(out, cfg, progress, quick)
    write_csv_atomic(acc["risk"], out / "theory_vs_measured.csv")
    write_csv_atomic(acc["cross"], out / "crossover_vs_measured.csv")
    write_csv_atomic(acc["selection"], out / "selection.csv")
    write_csv_atomic(accuracy_summary(acc["risk"], acc["cross"]), out / "accuracy.csv")
    coverage = coverage_part(out, cfg, progress)
    plugins = _plugin_part(out, cfg, progress) if cfg["plugins"] else None
    if plugins is not None:
        write_csv_atomic(plugins["plugins"], out / "plugins.csv")
    phase = _phase_part(out, cfg, progress, quick)
    dd = _double_descent_part(out, cfg, progress)
    _figures(out, acc, phase, dd)
    report = out / "report.md"
    write_text_atomic(
        _report(out, acc, plugins, phase, dd, time.perf_counter() - t0, cfg, coverage), report
    )
    return report
