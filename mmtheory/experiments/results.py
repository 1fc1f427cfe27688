"""The tidy results table (``results.csv``), one row per trained model, built from records.

Column order (DESIGN's contract columns first): :data:`RESULT_COLUMNS`, then
:data:`EXTRA_COLUMNS` present in the records, then the world's parameters and any other
measured columns (sorted), then run metadata (:data:`META_COLUMNS`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtheory.core.world import world_id_of
from mmtheory.experiments.records import RecordBatch

__all__ = [
    "EXTRA_COLUMNS",
    "F1_COLUMNS",
    "META_COLUMNS",
    "RESULT_COLUMNS",
    "f1_table",
    "results_table",
    "world_columns",
]

#: The contract columns of results.csv, in order (world parameters follow them).
#: ``world_id`` names one world exactly (its canonical identity); every table groups by it.
RESULT_COLUMNS = [
    "world",
    "world_id",
    "learner",
    "subset",
    "n_modalities",
    "m",
    "seed",
    "train_risk",
    "test_risk",
    "test_risk_se",
    "risk_method",
    "eta",
    "eta_se",
    "eta_method",
    "bayes_risk",
    "converged",
]
EXTRA_COLUMNS = [
    "learner_kind",
    "solver",
    "eta_inf",
    "bayes_risk_se",
    "bayes_risk_method",
    "test_accuracy",
    "test_accuracy_se",
    "test_macro_f1",
    "test_weighted_f1",
    "null_risk",
    "diverged",
    "grad_norm",
    "run_id",
]
#: Run metadata, placed after the world's parameters.
META_COLUMNS = ["device", "dtype", "dtype_iterative", "n_test", "n_refit", "n_eval", "wall_s"]
#: Record fields that are not table columns (per-class F1 goes to its own long table).
_RECORD_ONLY = ("world_identity", "learner_settings", "versions", "test_f1_per_class")
#: Columns of the long per-class F1 table (``f1_per_class.csv``), one row per (run, class).
F1_COLUMNS = ["run_id", "world_id", "learner", "subset", "m", "seed", "class", "f1"]


def world_columns(params: dict[str, object]) -> dict[str, object]:
    """A world's parameters as table columns: one value per cell (a list becomes its
    comma-joined values), and a name a results column already takes gets ``_world``."""
    taken = set(RESULT_COLUMNS + EXTRA_COLUMNS + META_COLUMNS)
    out = {}
    for key, value in params.items():
        if isinstance(value, list | tuple):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        out[f"{key}_world" if key in taken else key] = value
    return out


def f1_table(records: list[dict]) -> pd.DataFrame:
    """The long per-class F1 table: one row per (run, class) of the classification runs
    (records keep the per-class scores as one field; tables keep one value per cell)."""
    rows = []
    for r in records:
        values = r.get("test_f1_per_class")
        if not isinstance(values, str) or not values:
            continue
        keys = {k: r.get(k) for k in F1_COLUMNS[:6]}
        if keys["world_id"] is None and "world_identity" in r:
            keys["world_id"] = world_id_of(r["world_identity"])
        for c, v in enumerate(values.split()):
            rows.append({**keys, "class": c, "f1": float(v)})
    return pd.DataFrame(rows, columns=F1_COLUMNS)


def results_table(records: list[dict] | RecordBatch) -> pd.DataFrame:
    """The tidy results table from run records (contract columns first): a list of
    records, or a :class:`~mmtheory.experiments.records.RecordBatch` of them (the same
    table, built a column at a time)."""
    if isinstance(records, RecordBatch) and len(records):
        df = _frame(records)
    elif isinstance(records, RecordBatch):  # no records, no columns, as from_records([])
        df = pd.DataFrame.from_records([])
    else:
        df = pd.DataFrame.from_records(records)
    if "world_id" not in df.columns and "world_identity" in df.columns:
        df["world_id"] = df["world_identity"].map(world_id_of)
    df = df.drop(columns=[c for c in _RECORD_ONLY if c in df.columns])
    first = [c for c in RESULT_COLUMNS + EXTRA_COLUMNS if c in df.columns]
    meta = [c for c in META_COLUMNS if c in df.columns]
    params = sorted(c for c in df.columns if c not in first and c not in meta)
    df = df[first + params + meta]
    if "test_accuracy" in df.columns and df["test_accuracy"].isna().all():
        df = df.drop(columns=[c for c in df.columns if c.startswith("test_accuracy") or "f1" in c])
    return df


def _frame(batch: RecordBatch) -> pd.DataFrame:
    """``pd.DataFrame.from_records(batch.records())`` from the batch's columns (a shared
    value repeated), without a dict per record; the fields only records keep are left
    out, but ``world_identity`` where ``world_id`` must come from it."""
    skip = set(_RECORD_ONLY)
    if "world_id" not in batch.keys():
        skip.discard("world_identity")
    data = {name: _array(values) for name, values in batch.columns.items() if name not in skip}
    for name, value in batch.shared.items():
        if name not in skip:
            kind = _NUMPY.get(type(value))
            if kind is np.int64 and not -(2**63) <= value < 2**63:
                kind = None  # pandas makes it uint64 or object: let it
            data[name] = np.full(batch.n, value, kind) if kind else [value] * batch.n
    return pd.DataFrame(data)


#: Python types whose columns pandas makes these numpy arrays (no missing values).
_NUMPY = {float: np.float64, int: np.int64, bool: np.bool_}


def _array(values: list):
    """A column as pandas would store it, made directly where that is plain: exact
    floats, ints (within int64) or bools; anything else as the list, for pandas to infer."""
    kinds = set(map(type, values))
    kind = _NUMPY.get(kinds.pop()) if len(kinds) == 1 else None
    if kind is None or not values:
        return values
    if kind is np.int64 and not -(2**63) <= min(values) <= max(values) < 2**63:
        return values
    return np.array(values, dtype=kind)
