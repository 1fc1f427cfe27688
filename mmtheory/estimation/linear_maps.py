"""The linear map a model computes, when it is linear: what exact oracles need.

A model whose encoders and head are linear computes x -> W^T x + b over the concatenated
features (absent modalities contribute nothing): its population risk under squared loss is
exact from the world's second moments. A model whose *encoder* is linear, x -> A^T x (+ a
constant), has an exact eta. This module extracts W, b and A from stacked parameters.
"""

from __future__ import annotations

import torch

from mmtheory.models.effective import (
    effective_linear_map,
    encoder_is_linear,
    feature_offsets,
)
from mmtheory.models.params import ENCODER, HEAD, bias, weight

__all__ = ["linear_encoder", "linear_predictor"]


def linear_predictor(models) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(W (G, S, d, p), b (G, S, p)) in float64 when every model is linear, else None
    (the product of the layers along each modality's path:
    :func:`~mmtheory.models.effective.effective_linear_map`)."""
    return effective_linear_map(models.learner, models.params, models.plan)


def linear_encoder(models) -> torch.Tensor | None:
    """A (G, S, d, q) in float64 when every model's encoder is linear (x -> A^T x + c), else
    None. The latent is the one :func:`~mmtheory.models.forward` returns: the outputs of the
    linear composite, the concatenated (or summed) latents of late fusion, the fused layer of
    early fusion."""
    lrn, params, plan = models.learner, models.params, models.plan
    if lrn.kind == "linear":
        pred = linear_predictor(models)
        return None if pred is None else pred[0]
    if not encoder_is_linear(lrn):
        return None
    G = models.G
    offs = feature_offsets(plan)
    lat = lrn.latent_dim
    concat = lrn.kind == "late_fusion" and lrn.fusion == "concat"
    q = lat * plan.K if concat else lat
    ref = params[bias(HEAD)]
    A = torch.zeros(G, plan.S, offs[-1], q, dtype=torch.float64, device=ref.device)
    for k, name in enumerate(plan.names):
        slot = weight(ENCODER, 1, name)
        if slot not in params:
            continue
        cols = slice(k * lat, (k + 1) * lat) if concat else slice(0, lat)
        Ak = params[slot].detach().double()
        if lrn.kind == "late_fusion":  # deeper linear encoders: the product of their layers
            for layer in range(2, lrn.encoder_depth + 1):
                Ak = Ak @ params[weight(ENCODER, layer, name)].detach().double()
        A[:, plan.members(k), offs[k] : offs[k + 1], cols] = Ak
    return A
