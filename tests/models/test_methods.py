"""The related methods: their defining equations on hand-checkable cases, and batched == loop."""

import math

import pandas as pd
import pytest
import torch
from helpers import assert_batched_equals_loop, setup_models  # the ERM test's worlds and check

import synthetic
from mmtheory.core.subsets import parse_subset
from mmtheory.engine import step_context, train_batched
from mmtheory.models import Learner, ModelPlan, init_model, stack_params, weight
from mmtheory.models.forward import through_latents
from mmtheory.models.methods.bogc import bogc_combine
from mmtheory.models.methods.i2m2 import poe_logits
from mmtheory.models.methods.mimo import mimo_objective, smooth_max
from mmtheory.models.methods.ogm_ge import OGMGE, ogm_coefficients
from mmtheory.models.methods.xmodal import xmodal_loss
from mmtheory.models.params import DECODER, ENCODER, HEAD, bias


# ------------------------------------------------------------ defining equations
def test_product_of_experts_is_the_sum_of_log_softmaxes():
    joint = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
    u1 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    u2 = torch.tensor([[math.log(2), 0.0, 0.0]], dtype=torch.float64)
    out = poe_logits(joint, [u1, u2])
    expected = sum(torch.log_softmax(t, -1) for t in (joint, u1, u2))
    assert torch.allclose(out, expected, atol=1e-15)
    # the normalised product of the three experts' probabilities, by hand
    q = [torch.softmax(t, -1)[0] for t in (joint, u1, u2)]
    prod = q[0] * q[1] * q[2]
    assert torch.allclose(torch.softmax(out, -1)[0], prod / prod.sum(), atol=1e-15)


def test_ogm_coefficients_by_hand():
    alpha = 0.5
    # two modalities, audio twice as confident: ratio 2 -> 1 - tanh(1); video ratio 1/2 -> 1
    c = ogm_coefficients(
        torch.tensor([8.0, 4.0], dtype=torch.float64), torch.tensor([True, True]), alpha
    )
    assert torch.allclose(c, torch.tensor([1 - math.tanh(1.0), 1.0], dtype=torch.float64))
    # three modalities: ratio_1 = 3 / mean(1, 1) = 3; ratio_2 = 1 / mean(3, 1) = 0.5
    c = ogm_coefficients(
        torch.tensor([3.0, 1.0, 1.0], dtype=torch.float64), torch.tensor([True, True, True]), alpha
    )
    assert torch.allclose(c, torch.tensor([1 - math.tanh(1.5), 1.0, 1.0], dtype=torch.float64))
    # an absent modality takes no part; a single modality is never modulated
    c = ogm_coefficients(
        torch.tensor([[6.0, 2.0, 99.0], [5.0, 0.0, 0.0]], dtype=torch.float64),
        torch.tensor([[True, True, False], [True, False, False]]),
        alpha,
    )
    assert torch.allclose(
        c, torch.tensor([[1 - math.tanh(1.5), 1, 1], [1, 1, 1]], dtype=torch.float64)
    )


def test_mimo_gradient_weights_the_worst_unimodal_loss():
    """d/dtheta [L0 + lam * tau * logsumexp(L/tau)]
    = grad L0 + lam * sum_k softmax(L/tau)_k grad L_k."""
    theta = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64, requires_grad=True)
    L0 = theta[0] ** 2
    L = torch.stack([theta[1] ** 2 / 4, theta[2] ** 2 * 2])  # values 1 and 2
    lam, tau = 0.7, 0.5
    obj = mimo_objective(L0, L, torch.tensor([True, True]), penalty=lam, temperature=tau)
    obj.backward()
    w = torch.softmax(torch.tensor([1.0, 2.0], dtype=torch.float64) / tau, 0)  # by hand
    expected = torch.tensor([2.0, lam * w[0] * 1.0, lam * w[1] * -4.0], dtype=torch.float64)
    assert torch.allclose(theta.grad, expected, atol=1e-14)
    assert w[1] > 0.88  # the worse modality (loss 2) gets most of the weight
    # tau -> 0: the penalty tends to the max
    sm = smooth_max(torch.tensor([1.0, 2.0]), torch.tensor([True, True]), 1e-3)
    assert abs(float(sm) - 2.0) < 1e-3
    # masked modalities are left out; none present -> 0
    sm = smooth_max(
        torch.tensor([[1.0, 50.0], [3.0, 4.0]]), torch.tensor([[True, False], [False, False]]), 1.0
    )
    assert torch.allclose(sm, torch.tensor([1.0, 0.0]))


