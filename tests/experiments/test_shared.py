"""Work shared across the sweeps of a series: features drawn and factored once for worlds
that differ only in their target (the same numbers, bit for bit), record files read once."""

import tomllib

import pandas as pd
import pytest

import synthetic
from mmtheory.engine import closed_form
from mmtheory.experiments import SharedWork, parse_spec, run_spec, sweep
from mmtheory.experiments.records import RecordStore

OVERLAPS = (1.0, 0.5, 0.0)


def _grid(shared, out=None):
    tables = [
        sweep(
            synthetic.table4_world(w, dim=5),
            "linear",
            "cumulative",
            m=[30, 60],
            seeds=2,
            device="cpu",
            progress=False,
            shared=shared,
            out=out,
        )
        for w in OVERLAPS
    ]
    return pd.concat(tables, ignore_index=True).drop(columns=["wall_s"])


def _count_factorisations(monkeypatch):
    calls = []
    real = closed_form.GramFactors.__init__

    def counted(self, *args, **kw):
        calls.append(1)
        real(self, *args, **kw)

    monkeypatch.setattr(closed_form.GramFactors, "__init__", counted)
    return calls


def test_shared_features_give_bit_identical_results_and_factor_once_per_seed(monkeypatch):
    calls = _count_factorisations(monkeypatch)
    old = _grid(None)
    assert len(calls) == len(OVERLAPS) * 2  # every (world, seed) drew and factored
    calls.clear()
    new = _grid(SharedWork())
    assert len(calls) == 2  # once per seed, for all three worlds
    pd.testing.assert_frame_equal(old, new, check_exact=True)


def test_shared_draw_key_is_equal_exactly_when_the_features_are():
    keys = {synthetic.table4_world(w, dim=5).shared_draw_key() for w in OVERLAPS}
    assert len(keys) == 1
    base = synthetic.table4_world(0.5, dim=5)
    assert synthetic.table4_world(0.5, dim=6).shared_draw_key() != base.shared_draw_key()
    noisy = synthetic.OverlapWorld(4, 5, 0.5, noise=0.1)
    assert noisy.shared_draw_key() != base.shared_draw_key()
    assert synthetic.OverlapWorld(4, 5, 0.5, mix=True).shared_draw_key() != base.shared_draw_key()
    a, b = synthetic.table4_world(0.2, dim=5), synthetic.table4_world(0.8, dim=5)
    da, db = a.sample(50, seed=3), b.sample(50, seed=3)
    for k in a.names:
        assert (da[k] == db[k]).all()  # the promise the key makes
    z = a.sample_latent(50, seed=3)
    assert (a.sample_from_latent(z, seed=3).y == da.y).all()


def test_a_world_that_samples_otherwise_shares_nothing():
    class Other(synthetic.OverlapWorld):
        def sample(self, n, seed=None):
            return super().sample(n, seed)

    assert Other(4, 5, 0.5).shared_draw_key() is None


def test_shared_draws_are_bounded():
    shared = SharedWork(max_bytes=100)
    shared.hold(("a",), "A", 60)
    shared.hold(("b",), "B", 60)
    assert shared.draw(("a",)) is None and shared.draw(("b",)) == "B"


MULTI_WORLD_SPEC = """
name = "multi"
[world]
kind = "overlap"
n_modalities = 2
dim = 3
overlap = [0.8, 0.5, 0.2, 0.0]
[[learner]]
kind = "linear"
[grid]
subsets = "all"
m = [20]
seeds = 1
"""


@pytest.mark.parametrize("rerun", [False, True])
def test_a_multi_world_spec_reads_the_record_file_once(tmp_path, monkeypatch, rerun):
    spec = parse_spec(tomllib.loads(MULTI_WORLD_SPEC))
    assert len(spec.worlds) == 4
    if rerun:
        run_spec(spec, out=tmp_path, device="cpu", progress=False)
    reads = []
    real = RecordStore._load

    def counted(self, path):
        reads.append(path.name)
        real(self, path)

    monkeypatch.setattr(RecordStore, "_load", counted)
    run_spec(spec, out=tmp_path, device="cpu", progress=False)
    assert reads == (["records.jsonl"] if rerun else [])


def _count_record_file_reads(monkeypatch):
    """Every opening of a record file for reading, by any code path (builtins.open and
    os.open both counted), as a list of file names."""
    import builtins
    import os

    reads = []
    real_open, real_os_open = builtins.open, os.open

    def is_record_file(path) -> bool:
        name = os.path.basename(os.fspath(path)) if isinstance(path, str | os.PathLike) else ""
        return name.startswith("records") and name.endswith(".jsonl")

    def counted_open(file, mode="r", *args, **kw):
        if is_record_file(file) and not any(c in mode for c in "wax+"):
            reads.append(os.path.basename(os.fspath(file)))
        return real_open(file, mode, *args, **kw)

    def counted_os_open(path, flags, *args, **kw):
        if is_record_file(path) and flags & (os.O_WRONLY | os.O_RDWR) == 0:
            reads.append(os.path.basename(os.fspath(path)))
        return real_os_open(path, flags, *args, **kw)

    monkeypatch.setattr(builtins, "open", counted_open)
    monkeypatch.setattr(os, "open", counted_os_open)
    return reads


@pytest.mark.parametrize("rerun", [False, True])
def test_a_multi_world_spec_opens_the_record_file_for_reading_once(tmp_path, monkeypatch, rerun):
    """Counted at the file system (any code path), not at one method: a series of four
    worlds reads the record file once when it exists, and never when it does not."""
    spec = parse_spec(tomllib.loads(MULTI_WORLD_SPEC))
    if rerun:
        run_spec(spec, out=tmp_path, device="cpu", progress=False)
    reads = _count_record_file_reads(monkeypatch)
    table = run_spec(spec, out=tmp_path, device="cpu", progress=False)
    assert len(table) == 4 * 3  # four worlds, three subsets: every run present
    assert reads == (["records.jsonl"] if rerun else [])


def test_the_read_counter_sees_a_store_per_world(tmp_path, monkeypatch):
    """Negative control: without the shared store, each world's sweep reads the file, and
    the counter says so (four worlds, three reads after the first world wrote it)."""
    spec = parse_spec(tomllib.loads(MULTI_WORLD_SPEC))
    reads = _count_record_file_reads(monkeypatch)
    for world in spec.worlds:
        sweep(
            world,
            spec.learners,
            spec.subsets,
            spec.m,
            spec.seeds,
            device="cpu",
            progress=False,
            out=tmp_path,
        )
    assert reads == ["records.jsonl"] * 3
