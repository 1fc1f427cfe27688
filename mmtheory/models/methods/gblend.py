"""``gblend``: Gradient-Blending, loss weights from each branch's overfitting.

Wang, Tran and Feiszli, "What Makes Training Multi-Modal Classification Networks Hard?",
CVPR 2020. The authors' code (facebookresearch/VMZ, ``c2/lib/models/loss/loss_creator.py``,
``c2/tutorials/gradient_blending.md``) trains a multi-head network on the blended loss
w_0 L_0 + sum_k w_k L_k (one linear head per modality on its encoder beside the fused
head; prediction uses the fused head) with momentum SGD (0.9), the weights given by hand
from the paper's estimate; it does not contain the estimate. The estimate (offline
G-Blend) as we implement it:

1. Hold out the last ``holdout`` of the training rows as the validation set V; T is the
   rest.
2. From the method's initial weights, train the multimodal network (encoders + fused
   head, loss L_0) and, separately, each unimodal network (encoder k + head k, loss L_k)
   for N = ``estimate_steps`` steps on T.
3. For each branch b (the fused one and every modality), with L^T and L^V its mean losses
   on T and V at step 0 and step N: the generalisation G_b = L^V_0 - L^V_N and the
   overfitting O_b = (L^V_N - L^T_N) - (L^V_0 - L^T_0) (the paper's Delta G and Delta O
   between two checkpoints); the weight w_b is proportional to G_b / O_b^2 (the paper's
   Proposition: the blend that minimises the overfitting-to-generalisation ratio),
   normalised to sum to 1 (:func:`gblend_weights`).
4. Train the multi-head network from the same initial weights on all rows with the blended
   loss.

Choices the sources leave open (the paper's full text could not be read here, only its
abstract and the authors' training code): a branch whose validation loss rose (G_b < 0)
gets weight 0 (two public reimplementations take |G_b| instead); O_b^2 is floored at 1e-12;
the held-out fraction (MultiBench's reimplementation holds out 8%) and N (the learner's
``steps`` by default) are ours; only offline G-Blend is implemented (not the online
variant that re-estimates every super-epoch). A single-modality model has nothing to blend
and trains as ERM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mmtheory.core.validation import check_choice, check_int, check_real
from mmtheory.models.forward import concat_head, late_latents
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.methods.base import (
    Ablation,
    Claim,
    Method,
    add_unimodal_heads,
    reference_unimodal_heads,
    unimodal_losses,
)
from mmtheory.models.params import ENCODER, HEAD, UNIMODAL_HEAD, select_parts

__all__ = ["GBlend", "gblend_weights", "holdout_rows"]

_O2_FLOOR = 1e-12


def gblend_weights(
    train0: torch.Tensor,
    val0: torch.Tensor,
    train_n: torch.Tensor,
    val_n: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Blend weights (..., B) from each branch's train and validation losses (..., B) at
    the two checkpoints; ``mask`` (..., B) marks the branches that exist.

    w_b = max(G_b, 0) / max(O_b^2, 1e-12), normalised over present branches (uniform when
    every G_b <= 0), with G_b = val0 - val_n and O_b = (val_n - train_n) - (val0 - train0).
    """
    gain = (val0 - val_n).clamp_min(0)
    over = (val_n - train_n) - (val0 - train0)
    raw = torch.where(mask, gain / over.pow(2).clamp_min(_O2_FLOOR), torch.zeros_like(gain))
    total = raw.sum(-1, keepdim=True)
    uniform = mask.to(raw.dtype) / mask.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(total > 0, raw / total.clamp_min(torch.finfo(raw.dtype).tiny), uniform)


def holdout_rows(m: int, fraction: float) -> int:
    """How many of m rows the estimate trains on (the rest is its validation set)."""
    held = math.ceil(fraction * m)
    if held < 1 or held >= m:
        raise ValueError(
            f"method 'gblend' holds out {fraction:g} of {m} rows: needs at least one row "
            "on each side"
        )
    return m - held


def _branch_losses(learner, est_f, est_u, xs, y, plan, task):
    """(fused loss (G, S), unimodal losses (G, S, K)) of the two estimate networks."""
    G, m = xs[0].shape[:2]
    fused = loss_per_model(
        concat_head(est_f, late_latents(learner, est_f, xs, plan), plan, G, m), y, task
    )
    uni = unimodal_losses(est_u, late_latents(learner, est_u, xs, plan), y, plan, task, G)
    return fused, uni


