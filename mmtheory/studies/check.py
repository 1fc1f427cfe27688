"""``mmtheory check DIR``: bounds.csv, predictions.csv and contributions.csv beside a sweep's
results.csv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmtheory.core.io import write_csv_atomic
from mmtheory.core.validation import check_real
from mmtheory.theory.check import check, selection_table
from mmtheory.theory.contributions import contributions_table

__all__ = ["CheckResult", "check_dir"]


@dataclass
class CheckResult:
    """What ``check_dir`` wrote, and how many diverged runs it left out."""

    bounds: pd.DataFrame
    predictions: pd.DataFrame
    contributions: pd.DataFrame
    selection: pd.DataFrame
    n_diverged: int
    paths: dict[str, Path]


def check_dir(run_dir: str | Path, delta: float = 0.05, radius: float | None = None) -> CheckResult:
    """Read ``run_dir/results.csv``; write ``bounds.csv``, ``predictions.csv`` and
    ``contributions.csv`` and ``selection.csv`` (the paper's selection rule scored against the
    truth) beside it (each saved before anything is returned)."""
    delta = check_real(delta, "--delta", low=0, high=1, low_open=True, high_open=True)
    if radius is not None:
        radius = check_real(radius, "--radius", low=0, low_open=True)
    run_dir = Path(run_dir)
    path = run_dir / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `mmtheory sweep` into {run_dir} first")
    results = pd.read_csv(path)
    bounds, predictions = check(results, delta=delta, radius=radius)
    contributions = contributions_table(results)
    selection = selection_table(results, bounds)
    tables = {
        "bounds": bounds,
        "predictions": predictions,
        "contributions": contributions,
        "selection": selection,
    }
    paths = {name: run_dir / f"{name}.csv" for name in tables}
    for name, table in tables.items():
        write_csv_atomic(table, paths[name])
    n_div = int(results.diverged.astype(bool).sum()) if "diverged" in results.columns else 0
    return CheckResult(bounds, predictions, contributions, selection, n_div, paths)
