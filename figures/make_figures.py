"""Rebuild all of the README's figures from the committed run tables in ``figures/data/``
(each of the first four also has its own script: fig2b_overlap.py, fig2a_crossover.py,
fig_correlation.py, fig_bounds.py).

Reads tables only (never trains) and writes ``fig2b_overlap``, ``fig2a_crossover``,
``fig_correlation``, ``fig_bounds``, ``fig_theory_curves`` and ``fig_phase`` (PNG and PDF)
beside this script. ``fig_games.png``, ``fig_dynamics.png`` and ``fig_predicted_curves.png``
/ ``fig_phase_diagrams.png`` come from the committed runs of ``mmtheory games``,
``mmtheory dynamics`` and ``mmtheory predict`` in ``data/games``, ``data/dynamics`` and
``data/predict`` (``mmtheory plot`` redraws the first two); ``mfeat_curves.png`` is the
mfeat run's ``fig_curves``, drawn from ``data/mfeat``'s tables. The tables come
from ``mmtheory reproduce`` (full mode);
refresh them with ``python figures/make_figures.py --from runs/reproduce``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mmtheory.plotting.figures import write_figure, write_figures

HERE = Path(__file__).resolve().parent
TABLES = [
    "table4/results.csv",
    "crossover/results.csv",
    "crossover/total.txt",
    "table4.csv",
    "crossover.csv",
    "table3.csv",
    "correlation_eta.csv",
    "correlation_mstar.csv",
    "correlation_phase.csv",
    "correlation_boundary.csv",
    "correlation/theory_vs_measured.csv",
    "correlation/crossover_vs_measured.csv",
    "selection.csv",
    "bounds_summary.csv",
    "predictions.csv",
    "report.md",
    "mfeat/results.csv",
    "mfeat/best.csv",
    "mfeat/curves.csv",
    "mfeat/adding.csv",
    "mfeat/contributions.csv",
    "mfeat/calibration.csv",
    "mfeat/report.md",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="copy the tables of this run directory first")
    args = parser.parse_args()
    data = HERE / "data"
    if args.source:
        for rel in TABLES:
            src = Path(args.source) / rel
            if src.exists():
                (data / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, data / rel)
        report = data / "report.md"
        if report.exists():  # the images live one folder up from data/
            text = report.read_text().replace("](mfeat/fig_curves.png)", "](../mfeat_curves.png)")
            report.write_text(text.replace("](fig", "](../fig"))
        mfeat_report = data / "mfeat" / "report.md"
        if mfeat_report.exists():
            text = mfeat_report.read_text()
            mfeat_report.write_text(text.replace("](fig_curves.png)", "](../../mfeat_curves.png)"))
    for path in write_figures(data, dest=HERE, nested=False):
        print(f"wrote {path}")
    # mfeat's learning curves, drawn from data/mfeat's tables as `mmtheory data` draws them
    for path in write_figure("fig_curves", data / "mfeat", HERE):
        if path.suffix == ".png":
            print(f"wrote {path.replace(path.with_name('mfeat_curves.png'))}")
        else:
            path.unlink()


if __name__ == "__main__":
    main()
