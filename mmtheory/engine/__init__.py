"""The engine layer: batched ERM, many independent models trained in one call."""

from mmtheory.engine.closed_form import (
    GramFactors,
    LeastSquaresFit,
    LeastSquaresPath,
    fit_least_squares,
    latent_route_pays,
    least_squares_path,
)
from mmtheory.engine.device import cpu_threads, default_memory_budget, resolve_device
from mmtheory.engine.iterative import (
    Batches,
    TrainResult,
    ridge_penalty,
    step_context,
    train_batched,
)
from mmtheory.engine.recording import Record, Trajectory, log_steps

__all__ = [
    "Batches",
    "GramFactors",
    "LeastSquaresFit",
    "LeastSquaresPath",
    "Record",
    "TrainResult",
    "Trajectory",
    "cpu_threads",
    "default_memory_budget",
    "fit_least_squares",
    "latent_route_pays",
    "least_squares_path",
    "log_steps",
    "resolve_device",
    "ridge_penalty",
    "step_context",
    "train_batched",
]
