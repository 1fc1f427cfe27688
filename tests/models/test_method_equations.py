"""Each method against an independent transcription of its published equations (or of the
authors' code where we read it), on identical inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

import synthetic
from mmtheory.core.seeding import torch_generator
from mmtheory.core.subsets import parse_subset
from mmtheory.engine import step_context
from mmtheory.models import Learner, ModelPlan, init_model, stack_params
from mmtheory.models.methods.base import model_key
from mmtheory.models.methods.bogc import evidence_masses, laplace_last_layer_variance
from mmtheory.models.methods.gblend import gblend_weights
from mmtheory.models.methods.ogm_ge import OGMGE
from mmtheory.models.methods.ume_umt import ensemble_logits, umt_objective
from mmtheory.models.params import ENCODER, HEAD, bias, weight


def _two_modality_model(lrn, m=64, seed=0):
    world = synthetic.imbalance_world()
    sub = parse_subset("all", world.names)
    plan = ModelPlan(world.names, tuple(world.dims.values()), (sub,), world.output_dim)
    data = world.sample(m, seed=seed)
    xs = [data[k][None].double() for k in world.names]
    init = [[init_model(lrn, sub, world.dims, world.output_dim, key=("eq",), dtype=torch.float64)]]
    return world, sub, plan, data, xs, init


@pytest.mark.parametrize("ge", [False, True])
def test_ogm_ge_step_equals_the_authors_train_epoch(ge):
    """The authors' ``train_epoch`` (two modalities, concat fusion), transcribed: per-modality
    logits from the fused head's halves with b / 2, summed softmax scores, ratio, Eq. 10
    coefficient, then grad * coeff + N(0, sd(grad) + 1e-8) on the encoders' weights."""
    alpha = 0.9
    method = OGMGE(alpha=alpha, ge=ge)
    lrn = Learner("late_fusion", latent_dim=4, method=method)
    world, sub, plan, data, xs, init = _two_modality_model(lrn)
    a_name, v_name = world.names  # "strong" plays audio, "weak" visual
    params = stack_params(init, plan, "cpu", torch.float64)
    ctx = step_context(lrn, plan, "classification", [("k",)], "cpu")
    ctx.state = method.start(ctx)
    method.backward(ctx, params, xs, data.y[None])

    # --- the transcription, on nn.Linear modules built from the same weights
    p0 = init[0][0]
    enc = {
        k: torch.nn.Linear(*p0[weight(ENCODER, 1, k)].shape, dtype=torch.float64)
        for k in world.names
    }
    for k in world.names:
        enc[k].weight.data.copy_(p0[weight(ENCODER, 1, k)].T)
        enc[k].bias.data.copy_(p0[bias(ENCODER, 1, k)])
    fc_out = torch.nn.Linear(8, world.output_dim, dtype=torch.float64)
    fc_out.weight.data.copy_(torch.cat([p0[weight(HEAD, 0, k)] for k in world.names]).T)
    fc_out.bias.data.copy_(p0[bias(HEAD)])
    label = data.y
    a, v = enc[a_name](data[a_name].double()), enc[v_name](data[v_name].double())
    out = fc_out(torch.cat((a, v), dim=1))
    half = fc_out.weight.size(1) // 2
    out_v = torch.mm(v, fc_out.weight[:, half:].T) + fc_out.bias / 2
    out_a = torch.mm(a, fc_out.weight[:, :half].T) + fc_out.bias / 2
    F.cross_entropy(out, label).backward()
    out_v, out_a = out_v.detach(), out_a.detach()
    score_v = sum(F.softmax(out_v, dim=1)[i][label[i]] for i in range(out_v.size(0)))
    score_a = sum(F.softmax(out_a, dim=1)[i][label[i]] for i in range(out_a.size(0)))
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        coeff_v, coeff_a = 1 - math.tanh(alpha * float(F.relu(ratio_v))), 1.0
    else:
        coeff_a, coeff_v = 1 - math.tanh(alpha * float(F.relu(ratio_a))), 1.0
    assert min(coeff_a, coeff_v) < 1  # one modality dominates: its gradient is scaled
    # our streams: one per model, draws in the engine's (in, out) layout, slot order
    gen = torch_generator(0, "ogm-ge", *model_key(("k",), sub))
    for name, coeff in sorted([(a_name, coeff_a), (v_name, coeff_v)]):
        g = enc[name].weight.grad
        expected = g * coeff
        if ge:
            z = torch.randn(tuple(g.T.shape), generator=gen, dtype=torch.float64).T
            expected = expected + z * (g.std() + 1e-8)
        got = params[weight(ENCODER, 1, name)].grad[0, 0].T
        assert torch.allclose(got, expected, rtol=1e-12, atol=1e-14), name
        # biases: neither modulated nor noised (the original touches 4-d kernels only)
        assert torch.allclose(
            params[bias(ENCODER, 1, name)].grad[0, 0], enc[name].bias.grad, rtol=1e-12, atol=0
        )