def test_bogc_combination_by_hand():
    # sources x micro-batches x dimensions; dimension 0 by hand:
    # source 0: (1, 3) -> mu 2, var of the mean ((1+1)/1)/2 = 1, evidence 4
    # source 1: (0, 2) -> mu 1, var 1, evidence 1
    # masses 4/6 and 1/6, uncommitted 1/6; update = 2 * (4/6 * 2 + 1/6 * 1) = 3
    # dimension 1: only source 0 touches it: (2, 2.2) -> mu 2.1, var 0.01, evidence 441
    grads = torch.tensor([[[1.0, 2.0], [3.0, 2.2]], [[0.0, 0.0], [2.0, 0.0]]], dtype=torch.float64)
    update, mass, u = bogc_combine(grads)
    assert torch.allclose(mass[:, 0], torch.tensor([4 / 6, 1 / 6], dtype=torch.float64))
    assert torch.allclose(u[0], torch.tensor(1 / 6, dtype=torch.float64))
    assert torch.allclose(update[0], torch.tensor(3.0, dtype=torch.float64))
    e = 2.1**2 / 0.01
    assert torch.allclose(update[1], torch.tensor(e / (1 + e) * 2.1, dtype=torch.float64))
    # certain, agreeing sources: the plain sum of the gradients (the linear combination)
    g = torch.tensor([[[1.0], [1.0 + 1e-6]], [[2.0], [2.0 + 1e-6]]], dtype=torch.float64)
    assert torch.allclose(bogc_combine(g)[0], torch.tensor([3.0], dtype=torch.float64), rtol=1e-5)
    # an uncertain source barely moves: mean ~0 relative to its spread
    g = torch.tensor([[[-1.0], [1.01]]], dtype=torch.float64)
    assert abs(float(bogc_combine(g)[0])) < 1e-4


# ------------------------------------------------------------ batched == loop
CASES = [
    ("i2m2", "classification", {"warm_steps": 4, "solver": "sgd", "clip_norm": 0.5, "lr": 0.1}),
    ("i2m2", "classification", {"encoder": "mlp", "batch_size": 12, "warm_steps": 0}),
    ("mimo", "classification", {"temperature": 0.5, "penalty": 2.0}),
    ("mimo", "regression", {"encoder": "mlp", "ridge": 0.01}),
    ("ogm_ge", "classification", {"alpha": 0.8}),
    (
        "ogm_ge",
        "classification",
        {
            "encoder": "mlp",
            "batch_size": 12,
            "solver": "sgd",
            "momentum": 0.9,
            "lr": 0.05,
            "modulation_window": 0.7,
        },
    ),
    ("bogc", "classification", {"samples": 3}),
    ("bogc", "classification", {"encoder": "mlp", "batch_size": 12, "samples": 2, "ridge": 0.01}),
    ("bogc", "regression", {"variant": "micro_batch", "micro_batches": 3}),
    (
        "gblend",
        "classification",
        {
            "estimate_steps": 5,
            "solver": "sgd",
            "momentum": 0.9,
            "lr": 0.05,
            "clip_norm": 0.5,
            "ridge": 0.01,
        },
    ),
    ("gblend", "classification", {"encoder": "mlp", "batch_size": 8, "estimate_steps": 4}),
    ("ume_umt", "classification", {"teacher_steps": 5}),
    (
        "ume_umt",
        "classification",
        {
            "mode": "umt",
            "solver": "sgd",
            "momentum": 0.9,
            "lr": 0.05,
            "clip_norm": 0.5,
            "ridge": 0.01,
            "teacher_steps": 4,
        },
    ),
    ("ume_umt", "classification", {"mode": "ume", "encoder": "mlp", "batch_size": 8}),
    ("xmodal", "classification", {"pretrain_steps": 6, "batch_size": 12}),
    ("xmodal", "regression", {"encoder": "mlp", "pretrain_steps": 6}),
]
#: cases that check every group (the others train one group: G = 1 halves their time)
TWO_GROUPS = {"ogm_ge", "ume_umt"}


