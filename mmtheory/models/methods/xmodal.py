"""``xmodal``: cross-modal prediction pretraining, then ERM fine-tuning (our reconstruction).

The multimodal deep-network line (Ngiam et al., ICML 2011; Sohn, Shang and Lee, NeurIPS
2014, minimising the variation of information). Neither paper nor any code was read for
this module: it implements the shared idea, learning encoders by predicting each modality
from the others, in the simplest form that fits the learners here. First ``pretrain_steps``
on sum_{k in M} (1/m) sum_i || x_k - sum_{j in M, j != k} h_j D_jk - c_k ||^2 (each
modality predicted linearly from the others' latents; a single-modality model has nothing
to predict from and keeps its initial encoder), then ERM fine-tuning of encoders and head.
The decoders are dropped after pretraining; the sweep measures eta before fine-tuning
(the ``pretrain`` snapshot: column ``eta_pretrain``) and after it (``eta``).

Departures from the originals as we know them from their abstracts (:data:`DEPARTURES`):
they pretrain unsupervised networks (RBMs, deep autoencoders, deep Boltzmann machines)
layer by layer, warm-starting from networks trained on each modality alone, and evaluate a
classifier on the shared representation; their optimisers and schedules are not
reproduced. The comparison runs this module with the common recipe.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mmtheory.core.validation import check_int
from mmtheory.models.forward import late_latents, per_model
from mmtheory.models.methods.base import Claim, Method
from mmtheory.models.modules import linear_from
from mmtheory.models.params import DECODER, ENCODER, HEAD, bias, select_parts, weight

__all__ = ["DEPARTURES", "XModal", "xmodal_loss"]

#: What departs from the originals (papers not read here; from their abstracts).
DEPARTURES = (
    "papers and code not read: a reconstruction of the idea, not of either model",
    "linear cross-modal predictors from latents instead of RBMs / deep autoencoders / DBMs",
    "no unimodal warm start (the originals pretrain each modality's layers alone first)",
    "ERM fine-tuning of encoders and head with the common recipe (Adam)",
)


def xmodal_loss(learner, params, xs, plan) -> torch.Tensor:
    """Cross-modal prediction loss per model (G, S): each modality of M predicted linearly
    from the latents of the others in M; 0 for single-modality models."""
    G, m = xs[0].shape[:2]
    latents = late_latents(learner, params, xs, plan)
    total = sum(plan.dims)
    offs = [sum(plan.dims[:k]) for k in range(len(plan.dims))]
    ref = params[bias(HEAD)]
    recon = torch.zeros(G, plan.S, m, total, dtype=ref.dtype, device=ref.device)
    own = {}
    for k, idx, h in latents:
        own[k] = per_model(h, params[weight(DECODER, 0, plan.names[k])])
        recon.index_add_(1, idx, own[k])
    sizes = plan.mask(ref.device).sum(-1)
    loss = torch.zeros(G, plan.S, dtype=ref.dtype, device=ref.device)
    for k, idx, _ in latents:
        blk = slice(offs[k], offs[k] + plan.dims[k])
        pred = recon[:, idx, :, blk] - own[k][..., blk]
        pred = pred + params[bias(DECODER, 0, plan.names[k])][:, :, None]
        err = (xs[k][:, None] - pred).pow(2).sum(-1).mean(-1)
        loss = loss.index_add(1, idx, err * (sizes[idx] >= 2).to(err.dtype))
    return loss


@dataclass(frozen=True)
class XModal(Method):
    """Pretrain encoders to predict each modality from the others, then fine-tune.

    Parameters
    ----------
    pretrain_steps : cross-modal prediction steps before the ERM fine-tuning (>= 0)
    """

    pretrain_steps: int = 100

    name = "xmodal"
    paper = "Ngiam et al. 2011; Sohn et al. 2014"
    provenance = "abstracts only; a reconstruction of the shared idea"
    reconstruction = "; ".join(DEPARTURES)
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim(
            "fine-tuning improves on the cross-modally pretrained encoder",
            "eta",
            baseline="self:eta_pretrain",
        ),
    )

    def __post_init__(self) -> None:
        check_int(self.pretrain_steps, "pretrain_steps", low=0)

    def validate(self, learner) -> None:
        super().validate(learner)
        if learner.encoder == "conv":
            raise ValueError(
                "method 'xmodal' predicts feature vectors: it needs encoder 'linear' "
                "or 'mlp', not 'conv'"
            )

    def extra_params(self, ctx) -> None:
        """Decoders: the latent of modality k -> the features of every modality."""
        lat = ctx.learner.latent_dim
        total = sum(ctx.dims.values())
        for k in ctx.subset:
            ctx.draw(weight(DECODER, 0, k), (lat, total), lat)
            ctx.draw(bias(DECODER, 0, k), (ctx.dims[k],), lat)

    def prepare(self, ctx, params, xs, y, batches):
        """Pretrain encoders and decoders; snapshot; drop the decoders."""
        snapshots = {}
        if self.pretrain_steps:
            pre = select_parts(params, (ENCODER, DECODER))
            opt = ctx.make_optimizer(list(pre.values()))
            for _ in range(self.pretrain_steps):
                bx, _ = batches.take(xs, y)
                opt.zero_grad(set_to_none=True)
                xmodal_loss(ctx.learner, params, bx, ctx.plan).sum().backward()
                ctx.clip(pre)
                opt.step()
            opt.zero_grad(set_to_none=True)
            snapshots["pretrain"] = {k: v.detach().clone() for k, v in params.items()}
        kept = {slot: t for slot, t in params.items() if slot.part != DECODER}
        return kept, snapshots

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        if model.dims is None:
            raise ValueError("the reference loop of method 'xmodal' needs dims (every modality's)")
        model.decoders = nn.ModuleDict(
            {k: linear_from(init[weight(DECODER, 0, k)], None) for k in model.mods}
        )
        model.decoder_bias = nn.ParameterDict(
            {k: nn.Parameter(init[bias(DECODER, 0, k)].clone()) for k in model.mods}
        )

    def reference_trainable(self, model):
        decoders = {id(p) for p in model.decoders.parameters()}
        decoders |= {id(p) for p in model.decoder_bias.parameters()}
        return [p for p in model.parameters() if id(p) not in decoders]

    def reference_pretrain(self, model, ref) -> None:
        if not self.pretrain_steps:
            return
        pre = (
            list(model.encoders.parameters())
            + list(model.decoders.parameters())
            + list(model.decoder_bias.parameters())
        )
        opt = ref.make_opt(pre)
        for _ in range(self.pretrain_steps):
            bx, _ = ref.batch()
            opt.zero_grad()
            _reference_xmodal_loss(model, bx).backward()
            ref.clip(pre)
            opt.step()
        model.pretrained = copy.deepcopy(model.state_dict())


def _reference_xmodal_loss(model, xs) -> torch.Tensor:
    """Each modality predicted from the others' latents (nothing for a single modality)."""
    if len(model.mods) < 2:
        return sum(p.sum() * 0 for p in model.encoders.parameters())
    lat = model.latents(xs)
    offs, start = {}, 0
    for k, d in model.dims.items():
        offs[k] = slice(start, start + d)
        start += d
    loss = torch.zeros(())
    for k in model.mods:
        pred = sum(model.decoders[j](lat[j])[:, offs[k]] for j in model.mods if j != k)
        pred = pred + model.decoder_bias[k]
        loss = loss + (xs[k] - pred).pow(2).sum(-1).mean()
    return loss
