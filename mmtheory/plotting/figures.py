"""Figures of a run directory, drawn from its saved tables only (``mmtheory plot DIR``).

``write_figures(run_dir)`` regenerates every figure whose table exists in ``run_dir``
(except one another figure supersedes there: :data:`SUPERSEDED`); it never trains. Each
figure is written as PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmtheory.core.subsets import label_size
from mmtheory.datasets.paper import paper_table4
from mmtheory.plotting.curves import curve_subsets, plot_subset_curves, plot_sweep_subsets
from mmtheory.plotting.dynamics import (
    plot_branch_losses,
    plot_fusion_depth,
    plot_misattribution,
    plot_multidim,
    plot_time_ratio,
    plot_weight_trajectories,
)
from mmtheory.plotting.games import plot_imbalance_gaps, plot_pid_estimates
from mmtheory.plotting.plots import (
    plot_accuracy_vs_ratio,
    plot_bounds,
    plot_eta_vs_rho,
    plot_mstar_vs_rho,
    plot_overlap_mse,
    plt,
)
from mmtheory.plotting.theory import plot_phase, plot_risk_vs_predicted
from mmtheory.theory.diagnosis import FACTORS
from mmtheory.theory.learning_curves import too_few_sizes

__all__ = ["FIGURES", "FIGURE_MAKERS", "save_figure", "write_figure", "write_figures"]

#: figure name -> (table it reads, what it shows)
FIGURES = {
    "fig2b_overlap": ("table4/results.csv", "latent MSE vs number of modalities, per overlap"),
    "fig2a_crossover": ("crossover/results.csv", "accuracy vs training-sample ratio, per subset"),
    "fig_correlation": ("correlation_eta.csv", "eta_inf and the crossover m* against rho"),
    "fig_bounds": ("bounds_summary.csv", "Theorem 1 and 2 right sides against measured left sides"),
    "fig_theory_curves": (
        "correlation/theory_vs_measured.csv",
        "measured risk curves with the predicted expected risk drawn over them",
    ),
    "fig_phase": (
        "correlation_phase.csv",
        "phase diagram over (m, rho): where the pair beats the clean modality, with the "
        "predicted boundary m*(rho)",
    ),
    "fig_games": ("imbalance.csv", "imbalance scores per modality; PID estimates against exact"),
    "fig_curves": ("curves.csv", "per-subset learning curves of a data or diagnose run"),
    "fig_sweep": ("results.csv", "test risk against m per subset, any sweep"),
    "fig_dynamics": (
        "dynamics.csv",
        "weight trajectories, time ratio and misattribution of two-modality late fusion "
        "against their closed forms",
    ),
}

#: A figure not drawn where another's table is present: a data or diagnose run's results
#: are drawn as its learning curves (fig_curves, what the run itself draws), not again as
#: a sweep, so ``mmtheory plot`` writes the files the run's report lists.
SUPERSEDED = {"fig_sweep": "fig_curves"}


def save_figure(fig, run_dir: Path, name: str) -> list[Path]:
    """Write ``fig`` as ``name.png`` (200 dpi) and ``name.pdf`` into ``run_dir``; close it."""
    paths = []
    for ext in ("png", "pdf"):
        path = run_dir / f"{name}.{ext}"
        fig.savefig(path, dpi=200 if ext == "png" else None, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def figure_fig2b_overlap(run_dir: Path, dest: Path) -> list[Path]:
    res = pd.read_csv(run_dir / FIGURES["fig2b_overlap"][0])
    cum = res[res.subset.isin(["m1", "m1+m2", "m1+m2+m3", "m1+m2+m3+m4"])]
    paper = paper_table4()
    paper["n_modalities"] = paper.subset.map(label_size)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    plot_overlap_mse(cum, ax, paper=paper[paper.overlap.isin(cum.overlap.unique())])
    ax.set_title("Latent quality vs modalities (overlap world, reconstructed)", fontsize=10)
    return save_figure(fig, dest, "fig2b_overlap")


def figure_fig2a_crossover(run_dir: Path, dest: Path) -> list[Path]:
    res = pd.read_csv(run_dir / FIGURES["fig2a_crossover"][0])
    total_file = run_dir / "crossover" / "total.txt"
    total = int(total_file.read_text()) if total_file.exists() else int(res.m.max())
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    plot_accuracy_vs_ratio(res, ax, total=total)
    ax.set_title("Accuracy vs training-sample ratio (IEMOCAP-shaped world)", fontsize=10)
    return save_figure(fig, dest, "fig2a_crossover")


def figure_fig_correlation(run_dir: Path, dest: Path) -> list[Path]:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    plot_eta_vs_rho(pd.read_csv(run_dir / FIGURES["fig_correlation"][0]), a1)
    mstar_path = run_dir / "correlation_mstar.csv"
    if mstar_path.exists():
        plot_mstar_vs_rho(pd.read_csv(mstar_path), a2)
    a1.set_title("eta_inf against correlation", fontsize=10)
    a2.set_title("crossover m* of m1+m2 over m1 ('none': never)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, dest, "fig_correlation")


def figure_fig_theory_curves(run_dir: Path, dest: Path) -> list[Path]:
    """Measured risk curves of the correlation worlds with their predictions, one panel
    per rho (at most three: the lowest, middle and highest)."""
    table = pd.read_csv(run_dir / FIGURES["fig_theory_curves"][0])
    rhos = sorted(table.rho.unique())
    picks = sorted({rhos[0], rhos[len(rhos) // 2], rhos[-1]})
    fig, axes = plt.subplots(1, len(picks), figsize=(4.6 * len(picks), 3.8), squeeze=False)
    for ax, rho in zip(axes[0], picks, strict=True):
        plot_risk_vs_predicted(table[table.rho == rho], ax)
        ax.set_title(f"rho = {rho:g}: measured (95% CI) and predicted", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, dest, "fig_theory_curves")


def figure_fig_phase(run_dir: Path, dest: Path) -> list[Path]:
    phase = pd.read_csv(run_dir / FIGURES["fig_phase"][0])
    path = run_dir / "correlation_boundary.csv"
    boundary = pd.read_csv(path) if path.exists() else None
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    plot_phase(phase, boundary, "rho", ax, ylabel="correlation rho between the modalities")
    ax.set_title("Where m1+m2 beats m1 (least squares, 95% paired t-intervals)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, dest, "fig_phase")


def figure_fig_bounds(run_dir: Path, dest: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    plot_bounds(pd.read_csv(run_dir / FIGURES["fig_bounds"][0]), axes)
    fig.tight_layout()
    return save_figure(fig, dest, "fig_bounds")


def figure_fig_games(run_dir: Path, dest: Path) -> list[Path]:
    imb = pd.read_csv(run_dir / FIGURES["fig_games"][0])
    imb = imb[(imb["mask"] == "zero") & (imb["value"] == "neg_risk")]
    pid_path = run_dir / "pid.csv"
    panels = 2 if pid_path.exists() else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 0.3 * len(imb) + 2.2))
    axes = list(axes) if panels == 2 else [axes]
    plot_imbalance_gaps(imb, axes[0])
    axes[0].set_title("Retrain minus masked Shapley (zero mask)", fontsize=10)
    if panels == 2:
        pid = pd.read_csv(pid_path)
        plot_pid_estimates(pid[pid.family == "linear"], axes[1])
        axes[1].set_title("Discretised PID against the exact Gaussian PID", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, dest, "fig_games")


def _showcase_groups(table: pd.DataFrame) -> list[int]:
    """Seed-0 groups at the middle standard-deviation ratio: the lowest, middle and highest
    correlation (the trajectories panel)."""
    first = table[table.seed == table.seed.min()]
    ratios = sorted(first.sigma_ratio.unique())
    mid = first[first.sigma_ratio == ratios[len(ratios) // 2]].sort_values("rho")
    picks = {0, len(mid) // 2, len(mid) - 1}
    return [int(mid.iloc[i].group) for i in sorted(picks)]


def figure_fig_dynamics(run_dir: Path, dest: Path) -> list[Path]:
    """Six panels (those whose tables exist): trajectories, time ratio, misattribution,
    fusion depth (depth.csv), multi-dimensional worlds (multidim.csv), branch losses."""
    table = pd.read_csv(run_dir / FIGURES["fig_dynamics"][0])
    trajectories = pd.read_csv(run_dir / "trajectories.csv")
    fig, axes = plt.subplots(2, 3, figsize=(15.5, 8.4))
    a = axes.ravel()
    groups = _showcase_groups(table)
    plot_weight_trajectories(trajectories, table, groups, a[0])
    plot_time_ratio(table, a[1])
    plot_misattribution(table, a[2])
    a[0].set_title("(a) A learned, plateau at LS on {A}, then B", fontsize=10)
    a[1].set_title("(b) time ratio: 1 + (k - 1) / (1 - rho^2)", fontsize=10)
    a[2].set_title("(c) misattribution: rho sigma_B / sigma_A", fontsize=10)
    for ax, name, plot, title in (
        (a[3], "depth.csv", plot_fusion_depth, "(d) deeper fusion, longer unimodal phase"),
        (a[4], "multidim.csv", plot_multidim, "(e) multi-dimensional modalities"),
    ):
        path = run_dir / name
        if path.exists():
            plot(pd.read_csv(path), ax)
            ax.set_title(title, fontsize=10)
        else:
            ax.set_axis_off()
    if "branch_loss_first" in trajectories.columns:
        plot_branch_losses(trajectories, groups[-1], a[5])
        row = table[table.group == groups[-1]].iloc[0]
        a[5].set_title(
            f"(f) losses, rho={row.rho:g}, sigma_A/sigma_B={row.sigma_ratio:g}", fontsize=10
        )
    else:
        a[5].set_axis_off()
    fig.tight_layout()
    return save_figure(fig, dest, "fig_dynamics")


def figure_fig_curves(run_dir: Path, dest: Path) -> list[Path]:
    """Per-subset learning curves of a ``data`` or ``diagnose`` run (curves.csv): the
    measured mean risks, the fitted power laws, and their extrapolation up to the largest
    factor the run's adding table judges (``theory.diagnosis.FACTORS``), dashed on a
    shaded band. The one drawing of this figure: the runs write it with this function, and
    ``mmtheory plot`` redraws the same file from the tables."""
    curves = pd.read_csv(run_dir / FIGURES["fig_curves"][0])
    metric = "mse" if _is_regression(run_dir) else "error"
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    shown = curve_subsets(curves)
    plot_subset_curves(curves, ax, metric=metric, extrapolate=max(FACTORS), subsets=shown)
    title = "learning curve per subset"
    if "dataset" in curves.columns and curves.dataset.notna().any():
        name = str(curves.dataset.dropna().iloc[0]).replace("$", r"\$")  # text, not math
        title = f"{name}: {title}"
    n_sub = curves.subset.nunique()
    if len(shown) < n_sub:
        title += f" ({len(shown)} of {n_sub}: {_which_singles(curves.subset, shown)} and the best)"
    if not too_few_sizes(curves.m.nunique()):
        title += "\n(dashed: extrapolated)" if len(shown) < n_sub else " (dashed: extrapolated)"
    ax.set_title(title, fontsize=10)
    return save_figure(fig, dest, "fig_curves")


def _which_singles(subsets: pd.Series, shown: list[str]) -> str:
    """ "the singles", or "k of n singles" where a selection of curves cut some."""
    singles = {s for s in subsets.unique() if label_size(s) == 1}
    kept = len(singles & set(shown))
    return "the singles" if kept == len(singles) else f"{kept} of {len(singles)} singles"


def _is_regression(run_dir: Path) -> bool:
    results = run_dir / "results.csv"
    return results.exists() and "test_mse" in pd.read_csv(results, nrows=1).columns


#: Subsets drawn at most per panel of fig_sweep (a sweep over every subset of 6 modalities
#: has 63: their legend alone is taller than the figure).
SWEEP_CURVES = 12


def figure_fig_sweep(run_dir: Path, dest: Path) -> list[Path]:
    """Any sweep or data run's results.csv: test risk (and accuracy when present) against m
    per subset, one row of panels per world and learner."""
    results = pd.read_csv(run_dir / FIGURES["fig_sweep"][0])
    column = "test_risk" if "test_risk" in results.columns else "risk"
    if not {"subset", "m", column} <= set(results.columns):
        return []  # a results.csv of another kind: nothing to draw
    keys = [k for k in ("world", "learner") if k in results.columns]
    groups = list(results.groupby(keys)) if keys else [("all", results)]
    cols = [column] + (["test_accuracy"] if "test_accuracy" in results.columns else [])
    fig, axes = plt.subplots(
        len(groups), len(cols), figsize=(6.4 * len(cols), 3.8 * len(groups)), squeeze=False
    )
    for row, (key, g) in enumerate(groups):
        # a readable panel: up to SWEEP_CURVES subsets (the singles and the lowest risks
        # at the largest m; the title says so), the same ones in the accuracy panel
        n_sub = g.subset.nunique()
        shown = curve_subsets(g, SWEEP_CURVES, column=column) if n_sub > SWEEP_CURVES else None
        title = " / ".join(map(str, key if isinstance(key, tuple) else (key,)))
        if shown is not None:
            which = _which_singles(g.subset, shown)
            title += f" ({len(shown)} of {n_sub} subsets: {which} and the best)"
        for j, c in enumerate(cols):
            if g[c].notna().any():
                plot_sweep_subsets(g, axes[row, j], column=c, subsets=shown)
            axes[row, j].set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, dest, "fig_sweep")


#: figure name -> the function that draws it from a run directory's tables
FIGURE_MAKERS = {
    "fig2b_overlap": figure_fig2b_overlap,
    "fig2a_crossover": figure_fig2a_crossover,
    "fig_correlation": figure_fig_correlation,
    "fig_bounds": figure_fig_bounds,
    "fig_theory_curves": figure_fig_theory_curves,
    "fig_phase": figure_fig_phase,
    "fig_games": figure_fig_games,
    "fig_dynamics": figure_fig_dynamics,
    "fig_curves": figure_fig_curves,
    "fig_sweep": figure_fig_sweep,
}


def write_figure(name: str, run_dir: str | Path, dest: str | Path | None = None) -> list[Path]:
    """One figure (a key of :data:`FIGURES`) from ``run_dir``'s tables, into ``dest``."""
    run_dir = Path(run_dir)
    table = run_dir / FIGURES[name][0]
    if not table.exists():
        raise FileNotFoundError(f"{table} does not exist: figure {name!r} is drawn from it")
    return FIGURE_MAKERS[name](run_dir, Path(dest) if dest is not None else run_dir)


