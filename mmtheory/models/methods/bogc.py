"""``bogc``: Bayesian-oriented gradient calibration (our reconstruction).

Guo et al., "Multi-Modal Learning with Bayesian-Oriented Gradient Calibration",
arXiv 2505.23071. No code was published and we could read only the abstract and
summaries of the method section: this is a reconstruction, and every choice below that
the abstract does not fix is ours (listed in :data:`DEPARTURES`).

Sources j = 0 (the fused loss L_0) and j = k in M (unimodal losses L_k, one linear head per
modality on the shared encoder). Each source's gradient is a random variable, with mean
mu_jd and variance v_jd per parameter dimension d. Two ways to get them (``variant``):

``"laplace"`` (the paper's, as its abstract and summaries describe it; the default)
    Each source's last layer (the fused head for L_0, the modality's head for L_k) gets a
    Laplace posterior N(theta_hat, diag(H + lambda)^-1): H is the diagonal of the
    Hessian of the source's summed cross-entropy over the batch at the current weights
    (exact for a softmax head: sum_i phi_ia^2 p_ic (1 - p_ic), phi the head's input,
    1 for the bias), lambda the prior precision. ``samples`` draws of every last layer
    give ``samples`` gradients of each source's mean loss (with respect to every
    parameter); mu and v are their mean and (unbiased) variance. The evidence is the
    precision e_jd = 1 / v_jd (the abstract: "converts the precision (inverse variance) of
    each gradient distribution into a scalar evidence").
``"micro_batch"`` (the earlier reconstruction, kept for comparison)
    mu and v over B equal micro-batches (v the variance of their mean); evidence
    e_jd = mu_jd^2 / v_jd, a squared z-score, *not* a precision.

Masses (subjective logic; Dempster's rule reduced to such opinions): source j holds belief
e_j / (e_j + W) on itself and uncertainty W / (e_j + W); combined,
m_d(j) = e_jd / (W + sum_i e_id) and u_d = W / (W + sum_i e_id) (:func:`evidence_masses`).
W is the Dirichlet prior weight: the frame size (the number of sources, 1 + |M|) in the
Laplace variant, 1 in the micro-batch one (the earlier choice; masses differ). The
calibrated update is g_d = sum_j m_d(j) mu_jd (Laplace), or n_d sum_j m_d(j) mu_jd with
n_d the number of sources whose gradient touches d (micro-batch: an invented factor that
makes certain, equal evidence give the plain sum of the losses' gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmtheory.core.seeding import torch_generator
from mmtheory.core.validation import check_choice, check_int, check_real
from mmtheory.models.forward import concat_head, late_latents, per_model
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.methods.base import (
    Ablation,
    Claim,
    Method,
    add_unimodal_heads,
    reference_unimodal_heads,
    unimodal_losses,
)
from mmtheory.models.params import HEAD, UNIMODAL_HEAD, Slot, bias, weight

__all__ = [
    "BOGC",
    "DEPARTURES",
    "bogc_combine",
    "evidence_masses",
    "laplace_last_layer_variance",
    "micro_batch_moments",
]

_EVIDENCE_MAX = 1e8

#: What departs from (or could not be checked against) the paper.
DEPARTURES = (
    "no code was published; the method section could not be read: equations follow the "
    "abstract and third-party summaries",
    "Laplace posterior: diagonal (the paper's form of H could not be read), prior precision "
    "lambda = 1 (option), Hessian of the summed loss over the current batch",
    "the fused loss is a source with its own last layer (the fused head), beside the "
    "unimodal heads",
    "Monte Carlo: 8 draws per step (option), gradients of each source's mean batch loss",
    "evidence clipped at 1e8; a source that does not touch a dimension has no evidence there",
    "micro-batch variant: moments over micro-batches instead of a posterior, z-score "
    "evidence, prior weight 1, and an n_d factor; none of these is the paper's",
)


def micro_batch_moments(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the mean of micro-batch gradients ``grads`` (J, B, ...)."""
    B = grads.shape[1]
    return grads.mean(dim=1), grads.var(dim=1, unbiased=True) / B


