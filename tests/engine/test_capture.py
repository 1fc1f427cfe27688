"""The captured step's bookkeeping, on any machine: when the engine captures, and that the
pinned row buffer walks the eager engine's minibatch order. (The captured training itself
needs CUDA: ``tests/engine/test_gpu.py``.)"""

from dataclasses import dataclass, replace

import pytest
import torch

from mmtheory.engine import Batches
from mmtheory.engine.capture import WARMUP, capture_wanted, eager_steps
from mmtheory.models import Learner
from mmtheory.models.methods import REGISTRY, make_method
from mmtheory.models.methods.erm import ERM

CUDA = torch.device("cuda")
LEARNER = Learner("late_fusion", encoder="mlp", solver="adam", steps=100, latent_dim=3)


@pytest.mark.parametrize("m,batch_size", [(25, 7), (24, 8), (25, None), (10, 32)])
def test_the_pinned_buffer_walks_the_same_rows_as_take(m, batch_size):
    x = torch.arange(3 * m * 2, dtype=torch.float64).reshape(3, m, 2)
    y = torch.arange(3 * m).reshape(3, m)
    keys = [("batches", g) for g in range(3)]
    eager = Batches(m, batch_size, keys, 3, "cpu")
    pinned = Batches(m, batch_size, keys, 3, "cpu")
    for _ in range(WARMUP):  # the warm-up steps take their rows eagerly
        eager.take([x], y)
        pinned.take([x], y)
    pinned.pin()
    for _ in range(20):  # several epochs
        (want_x,), want_y = eager.take([x], y)
        pinned.advance()
        (got_x,), got_y = pinned.gather([x], y)
        assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y)


def test_a_stale_pinned_buffer_is_caught():
    """Negative control: without ``advance`` the pinned rows stop following the order."""
    x, y = torch.randn(1, 40, 2), torch.arange(40)[None]
    eager, pinned = Batches(40, 8, None, 1, "cpu"), Batches(40, 8, None, 1, "cpu")
    pinned.pin()
    pinned.advance()
    eager.take([x], y)
    (want,), _ = eager.take([x], y)
    (got,), _ = pinned.gather([x], y)
    assert not torch.equal(got, want)


def test_capture_is_for_cuda_plain_erm_without_recording():
    assert capture_wanted(LEARNER, CUDA, recording=False)
    assert not capture_wanted(LEARNER, torch.device("cpu"), recording=False)
    assert not capture_wanted(LEARNER, CUDA, recording=True)
    assert not capture_wanted(replace(LEARNER, steps=WARMUP + 1), CUDA, recording=False)
    with eager_steps():
        assert not capture_wanted(LEARNER, CUDA, recording=False)
    assert capture_wanted(LEARNER, CUDA, recording=False)


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - {"erm"}))
def test_methods_with_per_step_decisions_run_eagerly(name):
    learner = replace(LEARNER, method=make_method(name))
    assert not capture_wanted(learner, CUDA, recording=False)


def test_a_subclass_of_erm_must_declare_itself_capturable():
    """A subclass that changes the step (here: a fresh draw each step) inherits nothing."""

    @dataclass(frozen=True)
    class NoisyERM(ERM):
        name = ""  # not registered (the registry keeps ERM under "erm")

        def backward(self, ctx, params, xs, y):
            losses = super().backward(ctx, params, xs, y)
            for t in params.values():
                t.grad.add_(torch.randn_like(t.grad))
            return losses

    assert not capture_wanted(replace(LEARNER, method=NoisyERM()), CUDA, recording=False)
    assert REGISTRY["erm"] is ERM
