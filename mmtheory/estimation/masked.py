"""Per-sample losses of trained models on masked inputs: the values of the contribution games.

The masked (reliance) game evaluates one trained joint model with the modalities outside a
coalition replaced by a fill value: zeros (the paper's p_M, as BalanceBenchmark, AGM and
MM-SHAP mask) or the training mean of each modality (the ``intershap`` package). Coalitions
are bitmasks over the data's modality order (bit k set: modality k kept), as in
:mod:`mmtheory.theory.games`; coalition 0 masks everything.

Sample-based values come with their per-sample losses, so per-sample games and standard
errors follow; for linear models on a world with an exact oracle (regression, squared loss)
:func:`coalition_risks_exact` gives the same quantities in closed form, and a test holds the
Monte Carlo estimate to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmtheory.estimation.estimate import Models, Sample, Truth
from mmtheory.estimation.linear_maps import linear_predictor
from mmtheory.estimation.risk import EVAL_CHUNK
from mmtheory.models.forward import forward
from mmtheory.models.losses import per_sample_loss
from mmtheory.models.plan import ModelPlan

__all__ = [
    "MASKS",
    "SampleLosses",
    "coalition_losses",
    "coalition_risks_exact",
    "constant_losses",
    "per_sample_losses",
    "select_models",
]

#: The fill values of the masked game.
MASKS = ("zero", "mean")


@dataclass
class SampleLosses:
    """Per-sample losses ``loss`` and, for classification, ``correct`` (1.0 when the argmax
    is the label); shapes (G, S, n) or, per coalition, (G, S, n, 2^K). ``output``: the
    models' outputs (G, S, n, p) or (G, S, n, 2^K, p), when asked for."""

    loss: torch.Tensor
    correct: torch.Tensor | None = None
    output: torch.Tensor | None = None


def select_models(models: Models, keep: list[int]) -> Models:
    """The models at positions ``keep`` of every group, with a plan of their subsets only."""
    plan = models.plan
    sub_plan = ModelPlan(plan.names, plan.dims, tuple(plan.subsets[s] for s in keep), plan.out_dim)
    params = {}
    for slot, t in models.params.items():
        if slot.per_modality:
            members = plan.members(plan.names.index(slot.modality))
            cols = [members.index(s) for s in keep if s in members]
            if not cols:  # no kept model reads this modality
                continue
        else:
            cols = list(keep)
        params[slot] = t.detach()[:, cols]
    return Models(models.learner, params, sub_plan)


@torch.no_grad()
def per_sample_losses(
    models: Models, sample: Sample, task: str, *, outputs: bool = False
) -> SampleLosses:
    """Loss of every model on every row of its group's sample: (G, S, n) (chunked)."""
    losses, correct, outs = [], [], []
    n = sample.xs[0].shape[1]
    for start in range(0, n, EVAL_CHUNK):
        bx = [x[:, start : start + EVAL_CHUNK] for x in sample.xs]
        by = sample.y[:, start : start + EVAL_CHUNK]
        out = forward(models.learner, models.params, bx, models.plan)
        losses.append(per_sample_loss(out, by, task).double())
        if task == "classification":
            correct.append((out.argmax(-1) == by[:, None]).double())
        if outputs:
            outs.append(out.double())
    return SampleLosses(
        torch.cat(losses, dim=2),
        torch.cat(correct, dim=2) if correct else None,
        torch.cat(outs, dim=2) if outs else None,
    )


def _check_fill(fill, sample: Sample) -> list[torch.Tensor]:
    if fill is None:
        return [torch.zeros_like(x[:, :1]) for x in sample.xs]
    fill = list(fill)
    if len(fill) != len(sample.xs):
        raise ValueError(f"fill needs one entry per modality ({len(sample.xs)}), got {len(fill)}")
    out = []
    for k, (f, x) in enumerate(zip(fill, sample.xs)):
        want = (x.shape[0],) + tuple(x.shape[2:])
        if tuple(f.shape) != want:
            raise ValueError(f"fill[{k}] must have shape {want}, got {tuple(f.shape)}")
        out.append(f[:, None].to(dtype=x.dtype, device=x.device))
    return out


