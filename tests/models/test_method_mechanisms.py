"""Each method's mechanism does what it is for (with a case where it must not)."""

import pytest
import torch

import synthetic
from mmtheory.core.subsets import parse_subset
from mmtheory.engine import Batches, step_context, train_batched
from mmtheory.models import Learner, ModelPlan, init_model, stack_params
from mmtheory.models.params import ENCODER, HEAD, weight


def _imbalance(m=400, seed=0):
    world = synthetic.imbalance_world()
    sub = parse_subset("all", world.names)
    plan = ModelPlan(world.names, tuple(world.dims.values()), (sub,), world.output_dim)
    data = world.sample(m, seed=seed)
    return world, sub, plan, [data[k][None].double() for k in world.names], data.y[None]


def _encoder_moves(fields, steps, world, sub, plan, xs, y):
    """How far each encoder's weights move in ``steps`` steps, and the diagnostics."""
    lrn = Learner.from_fields(
        {
            "kind": "late_fusion",
            "latent_dim": 4,
            "method": "ogm_ge",
            "ge": False,
            "modulation_window": 1.0,
            "steps": steps,
            **fields,
        }
    )
    init = [
        [init_model(lrn, sub, world.dims, world.output_dim, key=("mech",), dtype=torch.float64)]
    ]
    res = train_batched(lrn, plan, xs, y, init, task="classification", dtype=torch.float64)
    moved = {
        k: float(
            (res.params[weight(ENCODER, 1, k)][0, 0] - init[0][0][weight(ENCODER, 1, k)]).norm()
        )
        for k in world.names
    }
    return moved, {k: float(v[0, 0]) for k, v in res.diagnostics.items()}


def test_ogm_under_sgd_slows_each_encoder_by_its_coefficient_and_adam_cancels_it():
    """Plain SGD: an encoder's displacement shrinks by the mean coefficient of its modality
    (the gradient barely turns in 30 small steps). Adam divides by the running RMS of the
    scaled gradient: its first step is sign(g) whatever the coefficient (exact
    cancellation), and later steps keep only the coefficient's changes. alpha = 0 (no
    modulation) moves nothing relative to itself: the negative control."""
    data = _imbalance(m=200)
    sgd = {"solver": "sgd", "lr": 0.05}
    base, _ = _encoder_moves({**sgd, "alpha": 0.0}, 20, *data)
    mod, diag = _encoder_moves({**sgd, "alpha": 1.0}, 20, *data)
    slowed = 0
    for k in base:
        coeff = diag[f"ogm_coeff_{k}"]
        assert mod[k] / base[k] == pytest.approx(coeff, abs=0.03), k
        slowed += coeff < 0.9
    assert slowed >= 1  # the test exercises modulation
    adam = {"solver": "adam", "lr": 0.01}
    one_base, _ = _encoder_moves({**adam, "alpha": 0.0}, 1, *data)
    one_mod, one_diag = _encoder_moves({**adam, "alpha": 1.0}, 1, *data)
    for k in one_base:
        # coefficient cancelled: lr * g / (|g| + eps) is g's sign up to Adam's eps = 1e-8
        assert one_mod[k] == pytest.approx(one_base[k], rel=1e-4)
    assert min(one_diag.values()) < 0.9
    base_a, _ = _encoder_moves({**adam, "alpha": 0.0}, 20, *data)
    mod_a, diag_a = _encoder_moves({**adam, "alpha": 1.0}, 20, *data)
    k = min(diag_a, key=diag_a.get).removeprefix("ogm_coeff_")  # the most modulated
    assert mod_a[k] / base_a[k] > diag_a[f"ogm_coeff_{k}"] + 0.2  # far less slowed than c
    none, _ = _encoder_moves({**sgd, "alpha": 1.0, "modulation_window": 0.0}, 20, *data)
    assert none == base  # outside the window: plain training


def test_i2m2_warm_start_trains_the_fused_model_exactly_as_erm():
    """The warm start's inter-modality model is ERM's model from the same weights."""
    world, sub, plan, xs, y = _imbalance(m=100)
    i2m2 = Learner.from_fields(
        {
            "kind": "late_fusion",
            "latent_dim": 3,
            "method": "i2m2",
            "warm_steps": 7,
            "solver": "sgd",
            "lr": 0.1,
            "clip_norm": 1.0,
        }
    )
    erm = Learner("late_fusion", latent_dim=3, solver="sgd", lr=0.1, clip_norm=1.0, steps=7)
    init = [[init_model(i2m2, sub, world.dims, world.output_dim, key=("w",), dtype=torch.float64)]]
    params = stack_params(init, plan, "cpu", torch.float64)
    ctx = step_context(i2m2, plan, "classification", [("k",)], "cpu")
    i2m2.method.prepare(ctx, params, xs, y, Batches(100, None, [("k",)], 1, "cpu"))
    fused_init = [[{s: t for s, t in init[0][0].items() if s.part in (ENCODER, HEAD)}]]
    ref = train_batched(erm, plan, xs, y, fused_init, task="classification", dtype=torch.float64)
    for slot, t in ref.params.items():
        assert torch.allclose(params[slot].detach(), t, rtol=1e-12, atol=1e-14), slot


