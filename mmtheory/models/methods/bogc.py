"""``bogc``: Bayesian-oriented gradient calibration (our reconstruction).

Guo et al., "Multi-Modal Learning with Bayesian-Oriented Gradient Calibration",
arXiv 2505.23071. No code was published: this is our reconstruction, from the paper's
description. Sources j = 0 (the fused loss) and j = k in M (unimodal losses, per-modality
heads). Each source's gradient is a random variable, estimated per parameter dimension d
over B equal micro-batches: mean mu_jd and variance of that mean v_jd. Its evidence is
e_jd = mu_jd^2 / v_jd (a squared z-score). Each source holds a subjective opinion on the
frame of sources: belief e/(1+e) on itself, uncertainty 1/(1+e) on the whole frame.
Dempster's rule reduced to such opinions gives, in closed form, the mass
m_d(j) = e_jd / (1 + sum_i e_id) on source j and u_d = 1 / (1 + sum_i e_id) left
uncommitted. The calibrated update is g_d = n_d sum_j m_d(j) mu_jd, where n_d counts the
sources whose gradient touches d: with certain, equal evidence it is the plain sum of the
losses' gradients (the usual linear combination); uncertain dimensions move less
(:func:`bogc_combine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmtheory.core.validation import check_int
from mmtheory.models.forward import concat_head, late_latents
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.methods.base import (
    Claim,
    Method,
    add_unimodal_heads,
    reference_unimodal_heads,
    unimodal_losses,
)

__all__ = ["BOGC", "bogc_combine"]

_EVIDENCE_MAX = 1e8


def bogc_combine(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BOGC-MML's calibrated gradient from micro-batch gradients ``grads`` (J, B, ...).

    Returns (update (...), masses m(j) (J, ...), uncommitted mass u (...)). See the module
    docstring for the equations.
    """
    B = grads.shape[1]
    mu = grads.mean(dim=1)
    var = grads.var(dim=1, unbiased=True) / B
    e = mu.pow(2) / var.clamp_min(torch.finfo(grads.dtype).tiny)
    e = torch.where(mu == 0, torch.zeros_like(e), e.clamp(max=_EVIDENCE_MAX))
    total = 1 + e.sum(dim=0)
    mass = e / total
    touches = (grads != 0).any(dim=1).sum(dim=0).to(grads.dtype)
    return touches * (mass * mu).sum(dim=0), mass, 1 / total


@dataclass(frozen=True)
class BOGC(Method):
    """Per-dimension fusion of the fused and unimodal gradients by their evidence.

    Parameters
    ----------
    micro_batches : B >= 2 micro-batches per step (gradient mean and variance)
    """

    micro_batches: int = 4

    name = "bogc"
    paper = "Guo et al., arXiv 2505.23071"
    reconstruction = "no code was published; reconstructed from the paper's description"
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        check_int(self.micro_batches, "micro_batches", low=2)

    def extra_params(self, ctx) -> None:
        add_unimodal_heads(ctx)

    def backward(self, ctx, params, xs, y):
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
        pen = ctx.penalty(params).sum()
        pen_grads = (
            torch.autograd.grad(pen, leaves, allow_unused=True)
            if pen.requires_grad
            else [None] * len(leaves)
        )
        for i, t in enumerate(leaves):
            stacked = torch.stack(
                [torch.stack([per_source[j][b][i] for b in range(B)]) for j in range(plan.K + 1)]
            )
            update, _, _ = bogc_combine(stacked)
            pen_grad = pen_grads[i]
            if pen_grad is not None:
                update = update + pen_grad
            t.grad = update
        return torch.stack(losses).sum(0) / m

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        reference_unimodal_heads(model, init)

    def reference_backward(self, model, xs, y, task, trainable, ref) -> None:
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
