"""``mmtheory methods``: the related methods against ERM, with eta, on an imbalance world and mfeat.

Every learner trains the same late-fusion model (linear encoders to 8-d latents,
concatenation, linear head) from the same initial fused model and data per seed (common
random numbers: ``init_name``), so paired differences over seeds isolate what a method
changes. Two tables:

original recipe
    each method with its original training recipe (:attr:`Method.recipe`: OGM-GE and
    G-Blending momentum SGD, I2M2 SGD with gradient clipping at 8), against ERM trained
    with the *same* recipe; methods whose original recipe is unknown run the common one.
equal recipe
    every method with the common recipe (Adam), against ERM with Adam.

The learning rate of each optimiser is fixed once for ERM on both datasets
(:data:`RECIPE_LR`), never tuned for a method. Each method's ablations
(:attr:`Method.ablations`, e.g. OGM-GE's modulation alone, noise alone, and the same noise
on ERM's recipe) run beside it, so that the claims table names which component produced
each effect: every published claim is tested for the full method and for each component,
as a paired 95% t-interval over seeds ("reproduced" when the interval lies on the claimed
side of 0, "contradicted" when on the other side, "inconclusive" otherwise). A negative
control runs in every comparison: a second draw of ERM (another initialisation), whose
"gain" over ERM must not come out reproduced beyond the intervals' error rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.core.subsets import join_label, label_size
from mmtheory.experiments.sources import DataSource
from mmtheory.experiments.sweep import sweep
from mmtheory.models.methods import METHODS, get_method
from mmtheory.reporting.markdown import markdown_table
from mmtheory.theory.statistics import interval

__all__ = [
    "COMMON_RECIPE",
    "COMPARE_LEARNER",
    "Entry",
    "RECIPE_LR",
    "ablation_table",
    "claims_table",
    "mechanism_table",
    "plan_entries",
    "run_comparison",
    "summary_table",
]

#: The shared model and the common recipe (Adam): every learner starts from it.
COMPARE_LEARNER: dict[str, object] = {
    "kind": "late_fusion",
    "encoder": "linear",
    "latent_dim": 8,
    "solver": "adam",
    "lr": 0.01,
    "steps": 300,
    "init_name": "compare",
}
COMMON_RECIPE: dict[str, object] = {"solver": "adam"}
#: The learning rate of each optimiser, chosen once for ERM on both datasets; SGD's is
#: divided by the recipe's 1 / (1 - momentum), so that every SGD recipe takes the same
#: effective step lr / (1 - momentum) = 1.
RECIPE_LR = {"adam": 0.01, "sgd": 1.0, "gd": 1.0, "rmsprop": 0.01}
#: Names of the two tables.
ORIGINAL, EQUAL = "original recipe", "equal recipe"
PLACEBO = "erm-placebo"


@dataclass(frozen=True)
class Entry:
    """One learner of the comparison.

    ``label`` is its ``learner`` column; ``baseline`` the ERM it is compared with (the same
    recipe); ``component`` what it keeps ("full method", an ablation's component, "ERM");
    ``table`` the table it belongs to (:data:`ORIGINAL` or :data:`EQUAL`).
    """

    label: str
    method: str
    recipe: str
    settings: dict[str, object]
    component: str
    table: str
    baseline: str
    options: dict[str, object] = field(default_factory=dict)

    def fields(self, steps: int) -> dict[str, object]:
        """The learner's fields (``Learner.from_fields``)."""
        out = dict(COMPARE_LEARNER, **self.settings, steps=steps, name=self.label)
        out["method"] = self.method
        out.update(self.options)
        return out


def recipe_tag(recipe: dict[str, object]) -> str:
    """A short name of a recipe: ``"adam"``, ``"sgd-m0.9"``, ``"sgd-clip8"``."""
    if not recipe or recipe == COMMON_RECIPE:
        return "adam"
    tag = str(recipe.get("solver", "adam"))
    if recipe.get("momentum"):
        tag += f"-m{recipe['momentum']:g}"
    if recipe.get("clip_norm") is not None:
        tag += f"-clip{recipe['clip_norm']:g}"
    return tag


def recipe_settings(recipe: dict[str, object]) -> dict[str, object]:
    """A recipe's learner settings, with the learning rate of its optimiser."""
    out = dict(COMMON_RECIPE, **recipe)
    lr = RECIPE_LR[str(out["solver"])]
    if out["solver"] in ("sgd", "gd"):
        lr *= 1 - float(out.get("momentum", 0.0))  # type: ignore[arg-type]
    out["lr"] = round(lr, 12)
    return out


def _erm_label(tag: str) -> str:
    return "erm" if tag == "adam" else f"erm[{tag}]"


def plan_entries(methods: tuple[str, ...] = METHODS) -> list[Entry]:
    """Every learner of the comparison: ERM per recipe, the negative control, each method
    in both tables and its ablations."""
    entries: dict[str, Entry] = {}

    def erm(tag: str, recipe: dict[str, object]) -> str:
        label = _erm_label(tag)
        table = EQUAL if tag == "adam" else ORIGINAL
        entries.setdefault(
            label, Entry(label, "erm", tag, recipe_settings(recipe), "ERM", table, label)
        )
        return label

    base = erm("adam", COMMON_RECIPE)
    entries[PLACEBO] = Entry(
        PLACEBO,
        "erm",
        "adam",
        {**recipe_settings(COMMON_RECIPE), "init_name": "placebo"},
        "negative control: ERM from another initialisation",
        EQUAL,
        base,
    )
    for name in methods:
        if name == "erm":
            continue
        cls = get_method(name)
        tag = recipe_tag(cls.recipe)
        own = recipe_settings(cls.recipe)
        entries[name] = Entry(
            name, name, "adam", recipe_settings(COMMON_RECIPE), "full method", EQUAL, base
        )
        if tag != "adam":
            label = f"{name}[{tag}]"
            entries[label] = Entry(
                label, name, tag, own, "full method", ORIGINAL, erm(tag, cls.recipe)
            )
        for abl in cls.ablations:
            on_own = abl.recipe == "original" and tag != "adam"
            label = f"{name}-{abl.label}" + (f"[{tag}]" if on_own else "")
            entries[label] = Entry(
                label,
                name,
                tag if on_own else "adam",
                own if on_own else recipe_settings(COMMON_RECIPE),
                abl.component,
                ORIGINAL if on_own else EQUAL,
                erm(tag, cls.recipe) if on_own else base,
                dict(abl.options),
            )
    return list(entries.values())


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (NaN bounds with fewer than two seeds)."""
    return interval(values, method="t").as_tuple()


def summary_table(results: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of every metric, per (learner, subset, m)."""
    metrics = [c for c in ("test_risk", "test_accuracy", "eta", "eta_pretrain") if c in results]
    metrics += sorted(c for c in results.columns if c.startswith("eta_branch_"))
    metrics += sorted(c for c in results.columns if c.startswith("diag_"))
    rows = []
    for (learner, subset, m), grp in results.groupby(["learner", "subset", "m"], sort=False):
        row = {"dataset": dataset, "learner": learner, "subset": subset, "m": m, "seeds": len(grp)}
        for col in metrics:
            mean, lo, hi = _interval(grp[col].to_numpy(dtype=float))
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(results, m, learner_a, col_a, learner_b, col_b, subset_a, subset_b):
    a = results[(results.learner == learner_a) & (results.subset == subset_a) & (results.m == m)]
    b = results[(results.learner == learner_b) & (results.subset == subset_b) & (results.m == m)]
    merged = a[["seed", col_a]].merge(b[["seed", col_b]], on="seed", suffixes=("_a", "_b"))
    ca = col_a + "_a" if col_a == col_b else col_a
    cb = col_b + "_b" if col_a == col_b else col_b
    return (merged[ca] - merged[cb]).to_numpy(dtype=float)


def _verdict(lo: float, hi: float, sign: int) -> str:
    if not np.isfinite(lo):
        return "inconclusive"
    if (sign < 0 and hi < 0) or (sign > 0 and lo > 0):
        return "reproduced"
    if (sign < 0 and lo > 0) or (sign > 0 and hi < 0):
        return "contradicted"
    return "inconclusive"


def _default_entries(results: pd.DataFrame) -> list[Entry]:
    """Entries for a table without a plan: every non-ERM learner is its method's full
    version in the equal-recipe table, against ``erm``."""
    out = []
    for label in dict.fromkeys(results.learner):
        if label in METHODS and label != "erm":
            out.append(Entry(label, label, "adam", {}, "full method", EQUAL, "erm"))
    return out


def claims_table(
    results: pd.DataFrame,
    dataset: str,
    names: tuple[str, ...],
    entries: list[Entry] | None = None,
) -> pd.DataFrame:
    """The published claims, tested as paired differences over seeds at every m.

    Each claim of a method is tested for every entry of that method (the full method in
    both tables and each ablation), against the ERM of the entry's recipe; ``component``
    says which part of the method the row isolates. Also: whether joint ERM under-trains
    the weakest encoder, and the negative control (a second draw of ERM).
    """
    entries = _default_entries(results) if entries is None else entries
    full = join_label(names)
    branch = {k: f"eta_branch_{k}" for k in names if f"eta_branch_{k}" in results}
    present = set(results.learner)
    rows = []
    for m in sorted(results.m.unique()):
        erm = results[(results.learner == "erm") & (results.subset == full) & (results.m == m)]
        # the weakest branch under ERM: the highest branch eta (worst latent)
        weakest = max(branch, key=lambda k: erm[branch[k]].mean()) if branch and len(erm) else None

        def add(claim, source, diff, sign, what, entry=None, m=m):
            mean, lo, hi = _interval(diff)
            rows.append(
                {
                    "dataset": dataset,
                    "m": m,
                    "table": entry.table if entry else EQUAL,
                    "learner": entry.label if entry else "erm",
                    "baseline": entry.baseline if entry else "",
                    "component": entry.component if entry else "ERM",
                    "claim": claim,
                    "source": source,
                    "statistic": what,
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_seeds": int(np.isfinite(diff).sum()),
                    "verdict": _verdict(lo, hi, sign),
                }
            )

        if weakest is not None:
            alone = _paired(results, m, "erm", branch[weakest], "erm", "eta", full, weakest)
            add(
                f"joint ERM under-trains the weakest encoder ({weakest})",
                "the modality-imbalance literature",
                alone,
                +1,
                f"eta_branch_{weakest}(joint ERM) - eta(ERM on {weakest} alone)",
            )
        for entry in entries:
            if entry.label not in present or entry.baseline not in present:
                continue
            if entry.method == "erm":  # the negative control
                diff = _paired(
                    results, m, entry.label, "test_risk", entry.baseline, "test_risk", full, full
                )
                add(
                    "a second draw of ERM lowers the test risk (negative control: must not be "
                    "reproduced beyond the 2.5% error rate)",
                    "negative control",
                    diff,
                    -1,
                    "test_risk(second ERM) - test_risk(ERM)",
                    entry,
                )
                continue
            cls = get_method(entry.method)
            for claim in cls.claims:
                if claim.statistic == "eta_branch":
                    if weakest is None:
                        continue
                    col = branch[weakest]
                    text = f"{entry.label} {claim.text} ({weakest})"
                elif claim.baseline.startswith("self:"):
                    col = claim.statistic
                    text = f"{entry.label}: {claim.text}"
                else:
                    col = claim.statistic
                    text = f"{entry.label} {claim.text}"
                if claim.baseline.startswith("self:"):
                    other = claim.baseline.split(":", 1)[1]
                    if (
                        other not in results
                        or results[results.learner == entry.label][other].isna().all()
                    ):
                        continue
                    diff = _paired(results, m, entry.label, col, entry.label, other, full, full)
                    what = f"{col} - {other} ({entry.label})"
                else:
                    diff = _paired(results, m, entry.label, col, entry.baseline, col, full, full)
                    what = f"{col}({entry.label}) - {col}({entry.baseline})"
                add(text, cls.paper, diff, claim.sign, what, entry)
    return pd.DataFrame(rows)


def ablation_table(
    results: pd.DataFrame, dataset: str, names: tuple[str, ...], entries: list[Entry]
) -> pd.DataFrame:
    """Which component produced each effect: for every method with ablations, the paired
    difference to its recipe's ERM of the full method and of each component, and each
    component's share of the full method's mean effect (share = mean effect of the
    component / mean effect of the full method under the same recipe)."""
    full = join_label(names)
    present = set(results.learner)
    rows = []
    by_method: dict[tuple[str, str], Entry] = {
        (e.method, e.recipe): e for e in entries if e.component == "full method"
    }
    for m in sorted(results.m.unique()):
        for entry in entries:
            if entry.method == "erm" or entry.label not in present:
                continue
            if not get_method(entry.method).ablations:
                continue
            ref = by_method.get((entry.method, entry.recipe))
            for col in ("test_risk", "eta"):
                diff = _paired(results, m, entry.label, col, entry.baseline, col, full, full)
                mean, lo, hi = _interval(diff)
                share = np.nan
                if ref is not None and ref.label in present:
                    ref_diff = _paired(results, m, ref.label, col, ref.baseline, col, full, full)
                    denom = float(np.nanmean(ref_diff)) if len(ref_diff) else np.nan
                    share = mean / denom if denom and np.isfinite(denom) else np.nan
                rows.append(
                    {
                        "dataset": dataset,
                        "m": m,
                        "method": entry.method,
                        "recipe": entry.recipe,
                        "learner": entry.label,
                        "component": entry.component,
                        "statistic": col,
                        "mean": mean,
                        "ci_low": lo,
                        "ci_high": hi,
                        "share_of_full": share,
                        "n_seeds": int(np.isfinite(diff).sum()),
                    }
                )
    return pd.DataFrame(rows)


def mechanism_table(
    entries: list[Entry], steps: int, seeds: int, m: int = 2000, device: str = "cpu"
) -> pd.DataFrame:
    """How much each method's mechanism slows each encoder, per recipe (the method's own
    and the common one), on the imbalance world: the method with its probe options
    against its neutral options from the same initial weights and data, for the probe's
    fraction of the steps. ``moved_ratio``: the distance an encoder's weights moved,
    relative to the neutral run (1: not slowed); beside it each diagnostic of the method's
    (OGM-GE: the mean coefficient of that modality)."""
    import math

    import torch

    import synthetic
    from mmtheory.core.subsets import parse_subset
    from mmtheory.engine import resolve_device, train_batched
    from mmtheory.experiments.sources import stack_groups
    from mmtheory.models import Learner, ModelPlan, init_model
    from mmtheory.models.params import ENCODER

    world = synthetic.imbalance_world()
    sub = parse_subset("all", world.names)
    plan = ModelPlan(world.names, tuple(world.dims.values()), (sub,), world.output_dim)
    dev = resolve_device(device)
    datas = [world.sample(m, seed=seed) for seed in range(seeds)]
    xs, y = stack_groups(datas, world.names, dev, torch.float64)
    recipes = {(e.method, e.recipe): e.settings for e in entries if e.component == "full method"}
    rows = []
    for (name, recipe), settings in recipes.items():
        probe = get_method(name).probe
        if probe is None:
            continue
        n = max(1, math.ceil(steps * probe.fraction))
        moved, diags = {}, {}
        for variant, options in (("probe", probe.options), ("neutral", probe.neutral)):
            lrn = Learner.from_fields(
                {**COMPARE_LEARNER, **settings, "steps": n, "method": name, **options}
            )
            inits = [
                [init_model(lrn, sub, world.dims, world.output_dim, ("probe", s), torch.float64)]
                for s in range(seeds)
            ]
            res = train_batched(
                lrn,
                plan,
                xs,
                y,
                inits,
                task="classification",
                dtype=torch.float64,
                batch_keys=[("probe", s) for s in range(seeds)],
            )
            moved[variant] = {
                k: np.array(
                    [
                        float(
                            sum(
                                (res.params[slot][g, 0] - inits[g][0][slot].to(dev)).pow(2).sum()
                                for slot in res.params
                                if slot.part == ENCODER and slot.weight and slot.modality == k
                            )
                            ** 0.5
                        )
                        for g in range(seeds)
                    ]
                )
                for k in world.names
            }
            diags[variant] = {key: v[:, 0].numpy() for key, v in res.diagnostics.items()}
        for k in world.names:
            ratio = moved["probe"][k] / moved["neutral"][k]
            row = {
                "dataset": "imbalance",
                "m": m,
                "method": name,
                "recipe": recipe,
                "modality": k,
                "steps": n,
                "seeds": seeds,
            }
            row["moved_ratio"], row["moved_ratio_lo"], row["moved_ratio_hi"] = _interval(ratio)
            for key, values in diags["probe"].items():
                if key.endswith(f"_{k}"):
                    stem = key[: -len(k) - 1]
                    row[stem], row[f"{stem}_lo"], row[f"{stem}_hi"] = _interval(values)
            rows.append(row)
    return pd.DataFrame(rows)


def _datasets(quick: bool, seeds: int | None):
    import synthetic
    from mmtheory.datasets import load_mfeat

    world = synthetic.imbalance_world()
    n_seeds = seeds or (3 if quick else 5)
    yield (
        "imbalance",
        world,
        world.names,
        ["strong", "weak"],
        [500] if quick else [200, 2000],
        n_seeds,
        {"n_test": 5000, "n_refit": 5000, "n_eval": 5000},
    )
    loaded = load_mfeat()
    names = loaded.train.names
    source = DataSource(loaded.train, loaded.test, name="mfeat")
    yield ("mfeat", source, names, list(names), [loaded.train.n], n_seeds, {})


def run_comparison(
    out: str | Path,
    *,
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    datasets: tuple[str, ...] = ("imbalance", "mfeat"),
    seeds: int | None = None,
    steps: int | None = None,
    methods: tuple[str, ...] | None = None,
    estimation: dict[str, int] | None = None,
) -> Path:
    """Run every learner of :func:`plan_entries` on each dataset into ``out`` and write
    ``methods.csv``, ``claims.csv``, ``ablations.csv`` and ``report.md``; returns the
    report's path. Finished runs are skipped when re-run (records under
    ``out/<dataset>/``). ERM learners also train on each single modality; the methods
    train on all modalities. ``estimation`` overrides the imbalance world's estimation
    sizes (``n_test``, ``n_refit``, ``n_eval``; smoke tests)."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(datasets) - {"imbalance", "mfeat"})
    if unknown:
        raise ValueError(f"datasets: unknown dataset {unknown[0]!r}; known: imbalance, mfeat")
    chosen = METHODS if methods is None else ("erm", *methods)
    bad = sorted(set(chosen) - set(METHODS))
    if bad:
        raise ValueError(f"methods: unknown method {bad[0]!r}; known: {', '.join(METHODS)}")
    entries = plan_entries(tuple(chosen))
    n_steps = steps or (150 if quick else int(COMPARE_LEARNER["steps"]))  # type: ignore[call-overload]
    summaries, claims, ablations, walls = [], [], [], {}
    for name, data, names, singles, sizes, n_seeds, est in _datasets(quick, seeds):
        if name not in datasets:
            continue
        t1 = time.perf_counter()
        if estimation and est:
            est = {**est, **estimation}
        full = join_label(names)
        tables = []
        for group, members, subsets in (
            ("erm", [e for e in entries if e.component == "ERM"], [*singles, full]),
            ("methods", [e for e in entries if e.component != "ERM"], [full]),
        ):
            tables.append(
                sweep(
                    data,
                    [e.fields(n_steps) for e in members],
                    subsets,
                    m=sizes,
                    seeds=n_seeds,
                    device=device,
                    out=str(out / name / group),
                    progress=progress,
                    branch_eta=True,
                    **est,
                )
            )
        results = pd.concat(tables, ignore_index=True)
        walls[name] = time.perf_counter() - t1
        summaries.append(summary_table(results, name))
        claims.append(claims_table(results, name, tuple(names), entries))
        ablations.append(ablation_table(results, name, tuple(names), entries))
    summary = pd.concat(summaries, ignore_index=True)
    claim = pd.concat(claims, ignore_index=True)
    ablation = pd.concat(ablations, ignore_index=True)
    mechanisms = pd.DataFrame()
    if "imbalance" in datasets:
        t1 = time.perf_counter()
        mechanisms = mechanism_table(
            entries, n_steps, seeds or (3 if quick else 5), m=500 if quick else 2000, device=device
        )
        walls["mechanisms"] = time.perf_counter() - t1
    write_csv_atomic(summary, out / "methods.csv")
    write_csv_atomic(claim, out / "claims.csv")
    write_csv_atomic(ablation, out / "ablations.csv")
    if len(mechanisms):
        write_csv_atomic(mechanisms, out / "mechanisms.csv")
    report = out / "report.md"
    text = _report(
        summary, claim, ablation, mechanisms, entries, walls, n_steps, time.perf_counter() - t0
    )
    write_text_atomic(text, report)
    return report


# ------------------------------------------------------------------ report.md
def _md(df: pd.DataFrame) -> str:
    return markdown_table(list(df.columns), df.to_numpy().tolist(), "l" * len(df.columns))


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.4f}"


def _ci(mean: float, lo: float, hi: float, sign: bool = False) -> str:
    point = f"{mean:+.4f}" if sign else f"{mean:.4f}"
    return f"{point} [{_fmt(lo)}, {_fmt(hi)}]"


def _results_section(summary: pd.DataFrame, entries: list[Entry], table: str) -> list[str]:
    by_label = {e.label: e for e in entries}
    lines = []
    for dataset, grp in summary.groupby("dataset", sort=False):
        sizes = grp.subset.map(label_size)
        full = grp[sizes == sizes.max()]
        keep = [
            r
            for r in full.itertuples()
            if r.learner in by_label
            and (by_label[r.learner].table == table or by_label[r.learner].method == "erm")
            and (table == EQUAL or by_label[r.learner].recipe != "adam")
        ]
        if not keep:
            continue
        branch_cols = [
            c
            for c in grp.columns
            if c.startswith("eta_branch_")
            and not c.endswith(("_lo", "_hi"))
            and grp[c].notna().any()
        ]
        rows = []
        for r in sorted(keep, key=lambda r: (r.m, by_label[r.learner].method != "erm", r.learner)):
            e = by_label[r.learner]
            row = {
                "m": r.m,
                "learner": r.learner,
                "recipe": e.recipe,
                "component": e.component,
                "test risk [95% CI]": _ci(r.test_risk, r.test_risk_lo, r.test_risk_hi),
                "accuracy": _fmt(getattr(r, "test_accuracy", float("nan"))),
                "eta fused [95% CI]": _ci(r.eta, r.eta_lo, r.eta_hi),
            }
            for c in branch_cols:
                row[c.replace("eta_branch_", "eta ")] = _fmt(getattr(r, c))
            rows.append(row)
        lines += [f"### {dataset}", "", _md(pd.DataFrame(rows)), ""]
    return lines


def _report(
    summary: pd.DataFrame,
    claims: pd.DataFrame,
    ablation: pd.DataFrame,
    mechanisms: pd.DataFrame,
    entries: list[Entry],
    walls: dict,
    steps: int,
    wall: float,
) -> str:
    recipes = sorted({(e.recipe, e.settings.get("lr")) for e in entries})
    lines = [
        "# The related methods against ERM",
        "",
        f"Late fusion, linear encoders to 8-d latents, full batch, {steps} steps; every learner "
        "starts from the same initial fused model and data per seed (common random numbers). "
        "Recipes and learning rates (fixed for ERM, not tuned per method): "
        + ", ".join(f"{r} lr {lr:g}" for r, lr in recipes)
        + ". Intervals are 95% t-intervals over seeds; eta on mfeat is the held-out "
        "refit-head risk (a proxy). Wall time "
        + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
        + f"; total {wall:.0f} s.",
        "",
        "## Original recipes",
        "",
        "Each method with its original training recipe, beside ERM with the same recipe "
        "(methods whose recipe is unknown are in the next table only).",
        "",
        *_results_section(summary, entries, ORIGINAL),
        "## Equal recipe (everything with Adam)",
        "",
        *_results_section(summary, entries, EQUAL),
    ]
    erm_single = summary[(summary.learner == "erm") & (summary.subset.map(label_size) == 1)]
    for dataset, grp in erm_single.groupby("dataset", sort=False):
        lines += [
            f"ERM on one modality ({dataset}): "
            + "; ".join(
                f"{r.subset} at m={r.m}: risk {r.test_risk:.4f}, eta {r.eta:.4f}"
                for r in grp.itertuples()
            ),
            "",
        ]
    if len(ablation):
        lines += [
            "## Which component produced the effect",
            "",
            "Paired difference to the ERM of the same recipe (negative test risk: the "
            "variant helps), and the share of the full method's mean effect under that "
            "recipe.",
            "",
        ]
        tab = ablation.assign(
            **{
                "mean [95% CI]": [
                    _ci(r.mean, r.ci_low, r.ci_high, sign=True) for r in ablation.itertuples()
                ],
                "share": [_fmt(v) for v in ablation.share_of_full],
            }
        )
        lines += [
            _md(
                tab[["dataset", "m", "learner", "component", "statistic", "mean [95% CI]", "share"]]
            ),
            "",
        ]
    if len(mechanisms):
        lines += [
            "## Mechanisms: how much each encoder is slowed",
            "",
            "Each method with a probe against itself with the mechanism switched off, "
            "same weights and data (imbalance world), over the probe's steps: the distance "
            "each encoder's weights moved, relative to the neutral run (1: not slowed), "
            "beside the method's own diagnostics (OGM-GE: the mean coefficient).",
            "",
        ]
        diag_cols = [
            c
            for c in mechanisms.columns
            if c not in ("dataset", "m", "method", "recipe", "modality", "steps", "seeds")
            and not c.endswith(("_lo", "_hi"))
            and c != "moved_ratio"
        ]
        rows = []
        for r in mechanisms.itertuples():
            row = {
                "method": r.method,
                "recipe": r.recipe,
                "modality": r.modality,
                "steps": r.steps,
                "moved / neutral [95% CI]": _ci(r.moved_ratio, r.moved_ratio_lo, r.moved_ratio_hi),
            }
            for c in diag_cols:
                row[c] = _ci(getattr(r, c), getattr(r, f"{c}_lo"), getattr(r, f"{c}_hi"))
            rows.append(row)
        lines += [_md(pd.DataFrame(rows)), ""]
    lines += ["## Published claims", ""]
    table = claims.assign(
        **{
            "mean [95% CI]": [
                _ci(r.mean, r.ci_low, r.ci_high, sign=True) for r in claims.itertuples()
            ]
        }
    )
    lines += [
        _md(
            table[
                [
                    "dataset",
                    "m",
                    "table",
                    "component",
                    "claim",
                    "statistic",
                    "mean [95% CI]",
                    "verdict",
                ]
            ]
        ),
        "",
    ]
    counts = claims.groupby(["table", "verdict"]).size()
    for name in (ORIGINAL, EQUAL):
        if name in counts.index.get_level_values(0):
            part = counts[name].to_dict()
            lines += [
                f"Verdicts ({name}): "
                + ", ".join(f"{v} {k}" for k, v in sorted(part.items()))
                + "."
            ]
    lines += [""]
    return "\n".join(lines)
