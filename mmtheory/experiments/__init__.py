"""Experiments: sweep specs -> grids of runs -> records -> tidy tables."""

from mmtheory.experiments.sources import DataSource, WorldSource
from mmtheory.experiments.sweep import LEARNER_PRESETS, RESULT_COLUMNS, resolve_learners, sweep

__all__ = ["DataSource", "WorldSource", "LEARNER_PRESETS", "RESULT_COLUMNS", "resolve_learners", "sweep"]
