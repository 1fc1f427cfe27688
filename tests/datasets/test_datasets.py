"""Real-data loaders on fixtures written here (never downloaded), and the data CLI."""

import numpy as np
import pandas as pd
import pytest

from mmtheory.cli import main
from mmtheory.datasets import load_mfeat, load_npz
from mmtheory.errors import DataFormatError
from mmtheory.studies.realdata import run_real


def _planted(path, n=300, **overrides):
    """One informative modality, one pure-noise modality, 3 classes, explicit split."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    arrays = {
        "x_good": rng.standard_normal((n, 5)) + 3.0 * np.eye(3, 5)[y],
        "x_noise": rng.standard_normal((n, 7)),
        "y": y,
        "split": (np.arange(n) >= 0.7 * n).astype(int),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_mfeat_ships_and_loads():
    d = load_mfeat()
    assert d.train.dims == {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
    assert d.train.n == 1500 and d.test.n == 500 and d.train.n_classes == 10
    assert np.bincount(d.test.y.numpy()).tolist() == [50] * 10
    assert abs(float(d.train["mor"].mean())) < 1e-6  # standardised with training statistics
    assert "10.24432/C5HC70" in d.notes[0]


def test_npz_round_trip_with_sequences_and_cleaning(tmp_path):
    x = np.random.default_rng(1).standard_normal((40, 6, 3))
    x[0, 0, 0] = -np.inf
    path = _planted(tmp_path / "d.npz", n=40, x_seq=x)
    d = load_npz(path)
    assert d.train.names == ("good", "noise", "seq") and d.train.dims["seq"] == 3  # mean-pooled
    assert d.cleaned == {"seq": 1}
    assert d.train.n == 28 and d.test.n == 12


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"y": None}, "missing key 'y'"),
        ({"x_good": None, "x_noise": None}, "no modality arrays"),
        ({"x_good": np.zeros((10, 5))}, "key 'x_good' has 10 rows but 'y' has 300"),
        ({"x_good": np.zeros(300)}, r"key 'x_good' must be a numeric \(n, d\)"),
        ({"y": np.arange(300) % 3 - 1}, "class ids must be >= 0"),
        ({"split": np.zeros(300, dtype=int)}, "the test split is empty"),
        ({"split": np.full(300, 2)}, "must hold 0 \\(train\\) or 1 \\(test\\)"),
        ({"split": np.zeros(5, dtype=int)}, "key 'split' has shape"),
        ({"extra": np.zeros(3)}, "unknown key 'extra'"),
    ],
)
def test_malformed_npz_gives_one_clear_error(tmp_path, overrides, message, capsys):
    path = _planted(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataFormatError, match=message):
        load_npz(path)
    assert main(["data", "npz", "--path", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]


def test_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_text("not a zip")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        load_npz(path)


def test_pipeline_ranks_the_planted_modality(tmp_path):
    d = load_npz(_planted(tmp_path / "p.npz"))
    report = run_real(d, tmp_path / "out", sizes=[30, 210], seeds=3, progress=False)
    assert report.exists() and (tmp_path / "out" / "errors_by_views.png").exists()
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    err = 1 - res[res.m == 210].groupby("subset").test_accuracy.mean()
    # the informative modality alone beats noise alone by a wide margin (3 classes: chance 2/3)
    assert err["good"] < 0.2 and err["noise"] > 0.45
    helps = pd.read_csv(tmp_path / "out" / "adding_a_view.csv")
    assert set(helps.columns) >= {"m", "helped", "pairs", "rate", "ci_low", "ci_high"}
    # P9 needs the Bayes risk, unknown on real data: never a verdict
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv")
    p9 = pred[pred.prediction == "P9"]
    assert len(p9) and (p9.holds == "untestable").all()
