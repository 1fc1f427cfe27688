"""``erm``: empirical risk minimisation, the paper's learner (every hook's default)."""

from __future__ import annotations

from dataclasses import dataclass

from mmtheory.models.methods.base import Method

__all__ = ["ERM"]


@dataclass(frozen=True)
class ERM(Method):
    """Minimise (1/m) sum_i l(f(x_i), y_i) over the learner's class (any architecture)."""

    name = "erm"
    late_concat_only = False
    capturable = True
