"""The experiments layer: sweep specs -> grids of runs -> records -> tidy tables."""

from mmtheory.experiments.grid import Run, parse_shard, plan_runs, run_id
from mmtheory.experiments.records import RecordStore
from mmtheory.experiments.results import RESULT_COLUMNS, results_table
from mmtheory.experiments.shared import SharedWork
from mmtheory.experiments.sources import DataSource, WorldSource, make_source
from mmtheory.experiments.spec import SweepSpec, load_spec, parse_spec
from mmtheory.experiments.sweep import describe_spec, run_spec, sweep

__all__ = [
    "DataSource",
    "RESULT_COLUMNS",
    "RecordStore",
    "Run",
    "SharedWork",
    "SweepSpec",
    "WorldSource",
    "describe_spec",
    "load_spec",
    "make_source",
    "parse_shard",
    "parse_spec",
    "plan_runs",
    "results_table",
    "run_id",
    "run_spec",
    "sweep",
]
