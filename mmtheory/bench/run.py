"""``mmtheory bench``: the batched engine against a per-model loop and vmap, in one run.

Cases (each trains the same models, from the same initial parameters, for the same steps):

- ``mlp-small-K{K}``: late fusion with MLP encoders (d_k = 16, hidden 32, latent 16,
  4 classes), all 2^K - 1 subsets x 5 seeds x 6 sample sizes 20..640, 100 full-batch Adam
  steps. Batched = one call per sample size (seeds on G, subsets on S).
- ``mlp-compute-K3``: the same at sample sizes 50..2,000; reports achieved GFLOP/s
  against the float32 matmul peak measured in the same run.
- ``closed-form-table4``: the solves of the paper's Table 4 grid (5 overlaps x 5 seeds x 4
  cumulative subsets, 20,000 samples, d = 100, float64) on the same drawn designs:
  batched = ``fit_least_squares``; loop = ``numpy.linalg.lstsq`` per model; vmap =
  ``torch.linalg.lstsq`` with the rank-revealing ``gelsd`` driver on zero-filled designs
  (CUDA: batched eigendecompositions, since its only driver assumes full rank). Drawing
  and test risk are outside every timing.
- ``table4-grid``: the same grid end to end through ``sweep``: ``batched`` = the closed
  form from the latent's moments, shared across worlds (0.7.0); ``old`` = features formed
  and shared across worlds (0.6.1); ``loop`` = features formed, one independent sweep per
  world (0.6.0); CPU seconds of each are recorded.

Fairness: every path gets the same data, initial parameters and number of threads (torch
and numpy's BLAS pinned to ``threads``), a warm-up, and its answers are checked against
the batched path's before its time counts (``PathDisagrees`` otherwise). The MLP paths are
timed in float32 and checked in float64 (each path run again, untimed, from the same
initial parameters), within a tolerance derived from float64 rounding and the training's
measured amplification of it (:func:`~mmtheory.bench.cases.rounding_tolerance`). The MLP
loop and vmap use fused Adam, as a careful researcher would. Per-size times of the MLP
cases go to ``<stem>-sizes.csv``.

Peak memory: ``batched_peak_mib`` is the extra memory the batched path held at its peak,
above what was allocated before it started: on CUDA from the caching allocator
(``torch.cuda.max_memory_allocated``), on CPU from the process's resident high-water mark
(``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs`` after freed
memory is handed back with glibc's ``malloc_trim``; NaN where that is unavailable, since a
lifetime peak would say nothing about one case). On the CPU it is a lower bound: memory the
allocator keeps from before the case is reused without raising the resident peak.

Writes ``bench.csv`` and ``bench.md`` and returns the table (the command line prints it)."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from mmtheory.bench.agreement import agreement_markdown, device_agreement
from mmtheory.bench.cases import (
    COMPUTE_SIZES,
    SMALL_SIZES,
    TABLE4_ROUTE_RTOL,
    closed_form_case,
    mlp_case,
    table4_grid_case,
)
from mmtheory.bench.memory import matmul_peak
from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.engine import resolve_device
from mmtheory.engine.threads import pin_threads

__all__ = ["run_bench"]


def run_bench(
    device: str = "cpu",
    out: str = "benchmarks",
    quick: bool = False,
    progress: bool = True,
    cases: Sequence[str] | None = None,
    threads: int | None = None,
) -> tuple[pd.DataFrame, list[Path]]:
    """Run the benchmark cases (all, or those named in ``cases``); write ``bench.csv`` and
    ``bench.md`` into ``out``. On CUDA, K=6 skips the per-model loop (about 2 ms a step
    there: 1,890 models x 600 steps would take 40 minutes; K=3 and K=4 give the ratio).
    ``threads`` (default: torch's current count) is given to torch and to numpy's BLAS
    alike, for every path."""
    dev = resolve_device(device)
    threads = threads or torch.get_num_threads()
    pinning = pin_threads(threads)
    rows = []
    wanted = cases
    gpu = dev.type == "cuda"
    cases = [("mlp-small-K3", lambda: mlp_case(3, SMALL_SIZES, dev, progress=progress))]
    if quick:
        cases.append(
            ("closed-form-table4", lambda: closed_form_case(dev, seeds=2, overlaps=(0.5, 0.0)))
        )
        cases.append(("table4-grid", lambda: table4_grid_case(dev, seeds=2)))
    else:
        cases += [
            ("mlp-compute-K3", lambda: mlp_case(3, COMPUTE_SIZES, dev, progress=progress)),
            ("mlp-small-K4", lambda: mlp_case(4, SMALL_SIZES, dev, progress=progress)),
            (
                "mlp-small-K6",
                lambda: mlp_case(6, SMALL_SIZES, dev, loop=not gpu, progress=progress),
            ),
            ("closed-form-table4", lambda: closed_form_case(dev)),
            ("table4-grid", lambda: table4_grid_case(dev)),
        ]
        if gpu:  # the scale a GPU is for: 18,900 models; the loop would take hours
            cases.append(
                (
                    "mlp-many-K6",
                    lambda: mlp_case(6, SMALL_SIZES, dev, seeds=50, loop=False, progress=progress),
                )
            )
    if wanted is not None:
        unknown = sorted(set(wanted) - {name for name, _ in cases} - {"agreement"})
        if unknown:
            raise ValueError(
                f"cases: unknown {unknown}; expected some of "
                f"{[name for name, _ in cases] + ['agreement']}"
            )
        cases = [(name, fn) for name, fn in cases if name in wanted]
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    stem = f"bench{'-quick' if quick else ''}-{dev.type}"
    df = pd.DataFrame()
    peak = matmul_peak(dev) if cases else float("nan")
    sizes = []
    for name, fn in cases:
        result = fn()
        for r in result.pop("per_size", []):
            sizes.append({"case": name, **r, "threads": threads})
        rows.append({"case": name, "device": str(dev), **result, "peak_gflops": peak})
        df = _bench_table(rows, dev)
        df["blas_pinning"] = pinning
        write_csv_atomic(df, path / f"{stem}.csv")  # saved after every case
        if sizes:
            write_csv_atomic(_sizes_table(sizes), path / f"{stem}-sizes.csv")
    written: list[Path] = []
    if rows:
        md = _markdown(df)
        if sizes:
            md += "\n" + _sizes_markdown(_sizes_table(sizes))
        written.append(_save(df, md, path / stem))
    if "agreement" in wanted if wanted is not None else gpu and not quick:
        agree = device_agreement(str(dev))
        written.append(_save(agree, agreement_markdown(agree), path / f"agreement-{dev.type}"))
    return df, written


def _save(df: pd.DataFrame, md: str, stem: Path) -> Path:
    """``stem``.csv and ``stem``.md (the caller prints after they are saved)."""
    write_csv_atomic(df, stem.with_suffix(".csv"))
    write_text_atomic(md, stem.with_suffix(".md"))
    return stem.with_suffix(".md")


def _bench_table(rows: list[dict], dev: torch.device) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["speedup_vs_loop"] = df.loop_s / df.batched_s
    df["speedup_vs_vmap"] = df.vmap_s / df.batched_s
    for col in ("old_s", *(f"{path}_cpu_s" for path in ("batched", "old", "loop", "vmap"))):
        if col not in df:
            df[col] = float("nan")
    df["speedup_vs_old"] = df.old_s / df.batched_s
    _cpu_ratios(df)
    df["models_per_s"] = df.n_models / df.batched_s
    df["fraction_of_peak"] = df.gflops / df.peak_gflops
    df["torch"] = torch.__version__
    df["threads"] = torch.get_num_threads()
    df["cpu"] = platform.processor() or platform.machine()
    if dev.type == "cuda":
        df["gpu"] = torch.cuda.get_device_name(dev)
    return df


def _cpu_ratios(df: pd.DataFrame) -> None:
    """Each path's CPU seconds over the batched path's (``cpu_speedup_vs_<path>``): the
    ratio of work, robust where other processes share the cores (wall ratios are not)."""
    for path in ("old", "loop", "vmap"):
        df[f"cpu_speedup_vs_{path}"] = df[f"{path}_cpu_s"] / df.batched_cpu_s


def _sizes_table(sizes: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(sizes)
    df["speedup_vs_loop"] = df.loop_s / df.batched_s
    df["speedup_vs_vmap"] = df.vmap_s / df.batched_s
    df["speedup_vs_old"] = df.old_s / df.batched_s
    _cpu_ratios(df)
    df["gflops"] = df.flops / df.batched_s / 1e9
    return df


def _sizes_markdown(df: pd.DataFrame) -> str:
    lines = [
        "Per sample size (each row's times from the same run; old = the batched engine "
        "before grouping and capture, one GEMM per modality and layer, every op of every "
        "step launched; float64 check: the allowed "
        "relative difference and each path's):",
        "",
        "| case | m | models | batched s | old s | loop s | vmap s | x old | x loop | x vmap "
        "| CPU: x old | x loop | x vmap | GFLOP/s | allowed | old | loop | vmap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        "---:|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.case} | {r.m} | {r.n_models} | {r.batched_s:.3f} | {r.old_s:.3f} | "
            f"{r.loop_s:.3f} | {r.vmap_s:.3f} | {r.speedup_vs_old:.1f} | "
            f"{r.speedup_vs_loop:.1f} | {r.speedup_vs_vmap:.1f} | "
            f"{r.cpu_speedup_vs_old:.1f} | {r.cpu_speedup_vs_loop:.1f} | "
            f"{r.cpu_speedup_vs_vmap:.1f} | {r.gflops:.1f} | "
            f"{_g(r, 'check_tol')} | {_g(r, 'old_err64')} | {_g(r, 'loop_err64')} | "
            f"{_g(r, 'vmap_err64')} |"
        )
    return "\n".join(lines) + "\n"


def _g(row, name: str) -> str:
    """A small number for the table ("-" where the column is absent or NaN)."""
    value = getattr(row, name, float("nan"))
    return "-" if pd.isna(value) else f"{value:.1e}"


def _markdown(df: pd.DataFrame) -> str:
    lines = [
        f"device {df.device.iloc[0]}"
        + (f" ({df.gpu.iloc[0]})" if "gpu" in df else "")
        + f", torch {df.torch.iloc[0]}, {df.threads.iloc[0]} threads for every path "
        f"(torch and numpy's BLAS, pinned by {df.blas_pinning.iloc[0]}), "
        f"float32 matmul peak {df.peak_gflops.iloc[0]:.0f} GFLOP/s (measured in this run)",
        "",
        "| case | models | batched s | old s | loop s | vmap s | x old | x loop | x vmap "
        "| CPU: x old | x loop | x vmap | models/s | GFLOP/s | % peak | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.case} | {r.n_models} | {r.batched_s:.2f} | {r.old_s:.2f} | {r.loop_s:.2f} | "
            f"{r.vmap_s:.2f} | {r.speedup_vs_old:.1f} | {r.speedup_vs_loop:.1f} | "
            f"{r.speedup_vs_vmap:.1f} | {r.cpu_speedup_vs_old:.1f} | "
            f"{r.cpu_speedup_vs_loop:.1f} | {r.cpu_speedup_vs_vmap:.1f} | {r.models_per_s:.0f} | "
            f"{r.gflops:.1f} | {100 * r.fraction_of_peak:.0f}% | {r.batched_peak_mib:.0f} |"
        )
    grid = df[df.case == "table4-grid"]
    for r in grid.itertuples():
        lines += [
            "",
            f"table4-grid: batched = the latent's moments shared across worlds (0.7.0), old = "
            f"features shared across worlds (0.6.1), loop = one sweep per world (0.6.0); old "
            f"and loop identical, batched within {TABLE4_ROUTE_RTOL:g} of each column's scale; "
            f"CPU s batched {r.batched_cpu_s:.1f}, old {r.old_cpu_s:.1f}, "
            f"loop {r.loop_cpu_s:.1f}.",
        ]
    return "\n".join(lines) + "\n"
