"""The ``mmtheory`` command line: thin verbs over library functions, and every print.

User mistakes (bad values, missing files, malformed specs) print one line on stderr and
exit with status 2; nothing prints a traceback for them. Library notices (the ``mmtheory``
logger: stale runs, repaired record files) are printed as ``mmtheory: ...`` lines. Only
``argparse`` is imported at start-up, so ``mmtheory --help`` answers at once; each verb
imports what it needs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "parse_temporal"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmtheory",
        description="Test the theory of multi-modal learning (Huang et al., NeurIPS 2021).",
        allow_abbrev=False,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, allow_abbrev=False)

    r = verb("reproduce", "reproduce the paper's synthetic table, crossover and checks")
    r.add_argument(
        "--out", default="runs/reproduce", help="output directory (default: runs/reproduce)"
    )
    r.add_argument(
        "--quick", action="store_true", help="reduced grid: a few minutes on 2 CPU cores"
    )
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    s = verb("sweep", "run a sweep spec (TOML) into a results directory")
    s.add_argument("spec", help="path of the TOML spec")
    s.add_argument("--out", required=True, help="output directory (results.csv, records.jsonl)")
    s.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    s.add_argument(
        "--dry-run", action="store_true", help="print the resolved grid and its size only"
    )
    s.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run shard I of N only (1 <= I <= N); N processes share --out, then a "
        "run without --shard merges",
    )
    s.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray", "submitit"],
        help="local (this process); ray: the spec's shards as Ray tasks, then a merge (needs "
        "the ray extra); submitit: the shards as a submitit job array (SLURM, or local "
        "processes), then a merge (needs the submitit extra)",
    )
    s.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="--executor ray or submitit: number of shards, one task each (default 4)",
    )
    s.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="run the spec as N local shard processes (BLAS threads = cores / N each), then merge",
    )
    s.add_argument(
        "--ray-address",
        default=None,
        help="--executor ray: a running cluster (default: start a local instance)",
    )
    s.add_argument(
        "--submitit-cluster",
        default=None,
        choices=["local", "debug", "slurm"],
        help="--executor submitit: local (default; the tasks as processes on this machine), "
        "debug (one after the other in this process) or slurm (a job array)",
    )
    s.add_argument(
        "--submitit-folder",
        default=None,
        metavar="DIR",
        help="--executor submitit: job folder for task files and logs (default OUT/submitit; "
        "on a cluster, a file system the nodes share)",
    )
    s.add_argument(
        "--slurm-partition", default=None, metavar="NAME", help="slurm: partition of the tasks"
    )
    s.add_argument(
        "--slurm-time-min",
        type=int,
        default=None,
        metavar="MINUTES",
        help="slurm: time limit of each task in minutes (default 240)",
    )
    s.add_argument(
        "--slurm-cpus-per-task",
        type=int,
        default=None,
        metavar="N",
        help="slurm: CPUs of each task; its torch and BLAS threads (default 1)",
    )
    s.add_argument(
        "--slurm-mem-gb",
        type=float,
        default=None,
        metavar="GB",
        help="slurm: memory of each task in GB (default: the partition's)",
    )
    s.add_argument(
        "--slurm-gpus-per-task",
        type=int,
        default=None,
        metavar="N",
        help="slurm: GPUs of each task (use with --device cuda)",
    )
    s.add_argument(
        "--slurm-array-parallelism",
        type=int,
        default=None,
        metavar="N",
        help="slurm: at most N tasks of the array run at once (default: all)",
    )

    c = verb("check", "bounds.csv and predictions.csv from a sweep's results")
    c.add_argument("dir", help="directory holding results.csv")
    c.add_argument("--delta", type=float, default=0.05, help="confidence parameter (default 0.05)")
    c.add_argument(
        "--radius",
        type=float,
        default=None,
        help="norm radius of the linear class (default: the largest fitted norm)",
    )

    d = verb("data", "the all-subsets pipeline on real data (mfeat ships offline)")
    d.add_argument(
        "dataset",
        choices=["mfeat", "npz", "htad", "iemocap"],
        help="mfeat (shipped), a generic .npz, htad (pip install multiviewstacking), "
        "or your IEMOCAP pickle",
    )
    d.add_argument(
        "--protocol",
        default=None,
        choices=["splits", "paper"],
        help="splits (the default): repeated stratified splits, L-BFGS heads with an "
        "inner-CV penalty (with --temporal conv: Adam-trained networks, the penalty chosen "
        "on a held-out fold of the training rows), calibration (docs/realdata.md); paper "
        "(the paper's protocol, labelled as such): one fixed split, Adam for a fixed "
        "number of steps, for IEMOCAP the paper's 128-d latent model, fixed ratios and "
        "Tables 1-3",
    )
    d.add_argument(
        "--splits", type=int, default=5, help="--protocol splits: number of splits (default 5)"
    )
    d.add_argument(
        "--sizes",
        default=None,
        help="training sizes, comma-separated (default: 5 sizes up to all training rows)",
    )
    d.add_argument("--path", help="the data file (npz, iemocap)")
    d.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "cer", "mult"],
        help="IEMOCAP pickle layout (default: detected)",
    )
    d.add_argument(
        "--target",
        default="multiclass",
        help="IEMOCAP mult layout: 'multiclass' or one emotion's binary task "
        "(neutral, happy, sad, angry)",
    )
    d.add_argument(
        "--temporal",
        default="mean",
        help="sequence modalities (npz, IEMOCAP mult): 'mean' pools them over time, "
        "'conv' keeps them for a convolutional temporal encoder; per modality: "
        "'text=conv,audio=mean' (default mean)",
    )
    d.add_argument("--out", default=None, help="output directory (default runs/<dataset>)")
    d.add_argument("--seeds", type=int, default=5, help="--protocol paper: seeds (default 5)")

    g = verb(
        "diagnose",
        "should I add this modality? best subset now, adding each modality now and at "
        "2x/5x/10x the data, contributions",
    )
    g.add_argument("path", help="a dataset file (.npz layout of docs/realdata.md)")
    g.add_argument("--out", default=None, help="output directory (default runs/diagnose-<name>)")
    g.add_argument("--splits", type=int, default=8, help="repeated splits (default 8)")
    g.add_argument("--sizes", default=None, help="training sizes, comma-separated")
    d.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where Adam-trained networks run (--temporal conv, --protocol paper); the "
        "convex heads always run on the CPU",
    )

    pr = verb(
        "predict",
        "theory that predicts: expected risk curves, crossovers m*, phase diagrams and "
        "double descent against measured sweeps, with the accuracy of every prediction",
    )
    pr.add_argument("--out", default="runs/predict", help="output directory (default runs/predict)")
    pr.add_argument(
        "--quick", action="store_true", help="fewer worlds and seeds, no plug-ins (a few minutes)"
    )

    mt = verb(
        "methods",
        "the related methods (I2M2, MIMO, BOGC, OGM-GE, G-Blending, UME/UMT, xmodal) "
        "against ERM on an imbalance world and mfeat: original recipes, equal recipes, "
        "ablations",
    )
    mt.add_argument("--out", default="runs/methods", help="output directory (default runs/methods)")
    mt.add_argument(
        "--quick", action="store_true", help="3 seeds, one size, 150 steps (about 3 min)"
    )
    mt.add_argument(
        "--datasets",
        default="imbalance,mfeat",
        help="comma-separated: imbalance, mfeat (default both)",
    )
    mt.add_argument(
        "--methods",
        default=None,
        help="comma-separated method names to compare with ERM (default: every method)",
    )
    mt.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    gm = verb(
        "games",
        "contribution games (retrain vs masked joint model), the imbalance score and the "
        "exact PID against a discretising estimator",
    )
    gm.add_argument("--out", default="runs/games", help="output directory (default runs/games)")
    gm.add_argument(
        "--quick", action="store_true", help="150 steps, smaller samples (a few minutes)"
    )
    gm.add_argument(
        "--datasets",
        default="imbalance,imbalance_long,balanced,synergy,mfeat",
        help="comma-separated: imbalance, imbalance_long, balanced, synergy, mfeat "
        "(default all; --quick skips imbalance_long)",
    )

    dy = verb(
        "dynamics",
        "learning dynamics of two-modality late fusion against their closed forms "
        "(Zhang, Latham & Saxe 2024): time ratio, plateau, misattribution",
    )
    dy.add_argument(
        "--out", default="runs/dynamics", help="output directory (default runs/dynamics)"
    )
    dy.add_argument("--quick", action="store_true", help="3 x 2 grid, one seed (about a minute)")
    dy.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    pl = verb("plot", "regenerate every figure from a run directory's tables")
    pl.add_argument("dir", help="run directory (e.g. runs/reproduce)")

    b = verb("bench", "time the batched engine against a loop and vmap")
    b.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    b.add_argument("--out", default="benchmarks", help="directory for bench.csv and bench.md")
    b.add_argument("--quick", action="store_true", help="fewer repeats and smaller cases")
    b.add_argument(
        "--cases",
        default=None,
        help="comma-separated case names to run (default all; 'agreement' compares "
        "the device's tables with the CPU's)",
    )
    b.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and numpy's BLAS, the same for every path (default: torch's)",
    )
    return p


def parse_temporal(text: str) -> str | dict[str, str]:
    """``--temporal``: "mean", "conv", or "name=mean|conv" pairs -> the loaders' ``pool``
    ("mean", "none", or a dict modality -> "mean" | "none")."""
    to_pool = {"mean": "mean", "conv": "none"}
    text = str(text).strip()
    if text in to_pool:
        return to_pool[text]
    pairs = {}
    for part in text.split(","):
        name, sep, how = part.strip().partition("=")
        if not sep or not name.strip() or how.strip() not in to_pool:
            raise ValueError(
                f"--temporal must be 'mean', 'conv' or modality=mean|conv pairs "
                f"('text=conv,audio=mean'), got {text!r}"
            )
        pairs[name.strip()] = to_pool[how.strip()]
    return "mean" if set(pairs.values()) == {"mean"} else pairs


# ------------------------------------------------------------------------ verbs
def _reproduce(args) -> None:
    from mmtheory.reporting.reproduce_report import table4_text, verdict_section
    from mmtheory.studies.reproduce import reproduce

    report = reproduce(out=args.out, quick=args.quick, device=args.device)
    import pandas as pd

    run = report.parent
    print(f"wrote {report}")
    print(f"\nTable 4, ours against the paper's (from {run / 'table4.csv'}):")
    print(table4_text(pd.read_csv(run / "table4.csv")))
    print(f"\nVerdict (from {report}; the rows: {run / 'predictions.csv'}):")
    print(verdict_section(report.read_text(encoding="utf-8")).replace("**", ""))


_SLURM_FLAGS = (
    "slurm_partition",
    "slurm_time_min",
    "slurm_cpus_per_task",
    "slurm_mem_gb",
    "slurm_gpus_per_task",
    "slurm_array_parallelism",
)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_executor_flags(args) -> None:
    """One line for every executor flag given where it does not apply (nothing is silently
    ignored), before the spec is read."""
    executor = args.executor
    if executor != "local" and args.shard is not None:
        raise ValueError(
            f"--shard and --executor {executor} exclude each other: the executor makes the shards"
        )
    if args.jobs is not None and (args.shard is not None or executor != "local"):
        raise ValueError(
            f"--jobs makes its own shards: it excludes --shard and --executor ray or submitit, "
            f"got --executor {executor}" + (f" --shard {args.shard}" if args.shard else "")
        )
    if args.jobs is not None and not 1 <= args.jobs <= 1024:
        raise ValueError(f"--jobs must be an integer in 1..1024, got {args.jobs}")
    if executor == "local" and args.tasks is not None:
        raise ValueError(
            f"--tasks (the number of shards) applies to --executor ray or submitit only, got "
            f"--tasks {args.tasks} with --executor local (use --jobs N for local processes)"
        )
    if executor != "ray" and args.ray_address is not None:
        raise ValueError(f"--ray-address applies to --executor ray only, got --executor {executor}")
    for dest in ("submitit_cluster", "submitit_folder"):
        if executor != "submitit" and getattr(args, dest) is not None:
            raise ValueError(
                f"{_flag(dest)} applies to --executor submitit only, got --executor {executor}"
            )
    from mmtheory.core.validation import check_int, check_real

    if args.tasks is not None:
        check_int(args.tasks, "--tasks", low=1, high=10_000)
    for dest in ("slurm_time_min", "slurm_cpus_per_task", "slurm_array_parallelism"):
        if getattr(args, dest) is not None:
            check_int(getattr(args, dest), _flag(dest), low=1)
    if args.slurm_gpus_per_task is not None:
        check_int(args.slurm_gpus_per_task, "--slurm-gpus-per-task", low=0)
    if args.slurm_mem_gb is not None:
        check_real(args.slurm_mem_gb, "--slurm-mem-gb", low=0, low_open=True)
    if args.slurm_partition is not None and not args.slurm_partition.strip():
        raise ValueError(
            f"--slurm-partition must name a SLURM partition, got {args.slurm_partition!r}"
        )
    cluster = args.submitit_cluster or "local"
    for dest in _SLURM_FLAGS:
        if getattr(args, dest) is not None and (executor != "submitit" or cluster != "slurm"):
            where = f"--executor {executor}" + (
                f" --submitit-cluster {cluster}" if executor == "submitit" else ""
            )
            raise ValueError(
                f"{_flag(dest)} applies to --executor submitit --submitit-cluster slurm only, "
                f"got {where}"
            )


def _sweep(args) -> None:
    from mmtheory.experiments.grid import parse_shard
    from mmtheory.experiments.spec import load_spec
    from mmtheory.experiments.sweep import describe_spec, run_spec

    _check_executor_flags(args)
    spec = load_spec(args.spec)
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.dry_run:
        plan = describe_spec(spec, args.device)
        print(
            f"spec {plan.name!r}: {plan.n_runs} runs = {len(plan.worlds)} world(s) x "
            f"{len(plan.learners)} learner(s) x {len(plan.subsets)} subset(s) x "
            f"{len(plan.m)} size(s) x {len(plan.seeds)} seed(s)"
        )
        for w in plan.worlds:
            print(f"  world  {w}")
        for label, settings in plan.learners:
            print(f"  learner {label}: {settings}")
        print(f"  subsets {plan.subsets}")
        print(f"  m {plan.m}")
        print(f"  seeds {plan.seeds}")
        print(
            f"  device {plan.device}, dtype {plan.dtype}, estimation "
            f"{plan.estimation or 'defaults'}"
        )
        return
    if args.executor == "ray":
        from mmtheory.experiments.executors.ray import run_spec_ray

        table = run_spec_ray(
            spec,
            out=args.out,
            tasks=4 if args.tasks is None else args.tasks,
            device=args.device,
            address=args.ray_address,
        )
    elif args.executor == "submitit":
        from mmtheory.experiments.executors.submitit import run_spec_submitit

        table = run_spec_submitit(
            spec,
            out=args.out,
            tasks=4 if args.tasks is None else args.tasks,
            cluster=args.submitit_cluster or "local",
            device=args.device,
            folder=args.submitit_folder,
            partition=args.slurm_partition,
            timeout_min=args.slurm_time_min,
            cpus_per_task=args.slurm_cpus_per_task,
            mem_gb=args.slurm_mem_gb,
            gpus_per_node=args.slurm_gpus_per_task,
            array_parallelism=args.slurm_array_parallelism,
        )
    elif args.jobs is not None and args.jobs > 1:
        from mmtheory.experiments.executors.processes import run_spec_processes

        table = run_spec_processes(args.spec, out=args.out, jobs=args.jobs, device=args.device)
    else:
        table = run_spec(spec, out=args.out, device=args.device, shard=shard)
    if shard is not None:
        print(
            f"shard {shard[0]}/{shard[1]} done: {len(table)} of this spec's runs are finished "
            f"in {args.out}; run without --shard to merge"
        )
        return
    print(f"wrote {args.out}/results.csv ({len(table)} rows)")
    cols = [c for c in ("test_risk", "eta", "test_accuracy") if c in table.columns]
    keys = ["world", "learner", "subset", "m"] + [
        c for c in ("overlap", "rho") if c in table.columns
    ]
    summary = table.groupby(keys, sort=False)[cols].mean()
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))


def _check(args) -> None:
    from mmtheory.reporting.predictions import bounds_summary, format_predictions
    from mmtheory.studies.check import check_dir

    res = check_dir(args.dir, delta=args.delta, radius=args.radius)
    print(
        f"wrote {res.paths['bounds']} ({len(res.bounds)} rows), "
        f"{res.paths['predictions']} ({len(res.predictions)} rows) and "
        f"{res.paths['contributions']} ({len(res.contributions)} rows); "
        f"{res.n_diverged} diverged run(s) excluded"
    )
    if not res.bounds.empty:
        print(bounds_summary(res.bounds).to_string(float_format=lambda v: f"{v:.4g}"))
    print(format_predictions(res.predictions))


def _sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {text!r}") from None


def _diagnose(args) -> None:
    from pathlib import Path

    from mmtheory.experiments.protocol import Protocol
    from mmtheory.studies.diagnose import run_diagnose

    if args.splits < 2:
        raise ValueError(f"--splits must be >= 2 (intervals need two splits), got {args.splits}")
    out = args.out or f"runs/diagnose-{Path(args.path).stem}"
    text, report = run_diagnose(
        args.path, out, protocol=Protocol(n_splits=args.splits), sizes=_sizes(args.sizes)
    )
    print(text)
    print(f"wrote {report}")


def _sequences_kept(loaded, path) -> None:
    """``--temporal conv`` needs a modality kept as a sequence: refuse it in one line."""
    if not any(loaded.train[k].ndim == 3 for k in loaded.train.names):
        raise ValueError(
            f"--temporal conv: {path} has no sequence modality (an array of shape (n, T, d)) "
            "to convolve over; every modality is a vector: drop --temporal"
        )


def _data(args) -> None:
    from mmtheory.datasets import load_htad, load_iemocap, load_mfeat, load_npz
    from mmtheory.studies.realdata import PAPER_PROTOCOL, paper_sizes, run_real, temporal_learner

    if args.dataset in ("npz", "iemocap") and not args.path:
        raise ValueError(f"dataset {args.dataset} needs --path FILE")
    if args.target != "multiclass" and args.dataset != "iemocap":
        raise ValueError("--target applies to the IEMOCAP mult layout only")
    pool = parse_temporal(args.temporal)
    if pool != "mean" and args.dataset == "mfeat":
        raise ValueError(
            "--temporal applies to sequence data (npz, IEMOCAP mult); mfeat holds vectors"
        )
    conv = pool != "mean"
    out = args.out  # main set the default and prepared the directory
    from mmtheory.core.validation import check_int

    check_int(args.seeds, "--seeds", low=1, high=100_000)
    # the real-data protocol is the default everywhere; a convolutional temporal encoder
    # is trained by Adam inside it (experiments/neural_protocol.py)
    protocol = args.protocol or "splits"
    if protocol == "splits":
        from mmtheory.experiments.protocol import Protocol
        from mmtheory.studies.realdata import run_data

        if args.splits < 2:
            raise ValueError(f"--splits must be >= 2 (intervals need two), got {args.splits}")
        if args.dataset == "iemocap":
            loaded = load_iemocap(args.path, args.layout, target=args.target, pool=pool)
        elif args.dataset == "htad":
            loaded = load_htad()
        else:
            loaded = load_npz(args.path, pool=pool) if args.dataset == "npz" else load_mfeat()
        if conv and loaded.train.n_classes is None:
            raise ValueError(
                f"{args.path}: key 'y' holds float targets (regression); --temporal conv "
                "trains classifiers: use --temporal mean, or give integer class ids"
            )
        if conv:
            _sequences_kept(loaded, args.path)
        report = run_data(
            loaded,
            out,
            protocol=Protocol(n_splits=args.splits),
            sizes=_sizes(args.sizes),
            learner=temporal_learner(PAPER_PROTOCOL if args.dataset == "iemocap" else None)
            if conv
            else None,
            device=args.device,
        )
        import pandas as pd

        print(f"wrote {report}")
        best = pd.read_csv(report.parent / "best.csv")
        cols = [c for c in ("m", "best", "risk", "ci_low", "ci_high", "runner_up") if c in best]
        print(
            best[cols + (["distinguishable"] if "distinguishable" in best else [])].to_string(
                index=False, float_format=lambda v: f"{v:.4f}"
            )
        )
        return
    if args.dataset == "htad":
        loaded = load_htad()
        report = run_real(
            loaded, out, seeds=args.seeds, device=args.device, sizes=_sizes(args.sizes)
        )
    elif args.dataset == "iemocap":
        loaded = load_iemocap(args.path, args.layout, target=args.target, pool=pool)
        if conv:
            _sequences_kept(loaded, args.path)
        learner = temporal_learner(PAPER_PROTOCOL) if conv else PAPER_PROTOCOL
        report = run_real(
            loaded,
            out,
            seeds=args.seeds,
            device=args.device,
            learner=learner,
            sizes=_sizes(args.sizes) or paper_sizes(loaded),
            paper_layout=args.target == "multiclass",
        )
    else:
        loaded = load_npz(args.path, pool=pool) if args.dataset == "npz" else load_mfeat()
        if conv:
            _sequences_kept(loaded, args.path)
        if loaded.train.n_classes is None:
            raise ValueError(
                f"{args.path}: key 'y' holds float targets (regression); --protocol paper "
                "trains classifiers: run regression data with --protocol splits (the "
                "default), or give integer class ids"
            )
        report = run_real(
            loaded,
            out,
            seeds=args.seeds,
            device=args.device,
            learner=temporal_learner(None) if conv else None,
            sizes=_sizes(args.sizes),
        )
    import pandas as pd

    print(f"wrote {report}")
    by_views = pd.read_csv(report.parent / "errors_by_views.csv")
    big = by_views[by_views.m == by_views.m.max()].sort_values("n_views")
    print(big[["n_views", "test_error", "ci_low", "ci_high"]].to_string(index=False))


def _predict(args) -> None:
    from mmtheory.studies.prediction import run_prediction

    report = run_prediction(args.out, quick=args.quick)
    import pandas as pd

    print(f"wrote {report}")
    for r in pd.read_csv(report.parent / "accuracy.csv").itertuples():
        print(
            f"{r.quantity} ({r.regime}): {100 * r.inside_share:.1f}% of {r.n} inside the "
            f"measured 95% interval, median |relative error| {100 * r.median_abs_rel_error:.2f}%"
        )


def _methods(args) -> None:
    from mmtheory.studies.methods import run_comparison

    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    methods = None
    if args.methods:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    report = run_comparison(
        args.out, quick=args.quick, device=args.device, datasets=datasets, methods=methods
    )
    import pandas as pd

    print(f"wrote {report}")
    claims = pd.read_csv(report.parent / "claims.csv")
    for table, grp in claims.groupby("table", sort=False):
        counts = grp.groupby("verdict").size().to_dict()
        print(f"claims ({table}): " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


def _games(args) -> None:
    from mmtheory.studies.contributions import run_games

    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    report = run_games(args.out, quick=args.quick, datasets=datasets)
    import pandas as pd

    print(f"wrote {report}")
    imb = pd.read_csv(report.parent / "imbalance.csv")
    imb = imb[(imb["mask"] == "zero") & (imb["value"] == "neg_risk")]
    for r in imb.itertuples():
        print(
            f"{r.dataset} {r.learner} {r.modality}: imbalance score {r.gap:+.4f} "
            f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}], positive in {r.positive_rate:.0%} of "
            f"{r.n_seeds} seeds{' (flagged)' if r.flagged else ''}"
        )
    bias = pd.read_csv(report.parent / "pid_bias.csv")
    for r in bias[bias.estimator == "mmi_plugin"].itertuples():
        print(f"PID estimator bias, {r.atom}: {r.bias:+.4f} nats over {r.n_worlds} worlds")


def _dynamics(args) -> None:
    from mmtheory.studies.dynamics import run_dynamics

    report = run_dynamics(out=args.out, quick=args.quick, device=args.device)
    import pandas as pd

    print(f"wrote {report}")
    verdicts = pd.read_csv(report.parent / "verdicts.csv")
    for r in verdicts.itertuples():
        print(
            f"  {r.kind:32s} {r.check:15s} {r.rule:40s} {r.value:10.4g}  "
            f"{'holds' if r.holds else 'FAILS'}"
        )


def _plot(args) -> None:
    from mmtheory.plotting.figures import write_figures

    for path in write_figures(args.dir):
        print(f"wrote {path}")


def _bench(args) -> None:
    from mmtheory.bench.cases import PathDisagrees
    from mmtheory.bench.run import run_bench

    cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
    try:
        _, written = run_bench(
            device=args.device, out=args.out, quick=args.quick, cases=cases, threads=args.threads
        )
    except PathDisagrees as err:  # a failed check, not a bad input: exit 1, no time reported
        print(
            f"mmtheory bench: the referee rejected a path, no time reported: {err}", file=sys.stderr
        )
        raise SystemExit(1) from None
    for path in written:
        print(path.read_text(encoding="utf-8"))


_VERBS = {
    "reproduce": _reproduce,
    "sweep": _sweep,
    "check": _check,
    "data": _data,
    "predict": _predict,
    "diagnose": _diagnose,
    "methods": _methods,
    "games": _games,
    "dynamics": _dynamics,
    "plot": _plot,
    "bench": _bench,
}


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return "mmtheory: " + " ".join(record.getMessage().split())


def _log_to_stderr() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logger = logging.getLogger("mmtheory")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _message(err: BaseException) -> str:
    """One line for an error the user can act on."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    if isinstance(err, MemoryError):
        return f"out of memory ({err or 'the request is too large for this machine'})"
    if isinstance(err, RecursionError):
        return "input nested too deeply to read"
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return " ".join(str(err).split()) or type(err).__name__


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing but record-store lock files."""
    try:
        entries = list(folder.iterdir())
        if all(e.name.startswith(".") and e.name.endswith(".lock") for e in entries):
            for e in entries:
                e.unlink()
            folder.rmdir()
    except OSError:
        pass


def _exists(path) -> bool:
    """Whether ``path`` exists; a path the system cannot even look up counts as existing
    (so nothing is ever removed on its account; prepare_output_dir reports it)."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return True


