"""Markdown views of theory against measurement (:mod:`mmtheory.theory.versus`)."""

from __future__ import annotations

import pandas as pd

from mmtheory.reporting.markdown import markdown_table

__all__ = ["accuracy_markdown", "phase_agreement_markdown"]


def accuracy_markdown(summary: pd.DataFrame) -> str:
    """The accuracy summary: cells per quantity and regime, the share of predictions inside
    the measured 95% interval, the median absolute relative error."""
    return markdown_table(
        ["quantity", "regime", "cells", "prediction inside the 95% CI", "median |rel. error|"],
        [
            [
                r.quantity,
                r.regime,
                r.n,
                f"{100 * r.inside_share:.1f}%",
                f"{100 * r.median_abs_rel_error:.2f}%",
            ]
            for r in summary.itertuples()
        ],
        "llrrr",
    )


def phase_agreement_markdown(agreement: pd.DataFrame) -> str:
    """Measured phases against the predicted sign at the same cell."""
    return markdown_table(
        ["measured phase", "cells", "with a prediction", "on the predicted side"],
        [
            [r.phase, r.cells, r.with_prediction, r.on_predicted_side]
            for r in agreement.itertuples()
        ],
        "lrrr",
    )
