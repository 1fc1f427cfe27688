"""``torch.func`` ensembling: the PyTorch tutorial's way of training many models at once."""

from __future__ import annotations

import copy

import torch

from mmtheory.core.subsets import Subset
from mmtheory.models.learner import Learner
from mmtheory.models.losses import single_model_loss
from mmtheory.models.optim import make_optimizer
from mmtheory.models.params import ENCODER, weight
from mmtheory.reference.loop import SingleModel

__all__ = ["train_vmap"]


def train_vmap(
    learner: Learner,
    subsets: list[Subset],
    universe: tuple[str, ...],
    xs: dict[str, torch.Tensor],
    y: torch.Tensor,
    inits: list[dict[str, torch.Tensor]],
    *,
    task: str,
    fused: bool = False,
    outputs: list | None = None,
) -> list[torch.Tensor]:
    """Full-batch ``torch.func`` ensemble of B models that all carry every modality.

    Parameters
    ----------
    subsets : B subsets, one per model
    xs : modality -> (m, d_k) shared by all models, or (B, m, d_k) per model
    y : (m,) / (m, p) shared, or (B, m) / (B, m, p) per model
    inits : B parameter dicts (absent modalities' layers are taken from other models:
        their inputs are zero-filled and, with late fusion, their latents are multiplied by
        zero (an encoder with biases maps a zero input to a nonzero latent), so they never
        change a prediction nor receive a gradient)

    fused : the optimiser's fused kernels (the benchmark), else the per-parameter ones
    outputs : if a list, the final models' outputs on their (zero-filled) inputs, (B, m, p),
        are appended to it (the benchmark checks them against the batched engine)

    Returns the stacked final parameters (each with a leading model axis B).
    """
    from torch.func import functional_call, stack_module_state

    full = Subset(universe, universe)
    B = len(subsets)
    models = [SingleModel(learner, full, _complete(init, inits, universe)) for init in inits]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    device = y.device
    params = {k: v.to(device).detach().requires_grad_(True) for k, v in params.items()}
    per_model = next(iter(xs.values())).ndim == 3
    dtype = next(iter(xs.values())).dtype
    X, keep = {}, {}
    for k in universe:
        keep[k] = torch.tensor([k in s for s in subsets], dtype=dtype, device=device)
        data = xs[k] if per_model else xs[k].expand(B, *xs[k].shape)
        X[k] = data * keep[k][:, None, None]

    def one(p, b, x, kp, target):
        return single_model_loss(functional_call(base, (p, b), (x, kp)), target, task)

    batched = torch.vmap(one, in_dims=(0, 0, 0, 0, 0 if per_model else None))
    if learner.clip_norm is not None:
        raise ValueError("the vmap reference does not clip gradients (clip_norm)")
    opt = make_optimizer(learner, list(params.values()), batched=fused)
    for _ in range(learner.steps):
        opt.zero_grad()
        batched(params, buffers, X, keep, y).sum().backward()
        opt.step()
    if outputs is not None:

        def out(p, b, x, kp):
            return functional_call(base, (p, b), (x, kp))

        with torch.no_grad():
            outputs.append(torch.vmap(out)(params, buffers, X, keep))
    return [v.detach() for v in params.values()]


def _complete(own: dict, inits: list[dict], universe: tuple[str, ...]) -> dict:
    """A model's own parameters, completed for every modality from the other models."""
    out = dict(own)
    for init in inits:
        for key, val in init.items():
            out.setdefault(key, val)
    missing = [k for k in universe if weight(ENCODER, 1, k) not in out]
    if missing:
        raise ValueError(f"no model initialises modality {missing[0]!r}")
    return out