def main(argv: Sequence[str] | None = None) -> int:
    command = "mmtheory"
    handler: logging.Handler | None = None
    try:
        args = _parser().parse_args(argv)
        command = f"mmtheory {args.command}"
        handler = _log_to_stderr()
        from mmtheory.errors import ExecutorError

        if args.command == "data" and args.out is None:
            args.out = f"runs/{args.dataset}"  # the data verb's default: prepared here too
        out = getattr(args, "out", None)
        fresh = out is not None and not _exists(out)
        try:
            try:
                if out is not None and not getattr(args, "dry_run", False):
                    from mmtheory.core.io import prepare_output_dir

                    prepare_output_dir(out)  # before any work: a bad --out fails in a second
                _VERBS[args.command](args)
            except BaseException:
                # a refused input leaves no empty folder behind (only one this call made;
                # nothing in it but the lock files its own record stores took)
                if fresh:
                    _remove_if_empty(Path(out))
                raise
        except (
            ValueError,
            TypeError,
            OSError,
            KeyError,
            MemoryError,
            RecursionError,
            ExecutorError,
        ) as err:
            print(f"{command}: error: {_message(err)}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted; finished runs are saved", file=sys.stderr)
        return 130
    finally:
        if handler is not None:
            logging.getLogger("mmtheory").removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