def test_gblend_gives_a_noise_modality_no_weight_and_twins_equal_weights():
    """A modality of pure noise overfits without generalising: its branch gets ~0 weight.
    Two copies of one modality (negative control for any asymmetry) get equal weights."""
    gen = torch.Generator().manual_seed(0)
    m, C = 120, 3
    y = torch.randint(0, C, (m,), generator=gen)
    signal = torch.nn.functional.one_hot(y, C).double() * 2 + torch.randn(
        m, C, generator=gen, dtype=torch.float64
    )
    signal = torch.cat([signal, torch.randn(m, 5, generator=gen, dtype=torch.float64)], 1)
    noise = torch.randn(m, 30, generator=gen, dtype=torch.float64)
    names = ("a", "b", "noise")
    sub = parse_subset("all", names)
    plan = ModelPlan(names, (8, 8, 30), (sub,), C)
    lrn = Learner.from_fields(
        {
            "kind": "late_fusion",
            "latent_dim": 3,
            "method": "gblend",
            "steps": 1,
            "estimate_steps": 30,
            "lr": 0.05,
        }
    )
    init = init_model(lrn, sub, {"a": 8, "b": 8, "noise": 30}, C, key=("g",), dtype=torch.float64)
    # the twins start from the same weights too
    for s in list(init):
        if s.modality == "b":
            init[s] = init[s.__class__(s.part, s.layer, s.weight, "a")].clone()
    res = train_batched(
        lrn,
        plan,
        [signal[None], signal[None].clone(), noise[None]],
        y[None],
        [[init]],
        task="classification",
        dtype=torch.float64,
    )
    w = {k: float(v[0, 0]) for k, v in res.diagnostics.items()}
    assert w["gblend_w_a"] == pytest.approx(w["gblend_w_b"], rel=1e-9)
    assert w["gblend_w_noise"] < 0.05 * w["gblend_w_a"]
    assert sum(w.values()) == pytest.approx(1.0)


def test_umt_distillation_pulls_the_features_to_the_teachers():
    """UMT's student ends closer to its teachers' features than the same training without
    distillation, which is exactly ERM (negative control)."""
    world, sub, plan, xs, y = _imbalance(m=150)
    out = {}
    for distill in (0.0, 5.0):
        lrn = Learner.from_fields(
            {
                "kind": "late_fusion",
                "latent_dim": 3,
                "method": "ume_umt",
                "mode": "umt",
                "distill": distill,
                "steps": 30,
                "teacher_steps": 30,
                "lr": 0.05,
            }
        )
        init = [
            [init_model(lrn, sub, world.dims, world.output_dim, key=("u",), dtype=torch.float64)]
        ]
        out[distill] = (
            train_batched(lrn, plan, xs, y, init, task="classification", dtype=torch.float64),
            init,
            lrn,
        )
    erm = Learner("late_fusion", latent_dim=3, steps=30, lr=0.05)
    fused_init = [[{s: t for s, t in out[0.0][1][0][0].items() if s.part in (ENCODER, HEAD)}]]
    ref = train_batched(erm, plan, xs, y, fused_init, task="classification", dtype=torch.float64)
    for slot, t in ref.params.items():
        assert torch.allclose(out[0.0][0].params[slot], t, rtol=1e-12, atol=1e-14)

    # the teachers (trained identically in both runs) and the students' features
    from mmtheory.models.forward import late_latents
    from mmtheory.reference import train_loop

    model = train_loop(
        out[5.0][2],
        sub,
        {k: x[0] for k, x in zip(world.names, xs)},
        y[0],
        out[5.0][1][0][0],
        task="classification",
    )
    with torch.no_grad():
        teach = {k: model.uni_encoders[k](xs[i][0]) for i, k in enumerate(world.names)}
        dist = {}
        for distill, (res, _, lrn) in out.items():
            lat = {plan.names[k]: h[0, 0] for k, _, h in late_latents(lrn, res.params, xs, plan)}
            dist[distill] = sum(float((lat[k] - teach[k]).pow(2).mean()) for k in world.names)
    assert dist[5.0] < 0.5 * dist[0.0]
