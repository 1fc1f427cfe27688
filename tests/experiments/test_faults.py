"""Reliability under faults: a diverging model among healthy ones, write failures, corrupt
records, two writers on one directory, deterministic tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import synthetic
from mmtheory.experiments import sweep

# early fusion with an MLP encoder on a regression world: eta refits least-squares heads
# with one batched eigh over every model of the chunk
WORLD = synthetic.LinearWorld((6, 10, 6), names=["t", "v", "a"])
SIZES = dict(n_test=200, n_refit=200, n_eval=200, progress=False)
MLP = {"kind": "early_fusion", "encoder": "mlp", "solver": "gd", "lr": 0.05, "steps": 20}


def _plant_nan(monkeypatch, subset_index: int, seed_index: int = 0):
    """Make train_batched return NaN parameters for one model (and not flag it)."""
    import mmtheory.experiments.runner as runner

    real = runner.train_batched

    def planted(learner, plan, *args, **kwargs):
        res = real(learner, plan, *args, **kwargs)
        for slot, t in res.params.items():
            if not slot.per_modality:
                t = t.clone()
                t[seed_index, subset_index] = float("nan")
                res.params[slot] = t
        return res

    monkeypatch.setattr(runner, "train_batched", planted)


def test_one_nan_model_is_dropped_and_the_others_are_written(tmp_path, monkeypatch):
    clean = sweep(WORLD, MLP, "all", m=[30], seeds=2, **SIZES)
    _plant_nan(monkeypatch, subset_index=3, seed_index=1)
    hit = sweep(WORLD, MLP, "all", m=[30], seeds=2, out=tmp_path, **SIZES)
    assert len(hit) == 14 and len((tmp_path / "records.jsonl").read_text().splitlines()) == 14
    bad = hit.diverged.astype(bool)
    assert bad.sum() == 1
    row = hit[bad].iloc[0]
    assert row.seed == 1
    assert not row.converged and pd.isna(row.test_risk) and pd.isna(row.eta)
    cols = ["train_risk", "test_risk", "test_risk_se", "eta", "eta_se", "converged"]
    pd.testing.assert_frame_equal(
        hit.loc[~bad, cols].reset_index(drop=True), clean.loc[~bad, cols].reset_index(drop=True)
    )


def test_real_divergence_among_healthy_models_keeps_the_healthy_ones():
    """gd with lr 1: the unimodal text model trains, the others blow up (float32 overflow
    to NaN); before, the batched eigh of eta failed for the whole chunk and nothing was
    written."""
    lrn = {"kind": "early_fusion", "encoder": "mlp", "solver": "gd", "lr": 1.0, "steps": 100}
    world = synthetic.LinearWorld((20, 60, 20), names=["t", "v", "a"])
    df = sweep(world, lrn, "all", m=[50], seeds=[0], **SIZES)
    assert len(df) == 7
    assert df.diverged.astype(bool).sum() >= 1 and (~df.diverged.astype(bool)).sum() >= 1
    ok = df[~df.diverged.astype(bool)]
    assert np.isfinite(ok.test_risk.astype(float)).all() and np.isfinite(ok.eta.astype(float)).all()
    assert df[df.diverged.astype(bool)].test_risk.isna().all()


# ------------------------------------------------------------------------- write failures
LINEAR = synthetic.LinearWorld((4, 4, 4), latent_dim=2)
GRID = dict(learner="linear", subsets="all", m=[20, 40], seeds=3, progress=False)


def _no_space(monkeypatch, fail_on: int, partial: bool):
    """Make the ``fail_on``-th record write fail with ENOSPC (after half its bytes)."""
    import errno
    import os

    import mmtheory.experiments.records as records

    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == fail_on:
            if partial:
                os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    monkeypatch.setattr(records, "_write", write)


@pytest.mark.parametrize("partial", [False, True])
def test_disk_full_loses_no_finished_record_and_leaves_no_temporary_file(
    tmp_path, monkeypatch, partial
):
    from mmtheory.experiments.records import RecordWriteError

    full = sweep(LINEAR, **GRID)
    _no_space(monkeypatch, fail_on=2, partial=partial)  # seed 0's batch is written, seed 1's not
    with pytest.raises(RecordWriteError, match="could not write 14 record.*14 finished run"):
        sweep(LINEAR, out=tmp_path, **GRID)
    lines = (tmp_path / "records.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 14 and all(line.endswith(b"\n") for line in lines)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("**/*.tmp"))
    monkeypatch.undo()
    again = sweep(LINEAR, out=tmp_path, **GRID)
    assert not (tmp_path / "records.corrupt.jsonl").exists()  # nothing was half-written
    cols = ["subset", "m", "seed", "test_risk", "eta"]
    pd.testing.assert_frame_equal(again[cols], full[cols])


def test_disk_full_is_one_cli_line(tmp_path, monkeypatch, capsys):
    from mmtheory.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[world]\nkind = "linear"\ndims = [4, 4, 4]\nlatent_dim = 2\n[grid]\nm = [20]\nseeds = 3\n'
    )
    _no_space(monkeypatch, fail_on=2, partial=True)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mmtheory")]
    assert len(err) == 1 and "No space left on device" in err[0] and "are safe" in err[0]
    assert not list((tmp_path / "o").glob("*.tmp"))


def test_table_write_failure_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from mmtheory.core.io import write_csv_atomic

    def to_csv(self, path, **kw):
        with open(path, "w") as fh:
            fh.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(OSError, match="No space"):
        write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "results.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_kill_between_write_and_rename_leaves_nothing_after_the_rerun(tmp_path):
    """Found by benchmarks/kill_campaign.py's reasoning: a SIGKILL between an atomic write
    and its rename leaves ``results.csv.HOST-PID.tmp``; the next run on that directory
    removes it (and a dead process's write probe), but keeps the temporary files of live
    processes and of other machines (a shard on another node may be writing them)."""
    import signal
    import subprocess
    import sys

    from mmtheory.cli import main
    from mmtheory.core.io import owner_tag, prepare_output_dir

    out = tmp_path / "o"
    out.mkdir()
    code = (
        "import os, signal, sys, pandas as pd\n"
        "from mmtheory.core import io\n"
        "io.os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)\n"
        "io.write_csv_atomic(pd.DataFrame({'a': [1]}), sys.argv[1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out / "results.csv")])
    assert proc.returncode == -signal.SIGKILL
    left = list(out.glob("results.csv.*.tmp"))
    assert len(left) == 1, left  # the control: the kill did leave one behind
    dead = left[0].name.rpartition(".tmp")[0].rpartition("-")[2]
    probe = out / f".mmtheory-write-test.{owner_tag().rpartition('-')[0]}-{dead}"
    probe.write_text("x")
    live = out / f"results.csv.{owner_tag()}.tmp"  # this very process: alive
    other = out / "results.csv.another_node-1.tmp"  # another machine's shard
    for keep in (live, other):
        keep.write_text("in flight")
    prepare_output_dir(out)
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, other.name])
    live.unlink()
    other.unlink()
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[world]\nkind = "linear"\ndims = [3, 3]\nlatent_dim = 2\n[grid]\nm = [20]\nseeds = 1\n'
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out / "results.csv")])
    assert len(list(out.glob("*.tmp"))) == 1
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    assert not list(out.glob("*.tmp")) and not list(out.glob(".mmtheory-write-test*"))


# ------------------------------------------------------------------------ corrupt records
def test_corrupt_records_of_every_kind_are_reported_moved_aside_and_redone(tmp_path, caplog):
    import json

    full = sweep(LINEAR, out=tmp_path, **GRID)
    path = tmp_path / "records.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    recs = [json.loads(line) for line in lines]
    broken = [
        lines[0][:30] + b"\xff" + lines[0][30:],  # one invalid UTF-8 byte
        json.dumps({"run_id": recs[1]["run_id"]}).encode() + b"\n",  # only a run id
        json.dumps({k: v for k, v in recs[2].items() if k != "test_risk"}).encode() + b"\n",
        json.dumps({**recs[3], "m": str(recs[3]["m"])}).encode() + b"\n",  # m as a string
        json.dumps({**recs[4], "test_risk": "0.5"}).encode() + b"\n",
        json.dumps([1, 2]).encode() + b"\n",
        b"{not json\n",
        lines[5][:-20],  # cut short, no line end
    ]
    path.write_bytes(b"".join(broken[:-1] + lines[6:] + broken[-1:]))
    again = sweep(LINEAR, out=tmp_path, **GRID)
    assert str(path) in caplog.text and "8 unreadable record line(s)" in caplog.text
    assert "line 1 (not UTF-8 text)" in caplog.text and "missing field" in caplog.text
    assert len((tmp_path / "records.corrupt.jsonl").read_bytes().splitlines()) == 8
    cols = ["subset", "m", "seed", "test_risk", "eta", "train_risk"]
    pd.testing.assert_frame_equal(again[cols], full[cols])
    assert len(path.read_bytes().splitlines()) == len(full)


# ---------------------------------------------------------------------------- one writer
def test_two_writers_on_one_directory_get_a_clear_refusal(tmp_path, capsys):
    from mmtheory.cli import main
    from mmtheory.experiments.records import RecordStore, StoreLockedError

    with RecordStore(tmp_path):
        with pytest.raises(StoreLockedError, match="another process"):
            RecordStore(tmp_path)
        with RecordStore(tmp_path, (1, 2)), RecordStore(tmp_path, (2, 2)):
            pass  # shards write their own files: no conflict
        spec = tmp_path / "spec.toml"
        spec.write_text('[world]\nkind = "linear"\ndims = [4, 4]\nlatent_dim = 2\n')
        assert main(["sweep", str(spec), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "being written by another process" in err[0]
    RecordStore(tmp_path).close()  # released


def test_contributions_table_is_the_same_in_every_process(tmp_path):
    """Ties and orders never depend on Python's per-process string hashing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "golden" / "data" / "results.csv"
    code = (
        "import sys, pandas as pd; from mmtheory.theory.contributions import contributions_table;"
        f"contributions_table(pd.read_csv({str(results)!r})).to_csv(sys.argv[1], index=False)"
    )
    outs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"c{seed}.csv"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2] and len(outs[0]) > 100