def test_gblend_weights_by_hand():
    """w_b proportional to G_b / O_b^2 (the paper's Proposition with Delta G, Delta O between
    two checkpoints), normalised; a branch whose validation loss rose gets 0."""
    train0 = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    val0 = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    train_n = torch.tensor([0.2, 0.5, 0.6, 0.4], dtype=torch.float64)
    val_n = torch.tensor([0.6, 0.7, 1.2, 0.8], dtype=torch.float64)
    mask = torch.tensor([True, True, True, True])
    w = gblend_weights(train0, val0, train_n, val_n, mask)
    raw = [0.4 / 0.4**2, 0.3 / 0.2**2, 0.0, 0.2 / 0.4**2]  # G / O^2 by hand
    assert torch.allclose(w, torch.tensor(raw, dtype=torch.float64) / sum(raw), atol=1e-12)
    # an absent branch takes no weight; no branch generalising gives uniform weights
    w = gblend_weights(train0, val0, train_n, val0 + 1, torch.tensor([True, True, False, True]))
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 3, 0, 1 / 3], dtype=torch.float64))


def test_ume_is_the_mean_of_the_teachers_logits_and_umt_the_distilled_loss():
    u = [torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[3.0, -2.0, 1.0]])]
    assert torch.allclose(ensemble_logits(u), torch.tensor([[2.0, 0.0, 0.5]]))
    # UMT: CE + lambda * sum_k mean squared feature distance
    h = [torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[1.0], [3.0]])]
    t = [torch.tensor([[0.0, 2.0], [0.0, 3.0]]), torch.tensor([[1.0], [1.0]])]
    by_hand = 0.7 + 0.5 * ((1 + 0 + 0 + 4) / 4 + (0 + 4) / 2)
    assert float(umt_objective(torch.tensor(0.7), h, t, 0.5)) == pytest.approx(by_hand)


def test_ume_finish_predicts_the_teachers_mean_logits():
    """After training in mode 'ume' the fused model's logits are exactly the mean of the
    teachers' (teacher k: its own encoder and head on modality k)."""
    from mmtheory.engine import train_batched
    from mmtheory.models import forward
    from mmtheory.reference.loop import SingleModel

    lrn = Learner.from_fields(
        {"kind": "late_fusion", "method": "ume_umt", "mode": "ume", "latent_dim": 3, "steps": 3}
    )
    world, sub, plan, data, xs, init = _two_modality_model(lrn)
    y = data.y[None]
    res = train_batched(lrn, plan, xs, y, init, task="classification", dtype=torch.float64)
    # the teachers, trained alone by the reference loop's pretraining
    from mmtheory.reference import train_loop

    model = train_loop(
        lrn,
        sub,
        {k: x[0] for k, x in zip(world.names, xs)},
        y[0],
        init[0][0],
        task="classification",
    )
    assert isinstance(model, SingleModel)
    with torch.no_grad():
        teach = [
            model.uni_heads[k](model.uni_encoders[k](xs[i][0])) for i, k in enumerate(world.names)
        ]
        got = forward(lrn, res.params, xs, plan)[0, 0]
    assert torch.allclose(got, ensemble_logits(teach), atol=1e-10)


def test_bogc_laplace_variance_is_the_inverse_diagonal_hessian():
    """The diagonal of the exact Hessian of the summed softmax cross-entropy with respect to
    a linear head (autograd), plus the prior precision, inverted."""
    gen = torch.Generator().manual_seed(1)
    phi = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    W = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(3, generator=gen, dtype=torch.float64)

    def loss(Wb):
        W_, b_ = Wb[:9].view(3, 3), Wb[9:]
        return F.cross_entropy(phi @ W_ + b_, y, reduction="sum")

    H = torch.autograd.functional.hessian(loss, torch.cat([W.flatten(), b]))
    lam = 0.5
    var_w, var_b = laplace_last_layer_variance(phi, torch.softmax(phi @ W + b, -1), lam)
    assert torch.allclose(var_w.flatten(), 1 / (H.diagonal()[:9] + lam), rtol=1e-12)
    assert torch.allclose(var_b, 1 / (H.diagonal()[9:] + lam), rtol=1e-12)


def test_bogc_masses_are_dempsters_rule_on_the_sources_opinions():
    """Two sources, each believing itself with e / (e + W) and uncommitted W / (e + W);
    Dempster's rule (conflict b1 b2 discarded, renormalised) by hand."""
    e1, e2, W = 3.0, 0.5, 3.0
    b1, u1 = e1 / (e1 + W), W / (e1 + W)
    b2, u2 = e2 / (e2 + W), W / (e2 + W)
    k = 1 - b1 * b2
    dempster = torch.tensor([b1 * u2 / k, b2 * u1 / k], dtype=torch.float64)
    mass, u = evidence_masses(torch.tensor([e1, e2], dtype=torch.float64), W)
    assert torch.allclose(mass, dempster, rtol=1e-14)
    assert float(u) == pytest.approx(u1 * u2 / k, rel=1e-14)
