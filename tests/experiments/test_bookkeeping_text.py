"""What a sweep writes is what the standard library would write, byte for byte: record
lines are json.dumps's and run ids are run_id's (the fast paths are speed-ups, never format
changes)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtheory.experiments.records import _jsonable, record_lines


def _stdlib(records: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in records)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=6,
)
keys = st.lists(st.text(max_size=6), min_size=1, max_size=6, unique=True)
same_keys = keys.flatmap(
    lambda ks: st.lists(st.fixed_dictionaries(dict.fromkeys(ks, values)), max_size=5)
)


@settings(max_examples=300, deadline=None)
@given(same_keys)
def test_same_keys_records_match_json_dumps(records):
    assert record_lines(records) == _stdlib(records)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=3), values, max_size=4), max_size=6))
def test_records_with_different_keys_match_json_dumps(records):
    assert record_lines(records) == _stdlib(records)


def test_shared_objects_subclasses_and_odd_values_match_json_dumps():
    """What a runner's batch holds: one settings dict shared by every record, recurring
    floats, numpy scalars (float and int subclasses and not), signed zeros, non-finite
    floats, tuples, non-ASCII text, and a non-string key."""
    shared = {"lr": 0.1, "hidden": [64, 64], "name": "mlp"}
    risk = 0.25
    records = [
        {
            "settings": shared,
            "risk": risk if i % 2 else -0.0,
            "eta": [float("nan"), float("inf"), -float("inf"), 1e16, 1e-5][i % 5],
            "np_float": np.float64(i / 3),
            "np_int": np.int64(i),
            "np_f32": np.float32(0.1),
            "flag": i % 3 == 0,
            "one": 1 if i % 2 else True,  # 1 == True: the text must still differ
            "cells": (i, "a"),
            "text": 'é\n"q"' if i % 2 else "plain",
            "none": None,
        }
        for i in range(12)
    ]
    assert record_lines(records) == _stdlib(records)
    odd = [{2: "int keys", 10: 2}, {2: "int keys", 10: 3}]
    assert record_lines(odd) == _stdlib(odd)


def test_negative_control_a_changed_value_changes_the_text():
    """The comparison above can fail: one value changed in one record changes its line."""
    records = [{"a": 0.1, "s": {"x": 1}} for _ in range(4)]
    changed = [dict(r) for r in records]
    changed[2]["a"] = 0.1 + 2**-56  # the next float but one
    assert record_lines(changed) != _stdlib(records)
    assert record_lines(changed) == _stdlib(changed)


# ------------------------------------------------------------------ run ids
subset_labels = st.one_of(
    st.text(max_size=8), st.sampled_from(["m1+m2", "@mmtheory-run-id:m@", "é"])
)


@settings(max_examples=200, deadline=None)
@given(
    identity=st.one_of(
        st.text(max_size=12),
        st.sampled_from(['W"@mmtheory-run-id:seed@"', "@mmtheory-run-id:seed@"]),
    ),
    label=subset_labels,
    m=st.integers(0, 10**9),
    seed=st.integers(0, 2**40),
    extra=st.dictionaries(
        st.sampled_from(["n_test", "dtype_iterative", "zz", "a"]), values, max_size=3
    ),
)
def test_planned_run_ids_are_run_id(identity, label, m, seed, extra):
    """plan_runs forms each id from a template; it must be the id run_id hashes, whatever
    the identity, subset label and extra settings (markers in them included)."""
    from mmtheory.experiments.grid import _run_id, _RunIds
    from mmtheory.models import Learner

    settings_ = Learner(kind="linear").settings()
    ids = _RunIds(identity, settings_, extra)
    assert ids(label, m, seed) == _run_id(identity, settings_, label, m, seed, extra)
    seeds = [seed, seed + 1, 0]
    assert ids.many(label, m, seeds) == [
        _run_id(identity, settings_, label, m, s, extra) for s in seeds
    ]
    if m > 0:  # negative control: another size is another id
        assert ids(label, m - 1, seed) != _run_id(identity, settings_, label, m, seed, extra)


def test_plan_runs_ids_match_run_id_for_a_grid():
    import synthetic
    from mmtheory.core.subsets import parse_subsets
    from mmtheory.experiments.grid import plan_runs, run_id
    from mmtheory.models import resolve_learners

    world = synthetic.OverlapWorld(n_modalities=3, dim=2, overlap=0.5)
    learners = resolve_learners(["linear", "late_fusion"], "regression")
    subsets = parse_subsets("all", world.names)
    extra = {"n_test": 100, "dtype_iterative": "float32"}
    runs = plan_runs(world.identity(), learners, subsets, [10, 20], [0, 3], extra)
    assert len(runs) == 2 * 7 * 2 * 2 == len({r.run_id for r in runs})
    for r in runs:
        assert r.run_id == run_id(world.identity(), r.learner, r.subset, r.m, r.seed, extra)


def test_run_ids_when_extra_sets_a_slot_or_the_version_changes(monkeypatch):
    """A review found a wrong id where extra set m to the placeholder text; and the
    version is read when the id is formed, as run_id reads it."""
    from mmtheory import _version
    from mmtheory.experiments.grid import _run_id, _RunIds
    from mmtheory.models import Learner

    settings_ = Learner(kind="linear").settings()
    for extra in ({"m": "@mmtheory-run-id:m@"}, {"seed": 7}, {"subset": "x"}):
        ids = _RunIds("w", settings_, extra)
        assert ids("a+b", 10, 0) == _run_id("w", settings_, "a+b", 10, 0, extra)
        assert ids.many("a+b", 10, [0, 1]) == [
            _run_id("w", settings_, "a+b", 10, s, extra) for s in (0, 1)
        ]
    ids = _RunIds("w", settings_, {})
    monkeypatch.setattr(_version, "__version__", "9.9.9")
    assert ids("a+b", 10, 0) == _run_id("w", settings_, "a+b", 10, 0, {})
    assert ids.many("a+b", 10, [0]) == [_run_id("w", settings_, "a+b", 10, 0, {})]


def test_record_lines_of_dict_subclasses_are_json_dumps():
    class Items(dict):
        def items(self):
            return [(k, "overridden") for k in self]

    records = [Items(a=1), Items(a=2)]
    assert record_lines(records) == _stdlib(records)


def test_fit_norms_equal_each_fit_alone_for_small_and_large_fits():
    """The batched norms add each fit's squares in the order a fit alone does: batched up
    to torch's grain size, one fit at a time beyond it (a review saw one ulp of
    param_norm at d = 40,000 when batched)."""
    import torch

    from mmtheory.engine.closed_form import LeastSquaresFit
    from mmtheory.experiments.runner import _fit_norms

    gen = torch.Generator().manual_seed(0)
    for d in (8, 40_000):
        fits = [
            [
                LeastSquaresFit(
                    torch.randn(d, 1, generator=gen, dtype=torch.float64),
                    torch.randn(1, generator=gen, dtype=torch.float64),
                    0.0,
                    d,
                )
                for _ in range(3)
            ]
            for _ in range(2)
        ]
        weight, param = _fit_norms(fits)
        for i, row in enumerate(fits):
            for j, f in enumerate(row):
                assert weight[i][j] == float(f.W.norm())
                assert param[i][j] == float(torch.sqrt(f.W.pow(2).sum() + f.b.pow(2).sum()))
