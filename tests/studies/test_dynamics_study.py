"""``mmtheory dynamics`` end to end on a tiny grid: the files, the verdicts (every check
holds, every negative control fails), the report, and the figure redrawn from the tables."""

from __future__ import annotations

import pandas as pd
import pytest

from mmtheory.cli import main
from mmtheory.studies import dynamics

TINY = {
    "rhos": [-0.5, 0.5],
    "ratios": [2.0],
    "seeds": 1,
    "init_scale": 1e-6,
    "width": 16,
    "lr": 0.02,
    "steps": 3_000,
    "points": 150,
    "depth_layers": 3,
    "depth_rhos": [0.5],
    "depth_seeds": 1,
    "depth_init_scale": 0.1,
    "depth_steps": 3_000,
    "multi_worlds": 2,
    "multi_dim": 2,
    "multi_max_ratio": 4.0,
    "multi_steps": 3_000,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamics")
    saved = dict(dynamics.QUICK)
    dynamics.QUICK.update(TINY)
    try:
        code = main(["dynamics", "--quick", "--out", str(out), "--device", "cpu"])
    finally:
        dynamics.QUICK.clear()
        dynamics.QUICK.update(saved)
    return code, out


def test_cli_writes_every_file(study, capsys):
    code, out = study
    assert code == 0
    files = ("dynamics.csv", "trajectories.csv", "verdicts.csv", "depth.csv", "multidim.csv")
    for name in (*files, "report.md"):
        assert (out / name).stat().st_size > 0, name
    for ext in ("png", "pdf"):
        assert (out / f"fig_dynamics.{ext}").stat().st_size > 10_000
    table = pd.read_csv(out / "dynamics.csv")
    assert len(table) == 2 and set(table.first) == {"A"}
    text = (out / "report.md").read_text()
    for needle in ("time ratio", "Verdicts and negative controls", "fig_dynamics.png", "L_f"):
        assert needle in text


def test_checks_hold_and_controls_fail(study):
    """Two-layer late fusion from init 1e-6: the closed forms neglect O(1) times against
    ln(1 / init^2) ~ 30, a few percent (the 10% tolerance is the issue's target); the plateau
    sits within O(init) of the subset least squares (1e-3)."""
    _, out = study
    verdicts = pd.read_csv(out / "verdicts.csv")
    checks = verdicts[verdicts.kind == "check"]
    assert set(checks.check) == {
        "time_ratio",
        "plateau",
        "misattribution",
        "converged",
        "deeper_fusion",
        "time_ratio_multidim",
    }
    assert checks.holds.all(), checks
    controls = verdicts[verdicts.kind.str.startswith("control")]
    assert set(controls.check) == set(checks.check)  # a negative control for each verdict
    assert not controls.holds.any(), controls
    table = pd.read_csv(out / "dynamics.csv")
    assert (table.time_ratio_rel_error.abs() < 0.10).all()
    assert (table.plateau_gap_measured < 1e-3).all()


def test_figure_redrawn_from_the_tables(study):
    _, out = study
    (out / "fig_dynamics.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "fig_dynamics.png").exists()