def write_figures(
    run_dir: str | Path, dest: str | Path | None = None, *, nested: bool = True
) -> list[Path]:
    """Every figure whose table exists in ``run_dir`` (but for :data:`SUPERSEDED` ones),
    written to ``dest`` (default: the run directory); returns the files written.
    ``nested``: also the figures of the runs inside it, each a subdirectory with its own
    ``report.md`` (``reproduce``'s ``mfeat``), into the same subdirectory of ``dest``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    dest = run_dir if dest is None else Path(dest)
    runs = [(run_dir, dest)]
    if nested:
        runs += [
            (d, dest / d.name)
            for d in sorted(run_dir.iterdir())
            if d.is_dir() and (d / "report.md").exists()
        ]
    written: list[Path] = []
    for folder, to in runs:
        for name, (table, _) in FIGURES.items():
            if not (folder / table).exists():
                continue
            if name in SUPERSEDED and (folder / FIGURES[SUPERSEDED[name]][0]).exists():
                continue
            to.mkdir(parents=True, exist_ok=True)
            try:
                written += write_figure(name, folder, to)
            except (KeyError, ValueError) as err:  # one line for the CLI, not a traceback
                raise ValueError(
                    f"{folder / table}: figure {name!r} cannot be drawn from it "
                    f"({type(err).__name__}: {err})"
                ) from err
    if not written:
        raise FileNotFoundError(
            f"{run_dir} holds none of the tables figures are made from: "
            + ", ".join(v[0] for v in FIGURES.values())
        )
    return written
