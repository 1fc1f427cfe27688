"""Optimisers and per-model gradient clipping for stacked parameters.

Every update here acts on one model at a time: SGD (with or without momentum), RMSprop
and Adam are elementwise, so a model's step on the stacked leaves equals its solo step;
gradient-norm clipping takes the norm of each model's own gradient (never a norm across
models, which would couple them), exactly as ``torch.nn.utils.clip_grad_norm_`` would on
that model alone. Methods that train several separate networks inside one model (I2M2's
warm start, G-Blending's estimation runs, UMT's teachers) clip each network on its own
with ``group``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import torch

from mmtheory.models.params import Params, Slot, per_model_sq_norm
from mmtheory.models.plan import ModelPlan

if TYPE_CHECKING:
    from mmtheory.models.learner import Learner

__all__ = ["CLIP_EPS", "clip_per_model", "make_optimizer"]

#: torch.nn.utils.clip_grad_norm_'s guard: coefficient max_norm / (norm + 1e-6).
CLIP_EPS = 1e-6


def make_optimizer(
    learner: Learner,
    leaves: list[torch.Tensor],
    *,
    batched: bool = True,
    capturable: bool = False,
) -> torch.optim.Optimizer:
    """The learner's solver over ``leaves``: ``adam``, ``gd``/``sgd`` (torch SGD, with
    ``momentum``) or ``rmsprop`` (torch defaults, with ``momentum``).

    ``batched`` uses the fused or multi-tensor kernels (one pass over all stacked
    parameters); the per-model reference loop uses the plain per-parameter loops.
    ``capturable`` (CUDA only): the step may be captured in a CUDA graph, its step count
    kept on the device (Adam and RMSprop's ``capturable``; SGD needs nothing). The fused
    Adam kernel reads its step count from the device either way, so the update is the
    same arithmetic.
    """
    lr, solver = learner.lr, learner.solver
    if solver == "adam":
        return torch.optim.Adam(
            leaves, lr=lr, fused=True if batched else None, capturable=capturable
        )
    if solver == "rmsprop":
        return torch.optim.RMSprop(
            leaves,
            lr=lr,
            momentum=learner.momentum,
            foreach=True if batched else None,
            capturable=capturable,
        )
    if solver in ("gd", "sgd"):
        return torch.optim.SGD(
            leaves, lr=lr, momentum=learner.momentum, fused=True if batched else None
        )
    raise ValueError(f"solver {solver!r} is not iterative")


def clip_per_model(
    params: Params,
    plan: ModelPlan,
    max_norm: float | None,
    group: Callable[[Slot], Hashable] | None = None,
) -> None:
    """Scale the gradients of each model (and of each ``group`` of slots within it) so
    that their joint L2 norm is at most ``max_norm``; in place.

    The coefficient is ``torch.nn.utils.clip_grad_norm_``'s: min(1, max_norm / (norm +
    1e-6)), applied to every gradient of the model (or group). Leaves without a gradient
    take no part. ``max_norm`` None does nothing.
    """
    if max_norm is None:
        return
    grads = {slot: t for slot, t in params.items() if t.grad is not None}
    if not grads:
        return
    groups: dict[Hashable, list[Slot]] = {}
    for slot in grads:
        groups.setdefault(group(slot) if group is not None else None, []).append(slot)
    with torch.no_grad():
        for slots in groups.values():
            sq = per_model_sq_norm({s: grads[s].grad for s in slots}, plan)  # type: ignore[misc]
            coef = (max_norm / (sq.sqrt() + CLIP_EPS)).clamp(max=1.0)  # (G, S)
            for slot in slots:
                g = grads[slot].grad
                assert g is not None
                if slot.per_modality:
                    idx = plan.member_index(plan.names.index(slot.modality), g.device)
                    c = coef[:, idx]
                else:
                    c = coef
                g.mul_(c.reshape(*c.shape, *[1] * (g.ndim - 2)).to(g.dtype))
