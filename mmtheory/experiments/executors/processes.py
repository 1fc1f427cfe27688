"""A local multi-process executor: one spec as N shard processes on one machine, merged.

``run_spec_processes(spec_path, out=DIR, jobs=n)`` starts n processes
``python -m mmtheory sweep SPEC --out DIR --shard i/n`` at once, each with its BLAS and
OpenMP thread pools pinned to ``threads`` (default: the machine's cores divided by n, at
least 1), so that n processes do not oversubscribe the cores. When every process has
exited, the spec runs once more here without a shard: that trains nothing and writes the
merged ``results.csv``, equal bit for bit to a single-process run (the shard contract). A
process that fails leaves its finished records on disk; :class:`ExecutorError` names it and
the same command resumes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mmtheory.core.validation import check_int
from mmtheory.errors import ExecutorError

__all__ = ["THREAD_VARIABLES", "run_spec_processes", "shard_env"]

#: Environment variables that size the thread pools of BLAS / OpenMP / PyTorch.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def shard_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with every thread pool set to
    ``threads``."""
    env = dict(os.environ if base is None else base)
    env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    return env


def run_spec_processes(
    spec_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    jobs: int,
    device: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Run the spec file as ``jobs`` shard processes, then merge; return the table."""
    from mmtheory.experiments.spec import load_spec
    from mmtheory.experiments.sweep import run_spec

    jobs = check_int(jobs, "--jobs", low=1, high=1024)
    cores = os.cpu_count() or 1
    threads = check_int(threads if threads is not None else max(1, cores // jobs), "threads", low=1)
    spec = load_spec(spec_path)  # a bad spec fails here, once, not in n processes
    out = str(out)
    base = [sys.executable, "-m", "mmtheory", "sweep", str(spec_path), "--out", out]
    if device is not None:
        base += ["--device", device]
    procs = [
        subprocess.Popen(
            base + ["--shard", f"{i}/{jobs}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=shard_env(threads),
        )
        for i in range(1, jobs + 1)
    ]
    failed = []
    try:
        for i, proc in enumerate(procs, 1):
            _, err = proc.communicate()
            if proc.returncode != 0:
                last = [line for line in err.splitlines() if line.strip()][-1:] or ["no message"]
                failed.append(f"shard {i}/{jobs} (exit {proc.returncode}: {last[0]})")
    finally:
        for proc in procs:  # interrupted: stop the children we started
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    if failed:
        raise ExecutorError(
            f"{len(failed)} of {jobs} processes failed: {'; '.join(failed)}; their finished "
            f"runs are saved in {out}: rerun the same command to finish"
        )
    return run_spec(spec, out=Path(out), device=device, progress=False)
