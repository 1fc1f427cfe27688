"""``mmtheory diagnose`` and ``mmtheory.diagnose``: verdicts with a known answer, the one
screen, the report and the figure."""

from dataclasses import replace

import numpy as np
import pandas as pd

import mmtheory
from mmtheory.cli import main
from mmtheory.core.data import MultiModalData
from mmtheory.experiments.protocol import Protocol

FAST = Protocol(n_splits=4, inner_folds=2, lambdas=(0.01, 0.1, 1.0, 10.0))


def _world(n=160, seed=0):
    """Regression: a and b each carry half the signal; noise carries none."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    y = a.sum(axis=1) + b.sum(axis=1) + 0.3 * rng.standard_normal(n)
    return {"x_a": a, "x_b": b, "x_noise": rng.standard_normal((n, 3)), "y": y}


def test_diagnose_calls_a_complementary_modality_helpful_and_never_a_noise_one():
    w = _world()
    data = MultiModalData({k[2:]: v for k, v in w.items() if k != "y"}, w["y"])
    # 6 splits: with 3, the expanded bootstrap intervals of the 5x and 10x extrapolations
    # are (rightly) too wide to call anything
    tables = mmtheory.diagnose(
        data, protocol=replace(FAST, n_splits=6), sizes=[15, 30, 60, 120], n_boot=50
    )
    assert set(tables) == {"results", "best", "curves", "adding", "contributions"}
    add = tables["adding"]
    b_to_a = add[(add.modality == "b") & (add.to == "a")]
    assert (b_to_a.verdict == "helps").all()  # half the signal: unmistakable at every size
    # negative control: pure noise is never called helpful, at any size or extrapolation
    assert not (add[add.modality == "noise"].verdict == "helps").any()
    assert tables["best"].best.iloc[-1] in ("a+b", "a+b+noise")
    phi = tables["contributions"].set_index("modality")
    assert (
        phi.loc["noise", "ci_low"] <= 0 <= phi.loc["noise", "ci_high"]
        or abs(phi.loc["noise", "shapley"]) < 0.05
    )


def test_cli_diagnose_prints_one_screen_and_writes_report_and_figure(tmp_path, capsys):
    path = tmp_path / "w.npz"
    np.savez(path, **_world(n=120))
    out = tmp_path / "o"
    assert main(["diagnose", str(path), "--out", str(out), "--splits", "3",
                 "--sizes", "20,40,90"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert len(text.splitlines()) <= 40  # one screen
    assert "Use now" in text and "10x m *" in text and "Contribution" in text
    assert (out / "fig_curves.png").stat().st_size > 10_000
    assert "extrapolated" in (out / "report.md").read_text()
    adding = pd.read_csv(out / "adding.csv")
    assert adding[adding.factor > 1].extrapolated.all()


def test_cli_diagnose_missing_file_is_one_line(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nope.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.npz" in err[0]


def test_risk_intervals_are_shown_inside_the_values_a_risk_can_take():
    """With few splits a t-interval of an error rate can run below 0 or above 100%; the
    reports show it clipped (the tables keep the raw bounds). Gaps are never clipped."""
    from mmtheory.reporting.diagnose_report import _ci, risk_ci

    assert risk_ci(-0.215, 1.3367, "error") == _ci(0.0, 1.0, "error")
    assert risk_ci(-0.5, 2.0, "mse") == _ci(0.0, 2.0, "mse")
    assert risk_ci(0.1, 0.2, "error") == _ci(0.1, 0.2, "error")
    assert "nan" in risk_ci(float("nan"), float("nan"), "error")