@dataclass(frozen=True)
class GBlend(Method):
    """Multi-head training with loss weights from each branch's generalisation and
    overfitting (offline Gradient-Blending).

    Parameters
    ----------
    holdout : fraction of the training rows held out to estimate the weights
    estimate_steps : N, steps of each estimate run (None: the learner's ``steps``)
    weighting : "ogr" (the paper's weights) or "uniform" (every loss weight 1 / (|M| + 1):
        multi-head training without the estimate, an ablation)
    """

    holdout: float = 0.2
    estimate_steps: int | None = None
    weighting: str = "ogr"

    name = "gblend"
    paper = "Wang, Tran and Feiszli, CVPR 2020"
    provenance = (
        "authors' training code read (facebookresearch/VMZ: blended loss, momentum SGD); "
        "the weight estimate from the paper's abstract and published weights"
    )
    classification_only = True
    recipe = {"solver": "sgd", "momentum": 0.9}
    ablations = (
        Ablation("uniform", "multi-head training with uniform weights", {"weighting": "uniform"}),
    )
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        check_real(self.holdout, "holdout", low=0, high=1, low_open=True, high_open=True)
        if self.estimate_steps is not None:
            check_int(self.estimate_steps, "estimate_steps (None: the learner's steps)", low=1)
        check_choice(self.weighting, "weighting", ("ogr", "uniform"))

    def extra_params(self, ctx) -> None:
        add_unimodal_heads(ctx)

    def prepare(self, ctx, params, xs, y, batches):
        """Estimate the weights (G, S, 1 + K): fused first, then each modality."""
        plan, learner, task = ctx.plan, ctx.learner, ctx.task
        mask = torch.cat([torch.ones(plan.S, 1, dtype=torch.bool), plan.mask()], dim=-1).to(
            xs[0].device
        )[None]
        multi = plan.mask(xs[0].device).sum(-1) >= 2  # (S,)
        G, m = xs[0].shape[:2]
        if self.weighting == "uniform":
            weights = mask.to(xs[0].dtype) / mask.sum(-1, keepdim=True)
            weights = weights.expand(G, -1, -1).clone()
        else:
            weights = self._estimate(ctx, params, xs, y, mask, learner, plan, task)
        erm = torch.zeros_like(weights)
        erm[..., 0] = 1
        weights = torch.where(multi[None, :, None], weights, erm)
        ctx.state = weights
        names = ("fused", *plan.names)
        for b, name in enumerate(names):
            ctx.diagnostics[f"gblend_w_{name}"] = torch.where(
                mask[0, :, b][None], weights[..., b], torch.full_like(weights[..., b], math.nan)
            )
        return params, {}

    def _estimate(self, ctx, params, xs, y, mask, learner, plan, task):
        m = xs[0].shape[1]
        n = holdout_rows(m, self.holdout)
        steps = self.estimate_steps or ctx.steps
        fit_x, fit_y = [x[:, :n] for x in xs], y[:, :n]
        val_x, val_y = [x[:, n:] for x in xs], y[:, n:]
        est_f = {
            k: v.detach().clone().requires_grad_(True)
            for k, v in select_parts(params, (ENCODER, HEAD)).items()
        }
        est_u = {
            k: v.detach().clone().requires_grad_(True)
            for k, v in select_parts(params, (ENCODER, UNIMODAL_HEAD)).items()
        }

        def losses():
            with torch.no_grad():
                tf, tu = _branch_losses(learner, est_f, est_u, fit_x, fit_y, plan, task)
                vf, vu = _branch_losses(learner, est_f, est_u, val_x, val_y, plan, task)
            return torch.cat([tf[..., None], tu], -1), torch.cat([vf[..., None], vu], -1)

        train0, val0 = losses()
        batches = ctx.batches_on(n, "gblend")
        opt = ctx.make_optimizer(list(est_f.values()) + list(est_u.values()))
        for _ in range(steps):
            bx, by = batches.take(fit_x, fit_y)
            opt.zero_grad(set_to_none=True)
            fused, uni = _branch_losses(learner, est_f, est_u, bx, by, plan, task)
            obj = fused.sum() + uni.sum() + ctx.penalty(est_f).sum() + ctx.penalty(est_u).sum()
            obj.backward()
            ctx.clip(est_f)
            ctx.clip(est_u, lambda slot: slot.modality)
            opt.step()
        train_n, val_n = losses()
        return gblend_weights(train0, val0, train_n, val_n, mask.expand_as(train0))

    def backward(self, ctx, params, xs, y):
        """The blended loss w_0 L_0 + sum_k w_k L_k of every model (its own weights)."""
        plan = ctx.plan
        G, m = xs[0].shape[:2]
        latents = late_latents(ctx.learner, params, xs, plan)
        fused = loss_per_model(concat_head(params, latents, plan, G, m), y, ctx.task)
        uni = unimodal_losses(params, latents, y, plan, ctx.task, G)
        w = ctx.state
        blended = w[..., 0] * fused + (w[..., 1:] * uni).sum(-1)
        (blended + ctx.penalty(params)).sum().backward()
        return fused.detach()

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        reference_unimodal_heads(model, init)

    def reference_pretrain(self, model, ref) -> None:
        """One model's weights: its own estimate runs (copies of its initial weights)."""
        import copy

        from torch import nn

        mods, task = model.mods, ref.task
        if len(mods) < 2:
            ref.state = torch.tensor([1.0] + [0.0] * len(mods), dtype=torch.float64)
            return
        if self.weighting == "uniform":
            ref.state = torch.full((1 + len(mods),), 1 / (1 + len(mods)), dtype=torch.float64)
            return
        m = len(ref.y)
        n = holdout_rows(m, self.holdout)
        # copies of the model's networks (Any: nested ModuleDicts are indexed below)
        fused: Any = copy.deepcopy(nn.ModuleDict({"enc": model.encoders, "head": model.head}))
        uni: Any = copy.deepcopy(nn.ModuleDict({"enc": model.encoders, "heads": model.uni_heads}))

        def branch_losses(xs, y):
            lf = single_model_loss(
                fused["head"](torch.cat([fused["enc"][k](xs[k]) for k in mods], -1)), y, task
            )
            lu = [single_model_loss(uni["heads"][k](uni["enc"][k](xs[k])), y, task) for k in mods]
            return torch.stack([lf, *lu])

        fit = ({k: v[:n] for k, v in ref.xs.items()}, ref.y[:n])
        val = ({k: v[n:] for k, v in ref.xs.items()}, ref.y[n:])
        with torch.no_grad():
            train0, val0 = branch_losses(*fit), branch_losses(*val)
        batch = ref.batches_on(n, "gblend")
        opt = ref.make_opt(list(fused.parameters()) + list(uni.parameters()))
        for _ in range(self.estimate_steps or ref.steps):
            bx, by = batch()
            opt.zero_grad()
            (branch_losses(bx, by).sum() + ref.penalty(fused) + ref.penalty(uni)).backward()
            ref.clip(list(fused.parameters()))
            for k in mods:
                ref.clip(list(uni["enc"][k].parameters()) + list(uni["heads"][k].parameters()))
            opt.step()
        with torch.no_grad():
            train_n, val_n = branch_losses(*fit), branch_losses(*val)
        ref.state = _reference_weights(train0, val0, train_n, val_n)

    def reference_backward(self, model, xs, y, task, trainable, ref) -> None:
        lat = model.latents(xs)
        w = ref.state.to(lat[model.mods[0]].dtype)
        loss = w[0] * single_model_loss(model.fused(lat), y, task)
        for i, k in enumerate(model.mods):
            loss = loss + w[1 + i] * single_model_loss(model.uni_heads[k](lat[k]), y, task)
        loss.backward()


def _reference_weights(train0, val0, train_n, val_n) -> torch.Tensor:
    """The paper's weights for one model's branches, written out for a vector."""
    gains = [max(float(a - b), 0.0) for a, b in zip(val0, val_n)]
    overs = [float((vn - tn) - (v0 - t0)) for t0, v0, tn, vn in zip(train0, val0, train_n, val_n)]
    raw = [g / max(o * o, _O2_FLOOR) for g, o in zip(gains, overs)]
    total = sum(raw)
    if total <= 0:
        return torch.full((len(raw),), 1 / len(raw), dtype=torch.float64)
    return torch.tensor([r / total for r in raw], dtype=torch.float64)
