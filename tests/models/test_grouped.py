"""Late fusion's grouped layers (one batched GEMM per layer over every encoder instance)
train the same models as the per-modality layers they replace and as the per-model loop."""

import pytest
import torch
from helpers import assert_batched_equals_loop

import synthetic
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import train_batched
from mmtheory.models import Learner, ModelPlan, init_model
from mmtheory.models.forward import (
    GroupedLatents,
    late_latents,
    per_modality_layers,
    scatter_instances,
)

LEARNERS = {
    "mlp": Learner("late_fusion", encoder="mlp", solver="adam", steps=12, latent_dim=3, hidden=5),
    "mlp-sum-tanh": Learner(
        "late_fusion", encoder="mlp", fusion="sum", activation="tanh", steps=12, latent_dim=3
    ),
    "deep": Learner(
        "late_fusion", encoder="mlp", depth=3, head_layers=1, steps=12, latent_dim=3, hidden=4
    ),
    "linear-encoder": Learner("late_fusion", encoder="linear", steps=12, latent_dim=3),
}


def _setup(learner, dims, G=2, m=20):
    world = synthetic.NonlinearWorld(dims, latent_dim=2, n_classes=3)
    subs = all_subsets(world.names)
    datas = [world.sample(m, seed=g) for g in range(G)]
    plan = ModelPlan(world.names, tuple(world.dims.values()), tuple(subs), 3)
    inits = [
        [
            init_model(learner, s, world.dims, 3, key=("g", g, str(s)), dtype=torch.float64)
            for s in subs
        ]
        for g in range(G)
    ]
    xs = [torch.stack([d[k] for d in datas]).double() for k in world.names]
    y = torch.stack([d.y for d in datas])
    return world, subs, datas, plan, inits, xs, y


@pytest.mark.parametrize("dims", [(4, 4, 4), (4, 3, 5)], ids=["equal-dims", "unequal-dims"])
@pytest.mark.parametrize("name", LEARNERS)
def test_grouped_layers_train_the_models_of_the_per_modality_layers(name, dims):
    """float64: the grouped GEMMs do the per-modality layers' arithmetic (on this CPU
    build bit for bit; 1e-12 allows another BLAS's kernel choice for another batch count,
    after 12 Adam steps; a wrong instance order or a dropped modality is off by O(1))."""
    learner = LEARNERS[name]
    _, _, _, plan, inits, xs, y = _setup(learner, dims)
    new = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    with per_modality_layers():
        old = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    assert new.params.keys() == old.params.keys()
    for slot in new.params:
        torch.testing.assert_close(new.params[slot], old.params[slot], rtol=1e-12, atol=1e-12)


def test_grouped_latents_are_the_per_modality_latents():
    learner = LEARNERS["deep"]
    _, _, _, plan, inits, xs, y = _setup(learner, (4, 4, 4))
    params = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    grouped = late_latents(learner, params.params, xs, plan)
    with per_modality_layers():
        plain = late_latents(learner, params.params, xs, plan)
    # the comparison is between two different code paths (a negative control on the switch)
    assert isinstance(grouped, GroupedLatents) and not isinstance(plain, GroupedLatents)
    assert grouped.h.shape[1] == sum(len(plan.members(k)) for k in range(plan.K))
    for (k, idx, h), (k0, idx0, h0) in zip(grouped, plain, strict=True):
        assert k == k0 and torch.equal(idx, idx0)
        torch.testing.assert_close(h, h0, rtol=1e-13, atol=1e-13)


def test_grouped_engine_equals_the_per_model_loop_on_equal_dims():
    """The equal-dims branch (one GEMM for layer 1 too) against the independent loop."""
    learner = LEARNERS["mlp"]
    assert_batched_equals_loop(learner, "classification", *_setup(learner, (4, 4, 4)))


def test_grouped_layers_name_a_modality_whose_data_do_not_fit():
    learner = LEARNERS["mlp"]
    _, _, _, plan, inits, xs, y = _setup(learner, (4, 4, 4))
    params = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    five = torch.zeros(*xs[1].shape[:2], 5, dtype=torch.float64)  # 5 features, weights 4
    with pytest.raises(ValueError, match="modality 'm2'.*does not fit"):  # unequal dims
        late_latents(learner, params.params, [xs[0], five, xs[2]], plan)
    with pytest.raises(ValueError, match="modality 'm1'.*does not fit"):  # equal dims
        late_latents(learner, params.params, [five, five, five], plan)


def test_the_per_modality_scatter_adds_in_the_serial_order():
    """The CUDA scatter (one ``index_add`` per modality, no racing atomic adds) forms each
    model's sum in the CPU's serial order: bit for bit the single call's. Negative
    control: a different order of the same addends is caught at rounding level."""
    learner = LEARNERS["mlp"]
    _, _, _, plan, inits, xs, y = _setup(learner, (4, 3, 5))
    params = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    latents = late_latents(learner, params.params, xs, plan)
    values = (
        latents.h * 1e3
        + torch.linspace(0, 1, latents.h.shape[1], dtype=torch.float64)[None, :, None, None]
        * torch.pi
    )
    base = torch.full((*values.shape[:1], plan.S, *values.shape[2:]), 1 / 3, dtype=torch.float64)
    serial = scatter_instances(base.clone(), latents, values, serial=True)
    split = scatter_instances(base.clone(), latents, values, serial=False)
    assert torch.equal(serial, split)
    starts = [0]
    for _, _, h in latents:
        starts.append(starts[-1] + h.shape[1])
    reversed_order = base.clone()
    for (_, idx, h), start in reversed(list(zip(latents, starts))):
        reversed_order.index_add_(1, idx, values[:, start : start + h.shape[1]])
    assert not torch.equal(serial, reversed_order)
    torch.testing.assert_close(serial, reversed_order, rtol=1e-12, atol=1e-10)  # rounding only
