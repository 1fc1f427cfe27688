"""The submitit executor: its local cluster (real subprocesses) and its debug cluster (in
this process) merge to exactly the single-process table; a failed task is one line and a
rerun resumes; the SLURM options reach the sbatch script; every misplaced flag is one line.
submitit is an extra (in the test extra, so CI runs this)."""

import fcntl
import os
import sys

import pandas as pd
import pytest

from mmtheory.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")  # submitit's own warnings in the debug cluster

# two learners (closed form and iterative), 7 subsets, 2 sizes, 2 seeds: 56 runs in a few
# seconds, cut into units of work that land on both shards
SPEC = (
    '[world]\nkind = "linear"\ndims = [4, 4, 4]\nlatent_dim = 2\n'
    '[[learner]]\nkind = "linear"\n[[learner]]\nkind = "late_fusion"\nlatent_dim = 3\n'
    "steps = 10\n[grid]\nm = [30, 60]\nseeds = 2\n"
    "[estimation]\nn_test = 300\nn_refit = 300\nn_eval = 300\n"
)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return str(path)


def _table(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns="wall_s")


def _one_error_line(capsys) -> str:
    """The one line on stderr, besides the executor's progress bar."""
    err = [
        line
        for line in capsys.readouterr().err.strip().splitlines()
        if not line.startswith("submitit ")
    ]
    assert len(err) == 1, err
    return err[0]


def test_debug_cluster_merges_to_the_single_process_table(tmp_path, spec, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "debug"
    args = ["--executor", "submitit", "--submitit-cluster", "debug", "--tasks", "3"]
    assert main(["sweep", spec, "--out", str(out), *args]) == 0
    assert main(["sweep", spec, "--out", str(tmp_path / "one")]) == 0
    files = sorted(f.name for f in out.glob("records*.jsonl"))
    assert "records.jsonl" not in files and files  # the merge trained nothing
    assert (out / "submitit").is_dir()  # the job folder, under --out by default
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "one"))  # bit for bit


def test_local_cluster_failed_task_is_one_line_and_the_rerun_resumes_bit_identical(
    tmp_path, spec, capsys
):
    """Shard 2's record file is locked by this test (as by a second writer), so its task
    fails in its own process; the error names it in one line with its log, shard 1's runs
    are saved, and the same command, once the lock is gone, trains only shard 2 and merges
    to the single-process results.csv bit for bit."""
    pytest.importorskip("submitit")
    out = tmp_path / "local"
    out.mkdir()
    lock = os.open(out / ".records.shard-2-of-2.jsonl.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    command = ["sweep", spec, "--out", str(out), "--executor", "submitit", "--tasks", "2"]
    try:
        assert main(command) == 2
    finally:
        os.close(lock)
    line = _one_error_line(capsys)
    assert "1 of 2 submitit task(s) failed (shard 2/2: " in line, line
    assert "StoreLockedError" in line and "_log.err" in line and "resume" in line, line
    shard1 = out / "records.shard-1-of-2.jsonl"
    done = shard1.read_bytes()
    assert done and not (out / "records.shard-2-of-2.jsonl").exists()
    assert main(command) == 0  # the rerun
    assert shard1.read_bytes() == done  # shard 1 was not redone
    assert not (out / "records.jsonl").exists()  # the merge trained nothing
    assert main(["sweep", spec, "--out", str(tmp_path / "one")]) == 0
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "one"))


def test_slurm_options_reach_the_sbatch_script(tmp_path, monkeypatch):
    """Without SLURM the slurm cluster is refused in one line; with SLURM's commands on the
    PATH (a stand-in srun) every option lands in the generated script."""
    submitit = pytest.importorskip("submitit")
    from mmtheory.experiments.executors.submitit import _executor

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="cluster 'slurm' is not available here"):
        _executor(submitit, tmp_path / "jobs", "slurm", 8, {})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    options = {
        "partition": "gpu",
        "timeout_min": 90,
        "cpus_per_task": 2,
        "mem_gb": 8.0,
        "gpus_per_node": 1,
        "array_parallelism": 3,
    }
    executor = _executor(submitit, tmp_path / "jobs", "slurm", 8, options)
    script = executor._executor._make_submission_file_text("CMD", "uid")
    for line in ("--partition=gpu", "--time=90", "--cpus-per-task=2", "--mem=8GB", "gpus"):
        assert line in script, (line, script)
    assert executor._executor.parameters["array_parallelism"] == 3
    plain = _executor(submitit, tmp_path / "jobs", "slurm", 8, dict.fromkeys(options))
    assert plain._executor.parameters["array_parallelism"] == 8  # default: all at once
    script = plain._executor._make_submission_file_text("CMD", "uid")
    assert "--partition" not in script and "--time=240" in script  # not submitit's 5 minutes


