"""The batched engine equals a per-model loop; the closed form equals numpy's lstsq."""

import numpy as np
import pytest
import torch
from helpers import assert_batched_equals_loop, setup_models

from mmtheory.engine import (
    GramFactors,
    closed_form,
    fit_least_squares,
    least_squares_path,
    train_batched,
)
from mmtheory.estimation import fit_linear_heads
from mmtheory.models import Learner
from mmtheory.models import weight as weight_slot
from mmtheory.models.params import ENCODER
from mmtheory.reference import train_vmap

LEARNERS = [
    Learner("linear", solver="gd", lr=0.05, steps=15),
    Learner("linear", solver="adam", lr=0.02, steps=15, ridge=0.01),
    Learner("late_fusion", encoder="linear", solver="adam", steps=15, latent_dim=3),
    Learner(
        "late_fusion", encoder="mlp", solver="adam", steps=15, latent_dim=3, hidden=5, batch_size=7
    ),
    Learner(
        "late_fusion",
        encoder="mlp",
        fusion="sum",
        activation="tanh",
        solver="gd",
        lr=0.1,
        steps=15,
        latent_dim=3,
        hidden=4,
    ),
    Learner("early_fusion", encoder="mlp", solver="adam", steps=15, latent_dim=4, batch_size=9),
    Learner("early_fusion", encoder="linear", solver="gd", lr=0.05, steps=15, latent_dim=4),
]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize(
    "learner", LEARNERS, ids=lambda lrn: f"{lrn.label}-{lrn.solver}-{lrn.fusion}"
)
def test_batched_equals_per_model_loop(task, learner):
    assert_batched_equals_loop(learner, task, *setup_models(task, learner))


def test_vmap_baseline_equals_batched_for_linear():
    learner = Learner("linear", solver="adam", lr=0.02, steps=10)
    world, subs, datas, plan, inits, xs, y = setup_models("classification", learner, G=1)
    res = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    stacked = train_vmap(
        learner,
        subs,
        world.names,
        {k: datas[0][k] for k in world.names},
        y[0],
        inits[0],
        task="classification",
    )
    weight = stacked[0]  # first.weight: (S, p, d) over all modalities, zero-filled inputs
    for s, sub in enumerate(subs):
        col = 0
        for name in world.names:
            d = world.dims[name]
            if name in sub:
                mine = res.params[weight_slot(ENCODER, 1, name)][
                    0, plan.members(world.names.index(name)).index(s)
                ]
                assert torch.allclose(weight[s, :, col : col + d].T, mine, atol=1e-10)
            col += d


def test_closed_form_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    n, d = 60, 7
    X = rng.standard_normal((n, d))
    X[:, 6] = X[:, 0]  # a duplicated column: rank-deficient, minimum-norm solution
    Y = X @ rng.standard_normal((d, 2)) + 0.3 * rng.standard_normal((n, 2)) + 1.5
    col_sets = [torch.tensor([0, 1, 2]), torch.tensor([0, 3, 4, 5, 6]), torch.arange(7)]
    sizes = [8, 20, 60]
    fits = fit_least_squares(torch.from_numpy(X), torch.from_numpy(Y), sizes, col_sets)
    blocks = fit_least_squares(
        [torch.from_numpy(X[:, :3]), torch.from_numpy(X[:, 3:])],
        torch.from_numpy(Y),
        sizes,
        col_sets,
    )
    for i, m in enumerate(sizes):
        for j, cols in enumerate(col_sets):
            Z = np.column_stack([X[:m, cols.numpy()], np.ones(m)])
            coef, *_ = np.linalg.lstsq(Z, Y[:m], rcond=None)
            fit = fits[i][j]
            assert np.allclose(fit.W.numpy()[cols.numpy()], coef[:-1], atol=1e-8)
            assert np.allclose(fit.b.numpy(), coef[-1], atol=1e-8)
            resid = Y[:m] - Z @ coef
            assert fit.train_loss == pytest.approx((resid**2).sum() / m, rel=1e-8, abs=1e-10)
            assert torch.allclose(fit.W, blocks[i][j].W, atol=1e-10)


def _latent_case(T, B, n=300, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, T.shape[1])) + 0.7  # non-zero means: the intercept's row
    return torch.from_numpy(z), torch.from_numpy(T), torch.from_numpy(B)


