"""An optional submitit executor: one spec as a job array (SLURM, or local processes), merged.

``run_spec_submitit(spec, out=DIR, tasks=n, cluster=...)`` submits one job array of n
tasks through `submitit <https://github.com/facebookincubator/submitit>`_; task i runs shard
i of n of the spec (:func:`~mmtheory.experiments.sweep.run_spec` with ``shard=(i, n)``),
writing its records to ``DIR/records.shard-i-of-n.jsonl`` as its batches finish. When every
task has ended, the driver runs the spec once more without a shard: that trains nothing
and writes the merged ``results.csv``, equal bit for bit to a single-process run (the shard
contract, as for ``--shard``, ``--jobs`` and Ray). A task that fails leaves its finished
records on disk; :class:`~mmtheory.errors.ExecutorError` names it in one line with its log
file, and the same command resumes.

Clusters (submitit's own names):

- ``"local"``: each task is a real subprocess on this machine (what CI tests), with its
  torch and BLAS thread pools pinned to ``cores // n`` (at least 1);
- ``"debug"``: the tasks run one after the other inside this process (for a debugger);
- ``"slurm"``: a SLURM job array (``sbatch --array``) with the partition, time limit,
  CPUs, memory, GPUs and array parallelism given here; each task pins its thread pools to
  its CPUs. ``DIR`` (and the job folder, by default ``DIR/submitit``) must be on a file
  system that the nodes share.

The driver waits for the array. Interrupting it (Ctrl-C) cancels the tasks that are still
pending or running; their finished runs are saved and the same command resumes. submitit is
an extra (``pip install "mmtheory[submitit]"``), imported only here.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mmtheory.core.validation import check_choice, check_int, check_real
from mmtheory.errors import ExecutorError

__all__ = ["CLUSTERS", "run_spec_submitit"]

#: The submitit clusters this executor accepts.
CLUSTERS = ("local", "debug", "slurm")


def _import_submitit():
    try:
        import submitit  # the optional extra
    except ImportError:
        raise ValueError(
            'the submitit executor needs the submitit package: pip install "mmtheory[submitit]"'
        ) from None
    return submitit


def _run_shard(spec, out: str, device: str | None, i: int, n: int, threads: int | None) -> int:
    """One task of the array: shard i of n, with its thread pools pinned to ``threads``
    (restored afterwards, for the in-process ``debug`` cluster). Returns its row count."""
    from mmtheory.engine.threads import blas_threads, pin_threads, set_blas_threads
    from mmtheory.experiments.sweep import run_spec

    if threads is None:
        return len(run_spec(spec, out=out, device=device, progress=False, shard=(i, n)))
    import torch

    before = torch.get_num_threads(), blas_threads()
    pin_threads(threads)
    try:
        return len(run_spec(spec, out=out, device=device, progress=False, shard=(i, n)))
    finally:
        torch.set_num_threads(before[0])
        if before[1] is not None:
            set_blas_threads(before[1])


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def _one_line(err: BaseException) -> str:
    """The line of a submitit job error that says what went wrong: the last
    ``SomeError: message`` line of the task's traceback, else the error's first line."""
    if not type(err).__module__.startswith("submitit"):  # the debug cluster: the error itself
        text = f"{type(err).__name__}: {err}"
    else:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        named = [line for line in lines if _ERROR_LINE.match(line)]
        text = named[-1] if named else (lines[0] if lines else type(err).__name__)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


#: Time limits (minutes) when none is given: submitit's own defaults would stop a local task
#: after 2 minutes and give a SLURM task 5.
LOCAL_TIMEOUT_MIN = 30 * 24 * 60
SLURM_TIMEOUT_MIN = 240


def _executor(submitit, folder: Path, cluster: str, tasks: int, options: dict):
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as err:  # slurm without SLURM's commands on this machine
        raise ValueError(
            f"cluster {cluster!r} is not available here ({' '.join(str(err).split())}); run "
            "the command on a SLURM login node, or use the local cluster"
        ) from None
    params: dict = {"name": "mmtheory", "slurm_array_parallelism": tasks}
    if cluster == "local":
        params["timeout_min"] = LOCAL_TIMEOUT_MIN
    if cluster == "slurm":
        params["timeout_min"] = SLURM_TIMEOUT_MIN
        generic = {"timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node"}
        params.update({k: v for k, v in options.items() if k in generic and v is not None})
        if options.get("partition") is not None:
            params["slurm_partition"] = options["partition"]
        if options.get("array_parallelism") is not None:
            params["slurm_array_parallelism"] = options["array_parallelism"]
    executor.update_parameters(**params)
    return executor


def _stop(job, cluster: str) -> None:
    """Stop a task that has not ended: SIGTERM to a local task's controller (its job id is
    its process id; it forwards the signal to the task), else submitit's cancel."""
    if cluster != "local":
        job.cancel(check=False)
        return
    try:
        os.kill(int(job.job_id), signal.SIGTERM)
    except (ValueError, ProcessLookupError, PermissionError):
        pass


