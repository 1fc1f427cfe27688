"""The per-model reference loop: one ``nn.Module`` per model, trained alone.

A method's per-model parts (extra modules, loss, gradient rule, pretraining) come from its
reference hooks (:class:`~mmtheory.models.methods.base.Method`), which transcribe the
method's equations for one model, independently of the batched engine's stacking and
masking.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mmtheory.core.seeding import torch_generator
from mmtheory.core.subsets import Subset
from mmtheory.models.learner import Learner
from mmtheory.models.methods import ReferenceContext
from mmtheory.models.modules import ACTIVATION_MODULES, encoder_from, head_from, linear_from
from mmtheory.models.optim import make_optimizer
from mmtheory.models.params import ENCODER, HEAD, Slot, bias, weight

__all__ = ["SingleModel", "train_loop"]


class SingleModel(nn.Module):
    """One model on the modalities of ``subset``, initialised from a parameter dict.

    ``dims`` (every modality's dimension, in the universe's order) is needed by methods
    that predict the features of every modality (xmodal's decoders).
    """

    def __init__(
        self,
        learner: Learner,
        subset: Subset,
        init: dict[Slot, torch.Tensor],
        dims: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.learner, self.mods, self.dims = learner, list(subset), dims
        kind = learner.kind
        if kind in ("linear", "early_fusion"):
            W = torch.cat([init[weight(ENCODER, 1, k)] for k in self.mods], dim=0)
            if kind == "linear":
                self.first = linear_from(W, init[bias(HEAD)])
            else:
                self.first = linear_from(W, init[bias(ENCODER, 1)])
                self.act = (
                    ACTIVATION_MODULES[learner.activation]()
                    if learner.encoder == "mlp"
                    else nn.Identity()
                )
                self.head = head_from(
                    learner, linear_from(init[weight(HEAD)], init[bias(HEAD)]), init
                )
            return
        self.encoders = nn.ModuleDict(
            {k: encoder_from(learner, init, ENCODER, k) for k in self.mods}
        )
        if learner.fusion == "concat":
            W = torch.cat([init[weight(HEAD, 0, k)] for k in self.mods], dim=0)
        else:
            W = init[weight(HEAD)]
        self.head = head_from(learner, linear_from(W, init[bias(HEAD)]), init)
        learner.method.reference_modules(self, init)

    def latents(self, xs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.encoders[k](xs[k]) for k in self.mods}

    def fused(self, lat: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused head on concatenated latents (late fusion, concat)."""
        return self.head(torch.cat([lat[k] for k in self.mods], dim=-1))

    def forward(
        self, xs: dict[str, torch.Tensor], keep: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Outputs on ``xs``; ``keep`` (modality -> 0 or 1) zeroes an absent modality's
        latent (the vmap reference, whose models all carry every modality: a zero input
        does not zero an encoder with biases)."""
        kind = self.learner.kind
        if kind == "linear":
            return self.first(torch.cat([xs[k] for k in self.mods], dim=-1))
        if kind == "early_fusion":
            return self.head(self.act(self.first(torch.cat([xs[k] for k in self.mods], dim=-1))))
        lat = [self.encoders[k](xs[k]) for k in self.mods]
        if keep is not None:
            lat = [z * keep[k] for z, k in zip(lat, self.mods)]
        if self.learner.fusion == "concat":
            fused = torch.cat(lat, dim=-1)
        else:
            fused = torch.stack(lat).sum(0)
        return self.learner.method.reference_forward(self, xs, self.head(fused))


def _penalty(model: nn.Module, ridge: float) -> torch.Tensor:
    if ridge == 0:
        return torch.zeros((), dtype=next(model.parameters()).dtype)
    return ridge * sum(p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight"))


def train_loop(
    learner: Learner,
    subset: Subset,
    xs: dict[str, torch.Tensor],
    y: torch.Tensor,
    init: dict[Slot, torch.Tensor],
    *,
    task: str,
    batch_key: tuple = ("batches", 0),
    dims: dict[str, int] | None = None,
    callback: Callable[[int, SingleModel], None] | None = None,
    fused: bool = False,
) -> SingleModel:
    """Train one model alone, with the engine's minibatch order for the same ``batch_key``
    (and the same method randomness: streams keyed by ``batch_key`` and the subset).

    ``callback(step, model)`` is called before the first step (step 0) and after every
    step (the number of steps taken), e.g. to record a trajectory.

    ``fused`` uses the optimiser's fused (or multi-tensor) kernels, as a careful researcher
    would for speed (the benchmark's loop); the default per-parameter kernels are the
    plainest transcription (the correctness references). Both compute the same update.
    """
    model = SingleModel(learner, subset, init, dims).to(next(iter(xs.values())).device)
    method = learner.method
    m = y.shape[0]

    def make_opt(params: list) -> torch.optim.Optimizer:
        return make_optimizer(learner, params, batched=fused)

    def clip(params: list) -> None:
        if learner.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, learner.clip_norm)

    def minibatches(n: int, key: tuple):
        """Minibatches over the first n rows, in the engine's order for ``key``."""
        bs = learner.batch_size if learner.batch_size and learner.batch_size < n else None
        gen = torch_generator(0, *key) if bs else None
        state: dict = {"pos": n, "order": None}
        part = {k: v[:n] for k, v in xs.items()}, y[:n]

        def batch():
            if bs is None:
                return part
            if state["pos"] + bs > n:
                state["order"] = torch.randperm(n, generator=gen).to(y.device)
                state["pos"] = 0
            idx = state["order"][state["pos"] : state["pos"] + bs]
            state["pos"] += bs
            return {k: v[idx] for k, v in part[0].items()}, part[1][idx]

        return batch

    ref = ReferenceContext(
        learner,
        task,
        subset,
        batch_key,
        minibatches(m, batch_key),
        lambda n, tag: minibatches(n, (*batch_key, tag)),
        make_opt,
        clip,
        lambda module: _penalty(module, learner.ridge),
        xs,
        y,
        learner.steps,
    )
    method.reference_pretrain(model, ref)
    trainable = method.reference_trainable(model)
    opt = make_opt(trainable)
    if callback is not None:
        callback(0, model)
    for step in range(learner.steps):
        ref.step = step
        bx, by = ref.batch()
        opt.zero_grad()
        method.reference_backward(model, bx, by, task, trainable, ref)
        if learner.ridge:
            _penalty(model, learner.ridge).backward()
        clip(trainable)
        opt.step()
        if callback is not None:
            callback(step + 1, model)
    method.reference_finish(model, ref)
    return model