def coalition_losses(
    models: Models, sample: Sample, task: str, *, fill=None, outputs: bool = False
) -> SampleLosses:
    """Per-sample losses of every model on every coalition's masked input.

    Parameters
    ----------
    models : G x S trained models (usually S = 1: the joint model of each group)
    sample : list over modalities of (G, n, d_k) and y (G, n[, p])
    fill : None (zero mask) or, per modality, a (G, d_k) tensor (each group's training
        mean: the mean mask); a modality outside the coalition is replaced by it
    outputs : also return the outputs (G, S, n, 2^K, p): the output games of InterSHAP,
        AGM and MM-SHAP

    Returns
    -------
    SampleLosses with ``loss`` (G, S, n, 2^K), for classification ``correct``, and
    ``output`` when asked for.
    """
    fills = _check_fill(fill, sample)
    K = len(sample.xs)
    losses, correct, outs = [], [], []
    for c in range(2**K):
        xs = [
            x if c >> k & 1 else f.expand_as(x).contiguous()
            for k, (x, f) in enumerate(zip(sample.xs, fills))
        ]
        res = per_sample_losses(models, Sample(xs, sample.y), task, outputs=outputs)
        losses.append(res.loss)
        if res.correct is not None:
            correct.append(res.correct)
        if res.output is not None:
            outs.append(res.output)
    return SampleLosses(
        torch.stack(losses, dim=-1),
        torch.stack(correct, dim=-1) if correct else None,
        torch.stack(outs, dim=3) if outs else None,
    )


def coalition_risks_exact(models: Models, truth: Truth, *, fill=None) -> np.ndarray:
    """Exact population risk of every model on every coalition's masked input, (G, S, 2^K).

    Linear models (the closed form, or linear encoders and head) on a world with an exact
    oracle and squared loss: masking modality k replaces x_k by the constant ``fill[k]``,
    which zeroes the rows of W for modality k and adds fill[k]^T W_k to the intercept.
    ``fill``: None (zeros) or per modality a (G, d_k) tensor.
    """
    pred = linear_predictor(models)
    if truth.oracle is None or truth.task != "regression" or pred is None:
        raise ValueError(
            "exact masked risks need linear models and a regression world with an exact oracle"
        )
    W, b = pred  # (G, S, d, p), (G, S, p)
    G, S, d, p = W.shape
    plan = models.plan
    offs = np.concatenate([[0], np.cumsum(plan.dims)]).astype(int)
    fills = (
        [torch.zeros(G, dk, dtype=torch.float64) for dk in plan.dims]
        if fill is None
        else [f.detach().double().cpu() for f in fill]
    )
    for k, f in enumerate(fills):
        if tuple(f.shape) != (G, plan.dims[k]):
            raise ValueError(f"fill[{k}] must have shape {(G, plan.dims[k])}, got {tuple(f.shape)}")
    W, b = W.cpu(), b.cpu()
    K = plan.K
    out = np.zeros((G, S, 2**K))
    for c in range(2**K):
        Wc, bc = W.clone(), b.clone()
        for k in range(K):
            if c >> k & 1:
                continue
            rows = slice(int(offs[k]), int(offs[k + 1]))
            bc += torch.einsum("gd,gsdp->gsp", fills[k], W[:, :, rows])
            Wc[:, :, rows] = 0
        risks = truth.oracle.risk_linear(
            Wc.reshape(G * S, d, p).numpy(), bc.reshape(G * S, p).numpy()
        )
        out[:, :, c] = np.asarray(risks).reshape(G, S)
    return out


def constant_losses(y_train: torch.Tensor, y: torch.Tensor, task: str, n_classes: int = 0):
    """Per-sample loss of each group's best constant predictor, fitted on ``y_train``: (G, n).

    Regression: the training mean (squared loss summed over outputs). Classification: the
    training class frequencies with half a count added to each class (never log 0).
    """
    if task == "regression":
        yt = y_train.double().reshape(y_train.shape[0], y_train.shape[1], -1)
        yy = y.double().reshape(y.shape[0], y.shape[1], -1)
        return ((yy - yt.mean(dim=1, keepdim=True)) ** 2).sum(-1)
    counts = torch.stack(
        [torch.bincount(row, minlength=n_classes).double() + 0.5 for row in y_train]
    )
    logp = torch.log(counts / counts.sum(dim=1, keepdim=True))  # (G, C)
    return -torch.gather(logp, 1, y.long())
