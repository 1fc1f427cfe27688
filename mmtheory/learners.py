"""What one model is: encoders g, fusion, head h, objective; batched forward passes.

Three architectures share one batched representation:

- ``linear``: the linear composite h o g, logits = sum_k x_k W_k + b.
- ``late_fusion`` (the paper's model): one encoder per modality (linear, or an MLP
  with one hidden layer) to a latent of ``latent_dim``; the latents are concatenated
  (or summed) and a linear head maps them to the outputs.
- ``early_fusion``: the modalities' features enter one first layer together
  (sum_k x_k W_k + b), an activation (``encoder="mlp"``) or none, then a linear head.

Batching. Parameters are stacked on leading axes (G, S): G data groups (seeds that
share a sample size) and S models per group (subsets x learner variants). Activations
have layout (G, S, m, h): (models, samples, features). A subset is a mask: the layer of modality k is computed only
for the S_k models whose subset contains k (stacked weights (G, S_k, d_k, h)), and its
output is scattered into the S models with ``index_add``. For late fusion this skips
the constant output of an absent encoder, which a linear head with a bias absorbs: the
function class is exactly G_M = {g o p_M} of zero-filling, with no wasted compute.
For early fusion and the linear composite a zero-filled block contributes exactly
nothing, so skipping it changes neither the function nor the gradients.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from mmtheory.seeding import torch_generator
from mmtheory.subsets import Subset

__all__ = ["Learner", "ModelPlan", "init_model", "stack_params", "forward", "LEARNER_KINDS"]

LEARNER_KINDS = ("linear", "late_fusion", "early_fusion")
_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}


@dataclass(frozen=True)
class Learner:
    """Architecture and training settings of one model (hashable, recorded per run).

    Parameters
    ----------
    kind : "linear", "late_fusion" or "early_fusion"
    encoder : "linear" or "mlp" (late and early fusion)
    latent_dim : latent size of each encoder (late fusion) or of the fused layer (early)
    hidden : hidden width of MLP encoders (late fusion)
    fusion : "concat" or "sum" (late fusion)
    activation : "relu", "tanh" or "gelu"
    solver : "closed_form" (linear, squared loss), "gd" (full batch), "adam";
        default: closed_form for kind "linear", adam otherwise
    lr : learning rate of gd / adam
    steps : optimiser steps
    batch_size : minibatch size for adam; None or 0 means full batch
    ridge : L2 penalty per sample (closed form: added to the Gram matrix / m)
    grad_tol : a model with full-batch gradient norm below this has converged
    plateau_tol : ... or whose full-batch loss changed by less than this (relative)
        over the last tenth of training
    """

    kind: str = "linear"
    encoder: str = "linear"
    latent_dim: int = 16
    hidden: int = 32
    fusion: str = "concat"
    activation: str = "relu"
    solver: str | None = None
    lr: float = 0.01
    steps: int = 200
    batch_size: int | None = None
    ridge: float = 0.0
    grad_tol: float = 1e-4
    plateau_tol: float = 1e-3
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in LEARNER_KINDS:
            raise ValueError(f"learner kind must be one of {LEARNER_KINDS}, got {self.kind!r}")
        if self.solver is None:
            object.__setattr__(self, "solver", "closed_form" if self.kind == "linear" else "adam")
        if self.encoder not in ("linear", "mlp"):
            raise ValueError(f"encoder must be 'linear' or 'mlp', got {self.encoder!r}")
        if self.fusion not in ("concat", "sum"):
            raise ValueError(f"fusion must be 'concat' or 'sum', got {self.fusion!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.solver not in ("closed_form", "gd", "adam"):
            raise ValueError(f"solver must be 'closed_form', 'gd' or 'adam', got {self.solver!r}")
        if self.solver == "closed_form" and self.kind != "linear":
            raise ValueError(
                f"solver 'closed_form' needs kind 'linear' (squared loss), got kind {self.kind!r}"
            )
        for name in ("latent_dim", "hidden", "steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 0):
            raise ValueError(f"batch_size must be a positive integer or 0/None, got {self.batch_size!r}")
        for name in ("lr", "ridge", "grad_tol", "plateau_tol"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr == 0 and self.solver != "closed_form":
            raise ValueError("lr must be > 0 for iterative solvers, got 0")

    @property
    def label(self) -> str:
        """The ``learner`` column of result tables."""
        if self.name:
            return self.name
        if self.kind == "linear":
            return "linear" if self.solver == "closed_form" else f"linear-{self.solver}"
        return f"{self.kind}-{self.encoder}"

    def settings(self) -> dict[str, object]:
        """All fields as a dict (recorded in run records; a change invalidates runs)."""
        return asdict(self)

    @property
    def full_batch(self) -> bool:
        return not self.batch_size


@dataclass(frozen=True)
class ModelPlan:
    """Which modalities each of the S models of a batch uses.

    ``subsets[s]`` is model s's subset; ``members[k]`` the positions (into S) of the
    models whose subset contains modality k.
    """

    names: tuple[str, ...]
    dims: tuple[int, ...]
    subsets: tuple[Subset, ...]
    out_dim: int

    @property
    def S(self) -> int:
        return len(self.subsets)

    def members(self, k: int) -> list[int]:
        name = self.names[k]
        return [s for s, sub in enumerate(self.subsets) if name in sub]

    def member_index(self, k: int, device) -> torch.Tensor:
        """``members(k)`` as a long tensor on ``device``, built once per plan (hot path)."""
        cache = self.__dict__.setdefault("_index_cache", {})
        key = (k, str(device))
        if key not in cache:
            cache[key] = torch.tensor(self.members(k), dtype=torch.long, device=device)
        return cache[key]


def _uniform(gen: torch.Generator, shape: tuple[int, ...], fan_in: int, dtype) -> torch.Tensor:
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).mul_(bound).to(dtype)


def init_model(learner: Learner, subset: Subset, dims: dict[str, int], out_dim: int,
               key: tuple, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Initial parameters of one model, drawn from the stream named by ``key``.

    Returns a flat dict: ``"W1.<mod>"``, ``"b1.<mod>"`` (per modality in the subset),
    ``"W2.<mod>"``/``"b2.<mod>"`` (MLP late fusion), ``"Wh.<mod>"`` (late-concat head
    blocks) or ``"Wh"`` (one head), ``"b"`` (fused first-layer bias, early fusion) and
    ``"bh"`` (head bias). The same dict initialises the batched and the loop models.
    """
    gen = torch_generator(0, *key)
    p: dict[str, torch.Tensor] = {}
    kind, lat = learner.kind, learner.latent_dim
    fused_in = sum(dims[k] for k in subset)
    if kind == "linear":
        for k in subset:
            p[f"W1.{k}"] = _uniform(gen, (dims[k], out_dim), fused_in, dtype)
        p["bh"] = _uniform(gen, (out_dim,), fused_in, dtype)
        return p
    if kind == "early_fusion":
        for k in subset:
            p[f"W1.{k}"] = _uniform(gen, (dims[k], lat), fused_in, dtype)
        p["b"] = _uniform(gen, (lat,), fused_in, dtype)
        p["Wh"] = _uniform(gen, (lat, out_dim), lat, dtype)
        p["bh"] = _uniform(gen, (out_dim,), lat, dtype)
        return p
    width = learner.hidden if learner.encoder == "mlp" else lat
    head_in = lat * (len(dims) if learner.fusion == "concat" else 1)
    for k in subset:
        p[f"W1.{k}"] = _uniform(gen, (dims[k], width), dims[k], dtype)
        p[f"b1.{k}"] = _uniform(gen, (width,), dims[k], dtype)
        if learner.encoder == "mlp":
            p[f"W2.{k}"] = _uniform(gen, (width, lat), width, dtype)
            p[f"b2.{k}"] = _uniform(gen, (lat,), width, dtype)
    if learner.fusion == "concat":
        for k in subset:
            p[f"Wh.{k}"] = _uniform(gen, (lat, out_dim), head_in, dtype)
    else:
        p["Wh"] = _uniform(gen, (lat, out_dim), head_in, dtype)
    p["bh"] = _uniform(gen, (out_dim,), head_in, dtype)
    return p


