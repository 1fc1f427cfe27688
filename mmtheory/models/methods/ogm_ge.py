"""``ogm_ge``: on-the-fly gradient modulation with generalisation enhancement.

Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022;
transcribed from the authors' code (GeWu-Lab/OGM-GE_CVPR2022, ``main.py``,
``train_epoch``), which is what the tests check against. Per step, for a model with
modalities M (|M| >= 2):

1. The fused loss's gradient (plain backpropagation).
2. Scores from the fused head's own blocks (no extra heads): each modality's share of the
   fused logits, h_k(x) W_k + b / |M|, and s_k = sum_{i in batch} softmax(.)_{y_i}. The
   original has two modalities and splits the bias as b / 2; we split it evenly over the
   model's |M| modalities (so that the shares add up to the fused logits), which is the
   original for |M| = 2.
3. ratio_k = s_k / mean_{j in M, j != k} s_j (the original's s_a / s_v for |M| = 2); the
   coefficient is 1 - tanh(alpha * ratio_k) where ratio_k > 1, else 1
   (:func:`ogm_coefficients`).
4. Each encoder *weight* matrix of modality k: g <- g * coeff_k + N(0, (sd(g) + 1e-8)^2)
   elementwise, sd(g) the sample standard deviation of that gradient's entries before
   modulation (generalisation enhancement, ``ge``; without it g <- g * coeff_k). The
   original modulates and noises only its encoders' 4-d convolution kernels: biases and
   normalisation parameters are neither modulated nor noised; here likewise only weight
   matrices.
5. Steps 1-4 apply only in the first ``modulation_window`` of training (the original
   modulates epochs 0 to 50 of 100, "the first half"; we take the first
   ceil(window * steps) steps); afterwards training is plain.

Single-modality models are never modulated and get no noise (the original has none), so
inside an ``ogm_ge`` sweep the unimodal models are ERM. The noise of each model comes from
its own stream (its group's key and its subset), so the per-model reference loop draws the
same noise and adding a model to a sweep changes no other model's numbers.

The original trains with SGD, momentum 0.9 (weight decay 1e-4, a step learning-rate
schedule): :attr:`OGMGE.recipe`. Under Adam the modulation is largely cancelled, because
Adam divides each coordinate by its own gradient's running RMS, which the coefficient
scales too (see ``tests/models/test_method_mechanisms.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mmtheory.core.seeding import torch_generator
from mmtheory.core.validation import check_bool, check_real
from mmtheory.models.forward import concat_head, late_latents, per_model
from mmtheory.models.losses import loss_per_model
from mmtheory.models.methods.base import Ablation, Claim, Method, Probe
from mmtheory.models.params import ENCODER, HEAD, bias, weight

__all__ = ["GE_EPS", "OGMGE", "modulated", "ogm_coefficients"]

#: the original's guard on the noise's standard deviation: sd(g) + 1e-8
GE_EPS = 1e-8


def ogm_coefficients(scores: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """OGM-GE's per-modality gradient coefficients (..., K) from scores s_k (..., K).

    ratio_k = s_k / mean of the other present modalities' scores; the coefficient is
    1 - tanh(alpha * ratio_k) where ratio_k > 1, else 1 (and 1 for absent modalities or a
    model with a single modality).
    """
    s = torch.where(mask, scores, torch.zeros_like(scores))
    n = mask.sum(-1, keepdim=True)
    others = (s.sum(-1, keepdim=True) - s) / (n - 1).clamp_min(1)
    ratio = s / others.clamp_min(torch.finfo(s.dtype).tiny)
    coeff = torch.where(ratio > 1, 1 - torch.tanh(alpha * ratio), torch.ones_like(ratio))
    return torch.where(mask & (n >= 2), coeff, torch.ones_like(coeff))


def modulated(step: int, steps: int, window: float) -> bool:
    """Whether step ``step`` (0-based) of ``steps`` lies in the modulation window (the
    first ceil(window * steps) steps)."""
    return step < math.ceil(window * steps - 1e-9)


def _noise(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal draws in float64 (the same numbers at any training dtype)."""
    return torch.randn(shape, generator=gen, dtype=torch.float64)