def test_local_tasks_have_no_two_minute_limit(tmp_path):
    """submitit's local cluster stops a task after 2 minutes unless told otherwise."""
    submitit = pytest.importorskip("submitit")
    from mmtheory.experiments.executors.submitit import LOCAL_TIMEOUT_MIN, _executor

    executor = _executor(submitit, tmp_path / "jobs", "local", 2, {})
    assert executor._executor.parameters["timeout_min"] == LOCAL_TIMEOUT_MIN >= 7 * 24 * 60


def test_submitit_flags_are_checked_in_one_line(tmp_path, spec, capsys, monkeypatch):
    out = str(tmp_path / "o")
    sub = ["--executor", "submitit"]
    slurm = [*sub, "--submitit-cluster", "slurm"]
    cases = [
        ([*sub, "--shard", "1/2"], "--shard and --executor submitit exclude each other"),
        ([*sub, "--jobs", "2"], "--jobs makes its own shards"),
        ([*sub, "--tasks", "0"], "--tasks must be an integer in 1..10000, got 0"),
        (["--tasks", "2"], "--tasks (the number of shards) applies to --executor ray or submitit"),
        ([*sub, "--ray-address", "auto"], "--ray-address applies to --executor ray only"),
        (["--submitit-cluster", "local"], "--submitit-cluster applies to --executor submitit"),
        (["--executor", "ray", "--submitit-folder", "x"], "--submitit-folder applies to"),
        (["--slurm-partition", "gpu"], "--slurm-partition applies to --executor submitit"),
        ([*sub, "--slurm-mem-gb", "4"], "got --executor submitit --submitit-cluster local"),
        (["--executor", "ray", "--slurm-time-min", "60"], "got --executor ray"),
        ([*slurm, "--slurm-time-min", "0"], "--slurm-time-min must be a positive integer, got 0"),
        ([*slurm, "--slurm-mem-gb", "-1"], "--slurm-mem-gb must be a finite number > 0"),
        ([*slurm, "--slurm-partition", " "], "--slurm-partition must name a SLURM partition"),
        ([*slurm, "--slurm-gpus-per-task", "-1"], "--slurm-gpus-per-task must be an integer >= 0"),
    ]
    for flags, message in cases:
        assert main(["sweep", spec, "--out", out, *flags]) == 2, flags
        line = _one_error_line(capsys)
        assert message in line, (flags, line)
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if submitit were not installed
    assert main(["sweep", spec, "--out", out, *sub]) == 2
    assert 'pip install "mmtheory[submitit]"' in _one_error_line(capsys)
    assert not list((tmp_path / "o").glob("records*.jsonl"))  # nothing ran


def test_a_correct_submitit_command_passes_the_flag_checks(tmp_path, spec, capsys):
    """Negative control for the checks above: the same flags where they apply are accepted
    (the slurm one stops only at the missing SLURM, after every flag check)."""
    pytest.importorskip("submitit")
    out = str(tmp_path / "o")
    flags = [
        "--executor", "submitit", "--submitit-cluster", "slurm", "--tasks", "2",
        "--slurm-partition", "gpu", "--slurm-time-min", "60", "--slurm-cpus-per-task", "2",
        "--slurm-mem-gb", "4", "--slurm-gpus-per-task", "0", "--slurm-array-parallelism", "2",
    ]  # fmt: skip
    if any((p := os.path.join(d, "srun")) and os.access(p, os.X_OK) for d in os.get_exec_path()):
        pytest.skip("a real SLURM is on this machine: this would submit")
    assert main(["sweep", spec, "--out", out, *flags]) == 2
    assert "cluster 'slurm' is not available here" in _one_error_line(capsys)
