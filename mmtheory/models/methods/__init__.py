"""Training methods: plain ERM and the related literature's, one module each.

Every module of this package that defines a :class:`~mmtheory.models.methods.base.Method`
subclass with a ``name`` is registered when the package is imported; adding a method is
adding one module. ``Learner(method="ogm_ge")`` uses the method's default options,
``Learner(method=OGMGE(alpha=0.3))`` chosen ones.
"""

from __future__ import annotations

import importlib
import pkgutil

from mmtheory.models.methods.base import (
    REGISTRY,
    Ablation,
    Claim,
    Method,
    Probe,
    ReferenceContext,
    StepContext,
)

__all__ = [
    "Ablation",
    "Claim",
    "METHODS",
    "Method",
    "Probe",
    "ReferenceContext",
    "StepContext",
    "get_method",
    "make_method",
]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

#: Registered method names, ERM first, then alphabetically.
METHODS: tuple[str, ...] = ("erm", *sorted(n for n in REGISTRY if n != "erm"))


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"method must be one of {METHODS}, got {name!r}")
    return REGISTRY[name]


def make_method(name: str, **options: object) -> Method:
    """An instance of method ``name`` with ``options`` (unknown options are refused)."""
    cls = get_method(name)
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} for method {name!r}; "
            f"its options: {sorted(known) or 'none'}"
        )
    return cls(**options)
