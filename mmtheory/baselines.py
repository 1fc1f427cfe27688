"""Reference implementations the batched engine is checked and timed against.

- :func:`train_loop`: the per-model Python loop that research code usually writes:
  one ``nn.Module`` per model built on the subset's modalities only, trained alone.
  Written independently of :mod:`mmtheory.learners`' batched forward, so a test that
  the two agree checks the batching, not a shared bug.
- :func:`train_vmap`: ``torch.func`` ensembling (stack_module_state + vmap), the
  PyTorch tutorial's way: all models share one architecture, so absent modalities are
  zero-filled inputs and still cost their compute.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mmtheory.learners import Learner
from mmtheory.seeding import torch_generator
from mmtheory.subsets import Subset

__all__ = ["SingleModel", "train_loop", "train_vmap"]

_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _linear(W: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(W.shape[0], W.shape[1], bias=b is not None, dtype=W.dtype)
    with torch.no_grad():
        layer.weight.copy_(W.T)
        if b is not None:
            layer.bias.copy_(b)
    return layer


class SingleModel(nn.Module):
    """One model on the modalities of ``subset``, initialised from a parameter dict."""

    def __init__(self, learner: Learner, subset: Subset, init: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.learner, self.mods = learner, list(subset)
        kind = learner.kind
        if kind in ("linear", "early_fusion"):
            W = torch.cat([init[f"W1.{k}"] for k in self.mods], dim=0)
            if kind == "linear":
                self.first = _linear(W, init["bh"])
            else:
                self.first = _linear(W, init["b"])
                self.act = _ACT[learner.activation]() if learner.encoder == "mlp" else nn.Identity()
                self.head = _linear(init["Wh"], init["bh"])
            return
        encs = {}
        for k in self.mods:
            layers = [_linear(init[f"W1.{k}"], init[f"b1.{k}"])]
            if learner.encoder == "mlp":
                layers += [_ACT[learner.activation](), _linear(init[f"W2.{k}"], init[f"b2.{k}"])]
            encs[k] = nn.Sequential(*layers)
        self.encoders = nn.ModuleDict(encs)
        if learner.fusion == "concat":
            W = torch.cat([init[f"Wh.{k}"] for k in self.mods], dim=0)
        else:
            W = init["Wh"]
        self.head = _linear(W, init["bh"])

    def forward(self, xs: dict[str, torch.Tensor]) -> torch.Tensor:
        kind = self.learner.kind
        if kind == "linear":
            return self.first(torch.cat([xs[k] for k in self.mods], dim=-1))
        if kind == "early_fusion":
            return self.head(self.act(self.first(torch.cat([xs[k] for k in self.mods], dim=-1))))
        lat = [self.encoders[k](xs[k]) for k in self.mods]
        fused = torch.cat(lat, dim=-1) if self.learner.fusion == "concat" else torch.stack(lat).sum(0)
        return self.head(fused)


def _loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "regression":
        return ((out - y) ** 2).sum(-1).mean()
    return nn.functional.cross_entropy(out, y)


def _penalty(model: nn.Module, ridge: float) -> torch.Tensor:
    if ridge == 0:
        return torch.zeros((), dtype=next(model.parameters()).dtype)
    return ridge * sum(p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight"))


def train_loop(learner: Learner, subset: Subset, xs: dict[str, torch.Tensor], y: torch.Tensor,
               init: dict[str, torch.Tensor], *, task: str, batch_key: tuple = ("batches", 0)) -> SingleModel:
    """Train one model alone, with the engine's minibatch order for the same ``batch_key``."""
    model = SingleModel(learner, subset, init).to(next(iter(xs.values())).device)
    opt = (torch.optim.Adam if learner.solver == "adam" else torch.optim.SGD)(model.parameters(), lr=learner.lr)
    m = y.shape[0]
    bs = learner.batch_size if learner.batch_size and learner.batch_size < m else None
    gen = torch_generator(0, *batch_key) if bs else None
    pos, order = m, None
    for _ in range(learner.steps):
        if bs is None:
            bx, by = xs, y
        else:
            if pos + bs > m:
                order = torch.randperm(m, generator=gen).to(y.device)
                pos = 0
            idx = order[pos : pos + bs]
            pos += bs
            bx, by = {k: v[idx] for k, v in xs.items()}, y[idx]
        opt.zero_grad()
        (_loss(model(bx), by, task) + _penalty(model, learner.ridge)).backward()
        opt.step()
    return model


def train_vmap(learner: Learner, subsets: list[Subset], universe: tuple[str, ...],
               xs: dict[str, torch.Tensor], y: torch.Tensor, inits: list[dict[str, torch.Tensor]],
               *, task: str) -> list[torch.Tensor]:
    """Full-batch ``torch.func`` ensemble of B models that all carry every modality.

    Parameters
    ----------
    subsets : B subsets, one per model
    xs : modality -> (m, d_k) shared by all models, or (B, m, d_k) per model
    y : (m,) / (m, p) shared, or (B, m) / (B, m, p) per model
    inits : B parameter dicts (absent modalities' layers are taken from other models:
        their inputs are zero, so they never change a prediction)

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
    X = {}
    for k in universe:
        keep = torch.tensor([k in s for s in subsets], dtype=dtype, device=device)
        data = xs[k] if per_model else xs[k].expand(B, *xs[k].shape)
        X[k] = data * keep[:, None, None]

    def one(p, b, x, target):
        return _loss(functional_call(base, (p, b), (x,)), target, task)

    batched = torch.vmap(one, in_dims=(0, 0, 0, 0 if per_model else None))
    opt = (torch.optim.Adam if learner.solver == "adam" else torch.optim.SGD)(params.values(), lr=learner.lr)
    for _ in range(learner.steps):
        opt.zero_grad()
        batched(params, buffers, X, y).sum().backward()
        opt.step()
    return [v.detach() for v in params.values()]


def _complete(own: dict, inits: list[dict], universe: tuple[str, ...]) -> dict:
    """A model's own parameters, completed for every modality from the other models."""
    out = dict(own)
    for init in inits:
        for key, val in init.items():
            out.setdefault(key, val)
    missing = [k for k in universe if f"W1.{k}" not in out]
    if missing:
        raise ValueError(f"no model initialises modality {missing[0]!r}")
    return out
