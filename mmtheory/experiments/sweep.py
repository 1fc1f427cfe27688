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
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mmtheory._version import __version__
from mmtheory.core.io import prepare_output_dir, write_csv_atomic
from mmtheory.core.subsets import parse_subsets
from mmtheory.core.validation import check_choice
from mmtheory.engine import default_memory_budget, resolve_device
from mmtheory.engine.threads import numpy_blas_threads
from mmtheory.experiments.grid import (
    Run,
    check_seeds,
    check_shard,
    check_sizes,
    plan_runs,
    unit_in_shard,
)
from mmtheory.experiments.records import RecordStore
from mmtheory.experiments.results import f1_table, results_table
from mmtheory.experiments.runner import Runner, model_bytes
from mmtheory.experiments.shared import SharedWork
from mmtheory.experiments.sources import make_source
from mmtheory.models import resolve_learners

__all__ = ["SpecPlan", "check_memory", "describe_spec", "run_spec", "stale_runs", "sweep"]

log = logging.getLogger("mmtheory")


def _progress_label(source, learners, out) -> str:
    """What the bar is doing: the phase (the output folder's name), the world and its varied
    parameters, and the learners, e.g. ``correlation: linear rho=0.5 | linear``."""
    phase = Path(out).name if out else "sweep"
    params = getattr(source, "params", None) or {}
    varied = ", ".join(f"{k}={params[k]}" for k in ("rho", "overlap", "noise") if k in params)
    names = ",".join(lrn.label for lrn in learners)
    return f"{phase}: {source.name}{' ' + varied if varied else ''} | {names}"


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
    shard : (i, n) with 1 <= i <= n: run only the units of work of shard i of n (a
        closed-form seed, or a training chunk fixed by the whole grid and the memory budget,
        by a hash of its name), writing to this shard's own record file in ``out``; n
        processes with the same spec and ``out`` share the grid, and a final run without
        ``shard`` merges (nothing to train). Every run is computed in the batch it would
        have in one process, so the merged table is the single-process table bit for bit
        (CPU; the same ``memory_budget`` everywhere)
    shared : a :class:`~mmtheory.experiments.shared.SharedWork` passed to every sweep of a
        series (a multi-world spec): record files are read once, and worlds that differ
        only in their target draw and factor once per seed (same numbers);
        the series writes ``results.csv`` once, at its end (:func:`run_spec`), instead of
        each sweep

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
    if out is not None:
        prepare_output_dir(out, "out")
    store = None
    if out is not None:
        store = shared.store(out, shard) if shared is not None else RecordStore(out, shard)
    try:
        pending = _unfinished(runs, store)
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
        budget = memory_budget if memory_budget is not None else default_memory_budget(dev)
        runner = Runner(source, dev, dtype, store, budget, extra, branch_eta, shared=shared)
        runs_in_view = runs
        if shard is not None:  # whole units of work, so that batches match one process
            units = runner.work_units(learners, runs)
            runs_in_view = [r for r in runs if unit_in_shard(units[r.run_id], shard)]
            mine = {r.run_id for r in runs_in_view}
            pending = [r for r in pending if r.run_id in mine]
        if pending:
            check_memory(source, learners, sizes, len(subs))
        # numpy only draws samples and evaluates oracles here: one BLAS thread, so that its
        # spinning pool does not take the cores from torch's (engine.threads)
        with (
            numpy_blas_threads(1),
            tqdm(
                total=len(runs_in_view),
                initial=len(runs_in_view) - len(pending),
                disable=not progress,
                desc=_progress_label(source, learners, out),
                unit="model",
            ) as bar,
        ):
            runner.on_records = lambda recs: bar.update(len(recs))
            busy = [lrn for lrn in learners if any(r.learner is lrn for r in pending)]
            for lrn in busy:
                todo = [r for r in pending if r.learner is lrn]
                grid = [r for r in runs if r.learner is lrn]
                if lrn.solver == "closed_form":
                    runner.closed_form(lrn, todo, grid)
                else:
                    runner.iterative(lrn, todo, grid)
                if store is not None and shared is None and lrn is not busy[-1]:
                    store.sync()  # the table shows no run whose record is not on disk
                    _write_results(store, runs, out)  # a view of the finished learners
        if store is not None:
            store.sync()  # every finished record on disk before the tables are built
        table = _table(store, runs, runner.new_records)
        # a series (``shared``) writes its tables once, at its end (run_spec)
        if store is not None and shared is None and busy:
            _write_results(store, runs, out, table)
        return table
    finally:
        if store is not None and shared is None:
            store.close()  # release the writer lock (a shared store closes with its series)


