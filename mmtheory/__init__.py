"""mmtheory: put the theory of multi-modal learning (Huang et al., NeurIPS 2021) to the test."""

from mmtheory.data import MultiModalData
from mmtheory.errors import DataFormatError, SpecError
from mmtheory.experiments import load_spec, run_spec, sweep
from mmtheory.learners import Learner
from mmtheory.seeding import as_generator, derive, torch_generator
from mmtheory.subsets import (
    Subset,
    all_subsets,
    cumulative_subsets,
    nested_pairs,
    parse_subset,
    parse_subsets,
)
from mmtheory.theory import check

__version__ = "0.1.0"

__all__ = [
    "DataFormatError",
    "Learner",
    "check",
    "load_spec",
    "run_spec",
    "sweep",
    "MultiModalData",
    "SpecError",
    "Subset",
    "__version__",
    "all_subsets",
    "as_generator",
    "cumulative_subsets",
    "derive",
    "nested_pairs",
    "parse_subset",
    "parse_subsets",
    "torch_generator",
]
