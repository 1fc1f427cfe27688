"""The linear map a linear network computes: the product of its layers along each path.

A network with no nonlinearity between its layers (the linear composite; late or early
fusion with linear encoders and a one-layer head; any of them with
``activation="identity"``) computes x -> W^T x + b over the concatenated features. Modality
k's rows of W are its *effective weights*: the product of the layers along k's path, its
encoder's layers, its block of the head's first layer, then the shared head layers:

    W_k = W1_k W2_k ... W_depth,k  Wh_k  Wh_1 ... Wh_H          (d_k, p)

and b collects every bias pushed through the layers above it. Absent modalities have zero
rows (the zero-filled class G_M). These are the quantities whose gradient-descent dynamics
Zhang, Latham & Saxe (2024) solve, and what :mod:`mmtheory.estimation` needs for exact
risks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mmtheory.models.params import ENCODER, HEAD, Params, bias, weight
from mmtheory.models.plan import ModelPlan

if TYPE_CHECKING:
    from mmtheory.models.learner import Learner

__all__ = ["effective_linear_map", "encoder_is_linear", "feature_offsets", "is_linear_network"]


def feature_offsets(plan: ModelPlan) -> list[int]:
    """Start of each modality's rows in the concatenated features, and the total (K + 1)."""
    offs = [0]
    for d in plan.dims:
        offs.append(offs[-1] + d)
    return offs


def encoder_is_linear(learner: Learner) -> bool:
    """True when x -> g(x) is affine: linear encoders, or MLP encoders with the identity
    activation (and a method whose head reads the encoder's output linearly)."""
    if learner.kind == "linear":
        return True
    if learner.encoder == "conv" or not learner.method.has_linear_head:
        return False
    return learner.encoder == "linear" or learner.activation == "identity"


def is_linear_network(learner: Learner) -> bool:
    """True when the whole model x -> f(x) is affine (see the module docstring)."""
    if learner.kind == "linear":
        return True
    return encoder_is_linear(learner) and (
        learner.head_layers == 0 or learner.activation == "identity"
    )


def _encoder_path(learner: Learner, params: Params, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Modality ``name``'s late-fusion encoder as one affine map, float64:
    (A (G, S_k, d_k, lat), c (G, S_k, lat)) with latent = x A + c."""
    A = params[weight(ENCODER, 1, name)].detach().double()
    c = params[bias(ENCODER, 1, name)].detach().double()
    for layer in range(2, learner.encoder_depth + 1):
        W = params[weight(ENCODER, layer, name)].detach().double()
        A = A @ W
        c = (c[:, :, None] @ W)[:, :, 0] + params[bias(ENCODER, layer, name)].detach().double()
    return A, c


def effective_linear_map(
    learner: Learner, params: Params, plan: ModelPlan
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(W (G, S, D, p), b (G, S, p)) in float64 when every model is linear, else None.

    D = sum of the modalities' dimensions; modality k's rows are its effective weights
    (zero when k is not in the model's subset).
    """
    if not is_linear_network(learner):
        return None
    offs = feature_offsets(plan)
    ref = params[bias(HEAD)]
    G, S = ref.shape[0], plan.S
    width = ref.shape[-1]  # outputs of the head's first layer (p for a one-layer head)
    kind = learner.kind
    W = torch.zeros(G, S, offs[-1], width, dtype=torch.float64, device=ref.device)
    b = ref.detach().double().clone()
    for k, name in enumerate(plan.names):
        slot = weight(ENCODER, 1, name)
        if slot not in params:
            continue
        idx = plan.members(k)
        rows = slice(offs[k], offs[k + 1])
        if kind == "linear":
            W[:, idx, rows] = params[slot].detach().double()
        elif kind == "late_fusion":
            A, c = _encoder_path(learner, params, name)
            head = weight(HEAD, 0, name) if learner.fusion == "concat" else weight(HEAD)
            Wh = params[head].detach().double()
            Wh = Wh if learner.fusion == "concat" else Wh[:, idx]
            W[:, idx, rows] = A @ Wh
            b[:, idx] += (c[:, :, None] @ Wh)[:, :, 0]
        else:  # early fusion: (sum_k x_k W1_k + b1) Wh + bh
            Wh = params[weight(HEAD)].detach().double()[:, idx]
            W[:, idx, rows] = params[slot].detach().double() @ Wh
    if kind == "early_fusion":
        Wh = params[weight(HEAD)].detach().double()
        b += (params[bias(ENCODER, 1)].detach().double()[:, :, None] @ Wh)[:, :, 0]
    for i in range(1, learner.head_layers + 1):
        Wi = params[weight(HEAD, i)].detach().double()  # (G, S, w, w')
        W = W @ Wi
        b = (b[:, :, None] @ Wi)[:, :, 0] + params[bias(HEAD, i)].detach().double()
    return W, b
