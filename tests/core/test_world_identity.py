"""World identity is canonical: the same world however it is written gives the same id,
the same run ids and the same numbers; params() lists every constructor argument."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

import synthetic
from mmtheory import sweep
from mmtheory.core.subsets import all_subsets
from mmtheory.experiments.grid import plan_runs
from mmtheory.experiments.spec import parse_spec
from mmtheory.models import resolve_learners

SPELLINGS = [
    # (one world, the same world written another way)
    (
        synthetic.OverlapWorld(4, 100, 0.5),
        synthetic.OverlapWorld(n_modalities=4, dim=100, overlap=0.5),
    ),
    (synthetic.OverlapWorld(), synthetic.OverlapWorld(4, 100, 0.5, noise=0.0, mix=False, seed=0)),
    (synthetic.OverlapWorld(3, 5, 1), synthetic.OverlapWorld(3, 5, 1.0)),
    (synthetic.LinearWorld((4, 4), noise=0.5), synthetic.LinearWorld([4, 4], noise=[0.5, 0.5])),
    (
        synthetic.LinearWorld((4, 4), rho=0),
        synthetic.LinearWorld((4, 4), rho=0.0, names=["m1", "m2"]),
    ),
    (synthetic.iemocap_like(), synthetic.LinearWorld(**synthetic.presets.IEMOCAP_LIKE)),
    (synthetic.table4_world(0.2), synthetic.OverlapWorld(4, 100, 0.2)),
    (synthetic.NonlinearWorld((8, 8)), synthetic.NonlinearWorld([8, 8], rho=0.5, scale=3)),
    (synthetic.SequenceWorld(), synthetic.SequenceWorld(steps=8, ramp=0.7, noise=1)),
    (
        synthetic.GaussianPairWorld(2, 1, 0.5),
        synthetic.GaussianPairWorld([2.0], sigma_b=[1], rho=0.5, names=["A", "B"]),
    ),
]


@pytest.mark.parametrize("a, b", SPELLINGS, ids=lambda w: type(w).__name__)
def test_same_world_same_identity(a, b):
    assert a.identity() == b.identity() and a.world_id == b.world_id


def test_different_worlds_differ():
    assert (
        synthetic.OverlapWorld(overlap=0.5).world_id != synthetic.OverlapWorld(overlap=0.6).world_id
    )
    a = synthetic.LinearWorld((4, 4), label_noise=0.1)
    b = synthetic.LinearWorld((4, 4), label_noise=2.0)
    assert a.world_id != b.world_id


@pytest.mark.parametrize("kind", sorted(synthetic.WORLD_KINDS))
def test_params_rebuild_the_world_and_name_every_argument(kind):
    required = {"table4": {"overlap": 0.5}}  # the one kind without a default for everything
    world = synthetic.WORLD_KINDS[kind](**required.get(kind, {}))
    cls = type(world)
    assert cls(**world.params()).identity() == world.identity()
    signature = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(world.params()) == signature


def test_toml_and_python_give_the_same_run_ids_and_numbers():
    doc = {
        "world": {"kind": "linear", "dims": [4, 4], "latent_dim": 2, "rho": 0},
        "learner": {"kind": "late_fusion", "latent_dim": 2, "steps": 5},
    }
    spec = parse_spec(doc)
    python = synthetic.LinearWorld((4, 4), latent_dim=2, rho=0.0)
    assert spec.worlds[0].identity() == python.identity()
    learners = resolve_learners(spec.learners)
    subs = all_subsets(python.names)
    ids = [r.run_id for r in plan_runs(python.identity(), learners, subs, [20], [0], {})]
    ids_toml = [
        r.run_id for r in plan_runs(spec.worlds[0].identity(), learners, subs, [20], [0], {})
    ]
    assert ids == ids_toml
    kw = dict(
        learner=spec.learners, m=[20], seeds=1, progress=False, n_test=200, n_refit=200, n_eval=200
    )
    a = sweep(spec.worlds[0], **kw).drop(columns="wall_s")
    b = sweep(python, **kw).drop(columns="wall_s")
    pd.testing.assert_frame_equal(a, b)
