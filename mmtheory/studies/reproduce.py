"""``mmtheory reproduce``: the paper's synthetic table and figures, with a report.

What it runs today (each part a sweep whose records make it resumable):

1. Table 4 / Fig. 2b (reconstructed overlap world): exact least squares on 20,000
   samples, cumulative modalities, overlap in {1, 0.8, 0.5, 0.2, 0}; beside the paper.
2. Fig. 2a analogue: late fusion on the IEMOCAP-shaped world (text/video/audio), all 7
   subsets, training-set ratios 1e-3 .. 1 of 13,200: the small-sample crossover.

The report says plainly which parts of the paper's programme are not built yet.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import torch

from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.engine import cpu_threads, resolve_device
from mmtheory.engine.threads import numpy_blas_threads
from mmtheory.experiments.shared import SharedWork
from mmtheory.experiments.sweep import sweep
from mmtheory.plotting.figures import write_figures
from mmtheory.reporting.reproduce_report import render_report
from mmtheory.reporting.tables import crossover_summary, table3_analogue, table4_comparison
from mmtheory.studies.reproduce_parts import bounds_part, correlation_part
from mmtheory.theory.check import check, selection_table
from synthetic.presets import IEMOCAP_TRAIN_SIZE

__all__ = [
    "CROSSOVER_TOTAL",
    "crossover_learner",
    "crossover_sizes",
    "reproduce",
    "reproduce_settings",
]

CROSSOVER_TOTAL = IEMOCAP_TRAIN_SIZE


class _Laps:
    """Wall and CPU seconds of consecutive parts of a run: CPU is the whole process's
    (every thread; the imports before the run not counted)."""

    def __init__(self) -> None:
        self.start = self.last = (time.perf_counter(), time.process_time())
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[name] = now[0] - self.last[0]
        self.cpu[name] = now[1] - self.last[1]
        self.last = now

    def timings(self) -> dict:
        """The parts' wall seconds, ``total``, and ``cpu``: the same for CPU seconds."""
        cpu = {**self.cpu, "total": self.last[1] - self.start[1]}
        return {**self.wall, "total": self.last[0] - self.start[0], "cpu": cpu}


def reproduce_settings(quick: bool) -> dict:
    """The grid of ``reproduce`` (``quick``: the reduced one)."""
    if quick:
        return {
            "t4_seeds": 2,
            "ratios": [1e-3, 1e-2, 1e-1, 1.0],
            "cx_seeds": 3,
            "steps": 200,
            "n_eval": 3000,
            "rho_seeds": 10,
            "bound_seeds": 200,
            # quick protocol (labelled in the report): 3 splits, two sizes
            "mfeat_splits": 3,
            "mfeat_sizes": [40, 200],
        }
    return {
        "t4_seeds": 5,
        "ratios": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0],
        "cx_seeds": 5,
        "steps": 200,
        "n_eval": 5000,
        "rho_seeds": 30,
        "bound_seeds": 400,
        "mfeat_splits": 5,
        "mfeat_sizes": None,
    }


def crossover_learner(steps: int) -> dict:
    """The crossover's learner (Fig. 2a): late fusion of 32-d linear latents, Adam."""
    return {
        "kind": "late_fusion",
        "encoder": "linear",
        "latent_dim": 32,
        "solver": "adam",
        "lr": 0.01,
        "steps": steps,
        "batch_size": 2048,
    }


def crossover_sizes(ratios, total: int) -> list[int]:
    """The crossover's training sizes: ``ratios`` of ``total`` rows, at least 12."""
    return sorted({max(12, round(r * total)) for r in ratios})


