"""``i2m2``: inter- and intra-modality modelling as a product of experts.

Madaan et al., "Jointly Modeling Inter- & Intra-Modality Dependencies for Multi-modal
Learning", NeurIPS 2024; transcribed from the authors' code (divyam3897/I2M2,
``avmnist_and_mimic/training_structures/inter_and_intra_modality.py`` and
``avmnist_main.py``). One intra-modality classifier q_k(y | x_k) (its own encoder and head)
per modality plus the inter-modality classifier q_J(y | x) (the fused model), combined as a
product of experts and trained jointly on its cross-entropy: p(y | x) is proportional to
q_J(y | x) prod_{k in M} q_k(y | x_k), i.e. the logits are
log_softmax(f(x)) + sum_k log_softmax(u_k(x_k)) (:func:`poe_logits`). An absent modality's
expert is left out of the product.

The original recipe, which :attr:`I2M2.recipe` and the option ``warm_steps`` follow:

- warm start: the inter-modality model and each intra-modality model are first trained
  alone (ERM, each on its own loss), then loaded and trained jointly as the product
  (AV-MNIST and MIMIC scripts). Here both warm phases run ``warm_steps`` steps (default:
  the learner's ``steps``) from the method's initial weights, side by side (they share
  the minibatch order; their parameters are disjoint, so this equals training them one
  after the other), each network clipped on its own;
- SGD (AV-MNIST: no momentum, weight decay 1e-4) or RMSprop (MIMIC), and gradient-norm
  clipping at 8 over the joint model's parameters in every phase: the recipe is SGD with
  ``clip_norm`` 8.

Departures: the original keeps the checkpoint with the best validation accuracy in every
phase (early stopping); we keep the last. Its learning rates (0.1 and 0.01 for the warm
phases, 0.01 joint on AV-MNIST) are tied to its data; all phases here use the learner's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmtheory.core.validation import check_int
from mmtheory.models.forward import concat_head, late_latents, per_model
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.methods.base import (
    Ablation,
    Claim,
    Method,
    add_unimodal_heads,
    reference_unimodal_heads,
)
from mmtheory.models.modules import encoder_from
from mmtheory.models.params import ENCODER, HEAD, UNIMODAL_ENCODER, UNIMODAL_HEAD, bias, weight

__all__ = ["I2M2", "poe_logits"]


def poe_logits(joint: torch.Tensor, unimodal: list[torch.Tensor]) -> torch.Tensor:
    """I2M2's product of experts: log_softmax(joint) + sum_k log_softmax(unimodal_k)."""
    out = torch.log_softmax(joint, dim=-1)
    for u in unimodal:
        out = out + torch.log_softmax(u, dim=-1)
    return out


def _network(slot) -> str:
    """Which separately trained network a slot belongs to in the warm start."""
    return "inter" if slot.part in (ENCODER, HEAD) else f"intra:{slot.modality}"


@dataclass(frozen=True)
class I2M2(Method):
    """Product of the fused model and one intra-modality classifier per modality.

    Parameters
    ----------
    warm_steps : steps of each warm-start phase (the fused model alone, each
        intra-modality model alone) before the joint training; None (default) is the
        learner's ``steps``, 0 trains the product from scratch
    """

    warm_steps: int | None = None

    name = "i2m2"
    paper = "Madaan et al., NeurIPS 2024"
    provenance = "authors' code read (divyam3897/I2M2: training_structures, avmnist_main.py)"
    classification_only = True
    has_linear_head = False  # a product of experts: no linear head on the latent
    recipe = {"solver": "sgd", "clip_norm": 8.0}
    ablations = (Ablation("scratch", "the product without the warm start", {"warm_steps": 0}),)
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        if self.warm_steps is not None:
            check_int(self.warm_steps, "warm_steps (None: the learner's steps)", low=0)

    def _warm(self, steps: int) -> int:
        return steps if self.warm_steps is None else self.warm_steps

    def extra_params(self, ctx) -> None:
        for k in ctx.subset:  # one intra-modality classifier per modality
            ctx.add_encoder(k, UNIMODAL_ENCODER)
        add_unimodal_heads(ctx)

    def forward(self, learner, params, xs, plan, out, blocks):
        out = torch.log_softmax(out, dim=-1).clone()
        uni = late_latents(learner, params, xs, plan, part=UNIMODAL_ENCODER)
        for k, idx, hu in uni:
            name = plan.names[k]
            logits = per_model(hu, params[weight(UNIMODAL_HEAD, 0, name)])
            logits = logits + params[bias(UNIMODAL_HEAD, 0, name)][:, :, None]
            out.index_add_(1, idx, torch.log_softmax(logits, dim=-1))
        return out, [*blocks, uni]

    def prepare(self, ctx, params, xs, y, batches):
        """Warm start: the fused model (ERM) and each intra-modality model, alone."""
        steps = self._warm(ctx.steps)
        if not steps:
            return params, {}
        learner, plan, task = ctx.learner, ctx.plan, ctx.task
        opt = ctx.make_optimizer(list(params.values()))
        for _ in range(steps):
            bx, by = batches.take(xs, y)
            G, m = bx[0].shape[:2]
            opt.zero_grad(set_to_none=True)
            inter = loss_per_model(
                concat_head(params, late_latents(learner, params, bx, plan), plan, G, m), by, task
            )
            total = inter.sum() + ctx.penalty(params).sum()
            for k, _idx, hu in late_latents(learner, params, bx, plan, part=UNIMODAL_ENCODER):
                name = plan.names[k]
                logits = per_model(hu, params[weight(UNIMODAL_HEAD, 0, name)])
                logits = logits + params[bias(UNIMODAL_HEAD, 0, name)][:, :, None]
                total = total + loss_per_model(logits, by, task).sum()
            total.backward()
            ctx.clip(params, _network)
            opt.step()
        opt.zero_grad(set_to_none=True)
        return params, {}

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        model.uni_encoders = nn.ModuleDict(
            {k: encoder_from(model.learner, init, UNIMODAL_ENCODER, k) for k in model.mods}
        )
        reference_unimodal_heads(model, init)

    def reference_forward(self, model, xs, out):
        return poe_logits(
            out, [model.uni_heads[k](model.uni_encoders[k](xs[k])) for k in model.mods]
        )

    def reference_pretrain(self, model, ref) -> None:
        """The inter-modality model and each intra-modality model trained alone."""
        steps = self._warm(ref.steps)
        if not steps:
            return
        inter = list(model.encoders.parameters()) + list(model.head.parameters())
        intra = {
            k: list(model.uni_encoders[k].parameters()) + list(model.uni_heads[k].parameters())
            for k in model.mods
        }
        opt = ref.make_opt(inter + [p for k in model.mods for p in intra[k]])
        for _ in range(steps):
            bx, by = ref.batch()
            opt.zero_grad()
            loss = single_model_loss(model.fused(model.latents(bx)), by, ref.task)
            for k in model.mods:
                u = model.uni_heads[k](model.uni_encoders[k](bx[k]))
                loss = loss + single_model_loss(u, by, ref.task)
            (loss + ref.penalty(model)).backward()
            ref.clip(inter)
            for k in model.mods:
                ref.clip(intra[k])
            opt.step()
