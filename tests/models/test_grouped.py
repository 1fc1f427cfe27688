"""Late fusion's grouped layers (one batched GEMM per layer over every encoder instance)
train the same models as the per-modality layers they replace and as the per-model loop."""

import importlib

import pytest
import torch
from helpers import assert_batched_equals_loop

import synthetic
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import train_batched
from mmtheory.models import Learner, ModelPlan, forward, init_model, stack_params
from mmtheory.models.forward import (
    GroupedLatents,
    late_latents,
    per_modality_layers,
    scatter_instances,
    through_latents,
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


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="the claim is MKL's")
def test_grouped_first_layer_is_the_per_modality_arithmetic_bit_for_bit():
    """Equal dims (one bmm over every (group, modality)) and the per-modality layers form
    the same (S_k width, d) @ (d, m) products, so on MKL's CPU kernels the latents are
    equal bit for bit (module docstring) at sizes where a GEMM in the other orientation
    rounds differently (d = 100, m = 132 and 500 with 0.10.1's first version)."""
    learner = Learner("late_fusion", encoder="mlp", latent_dim=4, hidden=8, steps=1)
    names, dims, G = ("m1", "m2", "m3"), (100, 100, 100), 2
    subs = all_subsets(names)
    plan = ModelPlan(names, dims, tuple(subs), 3)
    width = dict(zip(names, dims))
    inits = [
        [init_model(learner, s, width, 3, key=("g", g, str(s)), dtype=torch.float64) for s in subs]
        for g in range(G)
    ]
    params = stack_params(inits, plan, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(1)
    for m in (132, 500):
        xs = [torch.randn(G, m, d, generator=gen, dtype=torch.float64) for d in dims]
        grouped = late_latents(learner, params, xs, plan)
        with per_modality_layers():
            plain = late_latents(learner, params, xs, plan)
        assert isinstance(grouped, GroupedLatents)
        for (_, _, h), (_, _, h0) in zip(grouped, plain, strict=True):
            assert torch.equal(h, h0)


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


#: Late fusion whose output collapses to composite maps x_k (W_k Wh_k) + b_k Wh_k
COLLAPSING = {
    "linear-encoder": LEARNERS["linear-encoder"],
    "ogm-ge": Learner("late_fusion", encoder="linear", latent_dim=3, method="ogm_ge"),
}
#: ... and late fusion that must not: a nonlinear encoder, summed latents, a deeper head, a
#: method with its own output
KEEPING = {
    "mlp": LEARNERS["mlp"],
    "sum": Learner("late_fusion", encoder="linear", fusion="sum", latent_dim=3),
    "head-layers": Learner("late_fusion", encoder="linear", head_layers=1, latent_dim=3),
    "i2m2": Learner("late_fusion", encoder="linear", latent_dim=3, method="i2m2"),
}


def _random_params(learner, dims, G=2):
    """Stacked parameters with every entry drawn (biases included: a dropped b_k Wh_k
    term would go unseen at the zero biases of an initialisation)."""
    _, _, _, plan, inits, xs, y = _setup(learner, dims, G=G)
    gen = torch.Generator().manual_seed(7)
    params = stack_params(inits, plan, "cpu", torch.float64)
    with torch.no_grad():
        for t in params.values():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype))
    return plan, params, xs, y


def _output_and_grads(learner, plan, params, xs, y):
    for t in params.values():
        t.grad = None
    out = forward(learner, params, xs, plan)
    loss = torch.nn.functional.cross_entropy(
        out.reshape(-1, out.shape[-1]), y[:, None].expand(-1, plan.S, -1).reshape(-1)
    )
    loss.backward()
    return out.detach(), {k: t.grad.clone() for k, t in params.items()}


@pytest.mark.parametrize("dims", [(4, 4, 4), (4, 3, 5)], ids=["equal-dims", "unequal-dims"])
@pytest.mark.parametrize("name", COLLAPSING)
def test_collapsed_late_fusion_is_the_latent_path(name, dims, monkeypatch):
    """Linear encoders and a linear head: the output formed from the composite maps and
    its gradients (autograd through W_k Wh_k and b_k Wh_k) are those of encoding then
    fusing, up to float64 rounding of sums of a few dozen O(1) products (1e-12). The
    collapse is checked to run (the comparison is between two code paths), and a composite
    without its bias term b_k Wh_k (a negative control) is off by O(1)."""
    fw = importlib.import_module("mmtheory.models.forward")
    learner = COLLAPSING[name]
    plan, params, xs, y = _random_params(learner, dims)
    calls = []
    real = fw._collapsed_late_fusion
    monkeypatch.setattr(
        fw, "_collapsed_late_fusion", lambda *a: calls.append(1) or real(*a), raising=True
    )
    out, grads = _output_and_grads(learner, plan, params, xs, y)
    assert calls, "the collapsed path did not run"
    with through_latents():
        out0, grads0 = _output_and_grads(learner, plan, params, xs, y)
    assert len(calls) == 1
    torch.testing.assert_close(out, out0, rtol=1e-12, atol=1e-12)
    for slot in grads0:
        torch.testing.assert_close(grads[slot], grads0[slot], rtol=1e-12, atol=1e-12)
    # negative control: the composite without its bias term
    shifts = {k: t for k, t in params.items() if k.part == "encoder" and not k.weight}
    with torch.no_grad():
        for t in shifts.values():
            t.zero_()
    no_shift = forward(learner, params, xs, plan).detach()
    assert (no_shift - out0).abs().max() > 0.1


@pytest.mark.parametrize("name", KEEPING)
def test_late_fusion_that_is_not_linear_end_to_end_keeps_its_latents(name, monkeypatch):
    """Negative control on the switch: a nonlinear encoder, summed latents, a deeper head
    and a method with its own output are formed through the latents."""
    fw = importlib.import_module("mmtheory.models.forward")
    learner = KEEPING[name]
    plan, params, xs, _ = _random_params(learner, (4, 3, 5))
    monkeypatch.setattr(fw, "_collapsed_late_fusion", None)  # calling it would raise
    forward(learner, params, xs, plan)
    with per_modality_layers():  # the old engine never collapses
        plan, params, xs, _ = _random_params(COLLAPSING["linear-encoder"], (4, 3, 5))
        forward(COLLAPSING["linear-encoder"], params, xs, plan)


def test_collapsed_late_fusion_trains_the_latent_paths_models():
    """Ten Adam steps in float64 through either path reach the same parameters up to
    rounding amplified by the steps (1e-9; a wrong gradient would be off by O(lr))."""
    learner = LEARNERS["linear-encoder"]
    _, _, _, plan, inits, xs, y = _setup(learner, (4, 3, 5))
    new = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    with through_latents():
        old = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    for slot in new.params:
        torch.testing.assert_close(new.params[slot], old.params[slot], rtol=1e-9, atol=1e-9)
