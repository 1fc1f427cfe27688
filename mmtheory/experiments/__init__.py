"""Experiments: sweep specs -> grids of runs -> records -> tidy tables."""

from mmtheory.experiments.sources import DataSource, WorldSource
from mmtheory.experiments.spec import SweepSpec, load_spec, parse_spec
from mmtheory.experiments.sweep import (
    LEARNER_PRESETS,
    RESULT_COLUMNS,
    resolve_learners,
    results_table,
    run_spec,
    run_spec_file,
    sweep,
)

__all__ = [
    "DataSource",
    "LEARNER_PRESETS",
    "RESULT_COLUMNS",
    "SweepSpec",
    "WorldSource",
    "load_spec",
    "parse_spec",
    "resolve_learners",
    "results_table",
    "run_spec",
    "run_spec_file",
    "sweep",
]
