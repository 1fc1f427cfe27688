"""Sweep specs in TOML: parsed strictly, every mistake named with its field.

```toml
name = "table4"                 # optional label
device = "auto"                 # auto | cpu | cuda
dtype = "float32"               # float32 | float64 (iterative solvers and Gram matrices)

[world]                         # one world, or a grid: list-valued parameters expand
kind = "overlap"                # overlap | linear | nonlinear | iemocap_like | table4
n_modalities = 4
dim = 100
overlap = [0.8, 0.5, 0.2, 0.0]  # 4 worlds

# or, instead of [world], the user's own data (the .npz layout of docs/realdata.md):
# [data]
# path = "mydata.npz"           # relative to the spec file's folder; its 'split' key (or
#                               # a stratified 75/25 split) gives the test rows

[[learner]]                     # one or more; a name ("linear") or any Learner field
kind = "linear"
solver = "closed_form"

[grid]
subsets = "cumulative"          # all | cumulative | ["text", "TA", ...]
m = [20000]                     # or ratios = [...] with of = N
seeds = 5                       # a count or a list

[estimation]
n_test = 10000
n_refit = 10000
n_eval = 10000
branch_eta = false              # true: also eta of each modality's branch (late fusion)
```
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mmtheory.core.subsets import parse_subsets
from mmtheory.core.validation import (
    check_bool,
    check_choice,
    check_int,
    check_int_list,
    check_real,
)
from mmtheory.core.world import make_world, world_kinds
from mmtheory.errors import SpecError
from mmtheory.models import resolve_learners

__all__ = ["SweepSpec", "load_spec", "parse_spec"]

#: Parameters whose value is itself a list; a grid over them is a list of lists.
#: The most seeds a spec may ask for (a count, or a list's length).
MAX_SEEDS = 100_000
_LIST_PARAMS = {"dims", "names", "noise", "strength", "feature_scale"}
_TOP_KEYS = {"name", "device", "dtype", "world", "data", "learner", "grid", "estimation"}
_DATA_KEYS = {"path"}
_GRID_KEYS = {"subsets", "m", "ratios", "of", "seeds"}
_EST_KEYS = {"n_test", "n_refit", "n_eval", "branch_eta"}


@dataclass
class SweepSpec:
    """A parsed spec: worlds (constructed), learners, grid and estimation settings."""

    name: str
    worlds: list
    learners: list
    subsets: object
    m: list[int]
    seeds: list[int]
    device: str = "auto"
    dtype: str = "float32"
    estimation: dict = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        n_sub = len(parse_subsets(self.subsets, self.worlds[0].names))
        return len(self.worlds) * len(self.learners) * n_sub * len(self.m) * len(self.seeds)


def _table(doc: dict, key: str, allowed: set[str]) -> dict:
    """``doc[key]`` as a table with only ``allowed`` keys (empty when absent)."""
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise SpecError(f"[{key}] must be a table, got {type(table).__name__}")
    _unknown(table, allowed, f"[{key}]")
    return table


def _as_spec_error(field_name: str, fn, *args):
    """Call ``fn``; a ValueError or TypeError becomes a SpecError naming ``field_name``."""
    try:
        return fn(*args)
    except (ValueError, TypeError) as err:
        raise SpecError(f"{field_name}: {err}") from None
    except (MemoryError, OverflowError) as err:
        raise SpecError(
            f"{field_name}: too large to build in memory ({err or 'MemoryError'})"
        ) from None


def _unknown(keys, allowed, where):
    extra = sorted(set(keys) - set(allowed))
    if extra:
        raise SpecError(f"unknown key {extra[0]!r} in {where}; allowed keys: {sorted(allowed)}")


def _world_grid(table: dict) -> list:
    if not isinstance(table, dict):
        raise SpecError(f"[world] must be a table, got {type(table).__name__}")
    if "kind" not in table:
        raise SpecError(f"[world] needs 'kind', one of {sorted(world_kinds())}")
    kind = table["kind"]
    if kind not in world_kinds():
        raise SpecError(f"world.kind must be one of {sorted(world_kinds())}, got {kind!r}")
    params = {k: v for k, v in table.items() if k != "kind"}
    axes = []
    for key, value in params.items():
        is_grid = isinstance(value, list) and (
            key not in _LIST_PARAMS or (value and isinstance(value[0], list))
        )
        if is_grid and not value:
            raise SpecError(f"world.{key} is an empty list: a grid needs at least one value")
        axes.append([(key, v) for v in value] if is_grid else [(key, value)])
    worlds = []
    for combo in itertools.product(*axes):
        kwargs = dict(combo)
        worlds.append(_as_spec_error(f"world {kind!r}", lambda kw=kwargs: make_world(kind, **kw)))
    names = {w.names for w in worlds}
    if len(names) != 1:
        raise SpecError("every world of a grid must have the same modality names")
    return worlds


def _checked(fn, *args, **kwargs):
    """Call a validation helper; its ValueError (which names the field) becomes a SpecError."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise SpecError(str(err)) from None


