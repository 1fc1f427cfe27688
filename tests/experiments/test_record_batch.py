"""Records held as columns (``RecordBatch``, what the closed form produces) are the same
records: the same lines on disk, the same results table, the same answers from the store;
and the store's deferred fsync keeps its promises."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtheory.experiments.records import (
    RecordBatch,
    RecordStore,
    RecordWriteError,
    _float_texts,
    _jsonable,
    record_lines,
)
from mmtheory.experiments.results import results_table


def _stdlib(records: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in records)


NAN = float("nan")
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, NAN, 0.5, 1e300]),  # recurring objects
    st.text(max_size=6),
    st.sampled_from(["%", "%s", "%%d", "é"]),
)


@st.composite
def batches(draw) -> RecordBatch:
    n = draw(st.integers(1, 6))
    names = draw(
        st.lists(st.text(max_size=5).filter(lambda k: k != "run_id"), unique=True, max_size=6)
    )
    shared, columns = {}, {"run_id": [f"r{i}" for i in range(n)]}
    for name in names:
        if draw(st.booleans()):
            shared[name] = draw(st.one_of(scalars, st.dictionaries(st.text(max_size=3), scalars)))
        else:
            pool = draw(st.lists(scalars, min_size=1, max_size=3))  # values recur
            columns[name] = [draw(st.sampled_from(pool)) for _ in range(n)]
    return RecordBatch(shared, columns)


@settings(max_examples=300, deadline=None)
@given(batches())
def test_batch_lines_are_json_dumps_of_its_records(batch):
    want = _stdlib(batch.records())
    assert record_lines(batch) == want
    assert record_lines(batch) == want  # again, from the kept template


def test_batch_lines_negative_control_a_new_shared_object_changes_the_text():
    """The kept templates are keyed by the shared objects: a batch of the same shape with
    another settings object (another value) must not get the first one's text."""
    first = RecordBatch({"settings": {"lr": 0.1}}, {"run_id": ["a", "b"], "x": [1.0, 2.0]})
    second = RecordBatch({"settings": {"lr": 0.2}}, {"run_id": ["a", "b"], "x": [1.0, 2.0]})
    assert record_lines(first) == _stdlib(first.records())
    assert record_lines(second) == _stdlib(second.records()) != record_lines(first)


def test_float_texts_keep_signed_zeros_nan_and_infinities():
    nan = float("nan")
    values = [0.0, -0.0, 0.0, 0.0, 0.0, 0.0]
    assert _float_texts(values) == ["0.0", "-0.0", "0.0", "0.0", "0.0", "0.0"]
    assert _float_texts([-0.0] * 4) == ["-0.0"] * 4
    assert _float_texts([0.0 * 1] * 4) == ["0.0"] * 4
    assert _float_texts([nan, nan, float("inf"), -float("inf")]) == [
        "NaN",
        "NaN",
        "Infinity",
        "-Infinity",
    ]
    equal = [float("0.1") for _ in range(6)]  # equal values, distinct objects
    assert _float_texts(equal) == ["0.1"] * 6


def test_a_batch_refuses_ragged_or_doubled_fields():
    with pytest.raises(ValueError, match=r"one length, got \{'run_id': 1, 'x': 2\}"):
        RecordBatch({}, {"run_id": ["a"], "x": [1, 2]})
    with pytest.raises(ValueError, match=r"needs a run_id column, got \['x'\]"):
        RecordBatch({}, {"x": [1]})
    with pytest.raises(ValueError, match="both shared and per record"):
        RecordBatch({"x": 1}, {"run_id": ["a"], "x": [1]})


def _varied_batch(offset: int = 0) -> RecordBatch:
    n = 5
    return RecordBatch(
        {
            "world": "w",
            "world_identity": '{"kind": "w"}',
            "learner_settings": {"kind": "linear"},
            "bayes_risk": 0.25,
            "n_test": 100,
            "converged": True,
            "dtype": "float64",
        },
        {
            "run_id": [f"id{i + offset}" for i in range(n)],
            "learner": ["linear"] * n,
            "subset": ["m1", "m2", "m1+m2", "m1", "m2"],
            "n_modalities": [1, 1, 2, 1, 1],
            "m": [10, 10, 10, 20, 20],
            "seed": [0] * n,
            "train_risk": [0.5, -0.0, float("nan"), 1e-300, 2.0],
            "test_risk": [1.0, 2.0, 3.0, 4.0, 5.0],
            "eta": [0.1, None, 0.3, 0.4, 0.5],
            "test_accuracy": [None] * n,
            "big": [2**70, 1, 2, 3, 4],
            "note": ["a", None, "c,d", 'q"', "e"],
        },
    )


