"""Work shared across the sweeps of a series: features drawn and factored once for worlds
that differ only in their target (the same numbers, bit for bit), record files read once."""

import tomllib

import numpy as np
import pandas as pd
import pytest
import torch

import synthetic
from mmtheory.engine import closed_form
from mmtheory.experiments import SharedWork, parse_spec, run_spec, sweep
from mmtheory.experiments.records import RecordStore

OVERLAPS = (1.0, 0.5, 0.0)


def _grid(shared, out=None, noise=0.0):
    tables = [
        sweep(
            synthetic.OverlapWorld(4, 5, w, noise=noise),
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
    """Calls building Gram factors, from features (``__init__``) or from a latent."""
    calls = []
    real, real_latent = closed_form.GramFactors.__init__, closed_form.GramFactors.from_latent

    def counted(self, *args, **kw):
        calls.append("features")
        real(self, *args, **kw)

    def counted_latent(*args, **kw):
        calls.append("latent")
        return real_latent(*args, **kw)

    monkeypatch.setattr(closed_form.GramFactors, "__init__", counted)
    monkeypatch.setattr(closed_form.GramFactors, "from_latent", staticmethod(counted_latent))
    return calls


@pytest.mark.parametrize(
    "noise, route",
    [(0.0, "latent"), (0.3, "features")],  # noise-free: the latent's moments; noisy: features
)
def test_shared_draws_give_bit_identical_results_and_factor_once_per_seed(
    monkeypatch, noise, route
):
    calls = _count_factorisations(monkeypatch)
    old = _grid(None, noise=noise)
    assert calls == [route] * (len(OVERLAPS) * 2)  # every (world, seed) drew and factored
    calls.clear()
    new = _grid(SharedWork(), noise=noise)
    assert calls == [route] * 2  # once per seed, for all three worlds
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

        def bayes_risk(self):  # its own truth (required of a world that draws otherwise)
            return super().bayes_risk()

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


def _worlds_with_and_without_latent_maps():
    offer = [
        synthetic.table4_world(0.5, dim=4),
        synthetic.OverlapWorld(3, 4, 0.3, mix=True),
        synthetic.LinearWorld((3, 5), latent_dim=2, noise=0.0, label_noise=0.0, output_dim=2),
    ]
    refuse = [
        synthetic.OverlapWorld(3, 4, 0.3, noise=0.1),  # feature noise
        synthetic.LinearWorld((3, 5), latent_dim=2, noise=0.0, label_noise=0.2),  # label noise
        synthetic.LinearWorld((3, 5), latent_dim=2, noise=0.0, task="classification"),
    ]
    return offer, refuse


def test_latent_maps_are_offered_exactly_when_samples_are_linear_in_the_latent():
    """The promise ``latent_linear_maps`` makes (x = T z, y = B z for every sample), checked
    on the worlds that offer it; worlds with noise, or classification, must refuse."""
    offer, refuse = _worlds_with_and_without_latent_maps()
    for world in offer:
        T, B = world.latent_linear_maps()
        z = world.sample_latent(40, seed=5)
        data = world.sample(40, seed=5)
        x = torch.cat([torch.as_tensor(data[k]) for k in world.names], dim=1).numpy()
        np.testing.assert_allclose(x, z @ T.T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(data.y).reshape(40, -1), z @ B.T, atol=1e-12)
    for world in refuse:
        assert world.latent_linear_maps() is None


def test_a_world_with_other_features_is_not_taken_for_linear():
    class Squared(synthetic.OverlapWorld):  # overrides _features without declaring it linear
        def _features(self, z, name):
            return super()._features(z, name) ** 2

    assert Squared(4, 5, 0.5).latent_linear_maps() is None
    assert synthetic.OverlapWorld(4, 5, 0.5).latent_linear_maps() is not None


def test_a_world_stays_inspectable_after_its_oracles_ran():
    """The oracles' memo must not break ``dir`` (a tuple key in ``__dict__`` did) and its
    arrays are read-only, as the second moments are."""
    world = synthetic.LinearWorld()
    sweep(world, "linear", "all", m=[20], seeds=1, device="cpu", progress=False)
    assert "eta_inf" in dir(world)
    _, V, _ = world._sigma_eigh(None)
    with pytest.raises(ValueError):
        V[0, 0] = 1.0
