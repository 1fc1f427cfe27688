"""The world interface: a data-generating process whose truth is known.

mmtheory reads a world only through this interface, so that the same estimation and
theory code runs on synthetic worlds and on real data. A world declares:

- its identity (:meth:`World.identity`, :attr:`World.world_id`) and its parameters
  (:meth:`World.params`: every constructor argument, so that the world can be rebuilt);
- modality ``names`` and ``dims``, the ``task``, ``output_dim`` and ``loss``;
- ``sample(n, seed)`` and ``bayes_risk()`` (with how it was obtained:
  ``bayes_risk_method`` in {"exact", "monte_carlo", "lower_bound"} and its standard error);
- :meth:`World.oracle`: a :class:`LinearOracle` when the population risk of every linear
  predictor has a closed form (linear worlds under squared loss), else ``None``.

The worlds themselves live in the top-level ``synthetic`` package; their kinds are named in
one registry, ``synthetic.registry``, which :func:`make_world` reads lazily (``synthetic``
depends on this module, so the dependency is resolved at run time, not at import time).
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import inspect
import json
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmtheory.core.data import MultiModalData
from mmtheory.core.seeding import SeedLike
from mmtheory.core.subsets import Subset, parse_subset
from mmtheory.core.validation import check_int

__all__ = ["LinearOracle", "World", "world_id_of", "make_world", "world_kinds"]


def world_id_of(identity: str) -> str:
    """A short stable id (12 hex digits of sha1) of a world's identity string."""
    return hashlib.sha1(identity.encode()).hexdigest()[:12]


@runtime_checkable
class LinearOracle(Protocol):
    """Exact second-moment oracles of a world under squared loss (zero-mean features).

    Shapes: ``d`` is the total feature dimension (modalities concatenated in order), ``p``
    the number of outputs.
    """

    def second_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Sigma (d, d), Sigma_xy (d, p), Sigma_yy (p, p))."""
        ...

    def risk_linear(self, W: Any, bias: Any = None) -> Any:
        """Exact population risk of x -> W^T x + b; W (d, p) or (B, d, p)."""
        ...

    def eta_linear(self, A: Any, subset: object | None = None) -> float:
        """Exact eta of the linear encoder x -> A^T x; A (d, k)."""
        ...

    def eta_inf(self, subset: object) -> float:
        """Exact large-sample eta of a subset (the best linear predictor on it)."""
        ...

    def best_linear(self, subset: object | None = None) -> np.ndarray:
        """(d, p) population least-squares predictor on ``subset`` (zero rows elsewhere)."""
        ...

    def feature_slices(self) -> dict[str, slice]:
        """Column range of each modality in the concatenated features."""
        ...

    def target_bound(self) -> tuple[float, bool]:
        """(B, rigorous): ||y|| <= B almost surely when ``rigorous``, else an assumed range."""
        ...

    def feature_bound(self, subset: object | None = None) -> tuple[float, bool]:
        """(X, rigorous): ||(x_M, 1)|| <= X almost surely when ``rigorous``, else assumed."""
        ...


class World(abc.ABC):
    """A data-generating process with known truth (see the module docstring)."""

    names: tuple[str, ...]
    task: str  # "regression" or "classification"
    #: how :meth:`bayes_risk` is computed: "exact", "monte_carlo" or "lower_bound"
    bayes_risk_method: str = "exact"
    #: standard error of :meth:`bayes_risk` (0 when exact)
    bayes_risk_se: float = 0.0

    # ------------------------------------------------------------- identity
    def identity(self) -> str:
        """A canonical string naming this world: its class and :meth:`params` as sorted
        JSON. The same world gives the same identity however it was written (positional or
        keyword arguments, defaults left out or written, 1 or 1.0, a preset or the class,
        TOML or Python), because :meth:`params` is normalised."""
        return f"{type(self).__name__}{json.dumps(self.params(), sort_keys=True)}"

    @property
    def world_id(self) -> str:
        """Short id of :meth:`identity` (the ``world_id`` column of result tables)."""
        return world_id_of(self.identity())

    @property
    def name(self) -> str:
        """The world's kind, the ``world`` column of result tables."""
        return type(self).__name__

    @abc.abstractmethod
    def params(self) -> dict[str, object]:
        """Every constructor argument, normalised (ints, floats, strings, booleans, lists),
        defaults included: ``type(world)(**world.params())`` rebuilds the world. Recorded as
        columns of result tables."""

    # ----------------------------------------------------------- interface
    @property
    @abc.abstractmethod
    def dims(self) -> dict[str, int]:
        """Feature dimension of each modality."""

    @property
    @abc.abstractmethod
    def output_dim(self) -> int:
        """Outputs a predictor needs: classes (classification) or targets (regression)."""

    @property
    def loss(self) -> str:
        """``"squared"`` (summed over output dimensions) or ``"cross_entropy"``."""
        return "squared" if self.task == "regression" else "cross_entropy"

    @abc.abstractmethod
    def sample(self, n: int, seed: SeedLike = None) -> MultiModalData:
        """``n`` i.i.d. samples. The first m rows of ``sample(n, s)`` equal ``sample(m, s)``
        up to BLAS rounding (the same streams; a BLAS may block products of m and n rows
        differently)."""

    @abc.abstractmethod
    def bayes_risk(self) -> float:
        """r(h* o g*): the risk of the true model."""

    def oracle(self) -> LinearOracle | None:
        """The exact linear oracle, or None when this world has none."""
        return None

    @property
    def has_exact_oracles(self) -> bool:
        """True when population risks of linear predictors have closed forms."""
        return self.oracle() is not None

    def subset(self, spec: object) -> Subset:
        return parse_subset(spec, self.names)

    @staticmethod
    def _check_n(n: int) -> int:
        return check_int(n, "n", low=1)


def _registry() -> Any:
    return importlib.import_module("synthetic.registry")


def world_kinds() -> tuple[str, ...]:
    """The world kinds a spec may name (``synthetic.registry.WORLD_KINDS``)."""
    return tuple(_registry().WORLD_KINDS)


def make_world(kind: str, **params: object) -> World:
    """Build a world of ``kind`` from its parameters (the one registry of world kinds)."""
    kinds = _registry().WORLD_KINDS
    if kind not in kinds:
        raise ValueError(f"world kind must be one of {sorted(kinds)}, got {kind!r}")
    known = _parameters(kinds[kind])
    unknown = sorted(set(params) - known) if known is not None else []
    if known is not None and unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} of world kind {kind!r}; known: {sorted(known)}"
        )
    world: World = kinds[kind](**params)
    return world


def _parameters(factory) -> set[str] | None:
    """The keyword names ``factory`` accepts, or None when it takes any (``**kwargs``)."""
    sig = inspect.signature(factory)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for name, p in sig.parameters.items() if p.kind in keyword}
