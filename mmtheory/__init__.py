"""mmtheory: put the theory of multi-modal learning (Huang et al., NeurIPS 2021) to the test.

The public names below are imported on first use (PEP 562), so that ``import mmtheory``
and the command line start at once; ``mmtheory.sweep`` imports torch when first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mmtheory._version import __version__

#: public name -> module that defines it
_EXPORTS = {
    "DataFormatError": "mmtheory.errors",
    "ExecutorError": "mmtheory.errors",
    "SpecError": "mmtheory.errors",
    "MultiModalData": "mmtheory.core.data",
    "Subset": "mmtheory.core.subsets",
    "all_subsets": "mmtheory.core.subsets",
    "cumulative_subsets": "mmtheory.core.subsets",
    "nested_pairs": "mmtheory.core.subsets",
    "parse_subset": "mmtheory.core.subsets",
    "parse_subsets": "mmtheory.core.subsets",
    "as_generator": "mmtheory.core.seeding",
    "derive": "mmtheory.core.seeding",
    "torch_generator": "mmtheory.core.seeding",
    "World": "mmtheory.core.world",
    "make_world": "mmtheory.core.world",
    "Learner": "mmtheory.models.learner",
    "METHODS": "mmtheory.models.methods",
    "load_spec": "mmtheory.experiments.spec",
    "run_spec": "mmtheory.experiments.sweep",
    "sweep": "mmtheory.experiments.sweep",
    "check": "mmtheory.theory.check",
    "plot": "mmtheory.plotting.quick",
    "predict": "mmtheory.theory.predicted",
    "summary": "mmtheory.reporting.summary",
    "predict_crossovers": "mmtheory.theory.predicted",
    "theory_vs_measured": "mmtheory.theory.versus",
    "diagnose": "mmtheory.studies.diagnose",
}

__all__ = [
    "__version__",
    "DataFormatError",
    "ExecutorError",
    "Learner",
    "METHODS",
    "MultiModalData",
    "SpecError",
    "Subset",
    "World",
    "all_subsets",
    "as_generator",
    "check",
    "cumulative_subsets",
    "derive",
    "diagnose",
    "load_spec",
    "make_world",
    "nested_pairs",
    "parse_subset",
    "parse_subsets",
    "plot",
    "predict",
    "predict_crossovers",
    "run_spec",
    "summary",
    "sweep",
    "theory_vs_measured",
    "torch_generator",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmtheory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from mmtheory.core.data import MultiModalData
    from mmtheory.core.seeding import as_generator, derive, torch_generator
    from mmtheory.core.subsets import (
        Subset,
        all_subsets,
        cumulative_subsets,
        nested_pairs,
        parse_subset,
        parse_subsets,
    )
    from mmtheory.core.world import World, make_world
    from mmtheory.errors import DataFormatError, ExecutorError, SpecError
    from mmtheory.experiments.spec import load_spec
    from mmtheory.experiments.sweep import run_spec, sweep
    from mmtheory.models.learner import Learner
    from mmtheory.models.methods import METHODS
    from mmtheory.plotting.quick import plot
    from mmtheory.reporting.summary import summary
    from mmtheory.studies.diagnose import diagnose
    from mmtheory.theory.check import check
    from mmtheory.theory.predicted import predict, predict_crossovers
    from mmtheory.theory.versus import theory_vs_measured
