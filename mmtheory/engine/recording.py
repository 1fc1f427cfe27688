"""Training trajectories: what :func:`~mmtheory.engine.train_batched` records, and when.

A :class:`Record` asks for ``points`` log-spaced steps between 1 and ``steps`` (plus step 0,
the initialisation, and the last step). At each, for every model of the batch, on the full
training data and without touching the training (no gradients, no random numbers):

- the training loss (the prediction loss of the method's objective);
- the per-branch loss: the loss of modality k's branch alone, the model read as a model of
  the subset {k} (the other modalities' branches removed, shared layers and biases kept);
  NaN where the model does not contain k;
- for linear networks (:func:`~mmtheory.models.effective.is_linear_network`): the effective
  weights, the product of the layers along each modality's path, and the intercept.

Everything is batched like training: thousands of trajectories come from one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmtheory.core.validation import check_bool, check_int
from mmtheory.models.effective import effective_linear_map
from mmtheory.models.forward import forward
from mmtheory.models.learner import Learner
from mmtheory.models.losses import loss_per_model
from mmtheory.models.params import Params, branch_params
from mmtheory.models.plan import ModelPlan

__all__ = ["Record", "Recorder", "Trajectory", "log_steps"]


def log_steps(steps: int, points: int) -> np.ndarray:
    """Step 0 and about ``points`` log-spaced steps in [1, steps] (rounded, unique, sorted;
    ``steps`` always included), int64."""
    if steps < 1:
        return np.zeros(1, dtype=np.int64)
    grid = np.unique(np.round(np.geomspace(1, steps, max(points, 2))).astype(np.int64))
    return np.concatenate([np.zeros(1, dtype=np.int64), grid])  # geomspace ends at steps


@dataclass(frozen=True)
class Record:
    """What to record during training (see the module docstring).

    Parameters
    ----------
    points : about how many log-spaced steps to record (besides step 0)
    branch_loss : record the per-branch losses (one extra forward per modality and point)
    weights : record effective weights when the network is linear
    """

    points: int = 200
    branch_loss: bool = True
    weights: bool = True

    def __post_init__(self) -> None:
        check_int(self.points, "record points", low=2)
        check_bool(self.branch_loss, "record branch_loss")
        check_bool(self.weights, "record weights")


@dataclass
class Trajectory:
    """Recorded quantities of G x S models at T steps (float64, on the CPU).

    Attributes
    ----------
    steps : (T,) optimiser steps taken before each record (0: the initialisation)
    loss : (G, S, T) full-batch training loss
    branch_loss : (G, S, T, K) loss of each modality's branch alone; NaN where absent;
        None when not recorded
    weights : (G, S, T, D, p) effective weights over the concatenated features (D = sum of
        the modalities' dimensions), zero rows for absent modalities; None when the network
        is not linear or weights were not recorded
    bias : (G, S, T, p) the effective intercept, with ``weights``
    names : the modalities, in the plan's order
    dims : their dimensions
    """

    steps: np.ndarray
    loss: np.ndarray
    branch_loss: np.ndarray | None
    weights: np.ndarray | None
    bias: np.ndarray | None
    names: tuple[str, ...]
    dims: tuple[int, ...]

    def rows(self, name: str) -> slice:
        """Modality ``name``'s rows of ``weights``."""
        offs = np.concatenate([[0], np.cumsum(self.dims)]).astype(int)
        k = self.names.index(name)
        return slice(int(offs[k]), int(offs[k + 1]))

    def modality_weights(self, name: str) -> np.ndarray:
        """(G, S, T, d_k, p): modality ``name``'s effective weights."""
        if self.weights is None:
            raise ValueError("this trajectory has no effective weights (not a linear network)")
        return self.weights[..., self.rows(name), :]


class Recorder:
    """Collects a :class:`Trajectory` during one :func:`train_batched` call."""

    def __init__(self, record: Record, learner: Learner, plan: ModelPlan, steps: int) -> None:
        self.record, self.learner, self.plan = record, learner, plan
        self.grid = log_steps(steps, record.points)
        self._wanted = set(self.grid.tolist())
        self._loss: list[torch.Tensor] = []
        self._branch: list[torch.Tensor] = []
        self._weights: list[torch.Tensor] = []
        self._bias: list[torch.Tensor] = []

    def wants(self, step: int) -> bool:
        return step in self._wanted

    @torch.no_grad()
    def take(self, params: Params, xs: list[torch.Tensor], y: torch.Tensor, task: str) -> None:
        """Record the current state (call at each step :meth:`wants`)."""
        lrn, plan = self.learner, self.plan
        _, losses = lrn.method.objective(lrn, params, xs, y, plan, task)
        self._loss.append(losses.detach().double().cpu())
        if self.record.branch_loss:
            G = losses.shape[0]
            branch = torch.full((G, plan.S, plan.K), float("nan"), dtype=torch.float64)
            for k in range(plan.K):
                sub, members = branch_params(params, plan, k)
                if not members:
                    continue
                out = forward(lrn, sub, xs, plan.single(k))
                branch[:, members, k] = loss_per_model(out, y, task).double().cpu()
            self._branch.append(branch)
        if self.record.weights:
            mapped = effective_linear_map(lrn, params, plan)
            if mapped is not None:
                self._weights.append(mapped[0].cpu())
                self._bias.append(mapped[1].cpu())

    def trajectory(self) -> Trajectory:
        def stack(items: list[torch.Tensor], axis: int) -> np.ndarray | None:
            return torch.stack(items, dim=axis).numpy() if items else None

        loss = stack(self._loss, 2)
        assert loss is not None  # step 0 is always recorded
        return Trajectory(
            steps=self.grid.copy(),
            loss=loss,
            branch_loss=stack(self._branch, 2),
            weights=stack(self._weights, 2),
            bias=stack(self._bias, 2),
            names=self.plan.names,
            dims=self.plan.dims,
        )
