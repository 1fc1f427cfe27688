"""The runner's cache of per-seed evaluation samples: what it keeps between training chunks
(``Runner.release_samples``), that it stays under its cap, and that keeping samples never
changes a number."""

from types import SimpleNamespace

import numpy as np
import torch

import mmtheory as mt
import synthetic
from mmtheory.core.data import MultiModalData
from mmtheory.experiments import runner as runner_mod
from mmtheory.experiments.runner import Runner, _nbytes


def _held(seeds: list[int], rows: int = 1000) -> SimpleNamespace:
    """A runner's cache with every kind of sample for ``seeds`` (each seed: 3 x rows x 16
    float64 features, raw and stacked in float32), and a large budget."""
    cache: dict = {("null", 0): 1.0}
    for s in seeds:
        for kind in ("test", "refit", "evaluation"):
            x = np.zeros((rows, 16))
            cache[(kind, s)] = MultiModalData({"a": x}, np.zeros(rows))
            cache[(kind, s, torch.float32)] = ([torch.zeros(1, rows, 16)], torch.zeros(1, rows))
    return SimpleNamespace(_cache=cache, memory_budget=2.0**31)


#: Bytes of one seed's samples in ``_held``: per kind the raw features (float64) and labels
#: (float64 tensor), the stacked features and labels (float32).
ONE_SEED = 3 * (1000 * 16 * 8 + 1000 * 8 + 1000 * 16 * 4 + 1000 * 4)


def _seeds(ns) -> set:
    return {k[1] for k in ns._cache if k[0] in ("test", "refit", "evaluation")}


def test_nbytes_counts_every_array():
    ns = _held([0])
    assert sum(_nbytes(v) for k, v in ns._cache.items() if k[0] != "null") == ONE_SEED


def test_release_keeps_the_lowest_seeds_that_fit(monkeypatch):
    one_seed = ONE_SEED
    monkeypatch.setattr(runner_mod, "SAMPLE_CACHE_BYTES", int(2.5 * one_seed))
    ns = _held([3, 0, 11, 2])
    Runner.release_samples(ns)
    assert _seeds(ns) == {0, 2}  # the two lowest fit; 3 and 11 are drawn again
    assert ("null", 0) in ns._cache  # scalars stay
    held = sum(_nbytes(v) for k, v in ns._cache.items() if k[0] != "null")
    assert held <= runner_mod.SAMPLE_CACHE_BYTES
    # negative control: a cap below one seed keeps nothing, a large one everything
    monkeypatch.setattr(runner_mod, "SAMPLE_CACHE_BYTES", one_seed - 1)
    Runner.release_samples(ns)
    assert _seeds(ns) == set()
    ns = _held([0, 1])
    monkeypatch.setattr(runner_mod, "SAMPLE_CACHE_BYTES", 2**40)
    Runner.release_samples(ns)
    assert _seeds(ns) == {0, 1}
    ns.memory_budget = 8 * one_seed  # an eighth of the budget caps it too
    Runner.release_samples(ns)
    assert _seeds(ns) == {0}


def test_kept_samples_change_no_number(monkeypatch):
    """A sweep over three sizes and two seeds gives the same numbers whether each chunk
    draws its seeds' samples again (cap 0) or finds them kept."""
    learner = {
        "kind": "late_fusion",
        "encoder": "linear",
        "latent_dim": 4,
        "solver": "adam",
        "lr": 0.01,
        "steps": 10,
        "batch_size": 64,
    }

    def run():
        df = mt.sweep(
            synthetic.iemocap_like(), learner, "all", m=[13, 40], seeds=2, device="cpu",
            n_test=200, n_refit=200, n_eval=200, progress=False,
        )  # fmt: skip
        return df.drop(columns=["wall_s"]).sort_values(["subset", "m", "seed"])

    monkeypatch.setattr(runner_mod, "SAMPLE_CACHE_BYTES", 0)
    drawn = run()
    monkeypatch.setattr(runner_mod, "SAMPLE_CACHE_BYTES", 2**28)
    kept = run()
    num = drawn.select_dtypes("number").columns
    np.testing.assert_array_equal(drawn[num].to_numpy(), kept[num].to_numpy())