@pytest.mark.parametrize("mixed", [False, True])
def test_fits_from_the_latents_moments_equal_fits_from_the_features(mixed):
    """x = T z, y = B z: the Gram matrices, fits, training risks and probe risks from the
    latent's moments (no features formed) equal those from the features, within float64
    rounding scaled by the problem (the data's Gram entries reach n * |x|^2). T is either a
    0/1 selection with a modality sharing columns (rank-deficient, as Table 4's overlap
    worlds) or a dense mix."""
    rng = np.random.default_rng(1)
    r, p = 6, 2
    if mixed:
        T = rng.standard_normal((9, r))
    else:
        T = np.zeros((9, r))
        for row, col in enumerate([0, 1, 2, 0, 3, 4, 0, 1, 5]):  # columns shared across blocks
            T[row, col] = 1.0
    B = rng.standard_normal((p, r))
    z, Tt, Bt = _latent_case(T, B)
    X, Y = z @ Tt.T, z @ Bt.T
    blocks = [X[:, :3], X[:, 3:6], X[:, 6:]]
    sizes, cols = (
        [7, 40, 300],
        [torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2, 3, 4, 5]), torch.arange(9)],
    )
    latent = GramFactors.from_latent(z, Tt, sizes, cols)
    direct = GramFactors(blocks, sizes, cols)
    w_star = torch.from_numpy(rng.standard_normal((9, p)))
    got = least_squares_path(None, None, sizes, cols, factors=latent, target_map=Bt, probe=w_star)
    want = least_squares_path(blocks, Y, sizes, cols, factors=direct, probe=w_star)
    eps = np.finfo(float).eps
    for i, m in enumerate(sizes):
        scale = float(direct.grams[i].abs().max())
        assert float((latent.grams[i] - direct.grams[i]).abs().max()) <= 50 * r * eps * scale
        y_scale = float((Y[:m] ** 2).sum(1).mean())
        assert abs(got.probe_risk[i] - want.probe_risk[i]) <= 1e-9 * y_scale
        for j in range(len(cols)):
            a, b = got.fits[i][j], want.fits[i][j]
            assert a.rank == b.rank
            assert abs(a.train_loss - b.train_loss) <= 1e-9 * y_scale
            tol = 1e-7 * max(1.0, float(b.W.abs().max()))
            assert torch.allclose(a.W, b.W, atol=tol) and torch.allclose(a.b, b.b, atol=tol)


def test_latent_moments_are_not_the_features_of_another_map():
    """Negative control: the latent route with a wrong map (T perturbed by 1e-3) disagrees
    with the features' fits far beyond the tolerance above."""
    rng = np.random.default_rng(2)
    T, B = rng.standard_normal((5, 4)), rng.standard_normal((1, 4))
    z, Tt, Bt = _latent_case(T, B)
    Y = z @ Bt.T
    sizes, cols = [50, 300], [torch.arange(5)]
    wrong = GramFactors.from_latent(z, Tt * (1 + 1e-3), sizes, cols)
    got = least_squares_path(None, None, sizes, cols, factors=wrong, target_map=Bt)
    want = least_squares_path(z @ Tt.T, Y, sizes, cols)
    assert not torch.allclose(got.fits[-1][0].W, want.fits[-1][0].W, atol=1e-5)


def test_latent_factors_refuse_targets_and_data_factors_refuse_a_map():
    z, Tt, Bt = _latent_case(np.eye(3), np.ones((1, 3)))
    cols = [torch.arange(3)]
    latent = GramFactors.from_latent(z, Tt, [300], cols)
    with pytest.raises(ValueError, match="target_map"):
        least_squares_path(None, z @ Bt.T, [300], cols, factors=latent)
    with pytest.raises(ValueError, match="target_map"):
        least_squares_path(z @ Tt.T, z @ Bt.T, [300], cols, target_map=Bt)
    with pytest.raises(ValueError, match="shape"):
        GramFactors.from_latent(z, Tt[:, :2], [300], cols)
    with pytest.raises(ValueError, match="X must be None"):
        least_squares_path(z @ Tt.T, None, [300], cols, factors=latent, target_map=Bt)
    with pytest.raises(ValueError, match=r"target_map must have shape \(p, 3\)"):
        least_squares_path(None, None, [300], cols, factors=latent, target_map=Bt[:, :2])
    with pytest.raises(ValueError, match="at least one"):
        GramFactors.from_latent(z, Tt, [], cols)
    one_d = least_squares_path(None, None, [300], cols, factors=latent, target_map=Bt[0])
    two_d = least_squares_path(None, None, [300], cols, factors=latent, target_map=Bt)
    assert torch.equal(one_d.fits[0][0].W, two_d.fits[0][0].W)


def test_a_selection_map_is_gathered_with_the_products_numbers():
    """Where T copies latent columns (Table 4), the Gram and X^T y are gathered from the
    latent's moments: bit-identical to the products T~ S T~^T and T~ S B~^T; a dense T is
    not taken for a selection (control)."""
    T = np.zeros((5, 4))
    for row, col in enumerate([0, 1, 0, 2, 3]):
        T[row, col] = 1.0
    z, Tt, Bt = _latent_case(T, np.ones((2, 4)))
    assert closed_form.selection_rows(Tt).tolist() == [0, 1, 0, 2, 3]
    assert closed_form.selection_rows(Tt * 1.5) is None
    assert closed_form.selection_rows(Tt + 1e-3) is None
    factors = GramFactors.from_latent(z, Tt, [100, 300], [torch.arange(5)])
    latent = factors.latent
    Tl = latent.lift(latent.T, intercept_column=True)
    for S, A in zip(latent.S, factors.grams, strict=True):
        P = Tl @ S @ Tl.T
        assert torch.equal(A, (P + P.T) / 2)
        assert torch.equal(latent.apply_T(S), Tl @ S)