@dataclass(frozen=True)
class OGMGE(Method):
    """Scale the dominant encoder's gradient down early in training; add gradient noise.

    Parameters
    ----------
    alpha : modulation strength >= 0 (coefficient 1 - tanh(alpha * ratio)); the original
        recommends 0.1 (VGGSound) and 0.8 (CREMA-D); 0.5 here
    ge : generalisation enhancement (Gaussian gradient noise) on or off
    modulation_window : fraction of the steps, from the start, in which modulation and
        noise apply (the original: the first half)
    """

    alpha: float = 0.5
    ge: bool = True
    modulation_window: float = 0.5

    name = "ogm_ge"
    paper = "Peng et al., CVPR 2022"
    provenance = "authors' code read (GeWu-Lab/OGM-GE_CVPR2022, main.py); paper's Eq. 10"
    classification_only = True
    recipe = {"solver": "sgd", "momentum": 0.9}
    ablations = (
        Ablation("modulation", "modulation alone (no noise)", {"ge": False}),
        Ablation("noise", "noise alone (alpha = 0)", {"alpha": 0.0}),
        Ablation("noise-erm", "the same noise on ERM's common recipe", {"alpha": 0.0}, "common"),
        Ablation(
            "modulation-adam", "modulation alone on the common recipe", {"ge": False}, "common"
        ),
    )
    #: the modulation without noise against no modulation, over the modulation window
    probe = Probe({"ge": False}, {"ge": False, "alpha": 0.0}, 0.5)
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        check_real(self.alpha, "alpha", low=0)
        check_bool(self.ge, "ge")
        check_real(self.modulation_window, "modulation_window", low=0, high=1)

    def start(self, ctx):
        """One noise stream per multimodal model, ``gens[g][s]`` (None for single
        modalities), and the running sum of the coefficients (reported per modality as the
        diagnostic ``ogm_coeff_<modality>``: the mean over the modulated steps)."""
        gens = None
        if self.ge:
            gens = [
                [
                    torch_generator(0, "ogm-ge", *key) if len(sub) >= 2 else None
                    for key, sub in zip(row, ctx.plan.subsets)
                ]
                for row in ctx.model_keys()
            ]
        return {"gens": gens, "coeff_sum": 0.0, "n": 0}

    def backward(self, ctx, params, xs, y):
        """Fused loss gradients, then (in the window) modulated and noised encoder weights."""
        plan = ctx.plan
        G, m = xs[0].shape[:2]
        latents = late_latents(ctx.learner, params, xs, plan)
        out = concat_head(params, latents, plan, G, m)
        loss = loss_per_model(out, y, "classification")
        (loss + ctx.penalty(params)).sum().backward()
        if not modulated(ctx.step, ctx.steps, self.modulation_window):
            return loss.detach()
        with torch.no_grad():
            mask = plan.mask(out.device)
            share = params[bias(HEAD)][:, :, None] / mask.sum(-1).to(out.dtype)[None, :, None, None]
            scores = torch.zeros(G, plan.S, plan.K, dtype=torch.float64, device=out.device)
            for k, idx, h in latents:
                logits = per_model(h, params[weight(HEAD, 0, plan.names[k])]) + share[:, idx]
                prob = torch.softmax(logits.double(), -1)
                true = prob.gather(-1, y[:, None, :, None].expand(*prob.shape[:3], 1)).squeeze(-1)
                scores[:, idx, k] = true.sum(-1)
            coeff = ogm_coefficients(scores, mask[None], self.alpha)
            state = ctx.state
            state["coeff_sum"] = state["coeff_sum"] + coeff
            state["n"] += 1
            mean = state["coeff_sum"] / state["n"]
            for k, name in enumerate(plan.names):
                ctx.diagnostics[f"ogm_coeff_{name}"] = torch.where(
                    mask[None, :, k], mean[..., k], torch.full_like(mean[..., k], math.nan)
                )
            gens = state["gens"]
            for slot in sorted(params):
                t = params[slot]
                if slot.part != ENCODER or not slot.weight or t.grad is None:
                    continue
                k = plan.names.index(slot.modality)
                idx = plan.member_index(k, t.device)
                sd = t.grad.flatten(2).std(dim=-1)  # (G, S_k), before modulation
                t.grad.mul_(coeff[:, idx, k].to(t.dtype)[..., None, None])
                if gens is None:
                    continue
                for g in range(G):
                    for j, s in enumerate(plan.members(k)):
                        if gens[g][s] is not None:
                            z = _noise(gens[g][s], tuple(t.shape[2:])).to(t.device, t.dtype)
                            t.grad[g, j].add_(z * (sd[g, j] + GE_EPS))
        return loss.detach()

    # ------------------------------------------------------------ reference
    def reference_backward(self, model, xs, y, task, trainable, ref) -> None:
        """The loss's gradient; in the window, each encoder weight's gradient scaled by its
        modality's coefficient, plus the noise drawn from this model's own stream."""
        self.reference_loss(model, xs, y, task).backward()
        K = len(model.mods)
        if K < 2 or not modulated(ref.step, ref.steps, self.modulation_window):
            return
        if self.ge and ref.state is None:
            ref.state = torch_generator(0, "ogm-ge", *ref.model_key)
        with torch.no_grad():
            lat = model.latents(xs)
            lat_dim = model.learner.latent_dim
            W, b = model.head.weight.T, model.head.bias
            scores = []
            for i, k in enumerate(model.mods):
                logits = lat[k] @ W[i * lat_dim : (i + 1) * lat_dim] + b / K
                scores.append(torch.softmax(logits.double(), -1)[torch.arange(len(y)), y].sum())
            coeff = ogm_coefficients(
                torch.stack(scores), torch.ones(K, dtype=torch.bool), self.alpha
            )
            order = sorted(
                (layer, k, p)
                for i, k in enumerate(model.mods)
                for layer, p in _encoder_weights(model.encoders[k])
            )
            for _layer, k, p in order:
                grad = p.grad
                assert grad is not None
                sd = grad.std()
                grad.mul_(coeff[model.mods.index(k)].to(p.dtype))
                if self.ge:
                    z = _noise(ref.state, _engine_shape(p))
                    grad.add_(_to_module_layout(z, p).to(p.dtype) * (sd + GE_EPS))


def _encoder_weights(encoder) -> list[tuple[int, torch.Tensor]]:
    """(layer, weight) of a reference encoder: nn.Linear layers or the conv encoder's."""
    if hasattr(encoder, "conv"):
        return [(1, encoder.conv.weight), (2, encoder.out.weight)]
    linears = [mod for mod in encoder if isinstance(mod, torch.nn.Linear)]
    return [(i + 1, lin.weight) for i, lin in enumerate(linears)]


def _engine_shape(p: torch.Tensor) -> tuple[int, ...]:
    """The batched engine's per-model shape of a module weight: (in, out)."""
    if p.ndim == 3:  # Conv1d (out, d, window) -> (window * d, out)
        return (p.shape[2] * p.shape[1], p.shape[0])
    return (p.shape[1], p.shape[0])


def _to_module_layout(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Noise drawn in the engine's layout, laid out like the module weight ``p``."""
    if p.ndim == 3:
        out_ch, d, w = p.shape
        return z.view(w, d, out_ch).permute(2, 1, 0)
    return z.T
