"""Text views of the prediction and bound tables: the verdict block every report opens with,
counts per prediction, and the table ``mmtheory check`` prints."""

from __future__ import annotations

import pandas as pd

from mmtheory.reporting.markdown import markdown_table

__all__ = [
    "STATEMENTS",
    "bounds_summary",
    "convergence_line",
    "counts_markdown",
    "format_predictions",
    "verdict_block",
    "verdict_counts",
]

#: One line per prediction (docs/theory.md section 4).
STATEMENTS = {
    "P1": "more modalities, better latent at large m (gamma <= 0)",
    "P2": "the risk gap has the sign of the latent gap",
    "P3": "Theorem 1 violation rate <= delta/2",
    "P4": "Theorem 2 violation rate <= delta",
    "P5": "empirical-loss monotonicity for nested subsets (exact ERM)",
    "P6": "small m: a larger subset can have higher risk",
    "P7": "a crossover m* past which the larger subset wins",
    "P8": "overlap: more overlap, less lost by dropping a modality",
    "P9": "eta with all modalities -> 0 (well-specified model)",
}


def verdict_counts(predictions: pd.DataFrame) -> pd.DataFrame:
    """Rows held / failed / untestable per prediction (every prediction listed)."""
    rows = []
    for p, text in STATEMENTS.items():
        g = predictions[predictions.prediction == p] if len(predictions) else predictions
        counts = g.holds.value_counts() if len(g) else pd.Series(dtype=int)
        rows.append(
            {
                "prediction": p,
                "statement": text,
                "rows": len(g),
                "true": int(counts.get("true", 0)),
                "false": int(counts.get("false", 0)),
                "untestable": int(counts.get("untestable", 0)),
            }
        )
    return pd.DataFrame(rows)


def _reasons(predictions: pd.DataFrame, p: str) -> str:
    g = predictions[(predictions.prediction == p) & (predictions.holds == "untestable")]
    if g.empty:
        return ""
    top = g.reason.str.split(":").str[0].value_counts()
    return "; ".join(f"{reason} ({n})" for reason, n in top.head(2).items())


def verdict_block(predictions: pd.DataFrame) -> str:
    """Three lines: what held, what failed, what could not be tested (and why)."""
    counts = verdict_counts(predictions).set_index("prediction")
    held = [p for p, r in counts.iterrows() if r["true"] and not r["false"]]
    failed = [f"{p} ({r['false']} of {r['rows']} rows)" for p, r in counts.iterrows() if r["false"]]
    # rows, none testable (a prediction without rows is "not applicable", below)
    untestable = [p for p, r in counts.iterrows() if r["rows"] and r["rows"] == r["untestable"]]
    # each prediction's reasons, named when there are several ("P2 (P2: ...)" said it twice)
    reasons = {p: _reasons(predictions, p) for p in untestable}
    reasons = {p: text for p, text in reasons.items() if text}
    why = [(f"{p}: " if len(reasons) > 1 else "") + text for p, text in reasons.items()]
    absent = [p for p, r in counts.iterrows() if r["rows"] == 0]
    return "\n".join(
        [
            f"- **Held** (every testable row): {', '.join(held) or 'none'}.",
            f"- **Failed** (at least one row false): {', '.join(failed) or 'none'}.",
            f"- **Could not be tested** here: {', '.join(untestable) or 'none'}"
            + (f" ({'; '.join(why)})" if why else "")
            + (f"; not applicable to these tables: {', '.join(absent)}" if absent else "")
            + ".",
        ]
    )


def convergence_line(results: pd.DataFrame) -> str:
    """One line on training: how many iteratively trained models were flagged
    ``converged=False`` (gradient-norm and plateau tests), per learner, and that the
    verdicts use them (dropping them would bias the verdicts toward the easy cases)."""
    if results is None or results.empty or "converged" not in results:
        return ""
    iterative = results[results.solver != "closed_form"] if "solver" in results else results
    if iterative.empty:
        return "- **Training**: every model is exact least squares (nothing to converge)."
    flagged = ~iterative.converged.astype(bool)
    per = iterative.assign(flagged=flagged).groupby("learner").flagged.agg(["sum", "size"])
    detail = ", ".join(f"{k} {int(r['sum'])} of {int(r['size'])}" for k, r in per.iterrows())
    return (
        f"- **Training**: {int(flagged.sum())} of {len(iterative)} iteratively trained models "
        f"did not meet the convergence tests ({detail}); the verdicts above use them, and "
        "`results.csv` flags each (`converged`)."
    )


def counts_markdown(predictions: pd.DataFrame) -> str:
    c = verdict_counts(predictions)
    return markdown_table(
        ["prediction", "statement", "rows", "true", "false", "untestable"],
        c.to_numpy().tolist(),
        "llrrrr",
    )


def format_predictions(predictions: pd.DataFrame, max_rows: int = 60) -> str:
    """A compact text table: one line per statement, with its verdict and (if untestable)
    the reason."""
    if predictions.empty:
        return "no prediction could be evaluated from this table"
    lines = [
        f"{'pred':5} {'learner':>14} {'M':>18} {'N':>14} {'m':>7} {'n':>5} {'statistic':>11} "
        f"{'95% interval':>23}  holds"
    ]
    for r in predictions.head(max_rows).itertuples():
        interval = f"[{r.ci_low:.4g}, {r.ci_high:.4g}]" if pd.notna(r.ci_low) else ""
        reason = getattr(r, "reason", "")
        why = f"  ({reason})" if isinstance(reason, str) and reason else ""
        learner = str(getattr(r, "learner", ""))[:14]
        lines.append(
            f"{r.prediction:5} {learner:>14} {str(r.M)[:18]:>18} {str(r.N)[:14]:>14} "
            f"{str(r.m):>7} {r.n_trials:>5} {r.statistic:>11.4g} {interval:>23}  {r.holds}{why}"
        )
    if len(predictions) > max_rows:
        lines.append(f"... {len(predictions) - max_rows} more rows in predictions.csv")
    return "\n".join(lines)


def bounds_summary(bounds: pd.DataFrame) -> pd.DataFrame:
    """Per m: violation rates of Theorems 1 and 2 (rigorous rows only; NaN if none), the
    median slack ratio, and how many rows are rigorous."""

    def rate(v):
        return 1 - v.mean() if len(v) else float("nan")

    rig = (
        bounds[bounds.constants_rigorous.astype(bool)] if "constants_rigorous" in bounds else bounds
    )
    out = bounds.groupby("m").agg(rows=("seed", "size"), thm2_slack_ratio=("thm2_ratio", "median"))
    out["rigorous_rows"] = rig.groupby("m").size().reindex(out.index).fillna(0).astype(int)
    out["thm1_violation_rate"] = rig.groupby("m").thm1_holds.agg(rate).reindex(out.index)
    out["thm2_violation_rate"] = rig.groupby("m").thm2_holds.agg(rate).reindex(out.index)
    return out
