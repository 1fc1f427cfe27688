"""IEMOCAP loaders on pickles written here in each layout (never downloaded)."""

import pickle

import numpy as np
import pandas as pd
import pytest

from mmtheory.cli import main
from mmtheory.datasets import load_iemocap
from mmtheory.errors import DataFormatError


def _cer_tuple(n_train=24, n_test=8, utts=12, seed=0):
    """Text carries the label, audio is pure noise, visual is weakly informative."""
    rng = np.random.default_rng(seed)
    ids, speakers, labels, text, audio, visual, sentences = {}, {}, {}, {}, {}, {}, {}
    vids = [f"Ses0{i // 10}_{i:03d}" for i in range(n_train + n_test)]
    for vid in vids:
        y = rng.integers(0, 6, utts)
        ids[vid] = [f"{vid}_{j}" for j in range(utts)]
        speakers[vid] = ["M" if j % 2 else "F" for j in range(utts)]
        labels[vid] = list(y)
        text[vid] = list(rng.standard_normal((utts, 100)) + 2.5 * np.eye(6, 100)[y])
        audio[vid] = list(rng.standard_normal((utts, 100)))
        visual[vid] = list(rng.standard_normal((utts, 512)) + 0.3 * np.eye(6, 512)[y])
        sentences[vid] = ["..."] * utts
    return [ids, speakers, labels, text, audio, visual, sentences, vids[:n_train], vids[n_train:]]


def _mult_dict(n=900, T=5, seed=0):
    rng = np.random.default_rng(seed)

    def split(k):
        y = rng.integers(0, 4, k)
        labels = np.zeros((k, 4, 2))
        labels[np.arange(k), :, 0] = 1
        labels[np.arange(k), y, 0] = 0
        labels[np.arange(k), y, 1] = 1
        audio = rng.standard_normal((k, T, 74))
        audio[0, 0, :3] = -np.inf
        return {
            "text": rng.standard_normal((k, T, 300)) + 3.0 * np.eye(4, 300)[y][:, None, :],
            "audio": audio,
            "vision": rng.standard_normal((k, T, 35)),
            "labels": labels,
        }

    return {"train": split(n), "valid": split(n // 4), "test": split(n // 2)}


def _dump(tmp_path, obj, name="iemocap.pkl"):
    path = tmp_path / name
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_cer_layout_loads_and_holds_out_validation(tmp_path):
    d = load_iemocap(_dump(tmp_path, _cer_tuple()))
    assert d.train.dims == {"text": 100, "audio": 100, "visual": 512}
    assert (
        d.test.n == 8 * 12 and d.train.n == 21 * 12
    )  # the last 10% (3) of 24 train dialogues held out
    assert "held out as validation" in d.notes[0]


def test_mult_layout_cleans_inf_and_pools(tmp_path):
    d = load_iemocap(_dump(tmp_path, _mult_dict()), target="multiclass")
    assert d.train.dims == {"text": 300, "audio": 74, "vision": 35}
    assert d.cleaned == {"audio": 6}  # 3 -inf in train and 3 in test
    assert d.train.n_classes == 4
    binary = load_iemocap(_dump(tmp_path, _mult_dict(), "b.pkl"), target="happy")
    assert set(np.unique(binary.train.y.numpy())) <= {0, 1}


@pytest.mark.parametrize("layout, make", [("cer", _cer_tuple), ("mult", _mult_dict)])
def test_cli_ranks_planted_subsets(tmp_path, layout, make, capsys):
    path = _dump(tmp_path, make())
    assert (
        main(
            [
                "data",
                "iemocap",
                "--path",
                str(path),
                "--out",
                str(tmp_path / "o"),
                "--protocol",
                "paper",
                "--seeds",
                "2",
            ]
        )  # fmt: skip
        == 0
    )
    res = pd.read_csv(tmp_path / "o" / "results.csv")
    big = res[res.m == res.m.max()].groupby("subset").test_accuracy.mean()
    assert big["text"] > big["audio"] + 0.25  # informative beats pure noise by a wide margin
    assert big.idxmax().startswith("text")
    # the paper's layout: Tables 1-3 and Fig. 2a
    for name in ("table1.csv", "table2.csv", "table3.csv", "fig2a.png"):
        assert (tmp_path / "o" / name).exists(), name
    t3 = pd.read_csv(tmp_path / "o" / "table3.csv")
    assert list(t3.pair) == ["TA|T", "TV|T", "TVA|TV", "TVA|TA"]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Tables 1-3" in report
    assert "Protocol: the paper's" in report  # labelled as the paper's, not the default


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[:8], "expected a 9-tuple"),
        (
            lambda t: t[:4] + [{k: v for k, v in list(t[4].items())[1:]}] + t[5:],
            "audio features lack dialogue",
        ),
        (
            lambda t: t[:2] + [{k: [9] * len(v) for k, v in t[2].items()}] + t[3:],
            "labels must be in 0..5",
        ),
        (lambda t: t[:8] + [[]], "the test id list is empty"),
        (
            lambda t: t[:3] + [{k: list(np.zeros((3, 100))) for k in t[3]}] + t[4:],
            "one row per labelled utterance",
        ),
    ],
)
def test_malformed_cer(tmp_path, mutate, message, capsys):
    path = _dump(tmp_path, mutate(_cer_tuple()))
    with pytest.raises(DataFormatError, match=message):
        load_iemocap(path)
    assert main(["data", "iemocap", "--path", str(path), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: {k: v for k, v in d.items() if k != "valid"}, "missing key 'valid'"),
        (
            lambda d: {**d, "train": {k: v for k, v in d["train"].items() if k != "vision"}},
            "lacks key 'vision'",
        ),
        (
            lambda d: {**d, "test": {**d["test"], "labels": np.zeros((450, 4))}},
            r"expected \(N, 4, 2\)",
        ),
        (
            lambda d: {**d, "test": {**d["test"], "audio": np.zeros((7, 5, 74))}},
            "expected \\(450, T, d\\)",
        ),
    ],
)
def test_malformed_mult(tmp_path, mutate, message):
    with pytest.raises(DataFormatError, match=message):
        load_iemocap(_dump(tmp_path, mutate(_mult_dict())))


