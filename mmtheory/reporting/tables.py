"""Summary tables shared by the studies: Table 4 beside the paper, the crossover, Table 3."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.core.subsets import label_size, parse_subset
from mmtheory.datasets.paper import paper_table4
from mmtheory.reporting.markdown import markdown_table
from mmtheory.theory.statistics import mean_ci

__all__ = [
    "TABLE3_PAIRS",
    "crossover_summary",
    "table3_analogue",
    "table3_markdown",
    "table4_comparison",
]

#: The paper's Table 3 pairs (M | N), in its modality initials.
TABLE3_PAIRS = [("TA", "T"), ("TV", "T"), ("TVA", "TV"), ("TVA", "TA")]


def table4_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """Our Table 4 beside the paper's: mean test MSE and eta over seeds, eta_inf, ratio."""
    rows = []
    paper = paper_table4().set_index(["subset", "overlap"])
    for (w, subset), g in results.groupby(["overlap", "subset"], sort=True):
        mean, lo, hi = mean_ci(g.test_risk)
        ref = paper.paper_mse.get((subset, w), np.nan)
        rows.append(
            {
                "overlap": w,
                "subset": subset,
                "n_modalities": int(g.n_modalities.iloc[0]),
                "mse": mean,
                "mse_ci_low": lo,
                "mse_ci_high": hi,
                "eta": g.eta.mean(),
                "eta_inf": 100 * (1 - w) ** 2 * (4 - int(g.n_modalities.iloc[0])),
                "paper_mse": ref,
                "ratio": mean / ref if ref and ref > 0 else np.nan,
                "n_seeds": len(g),
            }
        )
    return pd.DataFrame(rows).sort_values(["overlap", "n_modalities"], ascending=[False, True])


def crossover_summary(results: pd.DataFrame, total: int) -> pd.DataFrame:
    """Mean test accuracy and 95% CI over seeds for every (subset, m)."""
    rows = []
    for (subset, m), g in results.groupby(["subset", "m"]):
        mean, lo, hi = mean_ci(g.test_accuracy)
        rows.append(
            {
                "subset": subset,
                "n_modalities": label_size(subset),
                "m": m,
                "ratio": m / total,
                "accuracy": mean,
                "ci_low": lo,
                "ci_high": hi,
                "eta": g.eta.mean(),
                "n_seeds": len(g),
            }
        )
    return pd.DataFrame(rows).sort_values(["m", "n_modalities", "subset"])


def table3_analogue(results: pd.DataFrame, universe=("text", "video", "audio")) -> pd.DataFrame:
    """Test-accuracy difference (M minus N, percentage points) beside the latent gap
    gamma = eta_N - eta_M (refit heads; positive = M's encoder better, in cross-entropy
    units) at the largest m, with the number of seeds on which their signs agree."""
    m = results.m.max()
    at = results[results.m == m]
    rows = []
    for M, N in TABLE3_PAIRS:
        sm, sn = str(parse_subset(M, universe)), str(parse_subset(N, universe))
        a = at[at.subset == sm].set_index("seed")
        b = at[at.subset == sn].set_index("seed")
        seeds = a.index.intersection(b.index)
        acc = 100 * (a.test_accuracy.loc[seeds] - b.test_accuracy.loc[seeds])
        gamma = b.eta.loc[seeds] - a.eta.loc[seeds]
        _, acc_lo, acc_hi = mean_ci(acc)
        _, gamma_lo, gamma_hi = mean_ci(gamma)
        rows.append(
            {
                "pair": f"{M}|{N}",
                "M": sm,
                "N": sn,
                "m": m,
                "acc_diff": acc.mean(),
                "acc_diff_ci_low": float(acc_lo),
                "acc_diff_ci_high": float(acc_hi),
                "gamma": gamma.mean(),
                "gamma_ci_low": float(gamma_lo),
                "gamma_ci_high": float(gamma_hi),
                "sign_agree": int((np.sign(acc) == np.sign(gamma)).sum()),
                "n_seeds": len(seeds),
            }
        )
    return pd.DataFrame(rows)


def table3_markdown(table3: pd.DataFrame) -> str:
    """The Table 3 analogue (from :func:`table3_analogue`) with 95% intervals over seeds."""
    return markdown_table(
        [
            "M | N",
            "accuracy difference (points, 95% CI)",
            "gamma = eta_N - eta_M (95% CI)",
            "signs agree",
        ],
        [
            [
                r.pair,
                f"{r.acc_diff:+.2f} [{r.acc_diff_ci_low:+.2f}, {r.acc_diff_ci_high:+.2f}]",
                f"{r.gamma:+.4f} [{r.gamma_ci_low:+.4f}, {r.gamma_ci_high:+.4f}]",
                f"{r.sign_agree}/{r.n_seeds}",
            ]
            for r in table3.itertuples()
        ],
    )