@pytest.mark.parametrize(
    ("method", "task", "extra"), CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_method_batched_equals_per_model_loop(method, task, extra):
    lrn = Learner.from_fields(
        {
            "kind": "late_fusion",
            "method": method,
            "latent_dim": 3,
            "hidden": 4,
            "steps": 6,
            **extra,
        }
    )
    G = 2 if method in TWO_GROUPS else 1
    assert_batched_equals_loop(lrn, task, *setup_models(task, lrn, G=G, m=30))


def _train(lrn, task="classification"):
    world, subs, datas, plan, inits, xs, y = setup_models(task, lrn)
    res = train_batched(
        lrn,
        plan,
        xs,
        y,
        inits,
        task=task,
        dtype=torch.float64,
        batch_keys=[("b", g) for g in range(len(datas))],
    )
    return res, plan, inits


def test_neutral_settings_reduce_to_erm():
    """OGM-GE with alpha = 0 and no noise, and MIMO with penalty 0, train the fused model
    exactly as ERM does (their extra parts do not touch it): ERM's output formed through
    its latents as theirs is (it collapses to composite maps otherwise; rounding only)."""
    base = dict(kind="late_fusion", latent_dim=3, steps=10)
    with through_latents():
        erm = _train(Learner(**base))[0]
    for lrn in (
        Learner.from_fields({**base, "method": "ogm_ge", "alpha": 0.0, "ge": False}),
        Learner.from_fields({**base, "method": "ogm_ge", "alpha": 2.0, "modulation_window": 0.0}),
        Learner.from_fields({**base, "method": "mimo", "penalty": 0.0}),
    ):
        res = _train(lrn)[0]
        for key, v in erm.params.items():
            assert torch.equal(res.params[key], v), (lrn.method, key)
    moved = _train(Learner.from_fields({**base, "method": "ogm_ge", "alpha": 2.0, "ge": False}))[0]
    W1 = weight(ENCODER, 1, "m1")
    assert not torch.equal(moved.params[W1], erm.params[W1])


def test_ogm_ge_noise_has_the_gradients_own_spread():
    """The noise of each encoder weight has the standard deviation of that gradient's
    entries (before modulation); heads and biases get none."""
    lrn = Learner("late_fusion", latent_dim=8, method=OGMGE(alpha=0.0))
    world = synthetic.NonlinearWorld((40, 30), latent_dim=2, n_classes=3)
    sub = parse_subset("all", world.names)
    plan = ModelPlan(world.names, tuple(world.dims.values()), (sub,), 3)
    data = world.sample(200, seed=0)
    xs = [data[k][None] for k in world.names]
    y = data.y[None]
    init = [[init_model(lrn, sub, world.dims, 3, key=("n",), dtype=torch.float64)]]
    grads = {}
    for ge in (False, True):
        params = stack_params(init, plan, "cpu", torch.float64)
        method = OGMGE(alpha=0.0, ge=ge)
        ctx = step_context(
            Learner("late_fusion", latent_dim=8, method=method),
            plan,
            "classification",
            [("k",)],
            "cpu",
        )
        ctx.state = method.start(ctx)
        method.backward(ctx, params, xs, y)
        grads[ge] = {k: v.grad.clone() for k, v in params.items()}
    for key in (weight(ENCODER, 1, "m1"), weight(ENCODER, 1, "m2")):
        noise = grads[True][key] - grads[False][key]
        sd, target = float(noise.std()), float(grads[False][key].std())
        n = noise.numel()  # 320 and 240 entries: the sample sd has relative SE 1/sqrt(2n) < 5%
        assert abs(sd / target - 1) < 5 / math.sqrt(2 * n), (key, sd, target)
    for key in (weight(HEAD, 0, "m1"), bias(ENCODER, 1, "m1")):
        assert torch.equal(grads[True][key], grads[False][key])  # no noise on heads, biases


def test_xmodal_pretraining_moves_only_multimodal_encoders():
    lrn = Learner.from_fields(
        {
            "kind": "late_fusion",
            "method": "xmodal",
            "latent_dim": 3,
            "steps": 3,
            "pretrain_steps": 20,
            "lr": 0.05,
        }
    )
    res, plan, inits = _train(lrn, "regression")
    pretrained = res.snapshots["pretrain"]
    assert not any(k.part == DECODER for k in res.params)
    assert weight(DECODER, 0, "m1") in pretrained
    for s, sub in enumerate(plan.subsets):
        name = sub.names[0]
        k = plan.members(plan.names.index(name)).index(s)
        before = inits[0][s][weight(ENCODER, 1, name)]
        after = pretrained[weight(ENCODER, 1, name)][0, k]
        assert torch.equal(before, after) == (len(sub) == 1), str(sub)


def test_xmodal_pretraining_lowers_the_cross_modal_loss():
    lrn = Learner.from_fields(
        {
            "kind": "late_fusion",
            "method": "xmodal",
            "latent_dim": 3,
            "steps": 1,
            "pretrain_steps": 60,
            "lr": 0.05,
        }
    )
    world, subs, datas, plan, inits, xs, y = setup_models("regression", lrn)
    res = train_batched(lrn, plan, xs, y, inits, task="regression", dtype=torch.float64)
    with torch.no_grad():
        before = xmodal_loss(lrn, stack_params(inits, plan, "cpu", torch.float64), xs, plan)
        after = xmodal_loss(lrn, res.snapshots["pretrain"], xs, plan)
    multi = torch.tensor([len(s) >= 2 for s in subs])
    assert torch.all(after[:, multi] < 0.8 * before[:, multi])
    assert torch.all(after[:, ~multi] == 0)


@pytest.mark.parametrize("method", ["i2m2", "ogm_ge", "gblend", "ume_umt", "bogc"])
def test_classification_only_methods_refuse_regression(method):
    lrn = Learner("late_fusion", method=method, latent_dim=3, steps=2)
    with pytest.raises(ValueError, match="classification"):
        _train(lrn, "regression")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"method": "nope"}, "method must be one of"),
        ({"method": "mimo", "kind": "early_fusion"}, "needs kind 'late_fusion'"),
        ({"method": "mimo", "fusion": "sum"}, "fusion 'concat'"),
        ({"method": "mimo", "temperature": 0}, "temperature must be a finite number > 0"),
        ({"method": "bogc", "micro_batches": 1}, "micro_batches must be an integer >= 2"),
        ({"method": "bogc", "variant": "exact"}, "variant must be one of"),
        ({"method": "ogm_ge", "modulation_window": 1.5}, "modulation_window must be"),
        ({"method": "i2m2", "warm_steps": -1}, "warm_steps"),
        ({"method": "gblend", "holdout": 1.0}, "holdout must be"),
        ({"method": "gblend", "weighting": "mean"}, "weighting must be one of"),
        ({"method": "ume_umt", "mode": "both"}, "mode must be one of"),
        ({"method": "ogm_ge", "alpha": -1}, "alpha must be a finite number"),
        ({"method": "xmodal", "pretrain_steps": -2}, "pretrain_steps must be"),
    ],
)
def test_method_settings_are_validated(fields, message):
    base = {"kind": "late_fusion"}
    with pytest.raises(ValueError, match=message):
        Learner.from_fields({**base, **fields})


