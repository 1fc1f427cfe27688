"""The real-data protocol for models that need Adam (convolutional temporal encoders).

The same splits, sizes, class-balanced training prefixes, test rows and scores as the
convex protocol (:mod:`mmtheory.experiments.protocol`); only the model and its selection
differ, because a late-fusion network with a convolutional encoder has no convex head to
fit to convergence:

1. **Penalty on the training rows only.** The m training rows are cut (stratified, by the
   protocol's inner folds) into a fitting part (its first fold's complement) and a
   validation part (its first fold). Every subset's network is trained by the learner's
   solver (Adam, its fixed step count) on the fitting part at each L2 strength of
   ``lambdas`` (the learner's ``ridge``), and the strength with the lowest validation
   cross-entropy is chosen per subset (a diverged candidate never is; with fewer than 2
   rows per fold, or no finite candidate, the strongest). One held-out fold, not k-fold:
   each candidate is a full training run.
2. **Refit** on all m rows at the chosen strength, from the same initial weights (every
   candidate and the refit of a subset start from one draw).
3. **Scored once on the split's test rows** (error, accuracy, cross-entropy, Brier, ECE).

Features are standardised with the statistics of the rows each network is trained on (per
feature, over rows and time steps). The test rows never reach a training or a selection
(``tests/experiments/test_protocol.py`` records the rows every training and every
selection is handed). Cross-entropies of these networks depend on the optimiser (a fixed
number of Adam steps, not an optimum), so compare them with care; the error does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from mmtheory.core.data import MultiModalData
from mmtheory.core.splits import feature_scaling, inner_folds
from mmtheory.core.subsets import Subset
from mmtheory.engine import train_batched
from mmtheory.estimation.calibration import classification_scores, cross_entropy
from mmtheory.models import Learner, ModelPlan, init_model
from mmtheory.models.forward import forward

__all__ = ["NEURAL_PROTOCOL_NAME", "neural_cell", "train_and_predict"]

NEURAL_PROTOCOL_NAME = (
    "repeated splits, Adam-trained networks, L2 strength chosen on a held-out fold of the "
    "training rows"
)


def _standardised(
    data: MultiModalData, fit_rows: np.ndarray, rows: np.ndarray, dtype, device
) -> list[torch.Tensor]:
    """Every modality of ``rows`` standardised with ``fit_rows``' statistics (per feature,
    over rows and time steps), as (1, n, ...) tensors (one group) on ``device``."""
    out = []
    for k in data.names:
        x = data[k].detach()
        mu, sd = feature_scaling(x[torch.as_tensor(fit_rows)].cpu().numpy())
        z = (x[torch.as_tensor(rows)].cpu().numpy().astype(np.float64) - mu) / sd
        out.append(torch.from_numpy(z).to(device=device, dtype=dtype)[None])
    return out


def train_and_predict(
    data: MultiModalData,
    learner: Learner,
    subsets: Sequence[Subset],
    train_rows: np.ndarray,
    eval_rows: np.ndarray,
    key: tuple,
    *,
    dtype=torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Train one network per subset on ``train_rows`` (initial weights and minibatch order
    from streams named by ``key`` and the subset) and predict ``eval_rows``: class
    probabilities ``(S, n_eval, classes)`` and ``converged`` ``(S,)``."""
    classes = int(data.n_classes or 0)
    dims = dict(data.dims)
    plan = ModelPlan(data.names, tuple(dims.values()), tuple(subsets), classes)
    xs = _standardised(data, train_rows, train_rows, dtype, device)
    y = data.y[torch.as_tensor(train_rows)][None].to(device)
    inits = [
        [
            init_model(learner, sub, dims, classes, key=("init", *key, str(sub)), dtype=dtype)
            for sub in subsets
        ]
    ]
    res = train_batched(
        learner,
        plan,
        xs,
        y,
        inits,
        task="classification",
        dtype=dtype,
        batch_keys=[("batches", *key)],
    )
    xe = _standardised(data, train_rows, eval_rows, dtype, device)
    with torch.no_grad():
        logits = forward(learner, res.params, xe, plan)[0].double()
    proba = torch.softmax(logits, dim=-1).cpu().numpy()
    return proba, res.converged[0].cpu().numpy().astype(bool)


def neural_cell(
    data: MultiModalData,
    learner: Learner,
    subsets: Sequence[Subset],
    rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    lambdas: Sequence[float],
    folds: int,
    seed: int,
    key: tuple,
    device: torch.device | str = "cpu",
) -> list[tuple[float, bool, dict[str, float]]]:
    """One (split, m) cell (module docstring): per subset ``(lam, converged, scores)``,
    scores as :func:`~mmtheory.estimation.calibration.classification_scores`."""
    y = data.y.detach().cpu().numpy()
    lambdas = sorted(float(v) for v in lambdas)
    # the strongest penalty wherever nothing can be selected: fewer than 2 rows per fold
    # (as the convex heads), or a subset whose every candidate diverged
    loss = np.full((len(lambdas), len(subsets)), np.inf)
    loss[-1] = 0.0
    if len(rows) >= 2 * folds:
        fit_pos, val_pos = inner_folds(y[rows], folds, seed=seed, key=key)[0]
        fit_rows, val_rows = rows[fit_pos], rows[val_pos]
        for j, lam in enumerate(lambdas):
            proba, _ = train_and_predict(
                data, replace(learner, ridge=lam), subsets, fit_rows, val_rows, key, device=device
            )
            loss[j] = cross_entropy(proba, y[val_rows])
        loss[~np.isfinite(loss)] = np.inf  # a diverged candidate (NaN) is never chosen
        loss[-1, np.isinf(loss).all(axis=0)] = 0.0
    chosen = loss.argmin(axis=0)
    out: list = [None] * len(subsets)
    for j in sorted(set(chosen.tolist())):
        members = [i for i in range(len(subsets)) if chosen[i] == j]
        proba, converged = train_and_predict(
            data,
            replace(learner, ridge=lambdas[j]),
            [subsets[i] for i in members],
            rows,
            test_rows,
            key,
            device=device,
        )
        for s, i in enumerate(members):
            scores = classification_scores(proba[s], y[test_rows])
            out[i] = (lambdas[j], bool(converged[s]), scores)
    return out
