"""Masked-game values: Monte Carlo against the exact closed form on the same models, the
linear-SHAP identity of the mean mask, and model selection from a batch."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import synthetic
from mmtheory.core.seeding import derive
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import train_batched
from mmtheory.estimation import Models, Sample, Truth
from mmtheory.estimation.masked import (
    coalition_losses,
    coalition_risks_exact,
    constant_losses,
    per_sample_losses,
    select_models,
)
from mmtheory.experiments.sources import stack_groups
from mmtheory.models import Learner, ModelPlan, forward, init_model
from mmtheory.theory.games import shapley

WORLD = synthetic.LinearWorld((3, 4), latent_dim=2, rho=0.4, noise=(0.3, 0.7))
LEARNER = Learner(kind="late_fusion", latent_dim=3, steps=60, lr=0.05)


@functools.cache
def _trained(G=2, m=80):
    """Two groups of the three subset models, trained once for the module (read-only)."""
    subs = all_subsets(WORLD.names)
    plan = ModelPlan(WORLD.names, tuple(WORLD.dims.values()), tuple(subs), 1)
    xs, y = stack_groups(
        [WORLD.sample(m, seed=g) for g in range(G)], WORLD.names, "cpu", torch.float64
    )
    inits = [
        [
            init_model(LEARNER, s, WORLD.dims, 1, key=("m", g, str(s)), dtype=torch.float64)
            for s in subs
        ]
        for g in range(G)
    ]
    res = train_batched(LEARNER, plan, xs, y, inits, task="regression", dtype=torch.float64)
    return Models(LEARNER, res.params, plan), xs, y


def test_select_models_keeps_each_models_outputs():
    models, xs, _ = _trained()
    full = forward(LEARNER, models.params, xs, models.plan)
    for keep in ([2], [0, 2], [1]):
        sub = select_models(models, keep)
        np.testing.assert_allclose(forward(LEARNER, sub.params, xs, sub.plan), full[:, keep])


def test_monte_carlo_masked_risks_match_the_exact_ones(seed):
    """Zero and (non-centred) mean masks: the sample mean of per-sample losses against the
    closed form of the same linear models, within 4.5 standard errors for each of the
    2 groups x 4 coalitions x 2 masks (Bonferroni: false alarm < 1e-4)."""
    models, xs, _ = _trained()
    joint = select_models(models, [2])
    n = 20_000
    tx, ty = stack_groups(
        [WORLD.sample(n, seed=derive(seed, "test", g)) for g in range(2)],
        WORLD.names,
        "cpu",
        torch.float64,
    )
    truth = Truth("regression", WORLD.bayes_risk(), WORLD.oracle())
    shifted = [torch.full((2, d), 0.7, dtype=torch.float64) for d in WORLD.dims.values()]
    for fill in (None, shifted):
        mc = coalition_losses(joint, Sample(tx, ty), "regression", fill=fill).loss[:, 0]
        exact = coalition_risks_exact(joint, truth, fill=fill)[:, 0]
        se = mc.std(dim=1) / np.sqrt(n)
        assert torch.all((mc.mean(dim=1) - torch.from_numpy(exact)).abs() < 4.5 * se)
    # the all-masked coalition of a mean mask is a constant: its exact risk is Var(y) + c^2
    zero = coalition_risks_exact(joint, truth)[:, 0]
    assert not np.allclose(zero, coalition_risks_exact(joint, truth, fill=shifted)[:, 0])


def test_mean_mask_output_game_is_linear_shap():
    """For a linear model and the mean mask, the per-sample Shapley value of the output game
    is w_k'(x_k - mean_k) exactly (Lundberg and Lee's linear SHAP); the zero mask gives
    w_k'x_k."""
    models, xs, _ = _trained()
    joint = select_models(models, [2])
    from mmtheory.estimation.linear_maps import linear_predictor

    W, _ = linear_predictor(joint)  # (G, 1, d, 1)
    tx, ty = stack_groups(
        [WORLD.sample(50, seed=9 + g) for g in range(2)], WORLD.names, "cpu", torch.float64
    )
    means = [x.mean(dim=1) for x in xs]
    sl = WORLD.feature_slices()
    for fill, centre in ((None, [torch.zeros_like(m) for m in means]), (means, means)):
        out = coalition_losses(joint, Sample(tx, ty), "regression", fill=fill, outputs=True).output
        phi = shapley(out[:, 0, :, :, 0].numpy())  # (G, n, K)
        for k, name in enumerate(WORLD.names):
            w = W[:, 0, sl[name], 0]  # (G, d_k)
            expected = ((tx[k] - centre[k][:, None]) * w[:, None]).sum(-1)
            np.testing.assert_allclose(phi[..., k], expected.numpy(), atol=1e-10)


def test_constant_losses_and_validation():
    y_train = torch.tensor([[0, 0, 1, 2]])
    y = torch.tensor([[0, 1]])
    logp = np.log(np.array([2.5, 1.5, 1.5]) / 5.5)
    np.testing.assert_allclose(constant_losses(y_train, y, "classification", 3)[0], -logp[[0, 1]])
    reg = constant_losses(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 4.0]]), "regression")
    np.testing.assert_allclose(reg[0], [0.0, 4.0])
    models, xs, y = _trained()
    with pytest.raises(ValueError, match="fill"):
        coalition_losses(models, Sample(xs, y), "regression", fill=[torch.zeros(2, 3)])
    loss = per_sample_losses(models, Sample(xs, y), "regression").loss
    assert loss.shape == (2, 3, 80)