def evidence_masses(
    evidence: torch.Tensor, prior_weight: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masses m(j) = e_j / (W + sum_i e_i) (J, ...) and u = W / (W + sum_i e_i) (...)."""
    total = prior_weight + evidence.sum(dim=0)
    return evidence / total, prior_weight / total


def bogc_combine(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The micro-batch variant's update from micro-batch gradients ``grads`` (J, B, ...).

    Returns (update (...), masses m(j) (J, ...), uncommitted mass u (...)): z-score
    evidence mu^2 / v, prior weight 1, update n_d sum_j m(j) mu_j.
    """
    mu, var = micro_batch_moments(grads)
    e = mu.pow(2) / var.clamp_min(torch.finfo(grads.dtype).tiny)
    e = torch.where(mu == 0, torch.zeros_like(e), e.clamp(max=_EVIDENCE_MAX))
    mass, u = evidence_masses(e, 1.0)
    touches = (grads != 0).any(dim=1).sum(dim=0).to(grads.dtype)
    return touches * (mass * mu).sum(dim=0), mass, u


def laplace_combine(
    samples: torch.Tensor, prior_weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Laplace variant's update from Monte Carlo gradients ``samples`` (J, S, ...).

    Precision evidence 1 / v over the sources that touch a dimension, prior weight W
    (broadcast against (...)); returns (update, masses (J, ...), u)."""
    mu = samples.mean(dim=1)
    var = samples.var(dim=1, unbiased=True)
    touches = (samples != 0).any(dim=1)
    e = (1 / var.clamp_min(torch.finfo(samples.dtype).tiny)).clamp(max=_EVIDENCE_MAX)
    e = torch.where(touches, e, torch.zeros_like(e))
    mass, u = evidence_masses(e, prior_weight)
    return (mass * mu).sum(dim=0), mass, u


def laplace_last_layer_variance(
    phi: torch.Tensor, prob: torch.Tensor, prior_precision: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal Laplace posterior variances of a softmax head's weight (..., a, c) and bias
    (..., c), from its inputs ``phi`` (..., m, a) and probabilities ``prob`` (..., m, c):
    1 / (sum_i phi_ia^2 p_ic (1 - p_ic) + lambda) and 1 / (sum_i p_ic (1 - p_ic) + lambda).
    """
    curv = prob * (1 - prob)
    h_w = torch.einsum("...ia,...ic->...ac", phi.pow(2), curv)
    return 1 / (h_w + prior_precision), 1 / (curv.sum(-2) + prior_precision)


def _last_layer_slots(names) -> list[Slot]:
    """Every source's last-layer slots for the modalities ``names``, in the order the
    Monte Carlo draws are taken (sorted slots)."""
    slots = [bias(HEAD)] + [weight(HEAD, 0, k) for k in names]
    slots += [bias(UNIMODAL_HEAD, 0, k) for k in names]
    slots += [weight(UNIMODAL_HEAD, 0, k) for k in names]
    return sorted(slots)


@dataclass(frozen=True)
class BOGC(Method):
    """Per-dimension fusion of the fused and unimodal gradients by their evidence.

    Parameters
    ----------
    variant : "laplace" (the paper's: last-layer Laplace posterior, Monte Carlo moments,
        precision evidence) or "micro_batch" (moments over micro-batches)
    samples : Monte Carlo draws per step (laplace), >= 2
    prior_precision : lambda > 0 of the last layers' Gaussian prior (laplace)
    micro_batches : B >= 2 micro-batches per step (micro_batch)
    """

    variant: str = "laplace"
    samples: int = 8
    prior_precision: float = 1.0
    micro_batches: int = 4

    name = "bogc"
    paper = "Guo et al., arXiv 2505.23071"
    provenance = "abstract and third-party summaries only (no code; method section unread)"
    reconstruction = "; ".join(DEPARTURES)
    ablations = (
        Ablation(
            "micro-batch", "micro-batch moments, z-score evidence", {"variant": "micro_batch"}
        ),
    )
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        check_choice(self.variant, "variant", ("laplace", "micro_batch"))
        check_int(self.samples, "samples", low=2)
        check_real(self.prior_precision, "prior_precision", low=0, low_open=True)
        check_int(self.micro_batches, "micro_batches", low=2)

    def check_task(self, task: str) -> None:
        if self.variant == "laplace" and task != "classification":
            raise ValueError(
                f"method 'bogc' with variant 'laplace' needs a classification task (a "
                f"softmax last layer's posterior); this task is {task!r}"
            )

    def extra_params(self, ctx) -> None:
        add_unimodal_heads(ctx)

    def start(self, ctx):
        if self.variant != "laplace":
            return None
        return [[torch_generator(0, "bogc", *key) for key in row] for row in ctx.model_keys()]

    def backward(self, ctx, params, xs, y):
        if self.variant == "laplace":
            return self._laplace_backward(ctx, params, xs, y)
        return self._micro_batch_backward(ctx, params, xs, y)

    # ------------------------------------------------------------ micro-batch variant
    def _micro_batch_backward(self, ctx, params, xs, y):
        G, m = xs[0].shape[:2]
        plan, task = ctx.plan, ctx.task
        leaves = list(params.values())
        B = self.micro_batches
        if m < B:
            raise ValueError(
                f"method 'bogc' needs at least micro_batches={B} rows per step, got {m}"
            )
        chunks = torch.arange(m, device=xs[0].device).tensor_split(B)
        per_source: list[list[list[torch.Tensor]]] = [[] for _ in range(plan.K + 1)]
        losses = []
        for rows in chunks:
            bx = [x[:, rows] for x in xs]
            by = y[:, rows]
            latents = late_latents(ctx.learner, params, bx, plan)
            fused = loss_per_model(concat_head(params, latents, plan, G, len(rows)), by, task)
            uni = unimodal_losses(params, latents, by, plan, task, G)
            losses.append(fused.detach() * len(rows))
            sources = [fused.sum()] + [uni[..., k].sum() for k in range(plan.K)]
            for j, src in enumerate(sources):
                grads = torch.autograd.grad(src, leaves, retain_graph=True, allow_unused=True)
                per_source[j].append(
                    [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]
                )
        pen_grads = _penalty_grads(ctx, params, leaves)
        for i, t in enumerate(leaves):
            stacked = torch.stack(
                [torch.stack([per_source[j][b][i] for b in range(B)]) for j in range(plan.K + 1)]
            )
            update, _, _ = bogc_combine(stacked)
            t.grad = update if pen_grads[i] is None else update + pen_grads[i]
        return torch.stack(losses).sum(0) / m

    # ------------------------------------------------------------ Laplace variant
    def _laplace_backward(self, ctx, params, xs, y):
        plan, task = ctx.plan, ctx.task
        G, m = xs[0].shape[:2]
        leaves = list(params.values())
        slots = list(params)
        with torch.no_grad():
            latents = late_latents(ctx.learner, params, xs, plan)
            fused_logits = concat_head(params, latents, plan, G, m)
            loss = loss_per_model(fused_logits, y, task)
            std = _posterior_sds(params, latents, fused_logits, plan, self.prior_precision)
        gens = ctx.state
        # per source: 0 = fused, 1 = the unimodal losses (each L_k touches only encoder k
        # and head k, so one backward of their sum gives every L_k's own gradient)
        samples: list[list[list[torch.Tensor]]] = [[], []]
        for _ in range(self.samples):
            noisy = dict(params)
            for slot in _last_layer_slots(plan.names):
                if slot not in params:
                    continue
                t = params[slot]
                z = torch.zeros_like(t)
                cols = _slot_members(slot, plan)
                for g in range(G):
                    for j, s in enumerate(cols):
                        z[g, j] = _draw(gens[g][s], tuple(t.shape[2:])).to(t.device, t.dtype)
                noisy[slot] = t + z * std[slot]
            lat = late_latents(ctx.learner, noisy, xs, plan)
            fused = loss_per_model(concat_head(noisy, lat, plan, G, m), y, task).sum()
            uni = unimodal_losses(noisy, lat, y, plan, task, G).sum()
            for j, src in enumerate((fused, uni)):
                grads = torch.autograd.grad(src, leaves, retain_graph=j == 0, allow_unused=True)
                samples[j].append(
                    [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]
                )
        pen_grads = _penalty_grads(ctx, params, leaves)
        for i, (slot, t) in enumerate(zip(slots, leaves)):
            fused_s = torch.stack([s[i] for s in samples[0]])  # (S, G, S_t, ...)
            uni_s = torch.stack([s[i] for s in samples[1]])
            W = _frame_size(slot, plan, t)
            update, _, _ = laplace_combine(torch.stack([fused_s, uni_s]), W)
            t.grad = update if pen_grads[i] is None else update + pen_grads[i]
        return loss

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        reference_unimodal_heads(model, init)

    def reference_backward(self, model, xs, y, task, trainable, ref) -> None:
        if self.variant == "laplace":
            self._reference_laplace(model, xs, y, task, trainable, ref)
            return
        B = self.micro_batches
        chunks = torch.arange(len(y)).tensor_split(B)
        per_source: list[list] = [[] for _ in range(len(model.mods) + 1)]
        for rows in chunks:
            bx = {k: v[rows] for k, v in xs.items()}
            lat = model.latents(bx)
            sources = [single_model_loss(model.fused(lat), y[rows], task)] + [
                single_model_loss(model.uni_heads[k](lat[k]), y[rows], task) for k in model.mods
            ]
            for j, src in enumerate(sources):
                grads = torch.autograd.grad(src, trainable, retain_graph=True, allow_unused=True)
                per_source[j].append(
                    [torch.zeros_like(p) if g is None else g for g, p in zip(grads, trainable)]
                )
        for i, p in enumerate(trainable):
            stacked = torch.stack(
                [torch.stack([src[b][i] for b in range(B)]) for src in per_source]
            )
            p.grad = bogc_combine(stacked)[0]

    def _reference_laplace(self, model, xs, y, task, trainable, ref) -> None:
        """One model: every source's own gradient at Monte Carlo draws of its last layer
        (each unimodal source separately), precision evidence, frame-size prior weight."""
        if ref.state is None:
            ref.state = torch_generator(0, "bogc", *ref.model_key)
        mods, lat_dim = model.mods, model.learner.latent_dim
        n_src = 1 + len(mods)
        head_w, head_b = model.head.weight, model.head.bias  # (C, K * lat), (C,)
        with torch.no_grad():
            lat = model.latents(xs)
            phi = torch.cat([lat[k] for k in mods], dim=-1)
            var_w, var_b = laplace_last_layer_variance(
                phi, torch.softmax(model.fused(lat), -1), self.prior_precision
            )
            sd = {("fused", "w"): var_w.sqrt().T, ("fused", "b"): var_b.sqrt()}
            for k in mods:
                prob = torch.softmax(model.uni_heads[k](lat[k]), -1)
                vw, vb = laplace_last_layer_variance(lat[k], prob, self.prior_precision)
                sd[(k, "w")], sd[(k, "b")] = vw.sqrt().T, vb.sqrt()
        order = sorted(
            [(HEAD, False, "", ("fused", "b"))]
            + [(HEAD, True, k, ("fused", k)) for k in mods]
            + [(UNIMODAL_HEAD, False, k, (k, "b")) for k in mods]
            + [(UNIMODAL_HEAD, True, k, (k, "w")) for k in mods]
        )
        grads: list[list[list[torch.Tensor]]] = [[] for _ in range(n_src)]
        for _ in range(self.samples):
            dw = torch.zeros_like(head_w)
            db = torch.zeros_like(head_b)
            uw = {k: torch.zeros_like(model.uni_heads[k].weight) for k in mods}
            ub = {k: torch.zeros_like(model.uni_heads[k].bias) for k in mods}
            for part, is_w, k, _ in order:
                if part == HEAD and not is_w:
                    db = _draw(ref.state, tuple(head_b.shape)).to(db.dtype) * sd[("fused", "b")]
                elif part == HEAD:
                    i = mods.index(k)
                    z = _draw(ref.state, (lat_dim, head_w.shape[0])).to(dw.dtype).T
                    blk = slice(i * lat_dim, (i + 1) * lat_dim)
                    dw[:, blk] = z * sd[("fused", "w")][:, blk]
                elif not is_w:
                    ub[k] = _draw(ref.state, tuple(ub[k].shape)).to(ub[k].dtype) * sd[(k, "b")]
                else:
                    z = _draw(ref.state, tuple(uw[k].T.shape)).to(uw[k].dtype).T
                    uw[k] = z * sd[(k, "w")]
            latents = model.latents(xs)
            fused_logits = torch.cat([latents[k] for k in mods], -1) @ (head_w + dw).T
            sources = [single_model_loss(fused_logits + head_b + db, y, task)]
            for k in mods:
                head = model.uni_heads[k]
                logits = latents[k] @ (head.weight + uw[k]).T + head.bias + ub[k]
                sources.append(single_model_loss(logits, y, task))
            for j, src in enumerate(sources):
                g = torch.autograd.grad(src, trainable, retain_graph=True, allow_unused=True)
                grads[j].append(
                    [torch.zeros_like(p) if x is None else x for x, p in zip(g, trainable)]
                )
        for i, p in enumerate(trainable):
            stacked = torch.stack(
                [torch.stack([src[s][i] for s in range(self.samples)]) for src in grads]
            )
            p.grad = laplace_combine(stacked, torch.tensor(float(n_src), dtype=p.dtype))[0]


def _draw(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _slot_members(slot: Slot, plan) -> list[int]:
    if slot.per_modality:
        return plan.members(plan.names.index(slot.modality))
    return list(range(plan.S))


def _posterior_sds(params, latents, fused_logits, plan, prior_precision) -> dict:
    """Posterior standard deviations of every last-layer slot, stacked like the slot."""
    out = {}
    prob = torch.softmax(fused_logits, -1)  # (G, S, m, C)
    curv = prob * (1 - prob)
    out[bias(HEAD)] = (1 / (curv.sum(-2) + prior_precision)).sqrt()
    for k, idx, h in latents:
        name = plan.names[k]
        h_w = torch.einsum("gsia,gsic->gsac", h.pow(2), curv[:, idx])
        out[weight(HEAD, 0, name)] = (1 / (h_w + prior_precision)).sqrt()
        logits = per_model(h, params[weight(UNIMODAL_HEAD, 0, name)])
        logits = logits + params[bias(UNIMODAL_HEAD, 0, name)][:, :, None]
        var_w, var_b = laplace_last_layer_variance(h, torch.softmax(logits, -1), prior_precision)
        out[weight(UNIMODAL_HEAD, 0, name)] = var_w.sqrt()
        out[bias(UNIMODAL_HEAD, 0, name)] = var_b.sqrt()
    return out


def _frame_size(slot: Slot, plan, t: torch.Tensor) -> torch.Tensor:
    """The number of sources (1 + |M|) of each model a slot's tensor belongs to, shaped to
    broadcast against the tensor."""
    sizes = plan.mask(t.device).sum(-1).to(t.dtype) + 1  # (S,)
    cols = torch.tensor(_slot_members(slot, plan), device=t.device)
    return sizes[cols].reshape(1, -1, *[1] * (t.ndim - 2))


def _penalty_grads(ctx, params, leaves) -> list:
    pen = ctx.penalty(params).sum()
    if not pen.requires_grad:
        return [None] * len(leaves)
    return list(torch.autograd.grad(pen, leaves, allow_unused=True))