def run_spec_submitit(
    spec,
    *,
    out: str | os.PathLike,
    tasks: int = 4,
    cluster: str = "local",
    device: str | None = None,
    folder: str | os.PathLike | None = None,
    partition: str | None = None,
    timeout_min: int | None = None,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    gpus_per_node: int | None = None,
    array_parallelism: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a parsed spec as a submitit job array of ``tasks`` shards, then merge; return the
    table.

    Parameters
    ----------
    spec : a :class:`~mmtheory.experiments.spec.SweepSpec`
    out : the run directory, shared by every task (a shared file system on a cluster)
    tasks : number of shards, one array task each
    cluster : ``"local"`` (subprocesses here), ``"debug"`` (in this process) or ``"slurm"``
    device : as for :func:`sweep`; ``None`` uses the spec's
    folder : submitit's job folder (pickled tasks, logs); default ``out/submitit``
    partition, timeout_min, cpus_per_task, mem_gb, gpus_per_node, array_parallelism : the
        SLURM resources of each task (``slurm`` only; ``None`` leaves SLURM's defaults, but
        the time limit defaults to ``SLURM_TIMEOUT_MIN`` = 240 minutes and the array
        parallelism to ``tasks``). Each task pins its thread pools to ``cpus_per_task``
        (default 1). Local tasks have no practical time limit (30 days)
    """
    from mmtheory.experiments.sweep import run_spec

    tasks = check_int(tasks, "tasks", low=1, high=10_000)
    cluster = check_choice(cluster, "cluster", CLUSTERS)
    slurm = {
        "partition": partition,
        "timeout_min": timeout_min,
        "cpus_per_task": cpus_per_task,
        "mem_gb": mem_gb,
        "gpus_per_node": gpus_per_node,
        "array_parallelism": array_parallelism,
    }
    given = [k for k, v in slurm.items() if v is not None]
    if cluster != "slurm" and given:
        raise ValueError(f"{', '.join(given)} apply to the slurm cluster only, got {cluster!r}")
    if partition is not None and not str(partition).strip():
        raise ValueError(f"partition must name a SLURM partition, got {partition!r}")
    for key in ("timeout_min", "cpus_per_task", "array_parallelism"):
        if slurm[key] is not None:
            slurm[key] = check_int(slurm[key], key, low=1)
    if gpus_per_node is not None:
        slurm["gpus_per_node"] = check_int(gpus_per_node, "gpus_per_node", low=0)
    if mem_gb is not None:
        slurm["mem_gb"] = check_real(mem_gb, "mem_gb", low=0, low_open=True)
    submitit = _import_submitit()
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    job_folder = Path(folder).resolve() if folder is not None else out_dir / "submitit"
    dev = device or spec.device
    if cluster == "local":
        threads: int | None = max(1, (os.cpu_count() or 1) // tasks)
    elif cluster == "slurm":
        threads = slurm["cpus_per_task"] or 1
    else:
        threads = None  # debug: this process, one task after the other
    executor = _executor(submitit, job_folder, cluster, tasks, slurm)
    shards = list(range(1, tasks + 1))
    arguments = (
        [spec] * tasks,
        [str(out_dir)] * tasks,
        [dev] * tasks,
        shards,
        [tasks] * tasks,
        [threads] * tasks,
    )
    if cluster == "local" and threading.current_thread() is threading.main_thread():
        # the local tasks and their submitit controllers start with Ctrl-C ignored (else
        # each controller prints a KeyboardInterrupt traceback on the terminal); this
        # process takes Ctrl-C and stops them with SIGTERM, which they forward to the tasks
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            jobs = executor.map_array(_run_shard, *arguments)
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        jobs = executor.map_array(_run_shard, *arguments)
    failed, ended = [], set()
    try:
        with tqdm(
            total=tasks, desc=f"submitit {spec.name}", unit="shard", disable=not progress
        ) as bar:
            for i, job in zip(shards, jobs):
                try:
                    job.result()
                except Exception as err:  # a task's failure: report it, wait for the others
                    failed.append(f"shard {i}/{tasks}: {_one_line(err)} (log: {job.paths.stderr})")
                ended.add(i)
                bar.update(1)
    finally:
        for i, job in zip(shards, jobs):  # interrupted: stop the tasks not yet waited for
            if i not in ended:
                _stop(job, cluster)
    if failed:
        raise ExecutorError(
            f"{len(failed)} of {tasks} submitit task(s) failed ({'; '.join(failed)}); "
            f"finished runs are saved in {out_dir}: run the same command to resume"
        )
    return run_spec(spec, out=out_dir, device=dev, progress=False)