# ------------------------------------------------------------ sweeps and the comparison
def test_imbalance_world_scales_the_weak_modality():
    weak = synthetic.imbalance_world().sample(50, seed=3)["weak"]
    unscaled = synthetic.imbalance_world(feature_scale=(1.0, 1.0)).sample(50, seed=3)["weak"]
    assert torch.allclose(weak, 0.2 * unscaled, atol=1e-12)
    assert synthetic.imbalance_world().params()["feature_scale"] == [1.0, 0.2]
    assert synthetic.LinearWorld((4, 4), latent_dim=2).params()["feature_scale"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="feature_scale must be > 0"):
        synthetic.imbalance_world(feature_scale=(1.0, 0.0))


def test_sweep_measures_branch_and_pretraining_eta():
    import mmtheory as mt

    world = synthetic.imbalance_world()
    learners = [
        {"kind": "late_fusion", "latent_dim": 2, "steps": 5, "name": "erm"},
        {
            "kind": "late_fusion",
            "latent_dim": 2,
            "steps": 5,
            "method": "xmodal",
            "pretrain_steps": 5,
            "name": "xmodal",
        },
    ]
    tab = mt.sweep(
        world,
        learner=learners,
        subsets=["strong", "weak", "all"],
        m=[60],
        seeds=2,
        branch_eta=True,
        progress=False,
        n_test=500,
        n_refit=500,
        n_eval=500,
    )
    single = tab[tab.subset != "strong+weak"]
    # a single-modality model is its own branch: the same encoder, the same refit, up to
    # float32 rounding (the refit sees the modality's latent in another slot of the
    # batch, so its float32 sums run in another order: measured up to 2e-6 relative)
    same = 1e-5
    for r in single.itertuples():
        assert getattr(r, f"eta_branch_{r.subset}") == pytest.approx(r.eta, rel=same)
        other = "weak" if r.subset == "strong" else "strong"
        assert pd.isna(getattr(r, f"eta_branch_{other}"))
    both = tab[tab.subset == "strong+weak"]
    assert both[["eta_branch_strong", "eta_branch_weak"]].notna().all().all()
    # control: the tolerance tells encoders apart (the fused model's own branches are
    # other encoders than the single-modality models')
    for name in ("strong", "weak"):
        alone = single[single.subset == name].set_index(["learner", "seed"]).eta
        branch = both.set_index(["learner", "seed"])[f"eta_branch_{name}"]
        assert ((branch - alone).abs() > same * alone.abs()).all()
    assert tab[tab.learner == "xmodal"].eta_pretrain.notna().all()
    assert tab[tab.learner == "erm"].eta_pretrain.isna().all()


