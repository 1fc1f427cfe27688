"""Subset-risk sweeps: every (learner, subset, sample size, seed) trained, measured, recorded.

``sweep(world, learner=..., subsets=..., m=..., seeds=...)`` returns the tidy table of
``results.csv`` (columns in :mod:`mmtheory.experiments.results`, a contract). With
``out=DIR`` each run is appended to ``DIR/records.jsonl`` as its batch finishes and
``DIR/results.csv`` is rebuilt after every learner; re-running skips finished runs (keyed
by everything that determines their numbers), so a killed sweep resumes where it stopped.

Library functions here return data and never print; notices (stale runs kept on disk)
go to the ``mmtheory`` logger, which the command line prints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mmtheory.core.io import write_csv_atomic
from mmtheory.core.subsets import parse_subsets
from mmtheory.core.validation import check_choice
from mmtheory.engine import default_memory_budget, resolve_device
from mmtheory.engine.threads import numpy_blas_threads
from mmtheory.experiments.grid import (
    Run,
    check_seeds,
    check_shard,
    check_sizes,
    in_shard,
    plan_runs,
)
from mmtheory.experiments.records import RecordStore
from mmtheory.experiments.results import results_table
from mmtheory.experiments.runner import Runner
from mmtheory.experiments.shared import SharedWork
from mmtheory.experiments.sources import make_source
from mmtheory.models import resolve_learners

__all__ = ["SpecPlan", "describe_spec", "run_spec", "stale_runs", "sweep"]

log = logging.getLogger("mmtheory")


def sweep(
    world,
    learner="linear",
    subsets="all",
    m: int | Sequence[int] = (100,),
    seeds: int | Iterable[int] = 5,
    *,
    device: str = "auto",
    dtype: str | None = None,
    out: str | Path | None = None,
    test=None,
    n_test: int = 10_000,
    n_refit: int = 10_000,
    n_eval: int = 10_000,
    progress: bool = True,
    memory_budget: float | None = None,
    branch_eta: bool = False,
    shard: tuple[int, int] | None = None,
    shared: SharedWork | None = None,
) -> pd.DataFrame:
    """Train an ERM model for every (learner, subset, m, seed); measure risk and eta.

    Parameters
    ----------
    world : a world from :mod:`synthetic`, or :class:`~mmtheory.MultiModalData` with ``test``
    learner : name (see ``LEARNER_PRESETS``), dict of Learner fields, Learner, or a list
    subsets : ``"all"``, ``"cumulative"`` or a list of subsets (names, initials, indices)
    m : training-sample sizes (nested prefixes of one sample per seed)
    seeds : a count or a list of seeds
    device : ``"auto"``, ``"cpu"`` or ``"cuda"``
    dtype : ``"float32"`` or ``"float64"`` for iterative solvers, default float32; the closed
        form always accumulates and solves in float64
    out : directory for ``records.jsonl`` and ``results.csv``; finished runs are skipped
    n_test, n_refit, n_eval : sizes of the fresh test, head-refit and eta-evaluation samples
    branch_eta : also measure eta of each modality's branch (late fusion with concatenation):
        columns ``eta_branch_<modality>``
    shard : (i, n) with 1 <= i <= n: run only the runs of shard i of n (by run id), writing
        to this shard's own record file in ``out``; n processes with the same spec and
        ``out`` share the grid, and a final run without ``shard`` merges (nothing to train)
    shared : a :class:`~mmtheory.experiments.shared.SharedWork` passed to every sweep of a
        series (a multi-world spec): record files are read once, and worlds that differ
        only in their target draw and factor their features once per seed (same numbers)

    Returns
    -------
    DataFrame with the ``results.csv`` columns, one row per run of the grid.
    """
    sizes_kw = {} if test is not None else {"n_test": n_test, "n_refit": n_refit, "n_eval": n_eval}
    source = make_source(world, test=test, **sizes_kw)
    dev = resolve_device(device)
    dtype = check_choice(dtype or "float32", "dtype", ("float32", "float64"))
    learners = resolve_learners(learner, source.task)
    subs = parse_subsets(subsets, source.names)
    sizes = check_sizes(m, source.max_train)
    seed_list = check_seeds(seeds)
    extra: dict = {**sizes_kw, "dtype_iterative": dtype}
    if branch_eta:
        extra["branch_eta"] = True
    runs = plan_runs(source.identity, learners, subs, sizes, seed_list, extra)
    shard = check_shard(shard, out)
    store = None
    if out is not None:
        store = shared.store(out, shard) if shared is not None else RecordStore(out, shard)
    pending = [r for r in runs if store is None or r.run_id not in store]
    if store is not None:
        stale = stale_runs(store, source.identity, runs)
        if stale:
            log.warning(
                "%d finished run(s) in %s were computed with other learner settings or "
                "estimation sizes or another mmtheory version (%s); kept in the records, not "
                "reused: those cells are recomputed",
                len(stale),
                out,
                ", ".join(sorted({str(r.get("versions", {}).get("mmtheory")) for r in stale})),
            )
    runs_in_view = runs if shard is None else [r for r in runs if in_shard(r, shard)]
    if shard is not None:
        mine = {r.run_id for r in runs_in_view}
        pending = [r for r in pending if r.run_id in mine]
    budget = memory_budget if memory_budget is not None else default_memory_budget(dev)
    # numpy only draws samples and evaluates oracles here: one BLAS thread, so that its
    # spinning pool does not take the cores from torch's (engine.threads)
    with (
        numpy_blas_threads(1),
        tqdm(
            total=len(runs_in_view),
            initial=len(runs_in_view) - len(pending),
            disable=not progress,
            desc=f"sweep {source.name}",
            unit="model",
        ) as bar,
    ):
        runner = Runner(
            source,
            dev,
            dtype,
            store,
            budget,
            extra,
            branch_eta,
            on_records=lambda recs: bar.update(len(recs)),
            shared=shared,
        )
        for lrn in learners:
            todo = [r for r in pending if r.learner is lrn]
            if not todo:
                continue
            if lrn.solver == "closed_form":
                runner.closed_form(lrn, todo)
            else:
                runner.iterative(lrn, todo)
            if store is not None:
                _write_results(store, runs, out)
    records = {r["run_id"]: r for r in runner.new_records}
    if store is not None:
        records = {r.run_id: store.get(r.run_id) for r in runs if r.run_id in store}
    return results_table([records[r.run_id] for r in runs if r.run_id in records])


def stale_runs(store: RecordStore, identity: str, runs: list[Run]) -> list[dict]:
    """Finished records of this grid's cells computed with other learner settings,
    estimation sizes or another mmtheory version (kept on disk, not reused)."""
    wanted = {r.run_id for r in runs}
    cells = {(r.learner.label, str(r.subset), r.m, r.seed) for r in runs}
    return [
        rec
        for rec in store.records()
        if rec.get("world_identity") == identity
        and rec["run_id"] not in wanted
        and (rec.get("learner"), rec.get("subset"), rec.get("m"), rec.get("seed")) in cells
    ]


def _write_results(store: RecordStore, runs: list[Run], out) -> None:
    done = [store.get(r.run_id) for r in runs if r.run_id in store]
    if done:
        write_csv_atomic(results_table(done), Path(out) / "results.csv")


@dataclass
class SpecPlan:
    """What a spec would run (``mmtheory sweep --dry-run``)."""

    name: str
    n_runs: int
    worlds: list[str]
    learners: list[tuple[str, dict]]
    subsets: list[str]
    m: list[int]
    seeds: list[int]
    device: str
    dtype: str
    estimation: dict


def describe_spec(spec, device: str | None = None) -> SpecPlan:
    """The resolved grid of a parsed spec, without running it."""
    subs = parse_subsets(spec.subsets, spec.worlds[0].names)
    return SpecPlan(
        spec.name,
        spec.n_runs,
        [w.identity() for w in spec.worlds],
        [(lrn.label, lrn.settings()) for lrn in spec.learners],
        [str(s) for s in subs],
        list(spec.m),
        list(spec.seeds),
        device or spec.device,
        spec.dtype,
        dict(spec.estimation),
    )


def run_spec(
    spec,
    *,
    out: str | Path,
    device: str | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Run every world of a parsed spec into ``out`` (one records store, read once; one
    results.csv); worlds that differ only in their target share their draws."""
    Path(out).mkdir(parents=True, exist_ok=True)
    shared = SharedWork()
    tables = []
    for world in spec.worlds:
        tables.append(
            sweep(
                world,
                spec.learners,
                spec.subsets,
                spec.m,
                spec.seeds,
                device=device or spec.device,
                dtype=spec.dtype,
                out=out,
                progress=progress,
                shard=shard,
                shared=shared,
                **spec.estimation,
            )
        )
    table = pd.concat(tables, ignore_index=True)
    write_csv_atomic(table, Path(out) / "results.csv")
    return table