def test_the_route_is_chosen_by_its_cost():
    """A selection map or few sizes: the latent route; a dense map as wide as its latent
    with many sizes of a short sample: the features (cheaper there)."""
    select = np.eye(50)
    dense = np.random.default_rng(0).standard_normal((50, 50))
    assert closed_form.latent_route_pays(select, n=1000, n_sizes=40)
    assert closed_form.latent_route_pays(dense, n=100_000, n_sizes=3)
    assert not closed_form.latent_route_pays(dense, n=1000, n_sizes=40)


def test_probe_risk_equals_the_direct_residuals():
    """The fixed predictor's prefix risks from the Gram formula equal its residuals summed
    directly, within float64 rounding of y'y / m (the cancellation's scale); a wrong probe
    (scaled by 1.001) is off by far more."""
    rng = np.random.default_rng(1)
    n, d, p = 400, 9, 3
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, p))
    Y = X @ W + 0.1 * rng.standard_normal((n, p))
    sizes = [20, 100, 400]
    blocks = [torch.from_numpy(X[:, :4]), torch.from_numpy(X[:, 4:])]
    path = least_squares_path(
        blocks, torch.from_numpy(Y), sizes, [torch.arange(d)], probe=torch.from_numpy(W)
    )
    wrong = least_squares_path(
        blocks, torch.from_numpy(Y), sizes, [torch.arange(d)], probe=torch.from_numpy(1.001 * W)
    )
    for m, got, off in zip(sizes, path.probe_risk, wrong.probe_risk, strict=True):
        direct = float(((Y[:m] - X[:m] @ W) ** 2).sum(1).mean())
        scale = float((Y[:m] ** 2).sum(1).mean())
        tol = 50 * d * np.finfo(float).eps * scale
        assert abs(got - direct) <= tol
        assert abs(off - direct) > 100 * tol
    assert [[f.train_loss for f in r] for r in path.fits] == [
        [f.train_loss for f in r]
        for r in fit_least_squares(blocks, torch.from_numpy(Y), sizes, [torch.arange(d)])
    ]


def test_linear_heads_equal_lstsq():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2, 3, 40, 4))  # (G, S, n, q)
    y = rng.standard_normal((2, 40, 2))
    W, b = fit_linear_heads(torch.from_numpy(z), torch.from_numpy(y))
    for g in range(2):
        for s in range(3):
            coef, *_ = np.linalg.lstsq(np.column_stack([z[g, s], np.ones(40)]), y[g], rcond=None)
            assert np.allclose(W[g, s].numpy(), coef[:-1], atol=1e-10)
            assert np.allclose(b[g, s].numpy(), coef[-1], atol=1e-10)


def test_planted_nan_model_is_isolated():
    learner = Learner("late_fusion", encoder="mlp", solver="adam", steps=10, latent_dim=3, hidden=4)
    world, subs, datas, plan, inits, xs, y = setup_models("classification", learner)
    clean = train_batched(learner, plan, xs, y, inits, task="classification", dtype=torch.float64)
    poisoned = [[dict(p) for p in row] for row in inits]
    poisoned[1][3] = {k: torch.full_like(v, float("nan")) for k, v in poisoned[1][3].items()}
    res = train_batched(learner, plan, xs, y, poisoned, task="classification", dtype=torch.float64)
    assert bool(res.diverged[1, 3]) and not bool(res.converged[1, 3])
    assert int(res.diverged.sum()) == 1
    keep = torch.ones_like(res.diverged)
    keep[1, 3] = False
    assert torch.equal(res.train_loss[keep], clean.train_loss[keep])


def test_f1_scores_by_hand():
    from mmtheory.estimation import f1_scores

    y = torch.tensor([[0, 0, 1, 1, 2]])
    pred = torch.tensor([[[0, 1, 1, 1, 0]]])  # one model
    f1 = f1_scores(pred, y, 3)
    # class 0: tp 1, pred 2, true 2 -> 0.5; class 1: tp 2, pred 3, true 2 -> 0.8; class 2: 0
    assert np.allclose(f1["per_class"][0, 0], [0.5, 0.8, 0.0])
    assert f1["macro"][0, 0] == pytest.approx(1.3 / 3)
    assert f1["weighted"][0, 0] == pytest.approx((2 * 0.5 + 2 * 0.8 + 0) / 5)
