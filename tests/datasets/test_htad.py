"""HTAD from the optional ``multiviewstacking`` package: both ways."""

import importlib.util

import pytest

import mmtheory.datasets.htad as htad
from mmtheory.cli import main

HAS_HTAD = importlib.util.find_spec("multiviewstacking") is not None


@pytest.mark.skipif(not HAS_HTAD, reason="optional extra htad (multiviewstacking) not installed")
def test_htad_loads_from_the_installed_package():
    d = htad.load_htad()
    assert d.train.dims == {"audio": 36, "accelerometer": 16}
    assert d.train.n + d.test.n == 1386 and d.train.n_classes == 7
    assert "Garcia-Ceja" in d.notes[0]


def test_htad_absent_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(htad.resources, "files", missing)
    assert main(["data", "htad", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "multiviewstacking" in err[0] and "pip install" in err[0]
