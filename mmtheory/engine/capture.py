"""The training step captured in a CUDA graph: one launch per step instead of one per op.

Small batched models are bound by per-op overhead on a GPU: a late-fusion MLP step is
about 90 (K = 3) to 150 (K = 6) kernels of a few microseconds each, each launched from
Python, and a step took 3.4-6.6 ms whatever the number of models (issue 18). The step is
the same GPU work every time (same shapes, same addresses, no host reads), so it is
recorded once as a CUDA graph and replayed: the first ``WARMUP`` steps run eagerly on a
side stream (lazy initialisation: the optimiser's state, cuBLAS workspaces, the plan's
index caches), the next step is captured, and every later step replays it. Minibatch
rows are copied into one pinned index buffer before each replay
(:meth:`~mmtheory.engine.iterative.Batches.pin`), so the order of the rows is the eager
engine's.

The replayed kernels are the eager step's kernels on the same tensors, so a captured
training gives the eager one's numbers (``tests/engine/test_gpu.py`` checks it for every
solver, minibatches, clipping, ridge and the three architectures). Where capture does not
apply the engine runs eagerly: on the CPU, for a method whose step is not the same work
each time (``Method.capturable`` False: per-step random draws, schedules, host reads),
when a trajectory is recorded, or inside :func:`eager_steps` (the benchmark's old engine).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from mmtheory.engine.iterative import Batches
    from mmtheory.models.learner import Learner

__all__ = ["WARMUP", "CapturedSteps", "capture_wanted", "eager_steps"]

#: eager steps on a side stream before the capture (PyTorch's whole-network recipe)
WARMUP = 3

_CAPTURE: ContextVar[bool] = ContextVar("mmtheory_capture_steps", default=True)

#: one side stream per GPU for every training call: torch keeps a cuBLAS workspace for
#: each (handle, stream) and never frees it, so a fresh stream per call held about 64 MiB
#: more per call, up to 2 GiB (torch's pool of 32 streams; measured on an H100)
_SIDE: dict[int, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SIDE:
        _SIDE[index] = torch.cuda.Stream(index)
    return _SIDE[index]


@contextmanager
def eager_steps() -> Iterator[None]:
    """Inside this block the engine launches every op of every step (no CUDA graph)."""
    token = _CAPTURE.set(False)
    try:
        yield
    finally:
        _CAPTURE.reset(token)


def capture_wanted(learner: Learner, device: torch.device, *, recording: bool) -> bool:
    """Whether ``train_batched`` captures this learner's step (module docstring). A method
    class must say ``capturable = True`` itself: a subclass of a capturable method that
    changes its step does not inherit it."""
    return (
        device.type == "cuda"
        and _CAPTURE.get()
        and bool(vars(type(learner.method)).get("capturable", False))
        and not recording
        and learner.steps > WARMUP + 1
    )


class CapturedSteps:
    """Runs training steps: ``WARMUP`` eager ones on a side stream, then one captured and
    replayed from then on. ``eager()`` is a whole step (it takes its rows from
    ``batches``); ``graphed()`` is the same step reading the pinned rows; each returns the
    batch's losses (G, S). ``optimizer``'s gradients are set to None before the capture,
    so that the captured backward writes them afresh (no accumulation across replays)."""

    def __init__(
        self,
        eager: Callable[[], torch.Tensor],
        graphed: Callable[[], torch.Tensor],
        batches: Batches,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
    ) -> None:
        self.eager, self.graphed = eager, graphed
        self.batches, self.optimizer, self.device = batches, optimizer, device
        self.done = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.losses: torch.Tensor | None = None
        self.side = _side_stream(device)
        self.side.wait_stream(torch.cuda.current_stream(device))

    def step(self) -> torch.Tensor:
        """One training step; returns its losses (a captured step's are overwritten by
        the next: clone them to keep them)."""
        if self.graph is not None:  # the hot path: a replay runs on the graph's own GPU
            self.batches.advance()
            self.graph.replay()
            assert self.losses is not None
            return self.losses
        with torch.cuda.device(self.device):  # warm-up and capture on the data's GPU
            return self._warm_up_or_capture()

    def _warm_up_or_capture(self) -> torch.Tensor:
        if self.done < WARMUP:
            with torch.cuda.stream(self.side), warnings.catch_warnings():
                # the optimiser is built capturable and says so when stepped eagerly
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                losses = self.eager()
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            self.done += 1
            return losses
        self.batches.pin()
        self.batches.advance()
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        # captured on the side stream, which lives on the data's GPU (torch's own capture
        # stream is made once, on whichever GPU was current then)
        with torch.cuda.graph(self.graph, stream=self.side):
            self.losses = self.graphed()
        self.graph.replay()  # capturing records the step; this runs it
        return self.losses

    def close(self) -> None:
        """Release the graph and its memory pool (the gradients are the caller's to drop)."""
        self.graph = None
        self.losses = None
