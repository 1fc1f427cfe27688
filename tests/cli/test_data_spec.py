"""A spec can name a dataset file; ``mmtheory plot`` draws any sweep or data run."""

import numpy as np
import pytest

from mmtheory.cli import main
from mmtheory.errors import SpecError
from mmtheory.experiments.spec import load_spec


def _npz(path, n=90):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    np.savez(
        path,
        x_good=rng.standard_normal((n, 3)) + 2.5 * np.eye(3)[y],
        x_noise=rng.standard_normal((n, 2)),
        y=y,
    )


SPEC = """
name = "mine"
[data]
path = "d.npz"
[[learner]]
kind = "linear"
solver = "adam"
steps = 30
[grid]
subsets = "all"
m = [20, 60]
seeds = 1
"""


def test_a_spec_names_a_data_file_and_plot_draws_the_sweep(tmp_path):
    _npz(tmp_path / "d.npz")
    (tmp_path / "s.toml").write_text(SPEC)
    spec = load_spec(tmp_path / "s.toml")
    assert spec.worlds[0].names == ("good", "noise") and spec.n_runs == 6
    out = tmp_path / "o"
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
    assert main(["plot", str(out)]) == 0
    assert (out / "fig_sweep.png").stat().st_size > 10_000


def test_spec_data_errors_name_the_field(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    with pytest.raises(SpecError, match="data.path: file .*d.npz.* does not exist"):
        load_spec(tmp_path / "s.toml")
    (tmp_path / "t.toml").write_text(SPEC + '\n[world]\nkind = "linear"\n')
    with pytest.raises(SpecError, match="either a \\[world\\] or a \\[data\\]"):
        load_spec(tmp_path / "t.toml")


def test_plot_draws_the_curves_of_a_data_run(tmp_path):
    _npz(tmp_path / "d.npz")
    out = tmp_path / "o"
    assert main(["data", "npz", "--path", str(tmp_path / "d.npz"), "--out", str(out),
                 "--splits", "2", "--sizes", "20,40,60"]) == 0  # fmt: skip
    drawn = (out / "fig_curves.png").read_bytes()  # the run's figure, from the one maker
    assert len(drawn) > 10_000
    files = sorted(p.name for p in out.iterdir())
    (out / "fig_curves.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "fig_curves.png").read_bytes() == drawn  # redrawn from the tables alone
    # the files the run wrote (its report lists them), no more: its results.csv is drawn
    # as learning curves, not again as a sweep
    assert sorted(p.name for p in out.iterdir()) == files and "fig_sweep.png" not in files
    assert (out / "curves.csv").read_text().startswith("dataset,")  # the figure's title
