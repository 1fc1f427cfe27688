"""Latent quality eta of trained encoders: exact from an oracle, or by refitting the head.

eta(g^) = inf_h r(h o g^) - r(h* o g*). Sample-based: the encoder is frozen and the head
refit on a fresh *refit* sample (closed-form least squares for squared loss; a batched
convex solver for softmax heads), its risk measured on a separate *evaluation* sample, and
the Bayes risk subtracted. Exact: for a linear encoder in a world with a linear oracle, the
best head's risk is a closed form. On real data the Bayes risk is unknown: eta is then
the held-out risk of the refit head, a proxy whose differences estimate gamma.

Bias. A head fitted on n refit rows is worse than the best head by a finite-sample excess,
which a plain refit estimate adds to eta (+0.05 nats with a 96-d latent, 6 classes and
5,000 rows) and which grows with the latent's dimension q, so it biases gamma against
larger subsets. The estimate is debiased (``debias=True``, the default) and the correction
is returned in ``extras["bias_correction"]``:

- least-squares heads with an intercept: for Gaussian latents the expected held-out risk
  is s2 (1 + 1/n) (n - 2) / (n - q - 2) (q the latent's rank), so the held-out risk is
  divided by that factor (exact in expectation for Gaussian latents);
- softmax heads: the excess of a maximum-likelihood fit is about d / (2 n) nats with
  d = (q + 1)(C - 1) free parameters (Akaike; exact to first order for a well-specified
  head), subtracted.
"""

from __future__ import annotations

import numpy as np
import torch

from mmtheory.estimation.estimate import Estimate, Models, Sample, Truth, mean_se
from mmtheory.estimation.linear_maps import linear_encoder
from mmtheory.estimation.risk import EVAL_CHUNK
from mmtheory.models.forward import forward
from mmtheory.models.losses import per_sample_loss
from mmtheory.models.params import HEAD, bias, branch_params, weight

__all__ = [
    "branch_models",
    "eta",
    "eta_exact",
    "eta_refit",
    "exact_eta_available",
    "fit_linear_heads",
    "fit_softmax_heads",
    "latent_rank",
    "latents",
    "ls_excess_factor",
]


@torch.no_grad()
def latents(models: Models, xs: list[torch.Tensor]) -> torch.Tensor:
    """The encoders' outputs g(x), (G, S, n, q), computed in row chunks."""
    n = xs[0].shape[1]
    parts = []
    for start in range(0, n, EVAL_CHUNK):
        chunk = [x[:, start : start + EVAL_CHUNK] for x in xs]
        _, z = forward(models.learner, models.params, chunk, models.plan, return_latent=True)
        parts.append(z)
    return torch.cat(parts, dim=2)


def fit_linear_heads(
    z: torch.Tensor, y: torch.Tensor, *, return_rank: bool = False
) -> tuple[torch.Tensor, ...]:
    """Least-squares heads with intercept for every model, in float64.

    z : (G, S, n, q) latents; y : (G, n, p). Returns W (G, S, q, p) and b (G, S, p)
    (minimum-norm solutions when a latent is rank-deficient), and with ``return_rank`` the
    rank of each latent (G, S) (the intercept not counted).
    """
    z = z.double()
    y = y.double()
    G, S, n, q = z.shape
    Z = torch.cat([z, torch.ones(G, S, n, 1, dtype=z.dtype, device=z.device)], dim=-1)
    A = Z.transpose(-1, -2) @ Z
    c = Z.transpose(-1, -2) @ y[:, None]
    # a model whose latent is not finite (diverged) gets NaN heads; it must not make the
    # batched eigh fail for every model
    ok = torch.isfinite(A).all(-1).all(-1) & torch.isfinite(c).all(-1).all(-1)
    if not bool(ok.all()):
        eye = torch.eye(q + 1, dtype=A.dtype, device=A.device)
        A = torch.where(ok[..., None, None], A, eye)
        c = torch.where(ok[..., None, None], c, torch.zeros_like(c))
    w, V = torch.linalg.eigh(A)
    cut = w.amax(dim=-1, keepdim=True).clamp_min(0) * (q + 1) * torch.finfo(A.dtype).eps * 10
    inv = torch.where(w > cut, 1.0 / w, torch.zeros_like(w))
    sol = V @ (inv[..., None] * (V.transpose(-1, -2) @ c))
    if not bool(ok.all()):
        sol = torch.where(ok[..., None, None], sol, torch.full_like(sol, float("nan")))
    if return_rank:
        return sol[..., :q, :], sol[..., q, :], (w > cut).sum(-1) - 1
    return sol[..., :q, :], sol[..., q, :]


