"""The text of ``mmtheory games``'s report.md, from its tables only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.reporting.markdown import markdown_table
from mmtheory.theory.game_tables import FLAG_RATE
from mmtheory.theory.games import EMPTY_CONVENTIONS, INTERACTION_CONVENTIONS
from mmtheory.theory.pid import PID_ATOMS

__all__ = ["games_report"]


def _f(v: float, digits: int = 4) -> str:
    return "" if not np.isfinite(v) else f"{v:.{digits}f}"


def _ci(est: float, lo: float, hi: float) -> str:
    return f"{est:+.4f} [{_f(lo)}, {_f(hi)}]"


def _md(df: pd.DataFrame) -> str:
    return markdown_table(list(df.columns), df.to_numpy().tolist(), "l" * len(df.columns))


def _imbalance_section(imb: pd.DataFrame) -> list[str]:
    lines = ["## The imbalance score", ""]
    lines += [
        "Retrain-Shapley minus masked-Shapley per modality (value: minus the per-sample loss, "
        "nats; empty coalition: the best constant predictor, so a dataset's scores add up to "
        f"0). Flagged: the score is positive in at least {FLAG_RATE:.0%} of the seeds and the "
        "exact binomial interval of that rate lies above one half (a two-sided sign test at "
        "5%). Gap intervals: 95% t over seeds.",
        "",
    ]
    sel = imb[imb["value"] == "neg_risk"]
    table = pd.DataFrame(
        {
            "dataset": sel.dataset,
            "learner": sel.learner,
            "mask": sel["mask"],
            "modality": sel.modality,
            "gap [95% CI]": [_ci(r.gap, r.ci_low, r.ci_high) for r in sel.itertuples()],
            "positive in seeds [95% CI]": [
                f"{r.positive_rate:.2f} [{r.rate_low:.2f}, {r.rate_high:.2f}] of {r.n_seeds}"
                for r in sel.itertuples()
            ],
            "flagged": sel.flagged.map({True: "yes", False: "no"}),
        }
    )
    lines += [_md(table), ""]
    checks = []
    weak = sel[(sel.dataset == "imbalance") & (sel.modality == "weak")]
    if len(weak):
        ok = bool(weak.flagged.all())
        checks.append(
            f"- Imbalance world, modality `weak` flagged under every mask: "
            f"**{'yes' if ok else 'no'}** (required)."
        )
    long = sel[(sel.dataset == "imbalance_long") & (sel.modality == "weak")]
    if len(weak) and len(long):
        a = weak[weak["mask"] == "zero"].iloc[0]
        b = long[long["mask"] == "zero"].iloc[0]
        checks.append(
            f"- Training five times longer moves the weak modality's score from "
            f"{_ci(a.gap, a.ci_low, a.ci_high)} to {_ci(b.gap, b.ci_low, b.ci_high)} (zero "
            "mask): a score caused by under-training would shrink towards 0."
        )
    bal = sel[sel.dataset == "balanced"]
    if len(bal):
        ok = not bool(bal.flagged.any())
        checks.append(
            "- Negative control (balanced two-block world, exchangeable modalities): no "
            f"modality flagged: **{'yes' if ok else 'no'}** (required)."
        )
    return lines + checks + [""]


def _shapley_section(games: pd.DataFrame) -> list[str]:
    lines = ["## Shapley values of both games", ""]
    lines += [
        "Value: minus the risk (nats for classification). `retrain`: a model trained on each "
        "subset; `masked`: the joint model, absent modalities zero-filled or set to their "
        "training means; `empty`: how v(empty) is valued. Mean over seeds [95% t-interval].",
        "",
    ]
    sh = games[(games.kind == "shapley") & (games["value"] == "neg_risk")]
    rows = []
    for (dataset, learner, modality), grp in sh.groupby(
        ["dataset", "learner", "modality"], sort=False
    ):
        row = {"dataset": dataset, "learner": learner, "modality": modality}
        for r in grp.itertuples():
            key = "retrain" if r.game == "retrain" else f"masked {r.mask}, empty {r.empty}"
            row[key] = _ci(r.estimate, r.ci_low, r.ci_high)
        rows.append(row)
    lines += [_md(pd.DataFrame(rows).fillna("")), ""]
    inter = games[
        (games.kind == "interaction")
        & (games["value"] == "neg_risk")
        & (games["empty"] == "constant")
    ]
    inter = inter[inter.dataset.isin(["synergy", "balanced", "imbalance"])]
    if len(inter):
        lines += [
            "Pairwise interactions (Grabisch index and InterSHAP's half of it; empty valued at "
            "the constant predictor):",
            "",
        ]
        table = pd.DataFrame(
            {
                "dataset": inter.dataset,
                "learner": inter.learner,
                "game": [
                    r.game if r.game == "retrain" else f"masked {r.mask}"
                    for r in inter.itertuples()
                ],
                "convention": inter.convention,
                "pair": inter.modality,
                "interaction [95% CI]": [
                    _ci(r.estimate, r.ci_low, r.ci_high) for r in inter.itertuples()
                ],
            }
        )
        lines += [_md(table), ""]
    return lines


def _pid_section(pid: pd.DataFrame, bias: pd.DataFrame, ident: pd.DataFrame) -> list[str]:
    lines = ["## Exact partial information decomposition", ""]
    lin = pid[pid.family == "linear"]
    n_worlds = lin.world.nunique()
    n, bins = int(pid.n.iloc[0]), int(pid.bins.iloc[0])
    reps = int(lin[lin.estimator != "exact"].reps.max()) if len(lin) else 0
    lines += [
        f"{n_worlds} Gaussian linear worlds (one-dimensional latent blocks; rho, noise and "
        "strength varied). Exact: the MMI PID from the world's second moments (nats). "
        f"Estimator: each modality's least-squares score (fitted on {n} rows), then y and the "
        f"two scores cut into {bins} equal-frequency bins and the plug-in PID of {n} "
        f"evaluation rows; {reps} repetitions per world. Bias: mean over worlds of "
        "(mean estimate - exact), 95% t-interval over worlds.",
        "",
    ]
    table = pd.DataFrame(
        {
            "estimator": bias.estimator,
            "atom": bias.atom,
            "bias [95% CI]": [_ci(r.bias, r.ci_low, r.ci_high) for r in bias.itertuples()],
            "rmse": bias.rmse.map(_f),
            "max |error|": bias.max_abs_error.map(_f),
            "mean exact": bias.mean_exact.map(_f),
        }
    )
    lines += [_md(table), ""]
    if len(ident):
        dev = {
            "I(y; x_12) - I(y; x_1) = 1/2 log r_1 / r_12 = U_2 + S": (
                ident.drop_m2_log_ratio - ident.unique_2_plus_synergy
            ),
            "1/2 log r_2 / r_12 = U_1 + S": ident.drop_m1_log_ratio - ident.unique_1_plus_synergy,
            "I(y; x_1) = 1/2 log Var y / (bayes + eta_inf(1))": ident.mi_from_risk_m1 - ident.mi_1,
            "Shapley of x_1 in the information game = U_1 + R/2 + S/2": (
                ident.phi_info_m1 - ident.u1_plus_half_r_s
            ),
            "Grabisch interaction of the information game = S - R": (
                ident.interaction_info - ident.synergy_minus_redundancy
            ),
        }
        lines += ["Exact identities over the grid (largest absolute deviation):", ""]
        lines += [f"- {k}: {float(np.abs(v).max()):.1e}" for k, v in dev.items()]
        drops = ["unique_1_plus_synergy", "unique_2_plus_synergy"]
        redundant_max = float(ident[ident.rho == 1.0][drops].max().max())
        unique = ident[ident.rho == 0.0]
        unique_max = float(unique[drops].max().max())
        same_sign = np.mean(
            np.sign(ident.interaction_risk) == np.sign(ident.synergy_minus_redundancy)
        )
        lines += [
            "",
            "What the atoms say about eta_inf and the games:",
            "",
            "- Dropping a modality raises eta_inf by exactly its unique-plus-synergistic "
            "information: bayes + eta_inf(one) = (bayes + eta_inf(both)) exp(2 (U_other + S)). "
            "Redundant information (R) never raises it. At rho = 1 (shared signal) the largest "
            f"U + S over the modalities is {_f(redundant_max)} nats; at rho = 0 "
            f"(complementary) it is {_f(unique_max)}.",
            "- The exact population imbalance score of the best linear predictor is "
            f"{_f(float(np.abs(unique[['gap_m1', 'gap_m2']]).max().max()), 2)} at rho = 0 "
            "(independent modalities: the masked joint predictor is each modality's own best "
            "predictor) and up to "
            f"{_f(float(np.abs(ident[['gap_m1', 'gap_m2']]).max().max()))} in absolute value "
            "over the grid (correlated modalities).",
            "- The sign of the retrain game's interaction (risk) agrees with the sign of S - R "
            f"in {same_sign:.0%} of the worlds (the information game's interaction is S - R "
            "exactly).",
            "",
        ]
    syn = pid[(pid.family == "synergy") & (pid.estimator.isin(["exact", "mmi_plugin"]))]
    if len(syn):
        lines += [
            "Two-block worlds (exact by Gauss-Hermite quadrature; the estimator reads the "
            "block posteriors as scores). XOR is pure synergy:",
            "",
        ]
        wide = syn.pivot_table(index=["world", "estimator"], columns="atom", values="estimate")
        wide = wide.reset_index()[["world", "estimator", *PID_ATOMS]]
        for c in wide.columns[2:]:
            wide[c] = wide[c].map(_f)
        lines += [_md(wide), ""]
    return lines


def _synergy_link(games: pd.DataFrame, pid: pd.DataFrame) -> list[str]:
    """The XOR world's retrain interaction beside its exact synergy."""
    exact = pid[(pid.world == "synergy-xor") & (pid.estimator == "exact")]
    rows = games[
        (games.dataset == "synergy")
        & (games.game == "retrain")
        & (games.convention == "grabisch")
        & (games["value"] == "neg_risk")
    ]
    if exact.empty or rows.empty:
        return []
    atoms = dict(zip(exact.atom, exact.exact))
    lines = [
        "Cross-entropy turns the retrain game into the information game when the learner "
        "reaches the Bayes risk on every subset: v(S) - v(empty) = H(y) - H(y | x_S) = "
        "I(y; x_S), so the Shapley value is U + R/2 + S/2 and the interaction S - R. On the "
        f"XOR world (exact synergy {atoms['synergy']:.4f} nats, R = U = 0) the retrain "
        "interaction is:",
        "",
    ]
    for r in rows.itertuples():
        covers = r.ci_low <= atoms["synergy"] <= r.ci_high
        lines.append(
            f"- {r.learner}: {_ci(r.estimate, r.ci_low, r.ci_high)} nats; the interval "
            f"{'covers' if covers else 'misses'} the exact synergy"
        )
    lines += [
        "",
        "A late-fusion head is additive over the modalities' latents, so it cannot represent "
        "XOR whatever it is trained on; early fusion can.",
        "",
    ]
    return lines


