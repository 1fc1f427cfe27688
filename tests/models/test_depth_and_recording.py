"""Fusion depth, identity activations, initial scale and recorded trajectories.

The batched engine against the independent per-model loop for every new option; the
defaults leave settings, initial parameters and run ids unchanged; recorded effective
weights equal the per-model loop's network probed with unit inputs (an affine map is
its values at 0 and at the unit vectors), step by step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_batched_equals_loop, setup_models

import synthetic
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import Record, log_steps, train_batched
from mmtheory.experiments.grid import run_id
from mmtheory.models import Learner, ModelPlan, init_model
from mmtheory.models.effective import effective_linear_map, is_linear_network
from mmtheory.models.params import ENCODER, HEAD, bias, weight
from mmtheory.reference import train_loop

LATE, EARLY, IDENTITY = "late_fusion", "early_fusion", "identity"
NEW_OPTIONS = [  # (options, which tasks)
    ({"kind": LATE, "encoder": "mlp", "depth": 3, "activation": IDENTITY}, "regression"),
    ({"kind": LATE, "head_layers": 2, "activation": "tanh", "init_scale": 0.3}, "both"),
    ({"kind": LATE, "encoder": "mlp", "depth": 3, "head_layers": 1, "fusion": "sum"}, "both"),
    ({"kind": EARLY, "encoder": "mlp", "head_layers": 2, "activation": IDENTITY}, "regression"),
    ({"kind": EARLY, "head_layers": 1, "activation": "gelu", "batch_size": 12}, "classification"),
]
CASES = [
    (options, task)
    for options, tasks in NEW_OPTIONS
    for task in ("regression", "classification")
    if tasks in (task, "both")
]


@pytest.mark.parametrize(
    ("options", "task"),
    CASES,
    ids=lambda o: "-".join(map(str, o.values())) if isinstance(o, dict) else o,
)
def test_new_options_batched_equal_per_model_loop(options, task):
    """Every new option against the per-model loop, 3 modalities x 7 subsets, one group;
    with gradient descent, Adam minibatches (their order) and a nonlinear head."""
    lrn = Learner(latent_dim=3, hidden=4, steps=12, solver="gd", lr=0.05, **options)
    assert_batched_equals_loop(lrn, task, *setup_models(task, lrn, G=1, m=16))


# ------------------------------------------------------------- defaults unchanged
def test_defaults_keep_settings_initial_parameters_and_run_ids():
    base = Learner(kind="late_fusion", encoder="mlp", latent_dim=3, hidden=4)
    spelled = Learner(
        kind="late_fusion", encoder="mlp", latent_dim=3, hidden=4, depth=2, init_scale=1
    )
    assert spelled == base and spelled.depth is None
    assert base.settings() == spelled.settings()
    assert not {"depth", "head_layers", "init_scale"} & set(base.settings())
    sub = all_subsets(("a", "b"))[-1]
    args = (sub, {"a": 3, "b": 2}, 2, ("k", 0))
    for key, value in init_model(base, *args).items():
        assert torch.equal(value, init_model(spelled, *args)[key])
    assert run_id("w", base, sub, 10, 0, {}) == run_id("w", spelled, sub, 10, 0, {})
    deeper = Learner(kind="late_fusion", encoder="mlp", latent_dim=3, hidden=4, depth=3)
    assert run_id("w", deeper, sub, 10, 0, {}) != run_id("w", base, sub, 10, 0, {})
    assert base.label == "late_fusion-mlp" and deeper.label == "late_fusion-mlp-depth3"
    assert Learner(kind="early_fusion", head_layers=2).label == "early_fusion-linear-head2"


def test_init_scale_multiplies_every_initial_parameter():
    lrn = Learner(kind="late_fusion", encoder="mlp", depth=3, head_layers=1, hidden=4)
    small = Learner(
        kind="late_fusion", encoder="mlp", depth=3, head_layers=1, hidden=4, init_scale=1e-3
    )
    sub = all_subsets(("a", "b"))[-1]
    args = (sub, {"a": 3, "b": 2}, 2, ("k", 0))
    one, tiny = init_model(lrn, *args, dtype=torch.float64), init_model(small, *args)
    assert set(one) == set(tiny)
    for key in one:  # the same draws, scaled (float32 rounding of the scaled draw)
        assert torch.allclose(tiny[key].double(), 1e-3 * one[key], rtol=1e-6, atol=0)


def test_depth_and_head_slots_and_shapes():
    lrn = Learner(kind="late_fusion", encoder="mlp", depth=3, head_layers=2, hidden=5)
    sub = all_subsets(("a", "b"))[-1]
    p = init_model(lrn, sub, {"a": 3, "b": 2}, 4, ("k", 0))
    assert p[weight(ENCODER, 1, "a")].shape == (3, 5)
    assert p[weight(ENCODER, 2, "a")].shape == (5, 5)
    assert p[weight(ENCODER, 3, "a")].shape == (5, lrn.latent_dim)
    assert p[weight(HEAD, 0, "b")].shape == (lrn.latent_dim, 5)
    assert p[weight(HEAD, 1)].shape == (5, 5) and p[weight(HEAD, 2)].shape == (5, 4)
    assert p[bias(HEAD)].shape == (5,) and p[bias(HEAD, 2)].shape == (4,)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "late_fusion", "depth": 2}, "needs encoder 'mlp'"),
        ({"kind": "late_fusion", "encoder": "mlp", "depth": 1}, "depth must be >= 2"),
        ({"kind": "early_fusion", "depth": 2}, "needs kind 'late_fusion'"),
        ({"kind": "linear", "solver": "gd", "head_layers": 1}, "head_layers needs kind"),
        ({"kind": "late_fusion", "head_layers": -1}, "head_layers must be"),
        ({"kind": "late_fusion", "init_scale": 0}, "init_scale must be"),
        ({"kind": "late_fusion", "head_layers": 1, "method": "mimo"}, "need method 'erm'"),
        ({"kind": "late_fusion", "activation": "linear"}, "activation"),
    ],
)
def test_invalid_depth_settings_are_one_line_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        Learner(**fields)


def test_which_networks_are_linear():
    assert is_linear_network(Learner(kind="late_fusion"))
    assert not is_linear_network(Learner(kind="late_fusion", head_layers=1))
    assert is_linear_network(Learner(kind="late_fusion", head_layers=1, activation="identity"))
    assert not is_linear_network(Learner(kind="late_fusion", encoder="mlp"))
    assert is_linear_network(Learner(kind="late_fusion", encoder="mlp", activation="identity"))
    assert is_linear_network(Learner(kind="early_fusion", encoder="linear"))


# ------------------------------------------------------------------ recording
def _probe(model, names, dims, p):
    """The effective weights (D, p) of one affine reference model: f(e_i) - f(0)."""
    rows = []
    with torch.no_grad():
        zero = {k: torch.zeros(1, dims[k], dtype=torch.float64) for k in model.mods}
        f0 = model(zero)[0]
        for k in names:
            for i in range(dims[k]):
                if k not in model.mods:
                    rows.append(torch.zeros(p, dtype=torch.float64))
                    continue
                x = {j: v.clone() for j, v in zero.items()}
                x[k][0, i] = 1.0
                rows.append(model(x)[0] - f0)
    return torch.stack(rows), f0


LINEAR_NETS = [
    {"kind": "late_fusion", "encoder": "linear"},
    {"kind": "late_fusion", "encoder": "mlp", "depth": 3, "activation": "identity"},
    {"kind": "late_fusion", "head_layers": 2, "activation": "identity", "fusion": "sum"},
    {"kind": "early_fusion", "encoder": "mlp", "head_layers": 1, "activation": "identity"},
]


@pytest.mark.parametrize("options", LINEAR_NETS, ids=lambda o: "-".join(map(str, o.values())))
def test_recorded_trajectory_equals_the_per_model_loop(options):
    lrn = Learner(latent_dim=3, hidden=4, steps=30, solver="gd", lr=0.05, **options)
    world, subs, datas, plan, inits, xs, y = setup_models("regression", lrn, G=2, m=20)
    res = train_batched(
        lrn, plan, xs, y, inits, task="regression", dtype=torch.float64, record=Record(points=8)
    )
    traj = res.trajectory
    assert traj is not None and traj.weights is not None
    steps = log_steps(lrn.steps, 8)
    assert np.array_equal(traj.steps, steps) and steps[0] == 0 and steps[-1] == lrn.steps
    G, S, T = len(datas), len(subs), len(steps)
    assert traj.loss.shape == (G, S, T) and traj.branch_loss.shape == (G, S, T, plan.K)
    assert traj.weights.shape == (G, S, T, sum(world.dims.values()), 2)
    for g in (0, 1):
        for s in (0, len(subs) - 1):  # a unimodal model and the all-modality model
            x = {k: xs[i][g] for i, k in enumerate(world.names)}
            seen: dict[int, tuple] = {}

            def keep(step, model, seen=seen, x=x, target=y[g]):
                if step in set(steps.tolist()):
                    W, b = _probe(model, world.names, world.dims, 2)
                    with torch.no_grad():
                        loss = ((model(x) - target) ** 2).sum(-1).mean()
                    seen[step] = (W, b, float(loss))

            sub = subs[s]
            train_loop(lrn, sub, {k: x[k] for k in sub}, y[g], inits[g][s], task="regression",
                       callback=keep)  # fmt: skip
            for t, step in enumerate(steps):
                W, b, loss = seen[int(step)]
                # float64; the probe differences cost a few ulps of |f|: 1e-10 is ample
                assert np.allclose(traj.weights[g, s, t], W.numpy(), atol=1e-10), (g, s, step)
                assert np.allclose(traj.bias[g, s, t], b.numpy(), atol=1e-10)
                assert math.isclose(traj.loss[g, s, t], loss, rel_tol=1e-10)
    # the last record is the trained model's linear map
    W, b = effective_linear_map(lrn, res.params, plan)
    assert np.allclose(traj.weights[:, :, -1], W.numpy(), atol=1e-12)


def test_branch_loss_is_the_loss_of_the_branch_alone():
    """Late fusion (one-layer head): branch k predicts x_k W_k + bh + b1_k Wh_k (its own
    path and the head's bias; the other modalities' blocks removed); absent: NaN."""
    lrn = Learner(kind="late_fusion", latent_dim=3, steps=5, solver="gd", lr=0.05)
    world, subs, datas, plan, inits, xs, y = setup_models("regression", lrn, G=1, m=20)
    res = train_batched(
        lrn, plan, xs, y, inits, task="regression", dtype=torch.float64, record=Record(points=3)
    )
    traj = res.trajectory
    x = torch.cat([xs[i][0] for i in range(plan.K)], dim=-1).double().numpy()
    for s, sub in enumerate(subs):
        for k, name in enumerate(world.names):
            got = traj.branch_loss[0, s, -1, k]
            if name not in sub:
                assert math.isnan(got)
                continue
            rows = traj.rows(name)
            j = plan.members(k).index(s)
            b1 = res.params[bias(ENCODER, 1, name)][0, j]
            intercept = res.params[bias(HEAD)][0, s] + b1 @ res.params[weight(HEAD, 0, name)][0, j]
            pred = x[:, rows] @ traj.weights[0, s, -1, rows] + intercept.numpy()
            want = ((pred - y[0].numpy()) ** 2).sum(-1).mean()
            assert math.isclose(got, want, rel_tol=1e-10)


def test_recording_leaves_training_unchanged_and_works_for_any_network():
    lrn = Learner(kind="late_fusion", encoder="mlp", latent_dim=3, hidden=4, steps=10)
    world, subs, datas, plan, inits, xs, y = setup_models("classification", lrn)
    kw = dict(task="classification", dtype=torch.float64, batch_keys=[("b", 0), ("b", 1)])
    plain = train_batched(lrn, plan, xs, y, inits, **kw)
    rec = train_batched(lrn, plan, xs, y, inits, **kw, record=Record(points=4))
    for slot, value in plain.params.items():
        assert torch.equal(value, rec.params[slot])
    assert rec.trajectory.weights is None  # a ReLU network has no effective weights
    assert np.isfinite(rec.trajectory.branch_loss[:, -1, :, :]).all()  # the full model


def test_log_steps_grid():
    assert log_steps(0, 5).tolist() == [0]
    g = log_steps(10_000, 50)
    assert g[0] == 0 and g[1] == 1 and g[-1] == 10_000 and np.all(np.diff(g) > 0)
    big = g[g >= 20]  # past the rounding of small steps: 10_000 ** (1 / 49) = 1.21 apart
    assert (big[1:] / big[:-1]).max() < 1.25


def test_record_validation():
    with pytest.raises(ValueError, match="record points"):
        Record(points=1)


def test_a_world_for_thousands_of_trajectories_in_one_call():
    """One call trains and records 3 subsets x 400 groups; every group is independent."""
    world = synthetic.GaussianPairWorld(sigma_a=1.5, sigma_b=1.0, rho=0.3)
    lrn = Learner(kind="late_fusion", latent_dim=4, steps=40, solver="gd", lr=0.05)
    subs = all_subsets(world.names)
    plan = ModelPlan(world.names, tuple(world.dims.values()), tuple(subs), 1)
    G = 400
    datas = [world.sample_exact_moments(4, seed=g) for g in range(G)]
    xs = [torch.stack([d[k] for d in datas]).double() for k in world.names]
    y = torch.stack([d.y for d in datas]).double()[..., None]
    inits = [[init_model(lrn, s, world.dims, 1, ("t", g, str(s))) for s in subs] for g in range(G)]
    res = train_batched(
        lrn, plan, xs, y, inits, task="regression", dtype=torch.float64, record=Record(points=10)
    )
    assert res.trajectory.weights.shape[:3] == (G, 3, len(log_steps(40, 10)))


def test_cpu_threads_is_restored():
    from mmtheory.engine import cpu_threads

    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