# ------------------------------------------------------------------ batch-independent numbers
REALISTIC = synthetic.LinearWorld((30, 150, 30), latent_dim=4, names=["t", "v", "a"])
FLOAT32 = dict(
    learner=[{"kind": "late_fusion", "latent_dim": 8, "steps": 15}, "linear"],
    subsets="all",
    m=[60, 120],
    seeds=3,
    n_test=1500,
    n_refit=1500,
    n_eval=1500,
    progress=False,
    memory_budget=3e6,  # several chunks per size (on the CPU the default holds them all)
)


def _numbers(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns="wall_s").reset_index(drop=True)


def test_three_shards_and_a_resume_after_a_fault_are_bit_identical_to_one_process(
    tmp_path, monkeypatch
):
    one = sweep(REALISTIC, out=tmp_path / "one", **FLOAT32)
    shared = tmp_path / "shared"
    for i in (1, 2, 3):
        sweep(REALISTIC, out=shared, shard=(i, 3), **FLOAT32)
    sizes = [
        len((shared / f"records.shard-{i}-of-3.jsonl").read_text().splitlines()) for i in (1, 2, 3)
    ]
    assert sum(sizes) == len(one) == 2 * 7 * 2 * 3 and min(sizes) > 0, sizes
    merged = sweep(REALISTIC, out=shared, **FLOAT32)
    assert not (shared / "records.jsonl").exists()  # the merge trained nothing
    pd.testing.assert_frame_equal(_numbers(merged), _numbers(one))  # bit for bit
    # a full disk in the middle of the run, then a resume: the same numbers bit for bit
    _no_space(monkeypatch, fail_on=3, partial=True)
    from mmtheory.experiments.records import RecordWriteError

    with pytest.raises(RecordWriteError):
        sweep(REALISTIC, out=tmp_path / "fault", **FLOAT32)
    monkeypatch.undo()
    path = tmp_path / "fault" / "records.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:-25])  # and a record cut short
    resumed = sweep(REALISTIC, out=tmp_path / "fault", **FLOAT32)
    pd.testing.assert_frame_equal(_numbers(resumed), _numbers(one))


