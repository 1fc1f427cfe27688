"""One model as ``torch.nn`` modules, built from an init dict (the per-model view).

The batched engine never uses these; the reference loop (:mod:`mmtheory.reference.loop`)
and the methods' reference hooks build one ``nn.Module`` per model from the same init dict
as the batched engine, so that tests can require both to train to the same model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mmtheory.models.params import HEAD, Slot, bias, weight

if TYPE_CHECKING:
    from mmtheory.models.learner import Learner

__all__ = ["ACTIVATION_MODULES", "ConvEncoder", "encoder_from", "head_from", "linear_from"]

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}


def linear_from(W: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    """``nn.Linear`` computing x W + b, with W (in, out) and b (out,) copied in."""
    layer = nn.Linear(W.shape[0], W.shape[1], bias=b is not None, dtype=W.dtype)
    with torch.no_grad():
        layer.weight.copy_(W.T)
        if b is not None:
            layer.bias.copy_(b)
    return layer


class ConvEncoder(nn.Module):
    """The temporal encoder as a loop user writes it: ``nn.Conv1d`` over time (channels =
    features), the activation, a mean over positions, a linear map to the latent."""

    def __init__(self, learner: Learner, W1, b1, W2, b2) -> None:
        super().__init__()
        w = learner.window
        d = W1.shape[0] // w
        self.window = w
        self.conv = nn.Conv1d(d, W1.shape[1], kernel_size=w, dtype=W1.dtype)
        with torch.no_grad():  # W1 rows are step-major: row j * d + c is (step j, feature c)
            self.conv.weight.copy_(W1.view(w, d, -1).permute(2, 1, 0))
            self.conv.bias.copy_(b1)  # type: ignore[union-attr]  # Conv1d has a bias here
        self.act = ACTIVATION_MODULES[learner.activation]()
        self.out = linear_from(W2, b2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None] if x.ndim == 2 else x  # a vector is a sequence of length 1
        x = x.transpose(1, 2)  # (m, d, T)
        if x.shape[-1] < self.window:
            x = nn.functional.pad(x, (0, self.window - x.shape[-1]))
        return self.out(self.act(self.conv(x)).mean(dim=-1))


def encoder_from(learner: Learner, init: dict[Slot, torch.Tensor], part: str, k: str) -> nn.Module:
    """Modality ``k``'s late-fusion encoder under ``part`` as a module."""
    W1, b1 = init[weight(part, 1, k)], init[bias(part, 1, k)]
    if learner.encoder == "conv":
        return ConvEncoder(learner, W1, b1, init[weight(part, 2, k)], init[bias(part, 2, k)])
    layers: list[nn.Module] = [linear_from(W1, b1)]
    for layer in range(2, learner.encoder_depth + 1):
        layers += [
            ACTIVATION_MODULES[learner.activation](),
            linear_from(init[weight(part, layer, k)], init[bias(part, layer, k)]),
        ]
    return nn.Sequential(*layers)


def head_from(learner: Learner, first: nn.Linear, init: dict[Slot, torch.Tensor]) -> nn.Module:
    """The head as a module: its first layer ``first``, then (``head_layers`` > 0) the
    activation and each shared layer ``(HEAD, i)`` in turn; just ``first`` otherwise."""
    if not learner.head_layers:
        return first
    layers: list[nn.Module] = [first]
    for i in range(1, learner.head_layers + 1):
        layers += [
            ACTIVATION_MODULES[learner.activation](),
            linear_from(init[weight(HEAD, i)], init[bias(HEAD, i)]),
        ]
    return nn.Sequential(*layers)
