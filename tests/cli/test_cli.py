"""Every CLI verb on a tiny configuration; user mistakes give one line and exit 2."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmtheory.cli import main
from mmtheory.studies.reproduce import reproduce

ROOT = Path(__file__).resolve().parents[2]


def test_reproduce_on_a_reduced_grid(tmp_path, capsys, monkeypatch):
    report = reproduce(
        out=tmp_path,
        progress=False,
        settings={
            "t4_seeds": 1,
            "ratios": [0.05, 1.0],
            "cx_seeds": 2,
            "steps": 20,
            "n_eval": 300,
            "total": 400,
            "rho_seeds": 3,
            "bound_seeds": 5,
            "mfeat_splits": 2,
            "mfeat_sizes": [40, 100],
        },
    )
    text = report.read_text()
    for needle in ("Table 4", "reconstruction", "Not built yet", "fig2a_crossover.png", "Versions"):
        assert needle in text
    # wall and CPU seconds per part, every part named
    line = next(t for t in text.splitlines() if t.startswith("Mode:"))
    assert "wall time" in line and "CPU time (every thread)" in line
    for part in ("Table 4", "crossover", "theory", "real data", "figures"):
        assert line.count(f"{part}: ") == 2
    # the Files section names every file and folder the run wrote, and each folder's files
    files = text.split("## Files")[1]
    lines = files.splitlines()
    for p in tmp_path.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir():  # the folder's line names each of its files
            line = next(t for t in lines if t.startswith(f"- `{p.name}/`"))
            for q in p.iterdir():
                assert q.name.startswith(".") or f"`{q.name}`" in line, (p.name, q.name)
        else:
            assert f"`{p.name}`" in files, p.name
    assert "`mfeat/`: the real-data run" in files and "`fig_curves.png`" in files
    locks = list(tmp_path.rglob(".*.lock"))  # not listed one by one, but said
    assert locks and "hidden `.*.lock` files" in files
    t4 = pd.read_csv(tmp_path / "table4.csv")
    shown = t4[t4.paper_mse > 0]
    assert ((shown.ratio - 1).abs() < 0.08).all()  # quick-run tolerance of issue #5
    for name in ("fig2b_overlap.png", "fig2b_overlap.pdf", "fig2a_crossover.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    # plot regenerates from the tables alone, the nested mfeat run's figure too
    mfeat = (tmp_path / "mfeat" / "fig_curves.png").read_bytes()
    for name in ("fig2b_overlap.png", "fig2a_crossover.png", "mfeat/fig_curves.png"):
        (tmp_path / name).unlink()
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "fig2a_crossover.png").exists()
    assert (tmp_path / "mfeat" / "fig_curves.png").read_bytes() == mfeat
    # the terminal gets the verdict beside Table 4 (the run itself stubbed: done above)
    monkeypatch.setattr("mmtheory.studies.reproduce.reproduce", lambda **kw: report)
    capsys.readouterr()
    assert main(["reproduce", "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    section = text.split("## Verdict")[1].split("\n## ")[0]
    bullets = [t.replace("**", "") for t in section.splitlines() if t.startswith("- ")]
    assert len(bullets) == 4 and "Training" in bullets[-1]  # held, failed, untestable, training
    assert all(b in shown for b in bullets) and "| overlap |" in shown
    assert "Table 4, ours against the paper's" in shown  # the table is named


def test_sweep_cli_and_dry_run(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[world]\nkind = "linear"\ndims = [4, 4]\nlatent_dim = 2\n[grid]\nm = [20, 40]\nseeds = 2\n'
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "12 runs" in capsys.readouterr().out
    assert not (tmp_path / "o" / "results.csv").exists()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 0
    assert len(pd.read_csv(tmp_path / "o" / "results.csv")) == 12


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "missing.toml", "--out", "x"], "does not exist"),
        (["plot", "no/such/dir"], "does not exist"),
    ],
)
def test_user_mistakes_give_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("mmtheory ")


def test_bad_spec_exits_2_without_traceback(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('[world]\nkind = "overlap"\noverlap = 3.0\n')
    proc = subprocess.run(
        [sys.executable, "-m", "mmtheory.cli", "sweep", str(spec), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "overlap must be a finite number in [0, 1]" in proc.stderr


def test_unknown_world_parameter_names_it_and_the_known_ones(tmp_path, capsys):
    spec = tmp_path / "typo.toml"
    spec.write_text('[world]\nkind = "linear"\ndims = [4, 4]\nlatent_dimm = 2\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown parameter 'latent_dimm' of world kind 'linear'" in err[0]
    assert "'latent_dim'" in err[0]  # the known ones, to pick from
    spec.write_text('[world]\nkind = "linear"\ndims = [4, 4]\nlatent_dim = 2\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0


def test_shipped_specs_parse():
    from mmtheory.experiments import load_spec

    for path in (ROOT / "mmtheory" / "specs").glob("*.toml"):
        spec = load_spec(path)
        assert spec.n_runs > 0


def test_figure_scripts_run_on_the_committed_run(tmp_path):
    # each figures/*.py script draws one figure from the committed tables
    import shutil

    figs = tmp_path / "figures"
    shutil.copytree(ROOT / "figures" / "data", figs / "data")
    for script in ("fig2b_overlap", "fig2a_crossover", "fig_correlation", "fig_bounds"):
        shutil.copy(ROOT / "figures" / f"{script}.py", figs)
        proc = subprocess.run(
            [sys.executable, str(figs / f"{script}.py")], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert (figs / f"{script}.png").stat().st_size > 10_000


def test_report_timing_line_names_parts_and_total():
    from mmtheory.reporting.reproduce_report import _seconds

    assert _seconds("wall", {"table4": 2.4, "mfeat": 30.2, "total": 40.0}) == (
        "wall 40 s (Table 4: 2 s, real data: 30 s)"
    )
    assert _seconds("cpu", {"theory": 3.0}) == "cpu 3 s (theory: 3 s)"  # no total: the sum
    assert _seconds("cpu", {"total": 5.0}) == "cpu 5 s"
    assert _seconds("cpu", None) == "cpu not recorded"


def test_plot_names_a_nested_table_it_cannot_draw_in_one_line(tmp_path, capsys):
    """A run nested in the plotted folder (its own report.md) whose curves.csv lacks the
    curve columns: exit 2 and one line naming the table, not a traceback; a sound run
    beside it is drawn first (nothing already drawn is lost)."""
    pd.DataFrame({"subset": ["a"], "m": [10], "seed": [0], "test_risk": [0.5]}).to_csv(
        tmp_path / "results.csv", index=False
    )
    bad = tmp_path / "inner"
    bad.mkdir()
    (bad / "report.md").write_text("# a run\n")
    pd.DataFrame({"subset": ["a"], "m": [10]}).to_csv(bad / "curves.csv", index=False)
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "curves.csv" in err[0] and "fig_curves" in err[0]
    assert (tmp_path / "fig_sweep.png").exists()
