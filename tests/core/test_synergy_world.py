"""The two-block world: its exact Bayes risks and informations against Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import synthetic


def _posterior_p(world, data):
    """p(y = 1 | x) from the block posteriors (the world's closed form, written out again)."""
    m = world.block_scalars(data)
    post = world.noise**2 / (1 + world.noise**2)
    if world.combine == "xor":
        pa = special.ndtr(m / np.sqrt(post))
        return pa[:, 0] * (1 - pa[:, 1]) + (1 - pa[:, 0]) * pa[:, 1]
    return special.ndtr(m @ world.weight / np.sqrt(post @ world.weight**2 + world.label_noise**2))


@pytest.mark.parametrize(
    "kw",
    [
        {"combine": "xor", "noise": 0.4},
        {"combine": "sum", "noise": (0.2, 0.9), "weight": (2.0, 0.5), "label_noise": 0.3},
    ],
)
def test_bayes_risk_quadrature_against_monte_carlo(kw, seed):
    """The Bayes cross-entropy (quadrature) against the mean log-loss of the true posterior
    on a fresh sample: within 4.5 standard errors (false alarm < 1e-5)."""
    w = synthetic.SynergyWorld(**kw)
    d = w.sample(60_000, seed=seed)
    p = _posterior_p(w, d)
    y = d.y.numpy()
    loss = -np.log(np.where(y == 1, p, 1 - p))
    se = loss.std(ddof=1) / np.sqrt(len(loss))
    assert abs(loss.mean() - w.bayes_risk()) < 4.5 * se


def test_xor_is_pure_synergy(seed):
    """I(y; x_k) = 0 exactly: given either modality alone the label is a fair coin. The
    negative control (sum) is not: there P(y = 1 | a > 0) is far from 1/2."""
    xor = synthetic.SynergyWorld(combine="xor", noise=0.0)
    assert xor.mutual_information("m1") == pytest.approx(0.0, abs=1e-12)
    assert xor.mutual_information("all") == pytest.approx(np.log(2))
    assert xor.bayes_risk() == pytest.approx(0.0, abs=1e-12)
    n = 40_000
    for world, fair in ((xor, True), (synthetic.SynergyWorld(combine="sum", noise=0.0), False)):
        d = world.sample(n, seed=seed)
        pos = world.block_scalars(d)[:, 0] > 0
        rate = d.y.numpy()[pos].mean()
        se = 0.5 / np.sqrt(pos.sum())
        assert (abs(rate - 0.5) < 4.5 * se) == fair


def test_product_world_risk_and_linear_blindness(seed):
    """y = ab + s eps: Bayes risk 1 - (1 - s_a^2)(1 - s_b^2) + s^2 (against the Monte Carlo
    E Var(ab | x)); no feature is correlated with y (a linear model learns nothing)."""
    w = synthetic.SynergyWorld(combine="product", noise=(0.5, 0.8), label_noise=0.2)
    assert w.task == "regression" and w.output_dim == 1
    d = w.sample(60_000, seed=seed)
    m = w.block_scalars(d)
    post = w.noise**2 / (1 + w.noise**2)
    var = (m[:, 0] ** 2 + post[0]) * (m[:, 1] ** 2 + post[1]) - (m[:, 0] * m[:, 1]) ** 2
    risk = var + w.label_noise**2
    se = risk.std(ddof=1) / np.sqrt(len(risk))
    assert abs(risk.mean() - w.bayes_risk()) < 4.5 * se
    x = np.concatenate([d["m1"].numpy(), d["m2"].numpy()], axis=1)
    xy = x * d.y.numpy()[:, None]  # E[x y] = 0 for every feature
    se = xy.std(axis=0, ddof=1) / np.sqrt(len(x))
    assert np.all(np.abs(xy.mean(axis=0)) < 4.5 * se)  # 16 features at 4.5 SE: < 1e-4


def test_validation_and_identity():
    with pytest.raises(ValueError, match="combine"):
        synthetic.SynergyWorld(combine="and")
    with pytest.raises(ValueError, match="two modalities"):
        synthetic.SynergyWorld(dims=(4, 4, 4))
    with pytest.raises(ValueError, match="feature_scale"):
        synthetic.SynergyWorld(feature_scale=(1.0, 0.0))
    # arguments a combination ignores take their defaults: the same world, the same id
    a = synthetic.SynergyWorld(combine="xor", weight=(3.0, 1.0), label_noise=0.5)
    assert a.identity() == synthetic.SynergyWorld(combine="xor").identity()
    with pytest.raises(ValueError, match="classification"):
        synthetic.SynergyWorld(combine="product").conditional_entropy("m1")