def test_results_table_of_a_batch_is_the_table_of_its_records():
    batch = _varied_batch()
    got = results_table(batch)
    want = results_table(batch.records())
    pd.testing.assert_frame_equal(got, want)
    changed = _varied_batch()
    changed.columns["test_risk"][2] = 3.5  # negative control: one value
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(results_table(changed), want)


def test_store_answers_the_same_for_batches_and_reads_them_back(tmp_path):
    a, b = _varied_batch(0), _varied_batch(100)
    with RecordStore(tmp_path) as store:
        store.append(a)
        store.append(b)
        assert len(store) == 10 and "id3" in store and "id99" not in store
        assert store.get("id103") == b.record(3)
        assert store.records() == a.records() + b.records()
        assert store.run_ids_of('{"kind": "w"}') == [f"id{i}" for i in (0, 1, 2, 3, 4)] + [
            f"id{i}" for i in (100, 101, 102, 103, 104)
        ]
        order = ["id104", "id0", "id2", "id101"]
        picked = store.batch_of(order)
        assert picked is not None and picked.records() == [store.get(i) for i in order]
        assert store.records(having="note") == [r for r in store.records() if r["note"]]
        text = (tmp_path / "records.jsonl").read_text()
    assert text == _stdlib(a.records() + b.records())
    with RecordStore(tmp_path) as again:  # from disk: dicts, and batch_of declines
        assert again.get("id103") == json.loads(json.dumps(b.record(3)))
        assert again.batch_of(["id0"]) is None


def test_batch_of_declines_mixed_holdings(tmp_path):
    with RecordStore(tmp_path) as store:
        store.append(_varied_batch(0))
        store.append([{**_varied_batch(50).record(0)}])
        assert store.batch_of(["id0", "id50"]) is None
        assert store.batch_of(["id0", "id1"]) is not None


# ------------------------------------------------------------------- deferred fsync
def _count_fsyncs(monkeypatch, fail: bool = False) -> list[int]:
    import errno

    calls: list[int] = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if fail:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_fsync_at_most_every_sync_seconds_and_at_close(tmp_path, monkeypatch):
    calls = _count_fsyncs(monkeypatch)
    store = RecordStore(tmp_path)
    store.sync_seconds = 3600.0
    for k in range(5):
        store.append(_varied_batch(10 * k))
    assert calls == []  # written, not yet synced
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 25  # but written
    store.close()
    assert len(calls) == 1
    store = RecordStore(tmp_path / "every")
    store.sync_seconds = 0.0  # negative control: every append fsyncs
    for k in range(3):
        store.append(_varied_batch(10 * k))
    assert len(calls) == 4
    store.close()
    assert len(calls) == 4  # nothing left to sync


def test_a_failed_deferred_fsync_cuts_back_to_the_synced_records(tmp_path, monkeypatch):
    store = RecordStore(tmp_path)
    store.sync_seconds = 3600.0
    store.append(_varied_batch(0))
    store.sync()  # 5 records safe
    store.append(_varied_batch(10))
    store.append(_varied_batch(20))
    _count_fsyncs(monkeypatch, fail=True)
    with pytest.raises(RecordWriteError, match="could not write 10 record.*the 5 finished run"):
        store.sync()
    assert (
        len(store) == 5
        and "id10" not in store
        and store.run_ids_of('{"kind": "w"}') == [f"id{i}" for i in range(5)]
    )
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 5
    monkeypatch.undo()
    store.close()


def test_closed_form_record_lines_are_canonical_json(tmp_path):
    """End to end: every line a closed-form sweep writes is json.dumps of its record."""
    import synthetic
    from mmtheory import sweep

    sweep(
        synthetic.OverlapWorld(3, 2, 0.5),
        "linear",
        "cumulative",
        [10, 20, 40],
        3,
        out=tmp_path,
        progress=False,
        device="cpu",
    )
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 3 * 3
    for line in lines:
        assert json.dumps(json.loads(line), sort_keys=True) == line
    values = np.array([json.loads(line)["test_risk"] for line in lines])
    assert np.isfinite(values).all()


