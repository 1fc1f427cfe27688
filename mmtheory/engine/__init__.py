"""The engine layer: batched ERM, many independent models trained in one call."""

from mmtheory.engine.closed_form import LeastSquaresFit, fit_least_squares
from mmtheory.engine.device import default_memory_budget, resolve_device
from mmtheory.engine.iterative import (
    Batches,
    TrainResult,
    ridge_penalty,
    step_context,
    train_batched,
)

__all__ = [
    "Batches",
    "LeastSquaresFit",
    "TrainResult",
    "default_memory_budget",
    "fit_least_squares",
    "resolve_device",
    "ridge_penalty",
    "step_context",
    "train_batched",
]
