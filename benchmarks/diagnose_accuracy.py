"""How often is ``mmtheory diagnose`` right? Sign accuracy on linear worlds with known truth.

For each world (synthetic.LinearWorld, regression, exact risks from its oracle) and each
fraction f of a full data set of N_FULL rows (a quarter and a half), REPS independent data
sets of f N_FULL rows are drawn and diagnosed (``mmtheory.diagnose``, the default protocol:
8 splits, 75/25). Its current size is m_now = 0.75 f N_FULL; it answers "adding X to S helps /
hurts / cannot tell yet" at m_now (measured) and at 2x, 5x, 10x m_now (extrapolated).

The truth at size m: the same learner (inner-CV ridge on m rows) trained on TRUTH_DRAWS fresh
samples of m rows, each scored by the world's exact population risk; the sign of the mean
paired difference r(S+X) - r(S). Pairs whose true difference is within 3 standard errors of 0
are ties and are not scored. A claim is right when its sign equals the true sign.

Run from the repository root: ``python benchmarks/diagnose_accuracy.py`` (a few minutes on
one core); it rewrites ``benchmarks/diagnose_accuracy.md`` (with ``DIAGNOSE_SPLITS=J`` in
the environment, ``diagnose_accuracy-J.md``: the protocol with J splits instead of 8).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmtheory.core.subsets import all_subsets, label_names  # noqa: E402
from mmtheory.engine.convex import fit_ridge  # noqa: E402
from mmtheory.experiments.protocol import Protocol, as_arrays, select_lambda  # noqa: E402
from mmtheory.studies.diagnose import diagnose  # noqa: E402
from mmtheory.theory.statistics import binomial_interval  # noqa: E402
from synthetic.linear import LinearWorld  # noqa: E402

N_FULL = 800
FRACTIONS = (0.25, 0.5)
REPS = 6
TRUTH_DRAWS = 40
PROTOCOL = Protocol(n_splits=int(os.environ.get("DIAGNOSE_SPLITS", "8")))

WORLDS = {
    # a strong and a weak, noisy modality plus a pure-noise one
    "imbalanced": dict(
        dims=(4, 4), latent_dim=2, rho=0.5, strength=(1.0, 0.4), noise=(0.4, 1.0),
        n_noise_modalities=1, noise_dim=4,
    ),
    # redundant views: the second adds little
    "redundant": dict(dims=(4, 4), latent_dim=2, rho=0.9, strength=(1.0, 1.0), noise=0.5),
    # complementary views, the second high-dimensional: it hurts small m, helps large m
    "crossover": dict(
        dims=(3, 24), latent_dim=2, rho=0.0, strength=(1.0, 0.35), noise=(0.3, 1.2),
    ),
    # the same with a 60-d second view: adding it hurts up to about 2x m_now (a quarter of
    # the data) and helps from about 5x: the extrapolation has to find the crossing
    "late_crossover": dict(
        dims=(3, 60), latent_dim=2, rho=0.0, strength=(1.0, 0.35), noise=(0.3, 1.2),
    ),
}  # fmt: skip


def _fit_raw(x: dict, y: np.ndarray, names: tuple, universe: tuple, dims: dict):
    """Inner-CV ridge on all rows of (x, y) restricted to ``names``, as (W, b) over the
    world's full concatenated features (zero rows elsewhere)."""
    X = np.concatenate([x[k] for k in names], axis=1)
    rows = np.arange(len(y))
    lam, _ = select_lambda(
        X, y, rows, classes=None, lambdas=PROTOCOL.lambdas, folds=PROTOCOL.inner_folds, seed=0
    )
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    fit = fit_ridge((X - mu) / sd, y, lam)
    w = fit.W / sd[:, None]
    b = fit.b - (mu / sd) @ fit.W
    W = np.zeros((sum(dims.values()), w.shape[1]))
    start, pos = 0, {}
    for k in universe:
        pos[k] = slice(start, start + dims[k])
        start += dims[k]
    row = 0
    for k in names:
        W[pos[k]] = w[row : row + dims[k]]
        row += dims[k]
    return W, b


def true_risks(world, sizes, seed: int = 10_000) -> pd.DataFrame:
    """Exact risk of the learner per (draw, m, subset)."""
    universe = tuple(world.sample(2, seed=0).names)
    dims = world.sample(2, seed=0).dims
    subs = [tuple(s.names) for s in all_subsets(universe)]
    rows = []
    for m in sizes:
        for r in range(TRUTH_DRAWS):
            x, y = as_arrays(world.sample(int(m), seed=seed + 1000 * r + int(m)))
            for names in subs:
                W, b = _fit_raw(x, y, names, universe, dims)
                risk = float(world.risk_linear(W, b))
                rows.append({"draw": r, "m": int(m), "subset": "+".join(names), "risk": risk})
    return pd.DataFrame(rows)


def truth_changes(risks: pd.DataFrame) -> dict:
    """(m, S, S+X) -> the true expected change r(S+X) - r(S) (mean over the draws) and its
    standard error."""
    out = {}
    for m, g in risks.groupby("m"):
        piv = g.pivot(index="draw", columns="subset", values="risk")
        for big in piv.columns:
            for small in piv.columns:
                nb, ns = set(label_names(big)), set(label_names(small))
                if ns < nb and len(nb) == len(ns) + 1:
                    d = (piv[big] - piv[small]).to_numpy()
                    out[(m, small, big)] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))))
    return out


