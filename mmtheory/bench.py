"""``mmtheory bench``: the batched engine against a per-model loop and vmap, in one run.

Cases (each trains the same models, from the same initial parameters, for the same steps):

- ``mlp-small-K{K}``: late fusion with MLP encoders (d_k = 16, hidden 32, latent 16,
  4 classes), all 2^K - 1 subsets x 5 seeds x 6 sample sizes 20..640, 100 full-batch Adam
  steps. Batched = one call per sample size (seeds on G, subsets on S).
- ``mlp-compute-K3``: the same at sample sizes 50..2,000; reports achieved GFLOP/s
  against the float32 matmul peak measured in the same run.
- ``closed-form-table4``: the paper's Table 4 grid (5 overlaps x 5 seeds x 4 cumulative
  subsets, 20,000 samples, d = 100) through ``sweep``; loop = ``numpy.linalg.lstsq`` per
  model; vmap = batched ``torch.linalg.lstsq`` on zero-filled designs.

Writes ``bench.csv`` and ``bench.md``; prints the Markdown table.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mmtheory.baselines import train_loop, train_vmap
from mmtheory.engine import resolve_device, train_batched
from mmtheory.experiments.records import write_csv_atomic
from mmtheory.learners import Learner, ModelPlan, init_model
from mmtheory.subsets import all_subsets

__all__ = ["run_bench", "matmul_peak"]

SMALL_SIZES = [20, 40, 80, 160, 320, 640]
COMPUTE_SIZES = [50, 100, 250, 500, 1000, 2000]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, n: int = 2048, reps: int = 5) -> float:
    """Achieved float32 matmul GFLOP/s on ``device`` (best of ``reps``)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _mlp_world(K: int):
    import synthetic

    return synthetic.NonlinearWorld([16] * K, latent_dim=4, n_classes=4, seed=0)


def _train_flops(learner: Learner, plan: ModelPlan, m: int, G: int) -> float:
    """Multiply-add FLOPs of training (forward + backward ~ 3 x forward), all models."""
    total = 0.0
    for sub in plan.subsets:
        fwd = 0.0
        for k in sub:
            d = plan.dims[plan.names.index(k)]
            fwd += 2 * m * (d * learner.hidden + learner.hidden * learner.latent_dim
                            + learner.latent_dim * plan.out_dim)
        total += 3 * fwd * learner.steps
    return total * G


def _warm_up(learner, world, subs, device):
    """One tiny run of each path first: one-time costs (lazy imports on the first optimiser,
    thread pools, allocator growth) must not land in any path's timing."""
    from dataclasses import replace

    tiny = replace(learner, steps=2)
    data = world.sample(8, seed=99)
    plan = ModelPlan(world.names, tuple(world.dims.values()), tuple(subs), world.n_classes)
    inits = [[init_model(tiny, sub, world.dims, world.n_classes, key=("warm", str(sub))) for sub in subs]]
    xs = [data[k][None].float().to(device) for k in world.names]
    y = data.y[None].to(device)
    train_batched(tiny, plan, xs, y, inits, task="classification")
    x = {k: xs[i][0] for i, k in enumerate(world.names)}
    train_loop(tiny, subs[-1], x, y[0], inits[0][-1], task="classification")
    train_vmap(tiny, subs, world.names, x, y[0], inits[0], task="classification")


def _mlp_case(K, sizes, device, *, seeds=5, steps=100, loop=True, vmap=True, progress=True):
    world = _mlp_world(K)
    learner = Learner("late_fusion", encoder="mlp", latent_dim=16, hidden=32, solver="adam",
                      lr=0.01, steps=steps)
    subs = all_subsets(world.names)
    dims = world.dims
    data = {s: world.sample(max(sizes), seed=s) for s in range(seeds)}
    _warm_up(learner, world, subs, device)
    batched_s = loop_s = vmap_s = 0.0
    flops = 0.0
    n_models = len(subs) * seeds * len(sizes)
    bar = tqdm(total=n_models * (1 + loop + vmap), desc=f"bench K={K}", disable=not progress,
               unit="model")
    for m in sizes:
        plan = ModelPlan(world.names, tuple(dims.values()), tuple(subs), world.n_classes)
        inits = [[init_model(learner, sub, dims, world.n_classes, key=("bench", K, m, s, str(sub)))
                  for sub in subs] for s in range(seeds)]
        xs = [torch.stack([data[s][k][:m] for s in range(seeds)]).float().to(device)
              for k in world.names]
        y = torch.stack([data[s].y[:m] for s in range(seeds)]).to(device)
        _sync(device)
        t0 = time.perf_counter()
        train_batched(learner, plan, xs, y, inits, task="classification")
        _sync(device)
        batched_s += time.perf_counter() - t0
        flops += _train_flops(learner, plan, m, seeds)
        bar.update(len(subs) * seeds)
        if loop:
            t0 = time.perf_counter()
            for s in range(seeds):
                x = {k: xs[i][s] for i, k in enumerate(world.names)}
                for j, sub in enumerate(subs):
                    train_loop(learner, sub, x, y[s], inits[s][j], task="classification")
            _sync(device)
            loop_s += time.perf_counter() - t0
            bar.update(len(subs) * seeds)
        if vmap:
            flat = [inits[s][j] for s in range(seeds) for j in range(len(subs))]
            per_model = {k: xs[i].repeat_interleave(len(subs), dim=0) for i, k in enumerate(world.names)}
            t0 = time.perf_counter()
            train_vmap(learner, [sub for _ in range(seeds) for sub in subs], world.names,
                       per_model, y.repeat_interleave(len(subs), dim=0), flat, task="classification")
            _sync(device)
            vmap_s += time.perf_counter() - t0
            bar.update(len(subs) * seeds)
    bar.close()
    return {"n_models": n_models, "batched_s": batched_s, "loop_s": loop_s if loop else np.nan,
            "vmap_s": vmap_s if vmap else np.nan, "gflops": flops / batched_s / 1e9}