def stack_params(models: list[list[dict[str, torch.Tensor]]], plan: ModelPlan,
                 device, dtype) -> dict[str, torch.Tensor]:
    """Stack per-model dicts ``models[g][s]`` into batched leaves.

    Per-modality entries get shape (G, S_k, ...) over the models containing the
    modality; the others (G, S, ...). Returns leaf tensors that require grad.
    """
    out: dict[str, torch.Tensor] = {}
    keys = set().union(*(m.keys() for row in models for m in row))
    for key in sorted(keys):
        if "." in key:
            k = plan.names.index(key.split(".", 1)[1])
            cols = plan.members(k)
        else:
            cols = list(range(plan.S))
        t = torch.stack([torch.stack([row[s][key] for s in cols]) for row in models])
        out[key] = t.to(device=device, dtype=dtype).requires_grad_(True)
    return out


def _modality_layer(xs: list[torch.Tensor], params: dict[str, torch.Tensor], prefix: str,
                    plan: ModelPlan, width: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Per modality k: (k, member index, x_k W_k) of shape (G, S_k, m, width).

    One wide GEMM per group, (m, d_k) @ (d_k, S_k * width), then one transposing copy.
    """
    out = []
    for k, name in enumerate(plan.names):
        key = f"{prefix}.{name}"
        if key not in params:
            continue
        W = params[key]  # (G, S_k, d_k, width)
        G, Sk, d, _ = W.shape
        x = xs[k]  # (G, m, d_k)
        if x.shape[0] != G or x.shape[-1] != d:
            raise ValueError(f"modality {name!r}: data {tuple(x.shape)} does not fit weights {tuple(W.shape)}")
        m = x.shape[1]
        y = torch.bmm(x, W.permute(0, 2, 1, 3).reshape(G, d, Sk * width))
        y = y.view(G, m, Sk, width).transpose(1, 2).contiguous()
        out.append((k, plan.member_index(k, x.device), y))
    return out


def _per_model(h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """(G, S, m, a) @ (G, S, a, b) -> (G, S, m, b) as one bmm over G * S models."""
    G, S, m, a = h.shape
    return torch.bmm(h.reshape(G * S, m, a), W.reshape(G * S, a, W.shape[-1])).view(G, S, m, -1)


def forward(learner: Learner, params: dict[str, torch.Tensor], xs: list[torch.Tensor],
            plan: ModelPlan, *, return_latent: bool = False):
    """Outputs of all G x S models on their groups' data.

    Parameters
    ----------
    xs : list over modalities of (G, m, d_k)
        Each group's features (unmasked: the plan masks).

    Returns
    -------
    out : (G, S, m, p) predictions (regression) or logits.
    latent : (G, S, m, q), only with ``return_latent``: the encoder's output g(x)
        (late fusion: the concatenated latents, absent modalities zero-filled;
        early fusion: the fused layer; linear: the composite's outputs).
    """
    G, m = xs[0].shape[0], xs[0].shape[1]
    S, p = plan.S, plan.out_dim
    ref = next(iter(params.values()))
    kind = learner.kind
    act = _ACTIVATIONS[learner.activation]
    if kind == "linear":
        out = params["bh"][:, :, None].expand(G, S, m, p).clone()
        for _, idx, y in _modality_layer(xs, params, "W1", plan, p):
            out.index_add_(1, idx, y)
        return (out, out) if return_latent else out
    if kind == "early_fusion":
        lat = learner.latent_dim
        pre = params["b"][:, :, None].expand(G, S, m, lat).clone()
        for _, idx, y in _modality_layer(xs, params, "W1", plan, lat):
            pre.index_add_(1, idx, y)
        z = act(pre) if learner.encoder == "mlp" else pre
        out = _per_model(z, params["Wh"]) + params["bh"][:, :, None]
        return (out, z) if return_latent else out
    lat = learner.latent_dim
    width = learner.hidden if learner.encoder == "mlp" else lat
    out = params["bh"][:, :, None].expand(G, S, m, p).clone()
    latents = []
    summed = None
    for k, idx, y in _modality_layer(xs, params, "W1", plan, width):
        name = plan.names[k]
        h = y + params[f"b1.{name}"][:, :, None]
        if learner.encoder == "mlp":
            h = _per_model(act(h), params[f"W2.{name}"]) + params[f"b2.{name}"][:, :, None]
        if learner.fusion == "concat":
            out.index_add_(1, idx, _per_model(h, params[f"Wh.{name}"]))
        else:
            if summed is None:
                summed = torch.zeros(G, S, m, lat, dtype=ref.dtype, device=ref.device)
            summed.index_add_(1, idx, h)
        if return_latent:
            latents.append((k, idx, h))
    if learner.fusion == "sum":
        out = out + _per_model(summed, params["Wh"])
    if not return_latent:
        return out
    if learner.fusion == "sum":
        return out, summed
    z = torch.zeros(G, S, m, lat * len(plan.names), dtype=ref.dtype, device=ref.device)
    for k, idx, h in latents:
        z[..., k * lat : (k + 1) * lat].index_add_(1, idx, h)
    return out, z