def physical_memory() -> float:
    """Bytes of memory of this machine (infinite where the platform does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def check_memory(source, learners, sizes: list[int], n_subsets: int) -> None:
    """Refuse, before any work, a grid whose smallest unit of work cannot fit in this
    machine's memory: one seed's samples (training prefix, test, refit and evaluation
    samples), one model with its group's data, or one closed-form Gram matrix per subset.
    A ValueError names the quantity, the estimate and the limit."""
    limit = physical_memory()
    gib = 2.0**30
    width = sum(source.dims.values())
    extra = sum(getattr(source, k, 0) for k in ("n_test", "n_refit", "n_eval"))
    rows = max(sizes) + (extra if source.max_train is None else 0)
    need = {"one seed's samples (float64, rows x features)": 2 * 8 * rows * width}
    for lrn in learners:
        if lrn.solver == "closed_form":
            need[f"the closed-form Gram matrices of learner {lrn.label!r}"] = (
                8 * n_subsets * (width + 1) ** 2 * 3
            )
    if any(lrn.solver != "closed_form" for lrn in learners):
        for lrn in learners:
            if lrn.solver != "closed_form":
                per_model, per_group = model_bytes(source, lrn, max(sizes))
                need[f"one model of learner {lrn.label!r} at m = {max(sizes)}"] = (
                    per_model + per_group
                )
    for what, nbytes in need.items():
        if nbytes > limit:
            raise ValueError(
                f"refused before any work: {what} would need about {nbytes / gib:,.1f} GiB, "
                f"more than this machine's {limit / gib:,.1f} GiB of memory; use smaller "
                "sizes (grid.m, n_test, n_refit, n_eval), dimensions or models"
            )


def _unfinished(runs: list[Run], store: RecordStore | None) -> list[Run]:
    """The runs of ``runs`` that ``store`` holds no record of (all without a store)."""
    if store is None:
        return list(runs)
    return [r for r in runs if r.run_id not in store]


def _table(store: RecordStore | None, runs: list[Run], kept: list[dict]) -> pd.DataFrame:
    """The results table of the finished runs of ``runs``, in their order: from the
    store's columns when it holds them as batches (a fresh sweep), else record by record."""
    if store is None:
        by_id = {r["run_id"]: r for r in kept}
        return results_table([by_id[r.run_id] for r in runs if r.run_id in by_id])
    ids = [r.run_id for r in runs if r.run_id in store]
    batch = store.batch_of(ids)
    return results_table(batch if batch is not None else list(map(store.get, ids)))


def stale_runs(store: RecordStore, identity: str, runs: list[Run]) -> list[dict]:
    """Finished records of this grid's cells computed with other learner settings,
    estimation sizes or another mmtheory version (kept on disk, not reused)."""
    wanted = {r.run_id for r in runs}
    others = [store.get(i) for i in store.run_ids_of(identity) if i not in wanted]
    if not others:  # a fresh or current store: no cells to compare
        return []
    cells = {(r.learner.label, str(r.subset), r.m, r.seed) for r in runs}
    return [
        rec
        for rec in others
        if (rec.get("learner"), rec.get("subset"), rec.get("m"), rec.get("seed")) in cells
    ]


def _write_results(
    store: RecordStore, runs: list[Run], out, table: pd.DataFrame | None = None
) -> None:
    """``results.csv`` of ``runs`` (``table`` when already built) and the long per-class F1
    table of the directory's current classification records."""
    if table is None:
        done = [r for r in runs if r.run_id in store]
        table = _table(store, done, []) if done else None
    if table is not None and len(table):
        write_csv_atomic(table, Path(out) / "results.csv")
        _write_f1(store, out)


def _write_f1(store: RecordStore, out) -> None:
    """Per-class F1 of every current classification record in this directory, long."""
    current = [
        rec
        for rec in store.records(having="test_f1_per_class")
        if rec.get("versions", {}).get("mmtheory") == __version__
    ]
    if current:
        write_csv_atomic(f1_table(current), Path(out) / "f1_per_class.csv")


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
    prepare_output_dir(out, "out")
    tables = []
    with SharedWork() as shared:
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
        _write_f1(shared.store(out, check_shard(shard, out)), out)
    return table
