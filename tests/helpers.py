"""Helpers shared by several test modules (on the test path via pytest's ``pythonpath``)."""

from __future__ import annotations

import torch

import synthetic
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import train_batched
from mmtheory.models import ModelPlan, forward, init_model
from mmtheory.reference import train_loop


def setup_models(task, learner, G=2, m=25, dims=None):
    dims = dims or (4, 3, 5)
    if task == "classification":
        world = synthetic.NonlinearWorld(dims, latent_dim=2, n_classes=3)
        out_dim = 3
    else:
        world = synthetic.LinearWorld(dims, latent_dim=2, output_dim=2)
        out_dim = 2
    subs = all_subsets(world.names)
    datas = [world.sample(m, seed=g) for g in range(G)]
    plan = ModelPlan(world.names, tuple(world.dims.values()), tuple(subs), out_dim)
    inits = [
        [
            init_model(learner, s, world.dims, out_dim, key=("t", g, str(s)), dtype=torch.float64)
            for s in subs
        ]
        for g in range(G)
    ]
    xs = [torch.stack([d[k] for d in datas]) for k in world.names]
    y = torch.stack([d.y for d in datas])
    if task == "regression":
        y = y.double()
    return world, subs, datas, plan, inits, xs, y


def assert_batched_equals_loop(learner, task, world, subs, datas, plan, inits, xs, y):
    """Train every (group, subset) model batched and one by one (``train_loop``, written
    independently), from the same initial parameters and minibatch order; compare outputs."""
    res = train_batched(
        learner,
        plan,
        xs,
        y,
        inits,
        task=task,
        dtype=torch.float64,
        batch_keys=[("b", g) for g in range(len(datas))],
    )
    with torch.no_grad():
        batched_out = forward(learner, res.params, xs, plan)
    for g in range(len(datas)):
        for s, sub in enumerate(subs):
            x = {k: xs[i][g] for i, k in enumerate(world.names)}
            model = train_loop(
                learner, sub, x, y[g], inits[g][s], task=task, batch_key=("b", g), dims=world.dims
            )
            with torch.no_grad():
                loop_out = model(x)
            # float64, identical arithmetic up to summation order: 1e-9 is ~1e6 ulps of slack
            assert torch.allclose(batched_out[g, s], loop_out, atol=1e-9, rtol=1e-9), (g, str(sub))


SHARD_SPEC = """
name = "shards"
[world]
kind = "linear"
dims = [4, 4, 4]
latent_dim = 2
rho = [0.0, 0.5]
[[learner]]
kind = "linear"
[[learner]]
kind = "late_fusion"
latent_dim = 3
steps = 40
[grid]
subsets = "all"
m = [30, 60]
seeds = 2
[estimation]
n_test = 500
n_refit = 500
n_eval = 500
"""
