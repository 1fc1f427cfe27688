"""``mmtheory data``: the all-subsets pipeline on a real dataset (shipped mfeat, HTAD, any
.npz, IEMOCAP).

:func:`run_data` is the default protocol (docs/realdata.md): repeated stratified splits,
convex heads fit to convergence with an inner-CV penalty, calibration beside accuracy, the
best subset at each size with its interval, per-subset learning curves. :func:`run_real` is
the paper's protocol, kept as ``--protocol paper`` (and for ``--temporal conv``, which
needs Adam): one fixed split, Adam for a fixed number of steps, seeds that vary
initialisation and training prefix only; its reports say so.

:func:`run_real`: every subset of views x sample sizes (class-stratified prefixes of a
per-seed shuffle of the training split) x seeds, one linear softmax classifier each (the
composite h o g), test error on the held-out split, the refit-head latent proxy, and from
them: test error by number of views with intervals over seeds, how often adding a view
helped, the nested-pair predictions (P1, P2, P5-P7) and Shapley contributions.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.core.subsets import label_names, parse_subset
from mmtheory.datasets.loaders import Loaded, pooled
from mmtheory.experiments.protocol import Protocol, run_protocol
from mmtheory.experiments.records import RecordStore
from mmtheory.experiments.sources import DataSource
from mmtheory.experiments.sweep import sweep
from mmtheory.models.presets import resolve_learners
from mmtheory.plotting.figures import save_figure, write_figure
from mmtheory.plotting.plots import palette, plot_accuracy_vs_ratio, plt
from mmtheory.reporting.diagnose_report import (
    adding_markdown,
    best_markdown,
    calibration_markdown,
    clip_risk,
)
from mmtheory.reporting.predictions import counts_markdown, verdict_block
from mmtheory.reporting.tables import crossover_summary, table3_analogue, table3_markdown
from mmtheory.studies.diagnose import tables_from_run
from mmtheory.theory.check import check
from mmtheory.theory.contributions import contributions_table
from mmtheory.theory.learning_curves import corrected_interval, too_few_sizes
from mmtheory.theory.statistics import clopper_pearson, mean_ci

__all__ = [
    "run_data",
    "run_real",
    "REAL_LEARNER",
    "PAPER_PROTOCOL",
    "PAPER_PROTOCOL_LABEL",
    "CONV_SETTINGS",
    "temporal_learner",
    "paper_sizes",
    "errors_by_views",
    "adding_helps",
]

#: Multinomial logistic regression on the concatenated (zero-filled) views.
REAL_LEARNER = {"kind": "linear", "solver": "adam", "lr": 0.05, "steps": 300}
#: The paper's IEMOCAP model: one linear encoder per modality to a 128-d latent,
#: concatenation, a linear head; Adam, lr 0.01, batch 2048 (epochs unpublished: 300 steps).
PAPER_PROTOCOL = {
    "kind": "late_fusion",
    "encoder": "linear",
    "latent_dim": 128,
    "solver": "adam",
    "lr": 0.01,
    "steps": 300,
    "batch_size": 2048,
}
#: The temporal encoder's settings (``--temporal conv``): a width-3 convolution over time
#: with 32 channels, mean-pooled, before each modality's latent map.
CONV_SETTINGS = {"encoder": "conv", "hidden": 32, "window": 3}


def temporal_learner(base: dict | None) -> dict:
    """``base`` with conv encoders: late fusion keeps its latent size and training; the
    default logistic regression becomes late fusion with 16-d latents."""
    base = dict(base or REAL_LEARNER)
    if base.get("kind") != "late_fusion":
        base = {
            "kind": "late_fusion",
            "latent_dim": 16,
            "solver": "adam",
            "lr": 0.01,
            "steps": base.get("steps", 300),
        }
    return {**base, **CONV_SETTINGS}


#: How reports of :func:`run_real` name their protocol.
PAPER_PROTOCOL_LABEL = (
    "the paper's (one fixed train/test split, Adam for a fixed number of steps, seeds "
    "that vary the initialisation and the training prefix only)"
)

#: The paper's training-set ratios.
PAPER_RATIOS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: Minimum training examples per class at the smallest ratio.
MIN_PER_CLASS = 2


def paper_sizes(loaded: Loaded) -> list[int]:
    """Sample sizes for the paper's ratios: m(r) = max(round(r n), MIN_PER_CLASS x classes),
    so that the smallest ratio still sees every class (the prefixes are shuffled per seed)."""
    n, k = loaded.train.n, loaded.train.n_classes or 2
    return sorted({min(n, max(round(r * n), MIN_PER_CLASS * k)) for r in PAPER_RATIOS})


def errors_by_views(results: pd.DataFrame) -> pd.DataFrame:
    """Mean test error over the subsets of each size, per seed, then a t-interval over seeds."""
    df = results.assign(test_error=1 - results.test_accuracy)
    cols = ["test_error"] + (["test_macro_f1"] if "test_macro_f1" in df.columns else [])
    per_seed = df.groupby(["m", "n_modalities", "seed"])[cols].mean().reset_index()
    rows = []
    for (m, k), g in per_seed.groupby(["m", "n_modalities"]):
        mean, lo, hi = mean_ci(g.test_error)
        row = {
            "m": m,
            "n_views": k,
            "test_error": mean,
            "ci_low": lo,
            "ci_high": hi,
            "n_seeds": len(g),
        }
        if "test_macro_f1" in g.columns:
            row["macro_f1"] = g.test_macro_f1.mean()
        rows.append(row)
    return pd.DataFrame(rows)


def adding_helps(results: pd.DataFrame) -> pd.DataFrame:
    """Over every pair (N, N + one view) and seed: how often the test error went down."""
    df = results.assign(test_error=1 - results.test_accuracy)
    rows = []
    for m, at in df.groupby("m"):
        err = at.set_index(["subset", "seed"]).test_error
        subsets = at.subset.unique()
        sets = {s: set(label_names(s)) for s in subsets}
        helped = total = 0
        for big in subsets:
            for small in subsets:
                if sets[small] < sets[big] and len(sets[big]) == len(sets[small]) + 1:
                    for seed in at.seed.unique():
                        total += 1
                        helped += int(err[(big, seed)] < err[(small, seed)])
        lo, hi = clopper_pearson(helped, total)
        rows.append(
            {
                "m": m,
                "helped": helped,
                "pairs": total,
                "rate": helped / max(total, 1),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def _figure(by_views: pd.DataFrame, out: Path, title: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ks = sorted(by_views.n_views.unique())
    for colour, k in zip(palette(len(ks)), ks):
        g = by_views[by_views.n_views == k].sort_values("m")
        ax.plot(
            g.m,
            100 * g.test_error,
            "-o",
            color=colour,
            markersize=4,
            label=f"{k} view{'s' if k > 1 else ''}",
        )
        ax.fill_between(g.m, 100 * g.ci_low, 100 * g.ci_high, color=colour, alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter, ScalarFormatter

    # a linear y axis: a log axis spanning less than a decade showed no tick labels
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}%"))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training samples m")
    ax.set_ylabel("test error (%), mean over subsets of that size")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, out, "errors_by_views")


def paper_tables(results: pd.DataFrame, total: int, out: Path) -> list[str]:
    """The paper's IEMOCAP layout from an all-subsets run over three modalities named
    text / audio / visual (or vision): Table 1 (accuracy at the full training set for T, TA,
    TV, TVA), Table 2 (accuracy against the training-sample ratio), the Table 3 analogue and
    the Fig. 2a plot. Returns report lines."""
    universe = tuple(
        n
        for n in ("text", "video", "visual", "vision", "audio")
        if n in {name for label in results.subset.unique() for name in label_names(label)}
    )
    names = {ini: str(parse_subset(ini, universe)) for ini in ("T", "TA", "TV", "TVA")}
    summary = crossover_summary(results, total)
    keep = summary[summary.subset.isin(names.values())]
    write_csv_atomic(keep, out / "table2.csv")
    full = keep[keep.m == keep.m.max()]
    write_csv_atomic(full, out / "table1.csv")
    table3 = table3_analogue(results, universe)
    write_csv_atomic(table3, out / "table3.csv")
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    plot_accuracy_vs_ratio(results[results.subset.isin(names.values())], ax, total=total)
    ax.set_title("Fig. 2a: accuracy vs training-sample ratio", fontsize=10)
    save_figure(fig, out, "fig2a")
    lines = [
        "## The paper's layout (Tables 1-3, Fig. 2a)",
        "",
        "| subset | " + " | ".join(f"ratio {r:.2g}" for r in sorted(keep.ratio.unique())) + " |",
        "|---|" + "---:|" * keep.ratio.nunique(),
    ]
    for ini, name in names.items():
        row = keep[keep.subset == name].sort_values("ratio")
        lines.append(f"| {ini} | " + " | ".join(f"{100 * a:.2f}" for a in row.accuracy) + " |")
    lines += [
        "",
        "Table 3 analogue (ratio 1): accuracy difference and latent gap eta_N - eta_M "
        "(held-out cross-entropy of refit heads):",
        "",
        table3_markdown(table3),
    ]
    lines += ["", "![fig2a](fig2a.png)", ""]
    return lines


def _provenance(loaded) -> list[str]:
    """Report lines on where a dataset came from and what loading cleaned."""
    lines: list[str] = []
    if loaded.notes:
        lines += ["Source: " + "; ".join(loaded.notes), ""]
    if loaded.cleaned:
        lines += [
            "Cleaned non-finite values (set to 0): "
            + ", ".join(f"{k}: {v}" for k, v in loaded.cleaned.items()),
            "",
        ]
    return lines


def run_real(
    loaded: Loaded,
    out: str | Path,
    *,
    sizes: list[int] | None = None,
    seeds: int = 5,
    learner: dict | None = None,
    device: str = "auto",
    progress: bool = True,
    paper_layout: bool = False,
) -> Path:
    """Run the pipeline on ``loaded`` into ``out``; returns the report's path. With
    ``paper_layout`` (IEMOCAP), also write Tables 1-3 and Fig. 2a in the paper's layout."""
    t0 = time.perf_counter()
    if loaded.train.task != "classification":
        raise ValueError(
            f"dataset {loaded.name!r} has float targets (regression); the sweep protocol "
            "reports accuracy, so use the default protocol (--protocol splits)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = loaded.train.n
    if sizes is None:
        k = loaded.train.n_classes or 2
        sizes = sorted({s for s in (3 * k, 10 * k, 30 * k, n // 4, n // 2, n) if 2 <= s <= n})
    source = DataSource(loaded.train, loaded.test, name=loaded.name)
    results = sweep(
        source,
        learner or REAL_LEARNER,
        "all",
        m=sizes,
        seeds=seeds,
        device=device,
        out=out / "runs",
        progress=progress,
    )
    write_csv_atomic(results, out / "results.csv")
    if (out / "runs" / "f1_per_class.csv").exists():
        shutil.copy(out / "runs" / "f1_per_class.csv", out / "f1_per_class.csv")
    by_views = errors_by_views(results)
    helps = adding_helps(results)
    _, predictions = check(results)
    write_csv_atomic(by_views, out / "errors_by_views.csv")
    write_csv_atomic(helps, out / "adding_a_view.csv")
    write_csv_atomic(predictions, out / "predictions.csv")
    write_csv_atomic(contributions_table(results), out / "contributions.csv")
    figures = _figure(by_views, out, f"{loaded.name}: test error by number of views")
    big = by_views[by_views.m == by_views.m.max()].sort_values("n_views")
    lines = [
        f"# {loaded.name}: all subsets of views",
        "",
        f"{loaded.train.n} training / {loaded.test.n} test rows, views "
        + ", ".join(f"{k} ({d})" for k, d in loaded.train.dims.items())
        + f". Learner: {learner or REAL_LEARNER}. Sizes {sizes}, {seeds} seeds. "
        f"Wall time {time.perf_counter() - t0:.0f} s.",
        "",
        f"**Protocol: {PAPER_PROTOCOL_LABEL}.** Not the default real-data protocol "
        "(repeated splits, convex heads with an inner-CV penalty: docs/realdata.md); "
        "its intervals ignore the split's own variance.",
        "",
    ]
    lines += _provenance(loaded)
    lines += [
        "## Test error by number of views (all training rows; 95% t-interval over seeds)",
        "",
        "| views | test error | 95% CI | macro F1 |",
        "|---:|---:|---|---:|",
    ]
    lines += [
        f"| {r.n_views} | {r.test_error:.4f} | [{r.ci_low:.4f}, {r.ci_high:.4f}] | "
        f"{getattr(r, 'macro_f1', float('nan')):.4f} |"
        for r in big.itertuples()
    ]
    lines += [
        "",
        "Macro and support-weighted F1 of every run are columns of `results.csv` "
        "(`test_macro_f1`, `test_weighted_f1`); per-class F1 is the long table "
        "`f1_per_class.csv` (one row per run and class).",
    ]
    lines += [
        "",
        "## Adding one view: how often the test error went down",
        "",
        "| m | helped / pairs | rate | exact 95% CI |",
        "|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.m} | {r.helped} / {r.pairs} | {r.rate:.3f} | [{r.ci_low:.3f}, {r.ci_high:.3f}] |"
        for r in helps.itertuples()
    ]
    lines += [
        "",
        "## Predictions",
        "",
        verdict_block(predictions),
        "",
        counts_markdown(predictions),
    ]
    if paper_layout:
        lines += [""] + paper_tables(results, n, out)
    lines += [
        "",
        "eta on real data is the held-out cross-entropy of a head refit on the whole "
        "training split (the Bayes risk is unknown); its differences estimate gamma.",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"],
        "",
    ]
    report = out / "report.md"
    write_text_atomic("\n".join(lines), report)
    return report


def _calibration(results: pd.DataFrame, test_fraction: float) -> pd.DataFrame:
    """Per subset at the largest m: mean accuracy (corrected interval over splits),
    cross-entropy, Brier and ECE, best accuracy first."""
    at = results[results.m == results.m.max()]
    rows = []
    for sub, g in at.groupby("subset"):
        acc, lo, hi = corrected_interval(g.test_accuracy, test_fraction)
        rows.append(
            {
                "subset": sub,
                "accuracy": acc,
                "acc_low": lo,
                "acc_high": hi,
                "cross_entropy": g.test_cross_entropy.mean(),
                "brier": g.test_brier.mean(),
                "ece": g.test_ece.mean(),
            }
        )
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False)


def _risk_by_subset(results: pd.DataFrame, metric: str, test_fraction: float) -> str:
    at = results[results.m == results.m.max()]
    rows = sorted(
        (corrected_interval(g.risk, test_fraction), sub) for sub, g in at.groupby("subset")
    )
    lines = [f"| subset | test {metric} | 95% CI |", "|---|---:|---|"]
    scale, unit = (100.0, "%") if metric == "error" else (1.0, "")
    for (mean, lo, hi), sub in rows:
        lo, hi = clip_risk(lo, hi, metric)
        ci = f"[{scale * lo:.2f}{unit}, {scale * hi:.2f}{unit}]"
        lines.append(f"| {sub} | {scale * mean:.2f}{unit} | {ci} |")
    return "\n".join(lines)


def _describe(p: Protocol, learner: dict | None) -> str:
    """The protocol's one-line description; with a network, what differs for it."""
    if learner is None:
        return p.describe()
    return (
        f"{p.n_splits} stratified {1 - p.test_fraction:.0%}/{p.test_fraction:.0%} shuffle "
        f"splits (seed {p.seed}); late-fusion networks with {learner.get('encoder', 'linear')} "
        f"encoders trained by {learner.get('solver', 'adam')} for {learner.get('steps')} steps; "
        f"L2 strength from {[float(v) for v in p.lambdas]} chosen by the validation "
        "cross-entropy on one held-out inner fold of the training rows; refit on all training "
        "rows (cross-entropies depend on the optimiser: compare errors)"
    )


def run_data(
    loaded: Loaded,
    out: str | Path,
    *,
    protocol: Protocol | None = None,
    sizes: list[int] | None = None,
    n_boot: int = 200,
    progress: bool = True,
    learner: dict | None = None,
    device: str = "cpu",
) -> Path:
    """The default real-data pipeline (module docstring) on all rows of ``loaded`` into
    ``out``: results.csv (one row per split, size, subset), best.csv, curves.csv,
    adding.csv, contributions.csv, calibration.csv, fig_curves.png and report.md (its path is
    returned). records.jsonl keeps each (split, size) cell as it finishes: a rerun into the
    same ``out`` resumes, with the numbers of an uninterrupted run. ``learner``: a network
    trained by Adam (a convolutional temporal encoder, :func:`temporal_learner`) instead of
    the convex heads (:mod:`mmtheory.experiments.neural_protocol`), trained on ``device``."""
    t0 = time.perf_counter()
    p = protocol or Protocol()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = pooled(loaded)
    # each (split, size) cell is recorded as it finishes (records.jsonl): an interrupted
    # run loses at most the cell in progress, and rerun with the same --out it resumes
    with (
        RecordStore(out) as store,
        tqdm(
            desc=f"{loaded.name}: protocol",
            unit="cell",
            disable=not progress,
            leave=False,
            delay=1.0,
        ) as bar,
    ):

        def tick(done: int, total: int, message: str) -> None:
            bar.total = total
            bar.set_postfix_str(message, refresh=False)
            bar.update(done - bar.n)

        net = resolve_learners(learner, "classification")[0] if learner is not None else None
        run = run_protocol(data, sizes=sizes, protocol=p, progress=tick, store=store, learner=net)
    tables = tables_from_run(run, p, n_boot=n_boot, dataset=loaded.name)
    for key, table in tables.items():
        write_csv_atomic(table, out / f"{key}.csv")
    metric = run.metric
    figures = write_figure("fig_curves", out)
    note = too_few_sizes(run.results.m.nunique())
    lines = [
        f"# {loaded.name}: all subsets of views",
        "",
        f"{data.n} rows ({run.task}), views "
        + ", ".join(f"{k} ({d})" for k, d in data.dims.items())
        + f". Protocol: {_describe(p, learner)}. Sizes {sorted(run.results.m.unique().tolist())}. "
        f"Wall time {time.perf_counter() - t0:.0f} s"
        + (
            f" (the cells took {run.cell_seconds:.0f} s when computed; {run.cells_read_back} "
            "of them were read back from records.jsonl)."
            if run.cells_read_back
            else "."
        ),
        "",
    ]
    lines += _provenance(loaded)
    if not run.results.converged.all():
        bad = int((~run.results.converged).sum())
        test = (
            "the L-BFGS tolerance"
            if learner is None
            else "the convergence test (gradient norm or loss plateau) in their fixed steps"
        )
        lines += [f"**{bad} fits did not meet {test}** (see `results.csv`).", ""]
    lines += [
        "## Best subset at each size",
        "",
        "Intervals: 95% corrected resampled t over the splits (they cover the split, the "
        "training subsample and the test sample); the gap is paired over splits.",
        "",
        best_markdown(tables["best"], metric),
        "",
        f"## Every subset at m = {int(run.results.m.max())}",
        "",
        _risk_by_subset(run.results, metric, p.test_fraction),
        "",
    ]
    if run.task == "classification":
        calib = _calibration(run.results, p.test_fraction)
        write_csv_atomic(calib, out / "calibration.csv")
        lines += [
            "## Calibration beside accuracy",
            "",
            "Cross-entropy, Brier score and expected calibration error (15 bins) on the test "
            "rows, means over splits; "
            + (
                "every head is fit to convergence, so cross-entropies compare models, not "
                "optimisers."
                if learner is None
                else "these networks are trained for a fixed number of Adam steps, so their "
                "cross-entropies also reflect the optimiser."
            ),
            "",
            calibration_markdown(calib),
            "",
        ]
    lines += [
        "## Adding one modality",
        "",
        "Change in risk from adding the modality to the subset (< 0 helps); rows marked "
        "extrapolated use the fitted learning curves r_S(m) = e_S + a_S m^(-alpha_S)"
        + (f" ({note}: the table stops at the largest size)." if note else "."),
        "",
        adding_markdown(tables["adding"], metric),
        "",
        "## Contributions (Shapley values of the risk reduction at the largest size)",
        "",
        "| modality | Shapley | 95% CI |",
        "|---|---:|---|",
        *[
            f"| {r.modality} | {r.shapley:.4f} | [{r.ci_low:.4f}, {r.ci_high:.4f}] |"
            for r in tables["contributions"].itertuples()
        ],
        "",
        "## Predictions",
        "",
        "P9 (eta -> 0 with all modalities) is untestable on real data: the Bayes risk is "
        "unknown. The sweep-based predictions P1-P8 are reported by `--protocol paper`.",
        "",
        *[f"![{q.stem}]({q.name})" for q in figures if q.suffix == ".png"],
        "",
    ]
    report = out / "report.md"
    write_text_atomic("\n".join(lines), report)
    return report