def reproduce(
    out: str = "runs/reproduce",
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    *,
    settings: dict | None = None,
) -> Path:
    """Run the reproduction into ``out`` and write ``report.md``; returns the report path."""
    import synthetic

    clock = _Laps()
    dev = resolve_device(device)
    cfg = {**reproduce_settings(quick), **(settings or {})}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    shared = SharedWork()  # the five worlds share the latent's moments and factors per seed
    for w in (1.0, 0.8, 0.5, 0.2, 0.0):
        world = synthetic.table4_world(w)
        tables.append(
            sweep(
                world,
                "linear",
                "cumulative",
                m=[20_000],
                seeds=cfg["t4_seeds"],
                device=str(dev),
                dtype="float32",
                out=out / "table4",
                progress=progress,
                shared=shared,
            )
        )
    shared.close()  # release the record store's writer lock
    t4 = pd.concat(tables, ignore_index=True)
    write_csv_atomic(t4, out / "table4" / "results.csv")
    comparison = table4_comparison(t4)
    write_csv_atomic(comparison, out / "table4.csv")
    clock.lap("table4")

    # Every later part trains or fits small models (tens of features, a latent of 32):
    # operator overhead, not arithmetic, so on the CPU one thread does the same work in a
    # fraction of the CPU time of two, which mostly wait for each other (the crossover's
    # m = 132 and m = 1,320 chunks took 6x the CPU seconds with 2 threads on 2 shared
    # cores; engine.device.cpu_threads). Table 4's large Gram matrices keep every thread.
    # numpy's BLAS too: the real-data solver, the oracles and the checks are numpy, and
    # OpenBLAS's second thread spins (measured: the crossover world's Bayes risk 2.1 s of
    # CPU with two threads, 1.2 s with one; the quick mfeat solver 11% more CPU).
    n_threads = torch.get_num_threads()
    with ExitStack() as threads:
        if dev.type == "cpu":
            threads.enter_context(cpu_threads(1))
            threads.enter_context(numpy_blas_threads(1))
        world = synthetic.iemocap_like()
        total = cfg.get("total", CROSSOVER_TOTAL)
        ms = crossover_sizes(cfg["ratios"], total)
        learner = crossover_learner(cfg["steps"])
        cx = sweep(
            world,
            learner,
            "all",
            m=ms,
            seeds=cfg["cx_seeds"],
            device=str(dev),
            out=out / "crossover",
            n_test=cfg["n_eval"],
            n_refit=cfg["n_eval"],
            n_eval=cfg["n_eval"],
            progress=progress,
        )
        (out / "crossover" / "total.txt").write_text(str(total))
        summary = crossover_summary(cx, total)
        write_csv_atomic(summary, out / "crossover.csv")
        table3 = table3_analogue(cx)
        write_csv_atomic(table3, out / "table3.csv")
        clock.lap("crossover")

        correlation = correlation_part(out, cfg["rho_seeds"], progress)
        bounds = bounds_part(out, cfg["bound_seeds"], progress)
        t4_bounds, t4_preds = check(t4)
        _, cx_preds = check(cx)
        write_csv_atomic(t4_preds, out / "table4" / "predictions.csv")
        write_csv_atomic(cx_preds, out / "crossover" / "predictions.csv")
        predictions = pd.concat(
            [
                t4_preds.assign(part="table4"),
                cx_preds.assign(part="crossover"),
                correlation["predictions"].assign(part="correlation"),
                bounds["predictions"].assign(part="bounds"),
            ],
            ignore_index=True,
        )
        write_csv_atomic(predictions, out / "predictions.csv")
        selection = pd.concat(
            [
                selection_table(t4, t4_bounds).assign(part="table4"),
                correlation["selection"].assign(part="correlation"),
                bounds["selection"].assign(part="bounds"),
            ],
            ignore_index=True,
        )
        write_csv_atomic(selection, out / "selection.csv")
        clock.lap("theory")

        mfeat_report = None
        if cfg.get("mfeat_splits"):
            from mmtheory.datasets import load_mfeat
            from mmtheory.experiments.protocol import Protocol
            from mmtheory.studies.realdata import run_data

            # the protocol of `mmtheory data mfeat` (docs/realdata.md); --quick: fewer
            # splits and sizes, said so in the report
            mfeat_report = run_data(
                load_mfeat(),
                out / "mfeat",
                protocol=Protocol(n_splits=int(cfg["mfeat_splits"])),
                sizes=cfg["mfeat_sizes"],
            )
        clock.lap("mfeat")

        figures = write_figures(out, nested=False)  # mfeat drew its own
        clock.lap("figures")
        timings = clock.timings()
        text = render_report(
            comparison,
            summary,
            figures,
            timings,
            dev,
            quick,
            {**cfg, "total": total},
            predictions=predictions,
            selection=selection,
            bounds=bounds["summary"],
            mstar=correlation["mstar"],
            cx_preds=cx_preds,
            table3=table3,
            mfeat_report=mfeat_report,
            theory=correlation,
            results=pd.concat([t4, cx], ignore_index=True),
            threads=f"{n_threads} for Table 4, {torch.get_num_threads()} for the other parts",
        )
        report = out / "report.md"
        write_text_atomic(text, report)
        return report