def latent_rank(z: torch.Tensor) -> torch.Tensor:
    """Rank of each model's centred latent, (G, S), from z (G, S, n, q)."""
    zc = (z - z.mean(dim=2, keepdim=True)).double()
    gram = zc.transpose(-1, -2) @ zc
    ok = torch.isfinite(gram).all(-1).all(-1)
    if not bool(ok.all()):  # a diverged model: rank 0, never a failed batched eigvalsh
        gram = torch.where(ok[..., None, None], gram, torch.zeros_like(gram))
    w = torch.linalg.eigvalsh(gram)
    cut = w.amax(dim=-1, keepdim=True).clamp_min(0) * z.shape[-1] * torch.finfo(w.dtype).eps * 10
    return (w > cut).sum(-1)


def ls_excess_factor(n: int, q: torch.Tensor) -> torch.Tensor:
    """E[held-out risk of an LS head] / (best head's risk) = (1 + 1/n)(n - 2)/(n - q - 2) for
    Gaussian latents of rank q and n fitting rows (NaN where n <= q + 2)."""
    q = q.double()
    denom = n - q - 2
    return torch.where(denom > 0, (1 + 1 / n) * (n - 2) / denom.clamp_min(1), float("nan"))


def _softmax_loss_t(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per model of class-major logits ``out`` (B, C, n) at labels ``idx``
    (B, 1, n) (:func:`mmtheory.models.losses.loss_per_model`, classes on axis 1)."""
    return (torch.logsumexp(out, 1) - out.gather(1, idx).squeeze(1)).mean(-1)


#: Step lengths the L-BFGS line search tries, longest first (0: stay, so never worse).
_STEPS = (1.0, 0.5, 0.25, 0.1, 0.03, 0.01, 0.0)


def _lbfgs_heads(
    zs: torch.Tensor, idx: torch.Tensor, theta: torch.Tensor, *, iters: int, tol: float, memory: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched L-BFGS for B independent multinomial logistic regressions.

    zs (B, n, q) standardised latents, idx (B, n, 1) labels, theta (B, q + 1, C) the start
    (rows: W, then b). Each model keeps its own curvature pairs and step length; the
    logits are updated along each direction (one pass over ``zs`` for the direction's
    logits, one for the gradient per iteration, as much as one Adam step). The line
    search takes the longest of ``_STEPS`` meeting Armijo's condition, else the best
    (0 included), so no model's objective ever increases. A model stops once its gradient
    norm is below ``tol`` (it is then left alone, so nothing couples the models); the loop
    ends when all have. Returns theta and the final gradient norms (B,).

    Internally class-major: logits (B, C, n) and parameters (B, C, q + 1). With few
    classes, the softmax over a short last axis and products with a few output columns
    are several times slower on the CPU than over the rows (measured: softmax 21x, the
    two products 2.4x and 4.6x, for 21 models x 3,000 rows x 6 classes)."""
    B, n, q = zs.shape
    C = theta.shape[-1]
    zt = zs.transpose(1, 2).contiguous()  # (B, q, n)
    it = idx.transpose(1, 2)  # (B, 1, n)
    onehot = torch.zeros(B, C, n, dtype=zs.dtype, device=zs.device).scatter_(1, it, 1.0)

    def logits(th: torch.Tensor) -> torch.Tensor:  # th (B, C, q + 1) -> (B, C, n)
        return th[:, :, :q] @ zt + th[:, :, q:]

    def gradient(out: torch.Tensor) -> torch.Tensor:
        r = (torch.softmax(out, 1) - onehot) / n
        return torch.cat([r @ zs, r.sum(2, keepdim=True)], 2)

    theta = theta.transpose(1, 2).contiguous()
    out = logits(theta)
    f = _softmax_loss_t(out, it)
    g = gradient(out)
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    ts = torch.tensor(_STEPS, dtype=zs.dtype, device=zs.device)
    done = torch.zeros(B, dtype=torch.bool, device=zs.device)
    for _ in range(iters):
        gflat = g.flatten(1)
        gnorm = gflat.norm(dim=1)
        # a converged model stops for good: its answer never depends on the others'
        done |= gnorm <= tol
        if bool(done.all()):
            break
        # two-loop recursion, per model
        r = gflat.clone()
        alphas = []
        for s_i, y_i in zip(reversed(S), reversed(Y)):
            sy = (s_i * y_i).sum(1)
            rho = torch.where(sy > 1e-12, 1 / sy.clamp_min(1e-12), 0.0)
            a = rho * (s_i * r).sum(1)
            r -= a[:, None] * y_i
            alphas.append((a, rho))
        if S:
            sy = (S[-1] * Y[-1]).sum(1)
            yy = (Y[-1] * Y[-1]).sum(1)
            gamma = torch.where(sy > 1e-12, sy / yy.clamp_min(1e-30), 1.0)
        else:
            gamma = torch.ones(B, dtype=zs.dtype, device=zs.device)
        r *= gamma[:, None]
        for (s_i, y_i), (a, rho) in zip(zip(S, Y), reversed(alphas)):
            b = rho * (y_i * r).sum(1)
            r += (a - b)[:, None] * s_i
        d = -r
        slope = (gflat * d).sum(1)
        bad = slope >= 0  # not a descent direction: steepest descent for that model
        d = torch.where(bad[:, None], -gflat, d)
        slope = torch.where(bad, -(gnorm**2), slope)
        d = d.view_as(theta)
        dout = logits(d)  # the logits move linearly along d
        # the full step first; only the models it fails try the shorter ones (the same
        # choice as trying every step: a full step meeting Armijo's condition is the
        # longest such step, and it decreases the objective)
        trial = torch.full((B, len(_STEPS)), torch.inf, dtype=zs.dtype, device=zs.device)
        trial[:, 0] = _softmax_loss_t(out + _STEPS[0] * dout, it)
        short = torch.nonzero(~(trial[:, 0] <= f + 1e-4 * _STEPS[0] * slope))[:, 0]
        if len(short):
            o, do, ix = out[short], dout[short], it[short]
            for c, t_c in enumerate(_STEPS[1:], 1):
                trial[short, c] = _softmax_loss_t(o + t_c * do, ix)
        armijo = trial <= f[:, None] + 1e-4 * ts[None] * slope[:, None]
        armijo[:, -1] = True
        first = armijo.to(torch.int8).argmax(1)  # longest step meeting Armijo's condition
        best = trial.argmin(1)
        pick = torch.where(trial.gather(1, first[:, None])[:, 0] <= f, first, best)
        t = torch.where(done, 0.0, ts[pick])
        step = t[:, None, None] * d
        theta = theta + step
        out = out + t[:, None, None] * dout
        f_new = _softmax_loss_t(out, it)
        g_new = gradient(out)
        S.append(step.flatten(1))
        Y.append((g_new - g).flatten(1))
        if len(S) > memory:
            S.pop(0)
            Y.pop(0)
        f, g = f_new, g_new
    return theta.transpose(1, 2).contiguous(), g.flatten(1).norm(dim=1)


def fit_softmax_heads(
    z: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    solver: str = "lbfgs",
    iters: int = 60,
    tol: float | None = None,
    steps: int = 150,
    lr: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multinomial logistic heads for every model (a convex problem, solved per model).

    Latents are standardised per model and feature (an affine change of the head's
    coordinates: the same class of heads, better conditioning). ``init`` = (W, b) in
    the original coordinates warm-starts the solver (e.g. the trained head). Returns
    W (G, S, q, C), b (G, S, C) in the original coordinates (z is (G, S, n, q)) and the
    final gradient norm per model (G, S) (standardised coordinates, mean loss).

    ``solver="lbfgs"`` (default): batched L-BFGS, each model with its own curvature
    pairs and line search, up to ``iters`` iterations, until its gradient norm is below
    ``tol`` (default 1e-5 in float32, 1e-9 in float64). ``solver="adam"``: ``steps``
    full-batch Adam steps at ``lr`` (the refit before mmtheory 0.5: a point short of the
    optimum; kept for comparison).
    """
    G, S, n, q = z.shape
    mu = z.mean(dim=2, keepdim=True)
    sd = z.std(dim=2, keepdim=True).clamp_min(1e-6)
    zs = (z - mu) / sd
    if init is None:
        W0 = torch.zeros(G, S, q, n_classes, dtype=z.dtype, device=z.device)
        b0 = torch.zeros(G, S, n_classes, dtype=z.dtype, device=z.device)
    else:
        # h(z) = z W + b = zs (sd W) + (b + mu W)
        W0 = init[0].to(z.dtype) * sd[:, :, 0, :, None]
        b0 = init[1].to(z.dtype) + (mu[:, :, 0, None, :] @ init[0].to(z.dtype))[:, :, 0]
    idx = y[:, None, :, None].expand(G, S, n, 1)
    if solver == "lbfgs":
        theta0 = torch.cat([W0, b0[:, :, None]], 2).flatten(0, 1)
        if tol is None:
            tol = 1e-9 if z.dtype == torch.float64 else 1e-5
        theta, gnorm = _lbfgs_heads(
            zs.flatten(0, 1), idx.flatten(0, 1), theta0, iters=iters, tol=tol, memory=10
        )
        theta = theta.view(G, S, q + 1, n_classes)
        W, b, grad = theta[:, :, :q], theta[:, :, q], gnorm.view(G, S)
    elif solver == "adam":
        W = W0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        opt = torch.optim.Adam([W, b], lr=lr, fused=True)

        def objective():
            out = zs @ W + b[:, :, None]
            return (torch.logsumexp(out, -1) - out.gather(-1, idx).squeeze(-1)).mean(2)

        for _ in range(steps):
            opt.zero_grad()
            objective().sum().backward()
            opt.step()
        opt.zero_grad()
        objective().sum().backward()
        assert W.grad is not None and b.grad is not None
        grad = torch.sqrt(W.grad.pow(2).sum((-1, -2)) + b.grad.pow(2).sum(-1)).detach()
        W, b = W.detach(), b.detach()
    else:
        raise ValueError(f"solver must be 'lbfgs' or 'adam', got {solver!r}")
    W_orig = W / sd[:, :, 0, :, None]
    b_orig = b - (mu[:, :, 0, None, :] @ W_orig)[:, :, 0]
    return W_orig, b_orig, grad


def trained_head(models: Models) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The trained head in the coordinates of the latent that ``forward`` returns, or None
    when the model has no linear head on its latent."""
    learner, params, plan = models.learner, models.params, models.plan
    bh = params[bias(HEAD)]
    G, p = bh.shape[0], plan.out_dim
    if not learner.method.has_linear_head:
        return None
    if learner.kind == "linear":
        eye = torch.eye(p, dtype=bh.dtype, device=bh.device)
        return eye.expand(G, plan.S, p, p), torch.zeros_like(bh)
    if learner.kind == "early_fusion" or learner.fusion == "sum":
        return params[weight(HEAD)], bh
    lat = learner.latent_dim
    W = torch.zeros(G, plan.S, lat * plan.K, p, dtype=bh.dtype, device=bh.device)
    for k, name in enumerate(plan.names):
        members = plan.members(k)
        if members:
            W[:, members, k * lat : (k + 1) * lat] = params[weight(HEAD, 0, name)]
    return W, bh


def eta_refit(
    models: Models,
    refit: Sample,
    evaluation: Sample,
    task: str,
    bayes_risk: float,
    method: str,
    memory_budget: float = 2.0 * 2**30,
    *,
    debias: bool = True,
) -> Estimate:
    """eta of every model's frozen encoder: refit the head on ``refit``, measure it on
    ``evaluation``, subtract ``bayes_risk``; with ``debias`` the refit's finite-sample
    excess is removed (module docstring) and reported in ``extras["bias_correction"]``.
    Groups are processed together as far as ``memory_budget`` (bytes of latents) allows.
    Softmax heads are warm-started from the trained heads. ``bayes_risk`` is 0 on real data
    (a proxy)."""
    G = refit.xs[0].shape[0]
    n = max(refit.y.shape[1], evaluation.y.shape[1])
    q = latents(models.groups(slice(0, 1)), [x[:1, :2] for x in refit.xs]).shape[-1]
    per_group = n * models.plan.S * q * 8 * 4
    step = max(1, min(G, int(memory_budget // max(per_group, 1))))
    n_fit = refit.y.shape[1]
    values, ses, corrections = [], [], []
    for g0 in range(0, G, step):
        sl = slice(g0, g0 + step)
        mg = models.groups(sl)
        fit, ev = refit.groups(sl), evaluation.groups(sl)
        z_fit, z_ev = latents(mg, fit.xs), latents(mg, ev.xs)
        if task == "regression":
            W, b, rank = fit_linear_heads(z_fit, fit.y, return_rank=True)
            out = z_ev.double() @ W + b[:, :, None]
            losses = per_sample_loss(out, ev.y.double(), task)
            mean, se = mean_se(losses)
            factor = ls_excess_factor(n_fit, rank).cpu().numpy()
            correction = mean - mean / factor if debias else np.zeros_like(mean)
            se = se / factor if debias else se
        else:
            W, b, _ = fit_softmax_heads(z_fit, fit.y, models.plan.out_dim, init=trained_head(mg))
            out = z_ev @ W + b[:, :, None]
            losses = per_sample_loss(out, ev.y, task)
            mean, se = mean_se(losses)
            d = (latent_rank(z_fit) + 1).double() * (models.plan.out_dim - 1)
            correction = (d / (2 * n_fit)).cpu().numpy() if debias else np.zeros_like(mean)
        values.append(mean - correction - bayes_risk)
        ses.append(se)
        corrections.append(correction)
    return Estimate(
        np.concatenate(values),
        np.concatenate(ses),
        method,
        {"bias_correction": np.concatenate(corrections)},
    )


def exact_eta_available(models: Models, truth: Truth) -> bool:
    """True when the oracle gives these encoders' eta exactly (linear encoders, squared loss)."""
    return (
        truth.oracle is not None
        and truth.task == "regression"
        and (linear_encoder(models) is not None)
    )


def eta_exact(models: Models, truth: Truth) -> Estimate:
    """Exact eta from the world's oracle: the best linear head on each linear encoder."""
    if not exact_eta_available(models, truth):
        raise ValueError(
            "exact eta needs a world with a linear oracle, a regression task and linear encoders"
        )
    encoder = linear_encoder(models)
    oracle = truth.oracle
    assert encoder is not None and oracle is not None  # checked above
    A = encoder.cpu().numpy()
    G, S = A.shape[:2]
    value = np.array([[oracle.eta_linear(A[g, s]) for s in range(S)] for g in range(G)])
    return Estimate(value, np.zeros_like(value), "exact")


def eta(models: Models, truth: Truth, method: str = "auto") -> Estimate:
    """eta of every model's encoder, (G, S): ``method`` "exact", "monte_carlo", "holdout"
    or "auto" (exact when available, else the sample-based method of ``truth``)."""
    if method == "auto":
        method = "exact" if exact_eta_available(models, truth) else truth.sampled
    if method == "exact":
        return eta_exact(models, truth)
    if method not in ("monte_carlo", "holdout"):
        raise ValueError(
            f"method must be 'exact', 'monte_carlo', 'holdout' or 'auto', got {method!r}"
        )
    if truth.refit is None or truth.evaluation is None:
        raise ValueError(f"a {method} eta needs refit and evaluation samples")
    return eta_refit(models, truth.refit, truth.evaluation, truth.task, truth.bayes_risk, method)


def branch_models(models: Models, k: int) -> tuple[Models, list[int]] | None:
    """Modality k's branch of late-fusion models: the parameters that read x_k (and the
    shared ones), for the models whose subset contains k, as models of the subset {k}.

    Returns (models, positions of those models in the plan), or None when no model
    contains k. Its refit-head eta is the latent quality of the unimodal branch.
    """
    plan = models.plan
    params, members = branch_params(models.params, plan, k)
    if not members:
        return None
    return Models(models.learner, params, plan.single(k)), members
