"""Text of ``mmtheory diagnose`` and of the real-data report: one screen, and report.md
sections (best subset per size, adding each modality, contributions, calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.core.subsets import label_names
from mmtheory.theory.learning_curves import too_few_sizes

__all__ = [
    "screen_text",
    "best_markdown",
    "adding_markdown",
    "calibration_markdown",
    "clip_risk",
    "risk_ci",
]


def _fmt(v: float, metric: str) -> str:
    if not np.isfinite(v):
        return "nan"
    return f"{100 * v:.1f}%" if metric == "error" else f"{v:.4g}"


def _ci(lo: float, hi: float, metric: str) -> str:
    return f"[{_fmt(lo, metric)}, {_fmt(hi, metric)}]"


def clip_risk(lo: float, hi: float, metric: str) -> tuple[float, float]:
    """A risk's interval inside the values a risk can take (an error rate in [0, 1], a
    squared error >= 0): with few splits the t-interval runs past them, and the part
    outside holds no possible value. Reports show it clipped; tables keep the raw bounds.
    NaN bounds stay NaN."""
    return max(lo, 0.0), (min(hi, 1.0) if metric == "error" else hi)


def risk_ci(lo: float, hi: float, metric: str) -> str:
    """:func:`clip_risk`'s interval, formatted."""
    return _ci(*clip_risk(lo, hi, metric), metric)


def _headline(adding: pd.DataFrame, best_now: str) -> pd.DataFrame:
    """For each modality: adding it to the best subset without it (at the current size)."""
    rows = []
    now = adding[adding.factor == 1]
    for x, g in adding.groupby("modality", sort=False):
        base = best_now if x not in label_names(best_now) else None
        cands = g[g.to == base] if base is not None else pd.DataFrame()
        if cands.empty:
            # x is in the best subset: the question is whether removing it hurts
            removed = now[(now.modality == x) & (now["with"] == best_now)]
            base = removed.to.iloc[0] if not removed.empty else g.to.iloc[0]
            cands = g[g.to == base]
        rows.append(cands)
    return pd.concat(rows) if rows else adding.iloc[0:0]


def screen_text(tables: dict[str, pd.DataFrame], name: str, meta: dict) -> str:
    """One screen: the subset to use now, adding each modality now and at larger sizes, the
    contributions, and what the intervals cover."""
    metric = meta["metric"]
    best = tables["best"]
    now = best.iloc[-1]
    lines = [
        f"mmtheory diagnose: {name} ({meta['n']} rows, {meta['task']}, risk = test {metric})",
        f"protocol: {meta['protocol']}",
        "",
        f"Use now (m = {int(now.m)} training rows): {now.best}, {metric} "
        f"{_fmt(now.risk, metric)} {risk_ci(now.ci_low, now.ci_high, metric)}",
    ]
    if "runner_up" in best.columns and isinstance(now.get("runner_up"), str):
        sure = "distinguishable" if now.distinguishable else "cannot tell yet which is better"
        lines.append(
            f"  runner-up {now.runner_up} {_fmt(now.runner_up_risk, metric)}; gap "
            f"{_fmt(now.gap, metric)} {_ci(now.gap_low, now.gap_high, metric)}: {sure}"
        )
    lines += [
        "",
        "Adding a modality: change in risk (< 0 helps), verdict, 95% interval "
        "(* extrapolated by the fitted curve):",
    ]
    head = _headline(tables["adding"], str(now.best))
    factors = sorted(head.factor.unique())
    width = 22
    header = "".join(("now" if f == 1 else f"{f:g}x m *").rjust(width) for f in factors)
    lines.append(f"  {'add':<10}{'to':<18}" + header)
    for (x, to), g in head.groupby(["modality", "to"], sort=False):
        top, bottom = [], []
        for f in factors:
            r = g[g.factor == f].iloc[0]
            word = {"helps": "helps", "hurts": "hurts", "cannot tell yet": "?"}[r.verdict]
            top.append(f"{_fmt(r.change, metric)} {word}".rjust(width))
            bottom.append(_ci(r.ci_low, r.ci_high, metric).rjust(width))
        lines.append(f"  {x[:9]:<10}{to[:17]:<18}" + "".join(top))
        lines.append(" " * 30 + "".join(bottom))
    if note := too_few_sizes(tables["best"].m.nunique()):
        lines.append(f"  ({note})")
    lines += [
        "  (? = cannot tell yet: the 95% interval contains 0)",
        "",
        "Contribution (Shapley value of the risk reduction at the current size):",
    ]
    for r in tables["contributions"].itertuples():
        lines.append(
            f"  {r.modality:<14}{_fmt(r.shapley, metric):>9} {_ci(r.ci_low, r.ci_high, metric)}"
        )
    lines += [
        "",
        f"Intervals: 95%, over {meta['n_splits']} repeated splits (corrected resampled t; "
        "extrapolations: bootstrap over splits of the power-law fits).",
    ]
    return "\n".join(lines)


def best_markdown(best: pd.DataFrame, metric: str) -> str:
    """The best subset at each size, its interval, the runner-up and whether they differ."""
    lines = [
        f"| m | best subset | test {metric} | 95% CI | runner-up | gap (runner-up - best) | "
        "95% CI | distinguishable |",
        "|---:|---|---:|---|---|---:|---|---|",
    ]
    for r in best.itertuples():
        runner = getattr(r, "runner_up", "")
        if isinstance(runner, str) and runner:
            tail = (
                f"{runner} | {_fmt(r.gap, metric)} | {_ci(r.gap_low, r.gap_high, metric)} | "
                f"{'yes' if r.distinguishable else 'no: cannot tell yet'} |"
            )
        else:
            tail = " | | | |"
        lines.append(
            f"| {r.m} | {r.best} | {_fmt(r.risk, metric)} | "
            f"{risk_ci(r.ci_low, r.ci_high, metric)} | " + tail
        )
    return "\n".join(lines)


def adding_markdown(adding: pd.DataFrame, metric: str) -> str:
    """Every (modality, subset) pair at every factor."""
    lines = [
        "| add | to | m | extrapolated | change | 95% CI | verdict |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for r in adding.itertuples():
        lines.append(
            f"| {r.modality} | {r.to} | {r.m} | {'yes' if r.extrapolated else 'no'} | "
            f"{_fmt(r.change, metric)} | {_ci(r.ci_low, r.ci_high, metric)} | {r.verdict} |"
        )
    return "\n".join(lines)


def calibration_markdown(calibration: pd.DataFrame) -> str:
    """Accuracy beside calibration (cross-entropy, Brier, ECE) per subset at the largest m."""
    lines = [
        "| subset | accuracy | 95% CI | cross-entropy | Brier | ECE |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in calibration.itertuples():
        lines.append(
            f"| {r.subset} | {r.accuracy:.3f} | [{r.acc_low:.3f}, {r.acc_high:.3f}] | "
            f"{r.cross_entropy:.3f} | {r.brier:.3f} | {r.ece:.3f} |"
        )
    return "\n".join(lines)
