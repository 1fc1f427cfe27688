"""``results.csv`` is pandas's ``to_csv``, byte for byte (the fast writer is a speed-up,
never a format change)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtheory.core.io import csv_text, write_csv_atomic

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
texts = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["a,b", 'q"q', "x\ny", "", " "]))


def _column(kind: str, n: int):
    if kind == "float":
        return st.lists(
            st.one_of(floats, st.sampled_from([0.0, -0.0, 1e16, 1e-5])), min_size=n, max_size=n
        )
    if kind == "int":
        return st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)
    if kind == "bool":
        return st.lists(st.booleans(), min_size=n, max_size=n)
    return st.lists(texts, min_size=n, max_size=n)


@st.composite
def frames(draw):
    n = draw(st.integers(0, 6))
    kinds = draw(st.lists(st.sampled_from(["float", "int", "bool", "str"]), min_size=2, max_size=5))
    data = {}
    for i, kind in enumerate(kinds):
        name = draw(st.sampled_from([f"c{i}", f"c,{i}", f'c"{i}', f"c {i}"]))
        values = draw(_column(kind, n))
        if kind == "float":
            data[name] = np.array(values, dtype=np.float64)
        elif kind == "int":
            data[name] = np.array(values, dtype=np.int64)
        elif kind == "bool":
            data[name] = np.array(values, dtype=bool)
        else:
            data[name] = pd.array(values, dtype=draw(st.sampled_from(["str", object])))
    return pd.DataFrame(data)


@settings(max_examples=300, deadline=None)
@given(frames())
def test_csv_text_is_pandas_to_csv(df):
    got = csv_text(df)
    if got is not None:  # None: not covered, pandas writes it
        assert got == df.to_csv(index=False)


def test_a_results_like_table_is_covered_and_identical(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    df = pd.DataFrame(
        {
            "world": ["overlap"] * n,
            "subset": rng.choice(["m1", "m1+m2", "m1+m2+m3"], n),
            "m": rng.integers(10, 1000, n),
            "test_risk": rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n),
            "eta": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
            "converged": rng.random(n) < 0.5,
            "dims": ["4,5"] * n,  # a world parameter list: quoted
            "note": pd.array([None if i % 7 == 0 else "ok" for i in range(n)], dtype="str"),
        }
    )
    text = csv_text(df)
    assert text is not None and text == df.to_csv(index=False)
    write_csv_atomic(df, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == df.to_csv(index=False)


def test_frames_it_does_not_cover_go_to_pandas(tmp_path):
    """Objects other than strings, nullable dtypes, float32 and one column: None, and the
    file is still pandas's."""
    cases = [
        pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"]),  # duplicate names
        pd.DataFrame({"a": [1.5, None, np.float64(0.1)], "b": [1, 2, 3]}, dtype=object),
        pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"), "b": [1, 2, 3]}),
        pd.DataFrame({"a": np.array([0.1, 0.2], dtype=np.float32), "b": [1, 2]}),
        pd.DataFrame({"a": [0.1, 0.2]}),
    ]
    for df in cases:
        assert csv_text(df) is None
        write_csv_atomic(df, tmp_path / "t.csv")
        assert (tmp_path / "t.csv").read_text() == df.to_csv(index=False)


def test_negative_control_a_changed_value_changes_the_text():
    df = pd.DataFrame({"a": [0.1, 0.2, 0.3], "b": ["x", "y", "z"]})
    changed = df.copy()
    changed.loc[1, "a"] = np.nextafter(0.2, 1.0)
    assert csv_text(changed) != df.to_csv(index=False)
    assert csv_text(changed) == changed.to_csv(index=False)


def test_big_endian_columns_are_read_as_numbers():
    """A review found big-endian float64 (np.fromfile(..., '>f8')) written as nonsense."""
    df = pd.DataFrame({"a": np.array([1.5, -0.0, 0.1], ">f8"), "b": np.array([1, 2, 3], ">i8")})
    assert csv_text(df) == df.to_csv(index=False) == "a,b\n1.5,1\n-0.0,2\n0.1,3\n"