def test_claims_verdicts_from_paired_differences():
    from mmtheory.studies.methods import claims_table

    rows = []
    for seed in range(4):
        for learner, risk, eta in (("erm", 1.0, 0.5), ("mimo", 0.9, 0.5), ("ogm_ge", 1.1, 0.5)):
            jitter = 0.001 * seed * (1 if learner != "ogm_ge" else -1)
            rows.append(
                {
                    "learner": learner,
                    "subset": "a+b",
                    "m": 10,
                    "seed": seed,
                    "test_risk": risk + jitter,
                    "eta": eta + jitter,
                    "eta_branch_a": 0.3,
                    "eta_branch_b": 0.6 - jitter,
                }
            )
        rows.append(
            {
                "learner": "erm",
                "subset": "b",
                "m": 10,
                "seed": seed,
                "test_risk": 1.0,
                "eta": 0.55,
                "eta_branch_a": None,
                "eta_branch_b": 0.55,
            }
        )
    claims = claims_table(pd.DataFrame(rows), "toy", ("a", "b")).set_index("claim")
    assert claims.loc["mimo lowers the test risk of the fused model", "verdict"] == "reproduced"
    assert claims.loc["ogm_ge lowers the test risk of the fused model", "verdict"] == "contradicted"
    assert claims.loc["mimo improves the fused encoder's eta", "verdict"] == "inconclusive"
    # the weakest branch under ERM is b (eta 0.6 > 0.3), 0.05 worse than b trained alone
    under = claims.loc["joint ERM under-trains the weakest encoder (b)"]
    assert under["verdict"] == "reproduced" and under["mean"] == pytest.approx(
        0.05 - 0.0015, abs=1e-3
    )


def test_methods_cli_writes_report_and_rejects_bad_datasets(tmp_path, capsys):
    from mmtheory.cli import main
    from mmtheory.studies.methods import run_comparison

    report = run_comparison(
        tmp_path / "c",
        datasets=("imbalance",),
        seeds=2,
        steps=5,
        quick=True,
        progress=False,
        methods=("ogm_ge",),
        estimation={"n_test": 500, "n_refit": 500, "n_eval": 500},
    )
    text = report.read_text()
    assert "## Published claims" in text and "eta weak" in text
    assert "## Original recipes" in text and "## Which component produced the effect" in text
    claims = pd.read_csv(tmp_path / "c" / "claims.csv")
    assert set(claims.verdict) <= {"reproduced", "contradicted", "inconclusive"}
    assert set(claims.table) == {"original recipe", "equal recipe"}
    assert {
        "ogm_ge",
        "ogm_ge[sgd-m0.9]",
        "ogm_ge-modulation[sgd-m0.9]",
        "ogm_ge-noise[sgd-m0.9]",
        "ogm_ge-noise-erm",
        "erm-placebo",
    } <= set(claims.learner)
    ablations = pd.read_csv(tmp_path / "c" / "ablations.csv")
    assert set(ablations.component) >= {"full method", "noise alone (alpha = 0)"}
    assert main(["methods", "--datasets", "nope", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataset 'nope'" in err[-1]