def test_not_a_pickle(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        load_iemocap(path)


def test_cli_runs_one_emotions_binary_task(tmp_path):
    """``--target happy``: the mult layout's per-emotion binary task, from the command line."""
    path = _dump(tmp_path, _mult_dict(n=160))
    assert (
        main(
            [
                "data",
                "iemocap",
                "--path",
                str(path),
                "--target",
                "happy",
                "--protocol",
                "paper",
                "--out",
                str(tmp_path / "o"),
                "--seeds",
                "1",
            ]
        )
        == 0
    )
    res = pd.read_csv(tmp_path / "o" / "results.csv")
    assert len(res) == 7 * res.m.nunique()
    # two classes: two per-class F1 values per run, in the long table
    f1 = pd.read_csv(tmp_path / "o" / "f1_per_class.csv")
    assert "test_f1_per_class" not in res
    assert f1.groupby("run_id").size().eq(2).all() and set(f1.run_id) == set(res.run_id)
    assert "target happy" in (tmp_path / "o" / "report.md").read_text()


def test_cli_target_needs_the_mult_layout(tmp_path, capsys):
    path = _dump(tmp_path, _cer_tuple())
    assert (
        main(
            [
                "data",
                "iemocap",
                "--path",
                str(path),
                "--target",
                "happy",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the mult layout" in err[0]


@pytest.mark.parametrize("layout, make", [("cer", _cer_tuple), ("mult", _mult_dict)])
def test_cli_iemocap_defaults_to_the_real_data_protocol(tmp_path, layout, make):
    """Both layouts run under the real-data protocol by default: repeated splits,
    inner-CV penalties, calibration, the best subset with its interval."""
    path = _dump(tmp_path, make())
    out = tmp_path / "o"
    assert main(["data", "iemocap", "--path", str(path), "--splits", "2", "--sizes", "60",
                 "--out", str(out)]) == 0  # fmt: skip
    best = pd.read_csv(out / "best.csv")
    assert best.best.iloc[-1].startswith("text")  # text carries the label
    res = pd.read_csv(out / "results.csv")
    assert set(res.split) == {0, 1} and {"lam", "test_ece", "test_brier"} <= set(res.columns)
    report = (out / "report.md").read_text()
    assert "Calibration beside accuracy" in report and "Protocol: the paper's" not in report
    assert not (out / "table1.csv").exists()  # the paper's layout belongs to --protocol paper
