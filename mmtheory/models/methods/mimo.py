"""``mimo``: modality imbalance as multi-objective optimisation (our reading of it).

Fernando et al., "Mitigating Modality Imbalance in Multi-modal Learning via
Multi-objective Optimization", arXiv 2511.06686. The authors' code
(github.com/heshandevaka/MIMO) could not be fetched and the method section could not be
read: the equations below come from the abstract and third-party summaries ("a
lexicographic multi-objective problem that prioritises the worst-performing uni-modal
objective while retaining the multi-modal fusion objective", "a smoothly penalised
objective ... with a smoothing term that approximates the max over modalities"). What we
implement: the multimodal loss L_0 and the unimodal losses L_k (per-modality heads on the
shared encoders) combined as

    minimise L_0 + lambda * tau * log sum_k exp(L_k / tau)

by plain gradient steps (:func:`mimo_objective`); its gradient weights each unimodal
gradient by softmax(L / tau)_k, so the worst modality gets the most. Every choice the
summaries do not fix is ours and unverified (:data:`UNVERIFIED`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmtheory.core.validation import check_real
from mmtheory.models.forward import concat_head, late_latents
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.methods.base import (
    Claim,
    Method,
    add_unimodal_heads,
    reference_unimodal_heads,
    unimodal_losses,
)

__all__ = ["MIMO", "UNVERIFIED", "mimo_objective", "smooth_max"]

#: Choices the sources we could read do not fix.
UNVERIFIED = (
    "the priority: the summaries say the worst unimodal objective is prioritised; we keep "
    "L_0 as the objective and the smooth max as a penalty (the reverse order is possible)",
    "the penalty schedule: lambda is constant here (penalty methods often increase it)",
    "the smoothing: tau * logsumexp(L / tau) with a constant tau",
    "where the unimodal losses come from: linear heads on the shared encoders here (they "
    "could be separate unimodal networks or the fused head's blocks)",
    "the optimiser and its settings: the comparison's common recipe (Adam)",
)


def smooth_max(losses: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """tau * log sum_{k: mask} exp(L_k / tau) over the last axis; 0 where no k is present."""
    z = torch.where(mask, losses / temperature, torch.full_like(losses, -torch.inf))
    out = temperature * torch.logsumexp(z, dim=-1)
    return torch.where(mask.any(-1), out, torch.zeros_like(out))


def mimo_objective(
    fused: torch.Tensor,
    unimodal: torch.Tensor,
    mask: torch.Tensor,
    *,
    penalty: float,
    temperature: float,
) -> torch.Tensor:
    """MIMO's penalised objective L_0 + lambda * smooth_max_k(L_k); unimodal (..., K)."""
    return fused + penalty * smooth_max(unimodal, mask, temperature)


@dataclass(frozen=True)
class MIMO(Method):
    """Fused loss plus lambda times the smooth max of the unimodal losses.

    Parameters
    ----------
    temperature : tau > 0 of the log-sum-exp (smooth max)
    penalty : lambda >= 0, the weight of the smooth max
    """

    temperature: float = 1.0
    penalty: float = 1.0

    name = "mimo"
    paper = "Fernando et al., arXiv 2511.06686"
    provenance = "abstract and third-party summaries only (code not reachable)"
    reconstruction = "; ".join(UNVERIFIED)
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        check_real(self.temperature, "temperature", low=0, low_open=True)
        check_real(self.penalty, "penalty", low=0)

    def extra_params(self, ctx) -> None:
        add_unimodal_heads(ctx)

    def objective(self, learner, params, xs, y, plan, task):
        G, m = xs[0].shape[:2]
        latents = late_latents(learner, params, xs, plan)
        pred = loss_per_model(concat_head(params, latents, plan, G, m), y, task)
        uni = unimodal_losses(params, latents, y, plan, task, G)
        obj = mimo_objective(
            pred,
            uni,
            plan.mask(pred.device)[None],
            penalty=self.penalty,
            temperature=self.temperature,
        )
        return obj, pred

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        reference_unimodal_heads(model, init)

    def reference_loss(self, model, xs, y, task):
        lat = model.latents(xs)
        uni = torch.stack(
            [single_model_loss(model.uni_heads[k](lat[k]), y, task) for k in model.mods]
        )
        return mimo_objective(
            single_model_loss(model.fused(lat), y, task),
            uni,
            torch.ones(len(uni), dtype=torch.bool),
            penalty=self.penalty,
            temperature=self.temperature,
        )
