"""Initial parameters of one model, drawn from a named stream (no global RNG).

Every tensor is drawn from PyTorch's ``nn.Linear`` default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
in a fixed order: the fused model first, then the method's extra parameters
(:meth:`~mmtheory.models.methods.base.Method.extra_params`) from the same stream, so that
every method starts from the same fused model as ERM (common random numbers). The same
dict initialises the batched engine and the per-model reference loop.

``learner.init_scale`` multiplies every draw (a small initialisation); layers beyond the
default architecture (``depth``, ``head_layers``) are drawn after the layers that precede
them on the same path, so the default architecture draws exactly what it always drew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from mmtheory.core.seeding import torch_generator
from mmtheory.core.subsets import Subset
from mmtheory.models.params import ENCODER, HEAD, Slot, bias, weight

if TYPE_CHECKING:
    from mmtheory.models.learner import Learner

__all__ = ["InitContext", "init_model", "uniform"]


def uniform(
    gen: torch.Generator, shape: tuple[int, ...], fan_in: int, dtype, scale: float = 1.0
) -> torch.Tensor:
    """PyTorch's nn.Linear default times ``scale``: U(-scale/sqrt(fan_in), scale/sqrt(fan_in)).

    ``scale`` = 1 multiplies by the same bound as always (bit-identical draws)."""
    bound = scale / math.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).mul_(bound).to(dtype)


@dataclass
class InitContext:
    """What a method needs to add parameters to one model's initial dict ``params``."""

    learner: Learner
    subset: Subset
    dims: dict[str, int]
    out_dim: int
    gen: torch.Generator
    dtype: torch.dtype
    params: dict[Slot, torch.Tensor] = field(default_factory=dict)

    def draw(self, slot: Slot, shape: tuple[int, ...], fan_in: int) -> None:
        """Draw ``slot``'s tensor of ``shape`` from the model's stream (times the learner's
        ``init_scale``)."""
        self.params[slot] = uniform(self.gen, shape, fan_in, self.dtype, self.learner.init_scale)

    def add_encoder(self, k: str, part: str) -> None:
        """Modality ``k``'s late-fusion encoder (``learner.encoder_depth`` layers) under
        ``part``: d_k -> latent (linear), d_k -> hidden -> ... -> hidden -> latent (mlp, conv)."""
        lrn = self.learner
        lat = lrn.latent_dim
        width = lat if lrn.encoder == "linear" else lrn.hidden
        span = lrn.window if lrn.encoder == "conv" else 1  # input rows per feature
        fan_in = span * self.dims[k]
        self.draw(weight(part, 1, k), (fan_in, width), fan_in)
        self.draw(bias(part, 1, k), (width,), fan_in)
        depth = lrn.encoder_depth
        for layer in range(2, depth + 1):
            out = lat if layer == depth else width
            self.draw(weight(part, layer, k), (width, out), width)
            self.draw(bias(part, layer, k), (out,), width)

    def add_head_stack(self, width: int) -> None:
        """The shared head layers after the head's first layer (``learner.head_layers``):
        hidden -> ... -> hidden -> outputs, slots (HEAD, 1..head_layers); ``width`` is the
        first layer's output size."""
        H = self.learner.head_layers
        for i in range(1, H + 1):
            out = self.out_dim if i == H else self.learner.hidden
            self.draw(weight(HEAD, i), (width, out), width)
            self.draw(bias(HEAD, i), (out,), width)
            width = out


def init_model(
    learner: Learner,
    subset: Subset,
    dims: dict[str, int],
    out_dim: int,
    key: tuple,
    dtype=torch.float32,
) -> dict[Slot, torch.Tensor]:
    """Initial parameters of one model (slot -> tensor), drawn from the stream named by ``key``."""
    ctx = InitContext(learner, subset, dims, out_dim, torch_generator(0, *key), dtype)
    kind, lat = learner.kind, learner.latent_dim
    fused_in = sum(dims[k] for k in subset)
    if kind == "linear":
        for k in subset:
            ctx.draw(weight(ENCODER, 1, k), (dims[k], out_dim), fused_in)
        ctx.draw(bias(HEAD), (out_dim,), fused_in)
        return ctx.params
    # the head's first layer maps to the outputs, or to hidden units before more layers
    first_out = learner.hidden if learner.head_layers else out_dim
    if kind == "early_fusion":
        for k in subset:
            ctx.draw(weight(ENCODER, 1, k), (dims[k], lat), fused_in)
        ctx.draw(bias(ENCODER, 1), (lat,), fused_in)
        ctx.draw(weight(HEAD), (lat, first_out), lat)
        ctx.draw(bias(HEAD), (first_out,), lat)
        ctx.add_head_stack(first_out)
        return ctx.params
    head_in = lat * (len(dims) if learner.fusion == "concat" else 1)
    for k in subset:
        ctx.add_encoder(k, ENCODER)
    if learner.fusion == "concat":
        for k in subset:
            ctx.draw(weight(HEAD, 0, k), (lat, first_out), head_in)
    else:
        ctx.draw(weight(HEAD), (lat, first_out), head_in)
    ctx.draw(bias(HEAD), (first_out,), head_in)
    ctx.add_head_stack(first_out)
    learner.method.extra_params(ctx)
    return ctx.params