# ------------------------------------------------------------------------ local processes
def test_jobs_runs_local_shard_processes_with_pinned_threads_and_merges(tmp_path, capsys):
    from mmtheory.cli import main
    from mmtheory.experiments.executors.processes import THREAD_VARIABLES, shard_env

    assert all(shard_env(3, {})[v] == "3" for v in THREAD_VARIABLES)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[world]\nkind = "linear"\ndims = [4, 4, 4]\nlatent_dim = 2\n'
        '[[learner]]\nkind = "linear"\n[[learner]]\nkind = "late_fusion"\nlatent_dim = 3\n'
        "steps = 10\n[grid]\nm = [30, 60]\nseeds = 2\n"
        "[estimation]\nn_test = 300\nn_refit = 300\nn_eval = 300\n"
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "jobs"), "--jobs", "2"]) == 0
    assert len(list((tmp_path / "jobs").glob("records.shard-*-of-2.jsonl"))) >= 1
    assert main(["sweep", str(spec), "--out", str(tmp_path / "one")]) == 0
    a = pd.read_csv(tmp_path / "jobs" / "results.csv").drop(columns="wall_s")
    b = pd.read_csv(tmp_path / "one" / "results.csv").drop(columns="wall_s")
    pd.testing.assert_frame_equal(a, b)
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "x"), "--jobs", "0"]) == 2
    assert "--jobs must be" in capsys.readouterr().err


def test_least_squares_heads_survive_a_non_finite_latent():
    from mmtheory.estimation.eta import fit_linear_heads, latent_rank

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(2, 50, 1, generator=g, dtype=torch.float64)
    W, b = fit_linear_heads(z, y)
    z_bad = z.clone()
    z_bad[1, 2, 7, 0] = float("inf")
    W2, b2 = fit_linear_heads(z_bad, y)
    assert torch.isnan(W2[1, 2]).all() and torch.isnan(b2[1, 2]).all()
    keep = torch.ones(2, 3, dtype=torch.bool)
    keep[1, 2] = False
    assert torch.equal(W2[keep], W[keep]) and torch.equal(b2[keep], b[keep])
    assert latent_rank(z_bad)[1, 2] == 0 and latent_rank(z_bad)[0, 0] == 4