def _conventions() -> list[str]:
    rows = [["empty", k, v] for k, v in EMPTY_CONVENTIONS.items()]
    rows += [["interaction", k, v] for k, v in INTERACTION_CONVENTIONS.items()]
    rows += [
        ["mask", "zero", "absent modalities zero-filled (BalanceBenchmark, AGM, MM-SHAP)"],
        ["mask", "mean", "absent modalities set to their training means (intershap package)"],
    ]
    return [
        "## Conventions",
        "",
        markdown_table(["column", "value", "meaning"], rows, "lll"),
        "",
        "Both masks coincide on centred data (mfeat is standardised on its training split; the "
        "synthetic worlds have zero means): their rows differ only by the training sample's "
        "mean.",
        "",
    ]


def games_report(
    games: pd.DataFrame,
    imbalance: pd.DataFrame,
    pid: pd.DataFrame,
    bias: pd.DataFrame,
    ident: pd.DataFrame,
    walls: dict,
    wall: float,
) -> str:
    """report.md of ``mmtheory games``."""
    lines = [
        "# Contribution games and the exact PID",
        "",
        "Retrain game (learnability: a model per subset) against masked game (reliance: one "
        "joint model with modalities masked), their Shapley values and interactions, the "
        "imbalance score, and the exact Gaussian PID against a discretising estimator. Wall "
        "time " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items()) + f"; total {wall:.0f} s.",
        "",
    ]
    lines += _conventions()
    if len(imbalance):
        lines += _imbalance_section(imbalance)
    if len(games):
        lines += _shapley_section(games)
    lines += _pid_section(pid, bias, ident)
    if len(games):
        lines += _synergy_link(games, pid)
    return "\n".join(lines)