def test_batch_of_takes_a_redone_run_from_the_batch_that_holds_it(tmp_path):
    """Runs written twice (id0 and id1, in a later batch) are read from the later one, as
    get reads them, while the first batch still holds the others."""
    first = _varied_batch(0)
    redo = _varied_batch(0)
    columns = {name: values[:2] for name, values in redo.columns.items()}
    columns["test_risk"] = [10.0, 20.0]
    with RecordStore(tmp_path) as store:
        store.append(first)
        store.append(RecordBatch(dict(redo.shared), columns))
        for ids, risks in (
            (["id2", "id1", "id0", "id4"], [3.0, 20.0, 10.0, 5.0]),
            (["id1", "id2", "id0", "id4"], [20.0, 3.0, 10.0, 5.0]),  # the later batch first
        ):
            picked = store.batch_of(ids)
            assert picked is not None
            assert picked.records() == [store.get(i) for i in ids]
            assert [r["test_risk"] for r in picked.records()] == risks


def test_a_failed_fsync_keeps_the_synced_record_of_a_run_written_again(tmp_path, monkeypatch):
    """A review found a run forgotten although its earlier, synced record stayed on disk."""
    store = RecordStore(tmp_path)
    store.sync_seconds = 3600.0
    store.append([{**_varied_batch(0).record(0), "test_risk": 1.0}])
    store.sync()
    store.append([{**_varied_batch(0).record(0), "test_risk": 2.0}])  # id0 again
    store.append(_varied_batch(10))
    _count_fsyncs(monkeypatch, fail=True)
    with pytest.raises(RecordWriteError, match="could not write 6 record.*the 1 finished run"):
        store.sync()
    assert "id0" in store and store.get("id0")["test_risk"] == 1.0
    assert store.run_ids_of('{"kind": "w"}') == ["id0"]
    monkeypatch.undo()
    store.close()
    with RecordStore(tmp_path) as again:
        assert again.get("id0")["test_risk"] == 1.0 and len(again) == 1


def test_a_failed_fsync_at_close_is_raised_not_swallowed(tmp_path, monkeypatch, caplog):
    store = RecordStore(tmp_path)
    store.sync_seconds = 3600.0
    store.append(_varied_batch(0))
    _count_fsyncs(monkeypatch, fail=True)
    with pytest.raises(RecordWriteError, match="could not write 5 record"):
        store.close()
    assert (tmp_path / "records.jsonl").read_text() == ""
    with pytest.raises(RecordWriteError):  # the same from a with block
        with RecordStore(tmp_path / "w") as other:
            other.sync_seconds = 3600.0
            other.append(_varied_batch(0))
    with pytest.raises(KeyError, match="the first error"):  # another error goes on
        with RecordStore(tmp_path / "k") as other:
            other.sync_seconds = 3600.0
            other.append(_varied_batch(0))
            raise KeyError("the first error")
    assert "could not write 5 record" in caplog.text


def test_a_failed_write_fsyncs_the_records_before_it(tmp_path, monkeypatch):
    import errno

    import mmtheory.experiments.records as records

    calls = _count_fsyncs(monkeypatch)
    store = RecordStore(tmp_path)
    store.sync_seconds = 3600.0
    store.append(_varied_batch(0))
    assert calls == []

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records, "_write", full)
    with pytest.raises(RecordWriteError, match="could not write 5 record.*the 5 finished run"):
        store.append(_varied_batch(10))
    assert len(calls) == 1  # the five before were fsynced: they are safe
    monkeypatch.undo()
    store.close()
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63) - 1, 2**63 - 1, True, 0.5, None, "s"])
def test_results_table_of_shared_values_of_every_kind(value):
    """A review found a shared int beyond int64 breaking the batch table (a world seeded
    2**64); the frame must be from_records' for every kind of shared value, empty too."""
    batch = RecordBatch(
        {"world": "w", "world_identity": '{"kind": "w"}', "world_seed": value},
        {"run_id": ["a", "b"], "m": [10, 20]},
    )
    pd.testing.assert_frame_equal(results_table(batch), results_table(batch.records()))
    empty = RecordBatch({"world": "w"}, {"run_id": []})
    pd.testing.assert_frame_equal(results_table(empty), results_table(empty.records()))