def _data_source(table: object, base: Path | None) -> list:
    """[data] path = FILE.npz: the file's train and test rows as a sweep source."""
    from mmtheory.datasets.loaders import load_npz
    from mmtheory.experiments.sources import DataSource

    if not isinstance(table, dict):
        raise SpecError(f"[data] must be a table, got {type(table).__name__}")
    _unknown(table, _DATA_KEYS, "[data]")
    raw = table.get("path")
    if not isinstance(raw, str) or not raw:
        raise SpecError(f"data.path must name a .npz file, got {raw!r}")
    path = Path(raw)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        raise SpecError(f"data.path: file {str(path)!r} does not exist")
    loaded = load_npz(path)
    return [DataSource(loaded.train, loaded.test, name=loaded.name)]


def parse_spec(doc: dict, *, where: str = "spec", base: Path | None = None) -> SweepSpec:
    """Validate a spec dict (as loaded from TOML) and build its worlds and learners.
    ``base``: the folder that a relative ``[data] path`` is read from (the spec's)."""
    if not isinstance(doc, dict):
        raise SpecError(f"{where} must be a table")
    _unknown(doc, _TOP_KEYS, where)
    if "world" in doc and "data" in doc:
        raise SpecError(f"{where} takes either a [world] or a [data] table, not both")
    if "world" not in doc and "data" not in doc:
        raise SpecError(f"{where} needs a [world] table (or [data] path = FILE.npz)")
    worlds = _world_grid(doc["world"]) if "world" in doc else _data_source(doc["data"], base)
    learners_raw = doc.get("learner", "linear")
    if isinstance(learners_raw, dict):
        learners_raw = [learners_raw]
    learners = _as_spec_error("learner", resolve_learners, learners_raw, worlds[0].task)
    grid = _table(doc, "grid", _GRID_KEYS)
    if "m" in grid and "ratios" in grid:
        raise SpecError("[grid] takes either 'm' or 'ratios' (with 'of'), not both")
    if "ratios" in grid:
        of = _checked(check_int, grid.get("of"), "grid.of (with grid.ratios)", low=2)
        ratios = grid["ratios"]
        if not isinstance(ratios, list) or not ratios:
            raise SpecError(f"grid.ratios must be a non-empty list of numbers, got {ratios!r}")
        ratios = [
            _checked(check_real, r, "grid.ratios", low=0, high=1, low_open=True) for r in ratios
        ]
        m = sorted({max(2, round(r * of)) for r in ratios})
    else:
        m = _checked(check_int_list, grid.get("m", [100]), "grid.m", low=2)
    seeds_raw = grid.get("seeds", 5)
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        seeds = list(
            range(_checked(check_int, seeds_raw, "grid.seeds (a count)", low=1, high=MAX_SEEDS))
        )
    else:
        seeds = _checked(check_int_list, seeds_raw, "grid.seeds", low=0)
        if len(seeds) > MAX_SEEDS:
            raise SpecError(f"grid.seeds must list at most {MAX_SEEDS} seeds, got {len(seeds)}")
    subsets = grid.get("subsets", "all")
    _as_spec_error("grid.subsets", parse_subsets, subsets, worlds[0].names)
    est = _table(doc, "estimation", _EST_KEYS)
    for k, v in est.items():
        if k == "branch_eta":
            _checked(check_bool, v, "estimation.branch_eta")
        else:
            _checked(check_int, v, f"estimation.{k}", low=2)
    device = _checked(check_choice, doc.get("device", "auto"), "device", ("auto", "cpu", "cuda"))
    dtype = _checked(check_choice, doc.get("dtype", "float32"), "dtype", ("float32", "float64"))
    name = doc.get("name", "sweep")
    if not isinstance(name, str):
        raise SpecError(f"name must be a string, got {name!r}")
    return SweepSpec(
        name,
        worlds,
        learners,
        subsets,
        sorted(set(m)),
        sorted(set(seeds)),
        device,
        dtype,
        dict(est),
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a TOML spec file."""
    path = Path(path)
    if not str(path).strip():
        raise SpecError(f"spec path must name a TOML file, got {str(path)!r}")
    if not path.exists():
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory, expected a TOML spec file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec ({err.strerror or err})") from None
    return parse_spec(doc, where=str(path), base=path.parent)