def _closed_form_case(device, *, seeds=5, overlaps=(1.0, 0.8, 0.5, 0.2, 0.0), m=20_000,
                      loop=True, vmap=True):
    import synthetic
    from mmtheory.experiments.sweep import sweep

    worlds = [synthetic.table4_world(w) for w in overlaps]
    t0 = time.perf_counter()
    for world in worlds:
        sweep(world, "linear", "cumulative", m=[m], seeds=seeds, device=str(device), progress=False,
              dtype="float32")
    _sync(device)
    batched_s = time.perf_counter() - t0
    n_models = len(worlds) * seeds * 4
    loop_s = vmap_s = np.nan
    if loop or vmap:
        loop_s = vmap_s = 0.0
        for world in worlds:
            for seed in range(seeds):
                data = world.sample(m, seed=seed)
                X = data.concat().numpy().astype(np.float32)
                Y = data.y.numpy().astype(np.float32)
                ones = np.ones((m, 1), dtype=np.float32)
                if loop:
                    t0 = time.perf_counter()
                    for k in range(1, 5):
                        np.linalg.lstsq(np.hstack([X[:, : 200 * k], ones]), Y, rcond=None)
                    loop_s += time.perf_counter() - t0
                if vmap:
                    Xt = torch.from_numpy(np.hstack([X, ones])).to(device)
                    masks = torch.stack([torch.cat([torch.arange(800) < 200 * k, torch.tensor([True])])
                                         for k in range(1, 5)]).to(device=device, dtype=Xt.dtype)
                    t0 = time.perf_counter()
                    torch.linalg.lstsq(Xt[None] * masks[:, None, :],
                                       torch.from_numpy(Y).to(device).expand(4, m, Y.shape[1]))
                    _sync(device)
                    vmap_s += time.perf_counter() - t0
    return {"n_models": n_models, "batched_s": batched_s, "loop_s": loop_s, "vmap_s": vmap_s,
            "gflops": len(worlds) * seeds * 2 * m * 801**2 / batched_s / 1e9}


def run_bench(device: str = "cpu", out: str = "benchmarks", quick: bool = False,
              progress: bool = True) -> pd.DataFrame:
    """Run the benchmark cases; write ``bench.csv`` and ``bench.md`` into ``out``."""
    dev = resolve_device(device)
    peak = matmul_peak(dev)
    rows = []
    cases = [("mlp-small-K3", lambda: _mlp_case(3, SMALL_SIZES, dev, progress=progress))]
    if quick:
        cases.append(("closed-form-table4", lambda: _closed_form_case(dev, seeds=2, overlaps=(0.5, 0.0))))
    else:
        cases += [
            ("mlp-compute-K3", lambda: _mlp_case(3, COMPUTE_SIZES, dev, progress=progress)),
            ("mlp-small-K4", lambda: _mlp_case(4, SMALL_SIZES, dev, progress=progress)),
            ("mlp-small-K6", lambda: _mlp_case(6, SMALL_SIZES, dev, progress=progress)),
            ("closed-form-table4", lambda: _closed_form_case(dev)),
        ]
    for name, fn in cases:
        r = fn()
        rows.append({"case": name, "device": str(dev), **r, "peak_gflops": peak})
    df = pd.DataFrame(rows)
    df["speedup_vs_loop"] = df.loop_s / df.batched_s
    df["speedup_vs_vmap"] = df.vmap_s / df.batched_s
    df["models_per_s"] = df.n_models / df.batched_s
    df["fraction_of_peak"] = df.gflops / df.peak_gflops
    df["torch"] = torch.__version__
    df["threads"] = torch.get_num_threads()
    df["cpu"] = platform.processor() or platform.machine()
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(df, path / f"bench{'-quick' if quick else ''}-{dev.type}.csv")
    md = _markdown(df)
    (path / f"bench{'-quick' if quick else ''}-{dev.type}.md").write_text(md, encoding="utf-8")
    print(md)
    return df


def _markdown(df: pd.DataFrame) -> str:
    lines = [
        f"device {df.device.iloc[0]}, torch {df.torch.iloc[0]}, {df.threads.iloc[0]} threads, "
        f"float32 matmul peak {df.peak_gflops.iloc[0]:.0f} GFLOP/s (measured in this run)",
        "",
        "| case | models | batched s | loop s | vmap s | x loop | x vmap | models/s | GFLOP/s | % peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.case} | {r.n_models} | {r.batched_s:.2f} | {r.loop_s:.2f} | {r.vmap_s:.2f} | "
            f"{r.speedup_vs_loop:.1f} | {r.speedup_vs_vmap:.1f} | {r.models_per_s:.0f} | "
            f"{r.gflops:.1f} | {100 * r.fraction_of_peak:.0f}% |")
    return "\n".join(lines) + "\n"
