"""The Ray executor on a local Ray instance: shards as Ray tasks merge to exactly the
single-process table. Ray is an extra (in the test extra, so CI runs this)."""

import sys

import pandas as pd
import pytest
from helpers import SHARD_SPEC

from mmtheory.experiments import run_spec

pytestmark = pytest.mark.filterwarnings("ignore")  # Ray's own start-up warnings


def _spec(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SHARD_SPEC)
    return path


def test_ray_tasks_merge_to_the_single_process_table(tmp_path):
    ray = pytest.importorskip("ray")
    from mmtheory.experiments.executors.ray import run_spec_ray
    from mmtheory.experiments.spec import load_spec

    spec = load_spec(_spec(tmp_path))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        table = run_spec_ray(spec, out=str(tmp_path / "ray"), tasks=3, progress=False)
    finally:
        ray.shutdown()
    files = sorted(f.name for f in (tmp_path / "ray").glob("records*.jsonl"))
    assert files == [
        f"records.shard-{i}-of-3.jsonl" for i in (1, 2, 3)
    ]  # the merge trained nothing
    single = run_spec(spec, out=str(tmp_path / "single"), progress=False)
    assert len(table) == 2 * 2 * 7 * 2 * 2
    pd.testing.assert_frame_equal(table.drop(columns="wall_s"), single.drop(columns="wall_s"))
    on_disk = pd.read_csv(tmp_path / "ray" / "results.csv").drop(columns="wall_s")
    pd.testing.assert_frame_equal(
        on_disk, pd.read_csv(tmp_path / "single" / "results.csv").drop(columns="wall_s")
    )


def test_failed_ray_task_is_reported_and_resumable(tmp_path, monkeypatch):
    """A task that raises is named in one ExecutorError; the other shards' runs are saved,
    and running again finishes only what is missing."""
    ray = pytest.importorskip("ray")
    from mmtheory.errors import ExecutorError
    from mmtheory.experiments.executors import ray as ray_executor
    from mmtheory.experiments.spec import load_spec

    spec = load_spec(_spec(tmp_path))
    out = tmp_path / "ray"

    def flaky(spec, out, device, i, n):  # pickled by value: runs in the Ray worker as written
        if i == 2:
            raise ValueError("planted failure")
        return len(run_spec(spec, out=out, device=device, progress=False, shard=(i, n)))

    monkeypatch.setattr(ray_executor, "_run_shard", flaky)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with pytest.raises(
            ExecutorError, match=r"1 of 3 Ray task\(s\) failed \(shard 2/3: .*planted failure"
        ):
            ray_executor.run_spec_ray(spec, out=str(out), tasks=3, progress=False)
        saved = sorted(f.name for f in out.glob("records*.jsonl"))
        assert saved == ["records.shard-1-of-3.jsonl", "records.shard-3-of-3.jsonl"]
        monkeypatch.undo()
        table = ray_executor.run_spec_ray(spec, out=str(out), tasks=3, progress=False)
    finally:
        ray.shutdown()
    assert len(table) == 2 * 2 * 7 * 2 * 2
    assert (out / "records.shard-2-of-3.jsonl").exists()


def test_ray_flags_are_checked_in_one_line(tmp_path, capsys, monkeypatch):
    from mmtheory.cli import main

    spec = str(_spec(tmp_path))
    out = str(tmp_path / "o")
    cases = [
        (["--executor", "ray", "--shard", "1/2"], "exclude each other"),
        (["--tasks", "3"], "applies to --executor ray or submitit only"),
        (["--executor", "ray", "--tasks", "0"], "--tasks must be"),
        (["--ray-address", "auto"], "--ray-address applies to --executor ray only"),
    ]
    for flags, message in cases:
        assert main(["sweep", spec, "--out", out, *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (flags, err)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    assert main(["sweep", spec, "--out", out, "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "mmtheory[ray]"' in err[0]