def truth_signs(changes: dict) -> dict:
    """(m, S, S+X) -> +1 / -1 (adding hurts / helps) or 0 (a tie within 3 SE), from
    :func:`truth_changes`."""
    return {k: 0 if abs(d) < 3 * se else int(np.sign(d)) for k, (d, se) in changes.items()}


def main() -> None:
    t0 = time.perf_counter()
    claims = []
    for wname, params in WORLDS.items():
        world = LinearWorld(**params, seed=1)
        m_nows = [int(round(0.75 * f * N_FULL)) for f in FRACTIONS]
        sizes = sorted({m * k for m in m_nows for k in (1, 2, 5, 10)})
        change = truth_changes(true_risks(world, sizes))
        truth = truth_signs(change)
        for f in FRACTIONS:
            for rep in range(REPS):
                data = world.sample(int(f * N_FULL), seed=rep + 1 + int(100 * f))
                add = diagnose(data, protocol=PROTOCOL, n_boot=200)["adding"]
                for r in add.to_dict("records"):
                    claims.append(
                        {
                            "world": wname,
                            "fraction": f,
                            "rep": rep,
                            "add": r["modality"],
                            "to": r["to"],
                            "factor": r["factor"],
                            "m": r["m"],
                            "verdict": r["verdict"],
                            "point_sign": int(np.sign(r["change"])),
                            "truth": truth.get((int(r["m"]), r["to"], r["with"])),
                            "ci_low": r["ci_low"],
                            "ci_high": r["ci_high"],
                            "true_change": change.get((int(r["m"]), r["to"], r["with"]), (np.nan,))[
                                0
                            ],
                        }
                    )
    df = pd.DataFrame(claims)
    write(df, time.perf_counter() - t0)


def _rate(sub: pd.DataFrame) -> str:
    decided = sub[sub.verdict != "cannot tell yet"]
    right = int((decided.verdict.map({"helps": -1, "hurts": 1}) == decided.truth).sum())
    n = len(decided)
    if n == 0:
        return f"- (0 of {len(sub)} decided)"
    lo, hi = binomial_interval(right, n)
    return f"{right}/{n} = {right / n:.0%} [{lo:.0%}, {hi:.0%}]; decided {n}/{len(sub)}"


def write(df: pd.DataFrame, seconds: float) -> None:
    scored = df[df.truth.notna() & (df.truth != 0)]
    lines = [
        "# How often is `mmtheory diagnose` right?",
        "",
        "Generated by `python benchmarks/diagnose_accuracy.py` "
        f"({seconds:.0f} s on one CPU core). Worlds: "
        + ", ".join(WORLDS)
        + f" (synthetic.LinearWorld, regression; truth from exact risks over {TRUTH_DRAWS} "
        f"training draws per size). Full data N = {N_FULL}; diagnose sees a quarter or half "
        f"of it ({REPS} independent data sets each), protocol: {PROTOCOL.describe()}.",
        "",
        "A claim is a verdict 'adding X to S helps' or 'hurts' at m_now (measured) or 2x, 5x, "
        "10x m_now (extrapolated); it is right when its sign equals the sign of the true "
        "expected change. 'cannot tell yet' is not a claim. Pairs whose true change is within "
        "3 standard errors of 0 (ties) are not scored. Intervals: exact binomial 95% "
        "(claims from one data set are correlated, so they are optimistic).",
        "",
        "| data seen | claims right (measured, m_now) | claims right (extrapolated) | "
        "sign of the point estimate right (all) |",
        "|---|---|---|---|",
    ]
    for f in FRACTIONS:
        sub = scored[scored.fraction == f]
        point = (sub.point_sign == sub.truth).mean()
        lines.append(
            f"| {f:g} of N | {_rate(sub[sub.factor == 1])} | {_rate(sub[sub.factor > 1])} | "
            f"{point:.0%} of {len(sub)} |"
        )
    lines += [
        "",
        f"Ties (not scored): {int((df.truth == 0).sum())} of {len(df)} claims' pairs.",
        "",
        "By world and factor (all fractions):",
        "",
        "| world | factor | claims right |",
        "|---|---:|---|",
    ]
    for (w, fac), g in scored.groupby(["world", "factor"]):
        lines.append(f"| {w} | {fac:g} | {_rate(g)} |")
    cov = df[df.true_change.notna()].assign(
        covered=lambda t: (t.ci_low <= t.true_change) & (t.true_change <= t.ci_high)
    )
    lines += [
        "",
        "Coverage: how often the stated 95% interval of the change contains the true expected "
        f"change (every pair, ties included; the truth's own standard error over {TRUTH_DRAWS} "
        "draws is ignored; binomial intervals, optimistic as above):",
        "",
        "| data seen | measured (m_now) | extrapolated 2x | 5x | 10x |",
        "|---|---|---|---|---|",
    ]
    for f in FRACTIONS:
        cells = []
        for fac in (1, 2, 5, 10):
            g = cov[(cov.fraction == f) & (cov.factor == fac)]
            k, n = int(g.covered.sum()), len(g)
            lo, hi = binomial_interval(k, n)
            cells.append(f"{k}/{n} = {k / n:.0%} [{lo:.0%}, {hi:.0%}]")
        lines.append(f"| {f:g} of N | " + " | ".join(cells) + " |")
    stem = "diagnose_accuracy" + ("" if PROTOCOL.n_splits == 8 else f"-{PROTOCOL.n_splits}")
    out = ROOT / "benchmarks" / f"{stem}.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    df.to_csv(ROOT / "benchmarks" / f"{stem}.csv", index=False)
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
