"""Worlds: exact oracles against Monte Carlo, closed forms, properties, determinism, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import synthetic
from mmtheory import all_subsets, nested_pairs

# Bonferroni-corrected two-sided z threshold for a family of checks at a total
# false-alarm rate of 1e-3: a correct oracle fails a test with probability < 0.001.
FAMILY_ALPHA = 1e-3


def z_threshold(n_checks: int) -> float:
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * n_checks)))


def worlds(seed):
    return [
        synthetic.OverlapWorld(3, 4, 0.3, mix=True, seed=seed),
        synthetic.OverlapWorld(2, 3, 0.7, noise=0.2, latent="uniform", seed=seed),
        synthetic.LinearWorld((5, 6, 4), latent_dim=3, rho=0.4, noise=(0.3, 1.0, 0.0), seed=seed),
        synthetic.LinearWorld(
            (4, 4),
            latent_dim=2,
            output_dim=2,
            n_noise_modalities=1,
            noise_dim=3,
            latent="uniform",
            seed=seed,
        ),
        synthetic.GaussianPairWorld([1.5, 0.5], 1.0, [0.6, -0.3], label_noise=0.2),
    ]


@pytest.mark.parametrize("index", range(5))
def test_risk_of_fixed_linear_predictor_matches_monte_carlo(seed, index):
    world = worlds(seed)[index]
    data = world.sample(200_000, seed=seed + 100)
    x = data.concat().numpy()
    y = data.y.numpy().reshape(data.n, -1)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((x.shape[1], y.shape[1])) * 0.3
    losses = ((x @ W - y) ** 2).sum(axis=1)
    exact = world.risk_linear(W)
    se = losses.std(ddof=1) / np.sqrt(losses.size)
    # One check per test: |MC - exact| within the two-sided 1e-3 z threshold (3.29 SE).
    assert abs(losses.mean() - exact) < z_threshold(1) * se


@pytest.mark.parametrize("index", range(5))
def test_second_moments_match_monte_carlo(seed, index):
    world = worlds(seed)[index]
    data = world.sample(100_000, seed=seed + 7)
    x = data.concat().numpy()
    y = data.y.numpy().reshape(data.n, -1)
    sigma, sxy, syy = world.second_moments()
    checks = []
    for a, b, exact in [(x, x, sigma), (x, y, sxy), (y, y, syy)]:
        prods = a[:, :, None] * b[:, None, :]
        mean = prods.mean(axis=0)
        se = prods.std(axis=0, ddof=1) / np.sqrt(len(a))
        checks.append((mean, se, exact))
    n_checks = sum(c[0].size for c in checks)
    z = z_threshold(n_checks)
    for mean, se, exact in checks:
        # entries that are exactly 0 with zero spread (e.g. disjoint blocks) must be exact
        assert np.all(np.abs(mean - exact) <= z * se + 1e-12)


@pytest.mark.parametrize(
    "K,d,w", [(4, 100, 0.5), (3, 7, 0.0), (2, 5, 0.8), (5, 3, 1.0), (1, 4, 0.2)]
)
def test_overlap_eta_inf_closed_form(K, d, w):
    world = synthetic.OverlapWorld(K, d, w)
    for sub in all_subsets(world.names):
        assert world.eta_inf(sub) == pytest.approx(d * (1 - w) ** 2 * (K - len(sub)), abs=1e-9)
    assert world.bayes_risk() == pytest.approx(0.0, abs=1e-9)


def test_mixed_overlap_world_has_the_same_oracle():
    plain = synthetic.OverlapWorld(3, 5, 0.4)
    mixed = synthetic.OverlapWorld(3, 5, 0.4, mix=True, seed=3)
    for sub in all_subsets(plain.names):
        assert mixed.eta_inf(sub) == pytest.approx(plain.eta_inf(sub), abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    dims=st.lists(st.integers(2, 6), min_size=2, max_size=4),
    rho=st.floats(0, 1),
    noise=st.floats(0, 2),
    seed=st.integers(0, 2**16),
)
def test_eta_inf_non_increasing_along_nested_subsets(dims, rho, noise, seed):
    world = synthetic.LinearWorld(dims, latent_dim=2, rho=rho, noise=noise, seed=seed)
    eta = {str(s): world.eta_inf(s) for s in all_subsets(world.names)}
    scale = 1e-9 * (1 + max(abs(v) for v in eta.values()))
    for n, m in nested_pairs(all_subsets(world.names)):
        assert eta[str(m)] <= eta[str(n)] + scale
    assert eta["+".join(world.names)] == pytest.approx(0.0, abs=scale)


def test_rho_one_noise_free_makes_every_subset_equal():
    world = synthetic.LinearWorld((5, 4, 6), latent_dim=3, rho=1.0, noise=0.0, label_noise=0.3)
    etas = [world.eta_inf(s) for s in all_subsets(world.names)]
    assert np.allclose(etas, etas[0], atol=1e-9)
    assert world.bayes_risk() == pytest.approx(0.3**2, rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(low=st.floats(0, 1), extra=st.floats(0.01, 2), rho=st.floats(0, 1), seed=st.integers(0, 999))
def test_more_noise_never_lowers_eta_inf(low, extra, rho, seed):
    quiet = synthetic.LinearWorld(
        (4, 4, 4), latent_dim=2, rho=rho, noise=(low, 0.5, 0.5), seed=seed
    )
    loud = synthetic.LinearWorld(
        (4, 4, 4), latent_dim=2, rho=rho, noise=(low + extra, 0.5, 0.5), seed=seed
    )
    for sub in all_subsets(quiet.names):
        if "m1" in sub:
            # eta_inf is an excess over each world's own Bayes risk; compare raw best risks
            raw_quiet = quiet.eta_inf(sub) + quiet.bayes_risk()
            raw_loud = loud.eta_inf(sub) + loud.bayes_risk()
            assert raw_loud >= raw_quiet - 1e-9


def test_oracle_scores_true_and_constant_encoders():
    world = synthetic.LinearWorld((5, 5), latent_dim=2, rho=0.5, noise=0.4, seed=1)
    d = sum(world.dims.values())
    # the true encoder: the population least-squares predictor on all modalities
    assert world.eta_linear(world.best_linear()) == pytest.approx(0.0, abs=1e-9)
    # a constant (zero) encoder: eta = Var y - Bayes risk
    _, _, syy = world.second_moments()
    assert world.eta_linear(np.zeros((d, 1))) == pytest.approx(np.trace(syy) - world.bayes_risk())
    # the risk of the best predictor on M is Bayes + eta_inf(M)
    for sub in all_subsets(world.names):
        assert world.risk_linear(world.best_linear(sub)) == pytest.approx(
            world.bayes_risk() + world.eta_inf(sub), abs=1e-9
        )


def test_duplicated_modality_adds_nothing():
    world = synthetic.OverlapWorld(2, 3, 1.0)  # w = 1: each modality sees the whole target
    assert world.eta_inf("m1") == pytest.approx(world.eta_inf("m1+m2"), abs=1e-9)


def test_same_seed_same_sample_and_nested_prefixes():
    for world in worlds(0) + [synthetic.NonlinearWorld(), synthetic.iemocap_like()]:
        a, b = world.sample(50, seed=3), world.sample(50, seed=3)
        small = world.sample(20, seed=3)
        for k in world.names:
            assert torch.equal(a[k], b[k])
            # a prefix up to BLAS rounding: the BLAS may block a 20-row and a 50-row product
            # differently (seen with numpy 2.5 on 16 cores; bit-equal on 2)
            torch.testing.assert_close(a[k][:20], small[k], rtol=1e-12, atol=1e-12)
        assert torch.equal(a.y, b.y)
        torch.testing.assert_close(a.y[:20], small.y, rtol=1e-12, atol=1e-12)
        assert not torch.equal(a[world.names[0]], world.sample(50, seed=4)[world.names[0]])


def test_adding_a_modality_keeps_the_other_streams():
    two = synthetic.LinearWorld((4, 4), latent_dim=2, n_noise_modalities=0, seed=0)
    three = synthetic.LinearWorld((4, 4), latent_dim=2, n_noise_modalities=1, seed=0)
    a, b = two.sample(30, seed=1), three.sample(30, seed=1)
    assert torch.equal(a["m1"], b["m1"]) and torch.equal(a["m2"], b["m2"])
    assert torch.equal(a.y, b.y)


def test_global_seeding_changes_nothing():
    world = synthetic.LinearWorld()
    np.random.seed(1)
    torch.manual_seed(1)
    a = world.sample(20, seed=5)
    np.random.seed(2)
    torch.manual_seed(2)
    np.random.standard_normal(100)
    b = world.sample(20, seed=5)
    assert torch.equal(a["m1"], b["m1"]) and torch.equal(a.y, b.y)


def test_nonlinear_g_star_inverts_the_maps():
    world = synthetic.NonlinearWorld(seed=2)
    z = np.random.default_rng(0).standard_normal((100, world.latent_dim))
    zeta = world._zeta(z)
    data_x = {}
    for k, name in enumerate(world.names):
        v = zeta[:, k * world.r : (k + 1) * world.r]
        from synthetic.nonlinear import _phi

        data_x[name] = _phi(v @ world._A1[name].T) @ world._A2[name].T
    assert np.allclose(world.g_star(data_x), zeta, atol=1e-8)


def test_classification_bayes_risk_is_below_chance():
    world = synthetic.iemocap_like()
    assert 0 < world.bayes_risk() < np.log(6)
    assert world.bayes_risk_method == "monte_carlo" and world.bayes_risk_se < 1e-2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: synthetic.OverlapWorld(0, 5, 0.5), "n_modalities must be a positive integer"),
        (
            lambda: synthetic.OverlapWorld(2, 5, 1.5),
            r"overlap must be a finite number in \[0, 1\], got 1.5",
        ),
        (lambda: synthetic.OverlapWorld(2, 5, -0.1), "overlap must be a finite number in"),
        (lambda: synthetic.OverlapWorld(2, 5, 0.5, noise=-1), "noise must be"),
        (lambda: synthetic.LinearWorld((), latent_dim=2), "dims must list at least one"),
        (
            lambda: synthetic.LinearWorld((4, 4), rho=2),
            r"rho must be a finite number in \[0, 1\], got 2",
        ),
        (lambda: synthetic.LinearWorld((4, 4), rho=-0.5), "rho must be a finite number in"),
        (lambda: synthetic.LinearWorld((4, 4), noise=-0.1), "noise must be a finite number >= 0"),
        (lambda: synthetic.LinearWorld((4, 4), noise=(0.1, 0.2, 0.3)), "list of 2 numbers"),
        (
            lambda: synthetic.LinearWorld((4, 2), latent_dim=3),
            r"dims\[0\]=4 must be >= latent_dim=3|dims\[1\]=2 must be >= latent_dim=3",
        ),
        (lambda: synthetic.LinearWorld((4, 4), names=("a",)), "one entry per modality"),
        (lambda: synthetic.LinearWorld((4, 4), task="ranking"), "task must be"),
        (lambda: synthetic.NonlinearWorld((8, 2), latent_dim=4), r"dims\[1\]=2"),
        (lambda: synthetic.NonlinearWorld(rho=1.2), "rho must be a finite number in"),
        (lambda: synthetic.OverlapWorld().sample(0), "n must be a positive integer"),
        (lambda: synthetic.OverlapWorld().eta_inf("m9"), "unknown modality"),
        (lambda: synthetic.iemocap_like().eta_inf("text"), "closed form only for regression"),
        (
            lambda: synthetic.OverlapWorld(2, 3).risk_linear(np.zeros((5, 3))),
            r"W must have shape \(d=12, p=3\)",
        ),
    ],
)
def test_bad_world_inputs_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_classification_bayes_risk_is_the_true_posterior_cross_entropy():
    """The Bayes cross-entropy of a Gaussian classification world is E_x[H(p(y | x))] with the
    exact posterior. Checks: (1) the exact posterior scored on fresh labelled data gives the
    same number within 4 combined standard errors (labels drawn independently of the
    world's own computation); (2) a large-sample softmax fit on the posterior mean of the
    logits does no better than it (no classifier beats Bayes) and within 0.01 nats (it is
    reached, not a loose lower bound); (3) a halved value fails check (1) (a negative
    control: the old E[H(p(y | latent))] was 0.807 here, 0.32 nats low)."""
    from scipy.optimize import minimize_scalar

    world = synthetic.iemocap_like()
    bayes, se, method = world.bayes_risk(), world.bayes_risk_se, world.bayes_risk_method
    assert method == "monte_carlo" and se < 0.003
    data = world.sample(40_000, seed=12345)
    x, y = data.concat().double().numpy(), data.y.numpy()
    p = world.class_posterior(x)
    ce = -np.log(p[np.arange(len(y)), y])
    ce_se = ce.std(ddof=1) / np.sqrt(len(ce))
    tol = 4 * np.hypot(se, ce_se)
    assert abs(ce.mean() - bayes) < tol
    assert abs(ce.mean() - bayes / 2) > tol  # a halved Bayes risk is caught
    K, _ = world.logit_posterior()

    def softmax_ce(scale, x, y):  # a softmax on scale * E[logits | x]
        logits = scale * (x @ K.T)
        logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return -logp[np.arange(len(y)), y]

    fit = world.sample(20_000, seed=999)  # the scale is fitted on separate data
    xf, yf = fit.concat().double().numpy(), fit.y.numpy()
    scale = minimize_scalar(lambda a: softmax_ce(a, xf, yf).mean(), bounds=(0.1, 2.0)).x
    plug = softmax_ce(scale, x, y)
    assert plug.mean() > bayes - tol and plug.mean() < bayes + 0.01


def test_bayes_risk_labels_say_what_the_number_is():
    noisy_uniform = synthetic.LinearWorld(
        (4, 4), task="classification", n_classes=3, latent="uniform", noise=0.3
    )
    assert noisy_uniform.bayes_risk_method == "lower_bound"
    clean_uniform = synthetic.LinearWorld(
        (4, 4), task="classification", n_classes=3, latent="uniform", noise=0.0
    )
    assert clean_uniform.bayes_risk_method == "monte_carlo"
    assert synthetic.LinearWorld((4, 4), latent="uniform", noise=0.3).bayes_risk_method == (
        "best_linear"
    )
    assert synthetic.LinearWorld((4, 4)).bayes_risk_method == "exact"
    assert synthetic.NonlinearWorld(noise=0.2).bayes_risk_method == "lower_bound"
    assert synthetic.NonlinearWorld().bayes_risk_method == "monte_carlo"


def test_the_exact_risk_is_never_negative_and_otherwise_unchanged():
    """Where the best predictor fits exactly (overlap 1, all modalities) the risk is 0, not
    the cancellation's -1e-16; a predictor with a positive risk keeps its exact value
    (control: tr Sigma_yy for W = 0)."""
    world = synthetic.table4_world(1.0, dim=5)
    W = world.best_linear()
    assert world.risk_linear(W) == 0.0
    assert (world.risk_linear(np.stack([W, W])) >= 0).all()
    _, _, syy = world.second_moments()
    assert world.risk_linear(np.zeros_like(W)) == float(np.trace(syy))


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_class_posterior_product_form_is_the_average_softmax(scale, monkeypatch):
    """The posterior as two products (synthetic.base._posterior_of_means) equals the
    average over the inner points of the max-shifted softmax, for ordinary logits and for
    logits scaled to spreads of hundreds of nats (scale 300: some products underflow and
    those rows fall back to the direct form); a posterior with mass moved is caught."""
    from scipy import special
    from scipy.stats import qmc

    from synthetic.base import BAYES_SEED

    world = synthetic.LinearWorld(
        (4, 4), latent_dim=2, task="classification", n_classes=4, scale=scale, seed=3
    )
    K, L = world.logit_posterior()
    mu = world.sample(50, seed=1).concat().double().numpy() @ K.T
    noise = special.ndtri(qmc.Sobol(L.shape[1], scramble=True, seed=BAYES_SEED).random(64))
    u = mu[:, None, :] + (noise @ L.T)[None]
    u = np.exp(u - u.max(axis=2, keepdims=True))
    direct = (u / u.sum(axis=2, keepdims=True)).mean(axis=1)
    a = np.exp(mu - mu.max(1, keepdims=True))
    e = np.exp((noise @ L.T) - (noise @ L.T).max(1, keepdims=True))
    assert ((a @ e.T) < 1e-250).any() == (scale > 1)  # the fallback is exercised
    monkeypatch.setattr("synthetic.base.POSTERIOR_ROWS", 7)  # several chunks of rows
    p = world._posterior_of_means(mu, 64)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1.0, atol=1e-12)
    # the same sum in another order: a few ulps per term over 64 points (measured at most
    # 4.6e-15 of a row's largest entry), so 1e-10 leaves a wide margin; atol for entries
    # below 1e-80 of their row, which the product form may round to 0 (its docstring)
    assert np.allclose(p, direct, rtol=1e-10, atol=1e-14)
    moved = p.copy()
    moved[:, 0] += 1e-6
    moved[:, 1] -= 1e-6
    assert not np.allclose(moved, direct, rtol=1e-10, atol=1e-14)


def test_bayes_risk_means_have_the_law_of_k_x():
    """The Bayes risk draws the posterior means K x from N(0, K Sigma K^T) instead of x.
    Its posterior, scored on fresh labelled data (labels drawn by the world, independently
    of that law), agrees with it within 4 combined standard errors; negative control: the
    same estimate with the covariance 10% too large is caught (measured z = -7 to -17 on
    seven worlds by the review of 0.9.0)."""
    world = synthetic.iemocap_like()
    data = world.sample(40_000, seed=4242)
    p = world.class_posterior(data.concat().double().numpy())
    ce = -np.log(p[np.arange(len(p)), data.y.numpy()])
    K, _ = world.logit_posterior()
    cov = K @ world.second_moments()[0] @ K.T
    bayes = world._entropy_of_means

    right, se = bayes(cov)
    # the estimator the world uses (equal up to BLAS summation order, which depends on the
    # thread count the cached value was computed with: a few ulps)
    assert right == pytest.approx(world.bayes_risk(), rel=1e-12)
    tol = 4 * np.hypot(se, ce.std(ddof=1) / np.sqrt(len(ce)))
    assert abs(ce.mean() - right) < tol
    wrong, _ = bayes(1.1 * cov)
    assert abs(ce.mean() - wrong) > tol


def test_a_linear_world_that_draws_another_way_must_give_its_own_truth():
    """The closed-form Bayes risk and oracle describe the declared model x = T z + noise.
    A subclass overriding how samples are drawn, without its own Bayes risk, is refused
    when it is defined (naming the methods); with its own Bayes risk it has no exact
    oracle and shares no draws. Overriding only ``_features`` (structure, the same law)
    keeps both (negative control)."""
    import pytest

    import synthetic
    from synthetic.base import LinearLatentWorld

    with pytest.raises(TypeError, match="Outliers overrides sample: .*override bayes_risk"):

        class Outliers(synthetic.LinearWorld):  # noqa: F841  (refused at definition)
            def sample(self, n, seed=None):
                data = super().sample(n, seed)
                return data

    class OwnTruth(synthetic.LinearWorld):
        def sample_latent(self, n, seed=None):
            return 2.0 * super().sample_latent(n, seed)

        def bayes_risk(self):
            return float("nan")

    world = OwnTruth((2, 2), latent_dim=2, seed=0)
    assert OwnTruth.redrawn() == ["sample_latent"]
    assert world.oracle() is None and not world.has_exact_oracles
    assert world.shared_draw_key() is None

    class Structured(synthetic.LinearWorld):
        def _features(self, z, name):
            return super()._features(z, name)

    same = Structured((2, 2), latent_dim=2, seed=0)
    assert Structured.redrawn() == [] and same.oracle() is same
    assert same.shared_draw_key() is not None
    assert LinearLatentWorld.redrawn() == []
