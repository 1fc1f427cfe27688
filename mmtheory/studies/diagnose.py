"""``mmtheory diagnose``: should I add this modality? (docs/realdata.md)

Runs the real-data protocol (``experiments.protocol``) over every subset and a few sizes up
to the data's training size, fits a learning curve per subset, and answers: which subset to
use now, whether adding each modality helps now and at 2x, 5x and 10x the data (the
extrapolated answers marked as such), each modality's contribution, and how sure it is
("cannot tell yet" when the interval contains 0).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmtheory.core.data import MultiModalData
from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.datasets.loaders import Loaded, load_npz, pooled
from mmtheory.experiments.protocol import Protocol, ProtocolRun, run_protocol
from mmtheory.plotting.figures import write_figure
from mmtheory.reporting.diagnose_report import adding_markdown, best_markdown, screen_text
from mmtheory.theory.diagnosis import (
    FACTORS,
    adding_table,
    best_subsets,
    contributions,
    subset_curves,
)

__all__ = ["diagnose", "run_diagnose", "as_data", "tables_from_run"]


#: The name of data given as arrays, without one (the report's heading says it; the
#: curves table and figure title leave it out).
UNNAMED = "data"


def as_data(data: object) -> tuple[MultiModalData, str]:
    """A MultiModalData of all rows and a name, from a MultiModalData, a loaded dataset
    (its train and test rows pooled) or the path of an ``.npz`` file."""
    if isinstance(data, MultiModalData):
        return data, UNNAMED
    if isinstance(data, Loaded):
        return pooled(data), data.name
    if isinstance(data, str | Path):
        loaded = load_npz(data)
        return pooled(loaded), loaded.name
    raise TypeError(
        f"data must be a MultiModalData, a loaded dataset or an .npz path, got "
        f"{type(data).__name__}"
    )


def tables_from_run(
    run: ProtocolRun,
    protocol: Protocol,
    *,
    n_boot: int = 200,
    factors=FACTORS,
    dataset: str | None = None,
) -> dict[str, pd.DataFrame]:
    """The diagnosis tables of a protocol run: results, best, curves, adding, contributions.
    ``dataset``: its name, in the curves' first column (the figure's title reads it; none
    for :data:`UNNAMED` data)."""
    res = run.results
    tf = protocol.test_fraction
    curves = subset_curves(res)
    if dataset is not None and dataset != UNNAMED:
        curves.insert(0, "dataset", dataset)
    return {
        "results": res,
        "best": best_subsets(res, tf),
        "curves": curves,
        "adding": adding_table(res, tf, factors=factors, n_boot=n_boot, seed=protocol.seed),
        "contributions": contributions(res, tf),
    }


def diagnose(
    data: object,
    *,
    protocol: Protocol | None = None,
    sizes: list[int] | None = None,
    n_boot: int = 200,
    factors=FACTORS,
) -> dict[str, pd.DataFrame]:
    """Diagnose ``data`` (a MultiModalData, a loaded dataset or an ``.npz`` path).

    Returns DataFrames: ``results`` (one row per split, size and subset), ``best`` (the best
    subset at each size, its interval, the runner-up, ``distinguishable``), ``curves`` (the
    fitted r_S(m) = e + a m^-alpha per subset), ``adding`` (for each modality and subset
    without it, the change in risk at ``factors`` x the current size, ``extrapolated`` for
    factors above 1, ``verdict`` helps / hurts / cannot tell yet) and ``contributions``
    (Shapley values at the current size). Intervals are 95% over repeated splits."""
    p = protocol or Protocol(n_splits=8)
    full, name = as_data(data)
    run = run_protocol(full, sizes=sizes, protocol=p)
    return tables_from_run(run, p, n_boot=n_boot, factors=factors, dataset=name)


def run_diagnose(
    data: object,
    out: str | Path,
    *,
    protocol: Protocol | None = None,
    sizes: list[int] | None = None,
    n_boot: int = 200,
) -> tuple[str, Path]:
    """Diagnose ``data`` into ``out`` (CSV tables, fig_curves.png/.pdf, report.md); returns
    the one-screen text and the report's path."""
    p = protocol or Protocol(n_splits=8)
    full, name = as_data(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = run_protocol(full, sizes=sizes, protocol=p)
    tables = tables_from_run(run, p, n_boot=n_boot, dataset=name)
    for key, table in tables.items():
        write_csv_atomic(table, out / f"{key}.csv")
    meta = {
        "metric": run.metric,
        "task": run.task,
        "n": full.n,
        "n_splits": p.n_splits,
        "protocol": p.describe(),
    }
    text = screen_text(tables, name, meta)
    write_figure("fig_curves", out)
    lines = [
        f"# Diagnose: {name}",
        "",
        "```",
        text,
        "```",
        "",
        "## Best subset at each size",
        "",
        best_markdown(tables["best"], run.metric),
        "",
        "## Adding each modality to each subset",
        "",
        "Measured at the current size (paired over splits); extrapolated rows use the "
        "fitted learning curves r_S(m) = e_S + a_S m^(-alpha_S) and are only as good as "
        "the power law beyond the data.",
        "",
        adding_markdown(tables["adding"], run.metric),
        "",
        "![learning curves](fig_curves.png)",
        "",
    ]
    report = out / "report.md"
    write_text_atomic("\n".join(lines), report)
    return text, report
