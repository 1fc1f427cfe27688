"""Training recipes (solver, momentum, per-model clipping): batched == per-model loop, no
coupling between models, defaults that leave earlier learners and their run ids alone."""

import pytest
import torch
from helpers import assert_batched_equals_loop, setup_models

from mmtheory.core.subsets import parse_subset
from mmtheory.engine import train_batched
from mmtheory.experiments.grid import run_id
from mmtheory.models import Learner
from mmtheory.models.optim import clip_per_model
from mmtheory.models.params import HEAD, bias, stack_params

RECIPES = [
    Learner("late_fusion", solver="sgd", momentum=0.9, lr=0.05, clip_norm=0.5, latent_dim=3),
    Learner(
        "late_fusion",
        encoder="mlp",
        solver="rmsprop",
        momentum=0.5,
        lr=0.01,
        clip_norm=1.0,
        latent_dim=3,
        hidden=4,
        batch_size=9,
    ),
]


@pytest.mark.parametrize("learner", RECIPES, ids=lambda lrn: lrn.solver)
def test_recipe_batched_equals_per_model_loop(learner):
    learner = Learner(**{**learner.__dict__, "steps": 10})
    assert_batched_equals_loop(learner, "classification", *setup_models("classification", learner))


def _model_grads(params, plan, g, s):
    """Model (g, s)'s gradients, in slot order."""
    out = []
    for slot in sorted(params):
        grad = params[slot].grad
        if not slot.per_modality:
            out.append(grad[g, s])
            continue
        members = plan.members(plan.names.index(slot.modality))
        if s in members:
            out.append(grad[g, members.index(s)])
    return out


def test_clipping_takes_each_models_own_norm():
    """Clipping equals torch's clip_grad_norm_ on each model alone; a model with a huge
    gradient does not shrink its neighbours' (a global norm would)."""
    lrn = Learner("late_fusion", latent_dim=2)
    world, subs, datas, plan, inits, xs, y = setup_models("classification", lrn)
    params = stack_params(inits, plan, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(0)
    for t in params.values():
        t.grad = torch.randn(t.shape, generator=gen, dtype=torch.float64)
    params[bias(HEAD)].grad[0, 0] *= 1e6  # one model explodes
    params[bias(HEAD)].grad[1, 1] *= 1e-6  # another is far below the limit
    before = {k: v.grad.clone() for k, v in params.items()}
    limit = 2.0
    clip_per_model(params, plan, limit)
    for g in range(2):
        for s in range(plan.S):
            solo = []
            for grad in _model_grads({k: _Grad(v) for k, v in before.items()}, plan, g, s):
                leaf = torch.zeros_like(grad, requires_grad=True)
                leaf.grad = grad.clone()
                solo.append(leaf)
            torch.nn.utils.clip_grad_norm_(solo, limit)
            for got, want in zip(_model_grads(params, plan, g, s), solo):
                assert torch.allclose(got, want.grad, rtol=1e-12, atol=0), (g, s)
    # the exploding model did not shrink the others: model (0, 1) is clipped by its own norm
    norm = torch.sqrt(sum(v.pow(2).sum() for v in _model_grads(params, plan, 0, 1)))
    assert float(norm) == pytest.approx(limit, rel=1e-6)


class _Grad:
    """A stand-in leaf whose ``.grad`` is a saved gradient."""

    def __init__(self, grad):
        self.grad = grad


def test_new_settings_keep_old_numbers_and_run_ids():
    """momentum 0, no clipping and no init_name are the old learner: same settings, same
    run id, and 'sgd' trains exactly as 'gd'."""
    old = Learner("late_fusion", solver="gd", lr=0.05, steps=8, latent_dim=2)
    assert set(old.settings()) & {"momentum", "clip_norm", "init_name"} == set()
    same = Learner("late_fusion", solver="gd", lr=0.05, steps=8, latent_dim=2, momentum=0.0)
    sub = parse_subset("all", ("m1", "m2"))
    assert run_id("w", old, sub, 10, 0, {}) == run_id("w", same, sub, 10, 0, {})
    other = Learner("late_fusion", solver="gd", lr=0.05, steps=8, latent_dim=2, clip_norm=1.0)
    assert run_id("w", old, sub, 10, 0, {}) != run_id("w", other, sub, 10, 0, {})
    sgd = Learner("late_fusion", solver="sgd", lr=0.05, steps=8, latent_dim=2)
    res = []
    for lrn in (old, sgd):
        world, subs, datas, plan, inits, xs, y = setup_models("classification", lrn, G=1)
        res.append(
            train_batched(lrn, plan, xs, y, inits, task="classification", dtype=torch.float64)
        )
    for key, v in res[0].params.items():
        assert torch.equal(res[1].params[key], v)


def test_init_name_shares_initial_weights_across_labels():
    from mmtheory.models import init_model

    a = Learner("late_fusion", latent_dim=2, name="a", init_name="shared")
    b = Learner("late_fusion", latent_dim=2, name="b", init_name="shared", method="mimo")
    assert a.init_stream == b.init_stream == "shared"
    assert Learner("late_fusion", name="c").init_stream == "c"
    sub = parse_subset("all", ("m1", "m2"))
    ia = init_model(a, sub, {"m1": 3, "m2": 2}, 2, key=("init", a.init_stream))
    ib = init_model(b, sub, {"m1": 3, "m2": 2}, 2, key=("init", b.init_stream))
    for key, v in ia.items():
        assert torch.equal(ib[key], v)  # the fused model; MIMO's heads are drawn after it


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"solver": "adam", "momentum": 0.9}, "momentum needs solver"),
        ({"solver": "sgd", "momentum": 1.0}, "momentum must be a finite number in"),
        ({"solver": "sgd", "clip_norm": 0.0}, "clip_norm"),
        ({"solver": "nope"}, "solver must be one of"),
    ],
)
def test_recipe_settings_are_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        Learner("late_fusion", **fields)
