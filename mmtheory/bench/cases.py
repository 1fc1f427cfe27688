"""The benchmark's cases: each trains the same models three ways (batched, loop, vmap).

A fair referee: every path starts from the same data (drawn and put on the device once,
outside every timing) and the same initial parameters, does the same work, gets a warm-up
run, and has its answers checked against the batched path before its time counts (a path
that disagrees raises :class:`PathDisagrees` instead of reporting a time). Thread pools
are pinned by the caller (:func:`mmtheory.bench.threads.pin_threads`), the same for every
path.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from mmtheory.bench.memory import PeakMemory, max_defined, sync
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import fit_least_squares, train_batched
from mmtheory.models import Learner, ModelPlan, forward, init_model
from mmtheory.models.params import ENCODER
from mmtheory.reference import train_loop, train_vmap

__all__ = [
    "COMPUTE_SIZES",
    "SMALL_SIZES",
    "PathDisagrees",
    "closed_form_case",
    "closed_form_flops",
    "eigh_lstsq",
    "lstsq_vmap",
    "mlp_case",
    "table4_grid_case",
    "train_flops",
]


SMALL_SIZES = [20, 40, 80, 160, 320, 640]


COMPUTE_SIZES = [50, 100, 250, 500, 1000, 2000]

#: float32 training for 100 Adam steps: the batched engine and the loop sum in different
#: orders, and Adam's normalised steps amplify the rounding, so single logits of two
#: correct paths drift apart (measured: 0.9 on logits of scale 32 at m = 320). Their
#: training losses agree far better; a wrong subset, optimiser or step count moves a
#: model's loss by tens of percent. The check: every model's final training loss within
#: 2% of the batched path's (the paths' float64 equality is tested exactly in
#: tests/engine).
MLP_TOL = 2e-2

#: train MSE of float64 minimum-norm least squares: the paths agree to ~1e-10 relative;
#: a wrong (non-rank-revealing) solver is off by tens of percent (the issue: gelsy).
CLOSED_FORM_RTOL = 1e-6


class PathDisagrees(AssertionError):
    """A timed path's answers differ from the batched path's: its time would mean nothing."""


def _mlp_world(K: int):
    import synthetic

    return synthetic.NonlinearWorld([16] * K, latent_dim=4, n_classes=4, seed=0)


def train_flops(inits: list[list[dict]], m: int, steps: int) -> float:
    """Multiply-add FLOPs of full-batch training of these models, counted from their
    weight matrices: forward 2 m (in x out) per layer; backward 2 m (in x out) for the
    weight gradient plus 2 m (in x out) for the input gradient, except in an encoder's
    first layer, whose input is data (no gradient). Biases, activations, the loss and
    the optimiser (elementwise) are not counted."""
    total = 0.0
    for group in inits:
        for init in group:
            for slot, W in init.items():
                if not slot.weight:
                    continue
                f = 2.0 * m * W.numel()
                first = slot.part == ENCODER and slot.layer == 1
                total += f * (2 if first else 3)
    return total * steps


def _warm_up(learner, world, subs, device):
    """One tiny run of each path first: one-time costs (lazy imports on the first optimiser,
    thread pools, allocator growth) must not land in any path's timing."""
    from dataclasses import replace

    tiny = replace(learner, steps=2)
    data = world.sample(8, seed=99)
    plan = ModelPlan(world.names, tuple(world.dims.values()), tuple(subs), world.n_classes)
    inits = [
        [init_model(tiny, sub, world.dims, world.n_classes, key=("warm", str(sub))) for sub in subs]
    ]
    xs = [data[k][None].float().to(device) for k in world.names]
    y = data.y[None].to(device)
    train_batched(tiny, plan, xs, y, inits, task="classification")
    x = {k: xs[i][0] for i, k in enumerate(world.names)}
    train_loop(tiny, subs[-1], x, y[0], inits[0][-1], task="classification", fused=True)
    train_vmap(tiny, subs, world.names, x, y[0], inits[0], task="classification", fused=True)


def _check(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """``got`` and ``want``: per-model losses; relative agreement within ``tol``."""
    err = float(((got - want).abs() / want.abs().clamp_min(1e-3)).max())
    if not err <= tol:
        raise PathDisagrees(
            f"{name}: training loss {err:.3g} (relative) from the batched path's (allowed {tol})"
        )


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the last-but-one axis: out (..., m, C), y (..., m)."""
    return (torch.logsumexp(out, -1) - out.gather(-1, y[..., None]).squeeze(-1)).mean(-1)


def mlp_case(K, sizes, device, *, seeds=5, steps=100, loop=True, vmap=True, progress=True):
    """Late fusion with MLP encoders on all 2^K - 1 subsets x ``seeds`` x ``sizes``.

    Returns totals over the sizes and ``per_size``: one dict per sample size with each
    path's seconds (ratios per size come from the same run)."""
    world = _mlp_world(K)
    learner = Learner(
        "late_fusion", encoder="mlp", latent_dim=16, hidden=32, solver="adam", lr=0.01, steps=steps
    )
    subs = all_subsets(world.names)
    dims = world.dims
    data = {s: world.sample(max(sizes), seed=s) for s in range(seeds)}
    _warm_up(learner, world, subs, device)
    flops, peak_mib = 0.0, float("nan")
    n_models = len(subs) * seeds * len(sizes)
    bar = tqdm(
        total=n_models * (1 + loop + vmap), desc=f"bench K={K}", disable=not progress, unit="model"
    )
    per_size = []
    for m in sizes:
        plan = ModelPlan(world.names, tuple(dims.values()), tuple(subs), world.n_classes)
        inits = [
            [
                init_model(learner, sub, dims, world.n_classes, key=("bench", K, m, s, str(sub)))
                for sub in subs
            ]
            for s in range(seeds)
        ]
        # the data on the device once, outside every timing, shared by all paths
        xs = [
            torch.stack([data[s][k][:m] for s in range(seeds)]).float().to(device)
            for k in world.names
        ]
        y = torch.stack([data[s].y[:m] for s in range(seeds)]).to(device)
        sync(device)
        row = {"m": m, "n_models": len(subs) * seeds, "loop_s": np.nan, "vmap_s": np.nan}
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            res = train_batched(learner, plan, xs, y, inits, task="classification")
            sync(device)
            row["batched_s"] = time.perf_counter() - t0
        peak_mib = max_defined(peak_mib, mem.mib)
        row["flops"] = train_flops(inits, m, steps)
        flops += row["flops"]
        with torch.no_grad():
            want = forward(learner, res.params, xs, plan)  # (G, S, m, p)
        bar.update(len(subs) * seeds)
        if loop:
            models = []
            t0 = time.perf_counter()
            for s in range(seeds):
                x = {k: xs[i][s] for i, k in enumerate(world.names)}
                for j, sub in enumerate(subs):
                    models.append(
                        train_loop(
                            learner, sub, x, y[s], inits[s][j], task="classification", fused=True
                        )
                    )
            sync(device)
            row["loop_s"] = time.perf_counter() - t0
            with torch.no_grad():
                for i, model in enumerate(models):
                    s, j = divmod(i, len(subs))
                    x = {k: xs[c][s] for c, k in enumerate(world.names)}
                    _check(
                        f"loop K={K} m={m} model {i}",
                        _loss(model(x), y[s]),
                        _loss(want[s, j], y[s]),
                        MLP_TOL,
                    )
            bar.update(len(subs) * seeds)
        if vmap:
            flat = [inits[s][j] for s in range(seeds) for j in range(len(subs))]
            per_model = {
                k: xs[i].repeat_interleave(len(subs), dim=0) for i, k in enumerate(world.names)
            }
            targets = y.repeat_interleave(len(subs), dim=0)
            outs: list = []
            sync(device)
            t0 = time.perf_counter()
            train_vmap(
                learner,
                [sub for _ in range(seeds) for sub in subs],
                world.names,
                per_model,
                targets,
                flat,
                task="classification",
                fused=True,
                outputs=outs,
            )
            sync(device)
            row["vmap_s"] = time.perf_counter() - t0
            _check(
                f"vmap K={K} m={m}",
                _loss(outs[0], targets),
                _loss(want.flatten(0, 1), targets),
                MLP_TOL,
            )
            bar.update(len(subs) * seeds)
        per_size.append(row)
    bar.close()
    batched_s = sum(r["batched_s"] for r in per_size)
    return {
        "n_models": n_models,
        "batched_s": batched_s,
        "loop_s": sum(r["loop_s"] for r in per_size) if loop else np.nan,
        "vmap_s": sum(r["vmap_s"] for r in per_size) if vmap else np.nan,
        "gflops": flops / batched_s / 1e9,
        "batched_peak_mib": peak_mib,
        "per_size": per_size,
    }


def closed_form_flops(m: int, widths: list[int], p: int, subset_widths: list[int]) -> float:
    """FLOPs of :func:`~mmtheory.engine.fit_least_squares` as written: the Gram blocks
    X_i^T X_j for i <= j (2 m d_i d_j each), the column sums, X^T Y (2 m d p), and per
    subset the solve from its eigendecomposition (about 9 s^3 for ``eigh`` of an s x s
    block plus 4 s^2 p for V^T c and V (.)), s = a subset's width plus the intercept."""
    gram = sum(
        2.0 * m * widths[i] * widths[j] for i in range(len(widths)) for j in range(i, len(widths))
    )
    d = sum(widths)
    solves = sum(9.0 * (s + 1) ** 3 + 4.0 * (s + 1) ** 2 * p for s in subset_widths)
    return gram + m * d + 2.0 * m * d * p + solves


def lstsq_vmap(X: torch.Tensor, masks: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least squares of B zero-filled designs at once: X (m, d) shared,
    ``masks`` (B, d) the columns each model keeps, Y (m, p); returns W (B, d, p).

    CPU: ``torch.linalg.lstsq`` with the rank-revealing ``gelsd`` driver (the default,
    ``gelsy``, returns wrong answers on rank-deficient designs such as Table 4's, rank
    500 of 800). CUDA: the only driver, ``gels``, assumes full rank, so each model is
    solved from its own eigendecomposition instead (batched ``eigh`` of X_b^T X_b, the
    same pseudo-inverse as the engine)."""
    designs = X[None] * masks[:, None, :]
    if X.device.type == "cpu":
        return torch.linalg.lstsq(designs, Y.expand(len(masks), *Y.shape), driver="gelsd").solution
    return eigh_lstsq(designs, Y)


def eigh_lstsq(designs: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least squares of designs (B, m, d) against Y (m, p) through each
    model's eigendecomposition of X_b^T X_b (the CUDA path of :func:`lstsq_vmap`)."""
    A = designs.transpose(1, 2) @ designs
    c = designs.transpose(1, 2) @ Y
    w, V = torch.linalg.eigh(A)
    cut = w.amax(-1, keepdim=True).clamp_min(0) * A.shape[-1] * torch.finfo(A.dtype).eps * 10
    inv = torch.where(w > cut, 1 / w.clamp_min(torch.finfo(A.dtype).tiny), 0.0)
    return V @ (inv[..., None] * (V.transpose(1, 2) @ c))


def _mse(X: torch.Tensor, W: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Train MSE (summed over outputs) of W (B, d, p) on X (m, d), Y (m, p): (B,)."""
    return ((X @ W - Y) ** 2).sum(-1).mean(-1)


def _cf_batched(blocks, Y, cols, m) -> np.ndarray:
    fits = fit_least_squares(blocks, Y, [m], cols)
    return np.array([f.train_loss for f in fits[0]])


def _cf_numpy(X1: np.ndarray, Y: np.ndarray, bounds) -> np.ndarray:
    out = []
    for b in bounds:
        design = np.hstack([X1[:, :b], X1[:, -1:]])
        sol = np.linalg.lstsq(design, Y, rcond=None)[0]
        out.append(((design @ sol - Y) ** 2).sum(1).mean())
    return np.array(out)


def _cf_vmap(X1: torch.Tensor, masks: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
    return _mse(X1, lstsq_vmap(X1, masks, Y), Y).cpu().numpy()


def closed_form_case(
    device,
    *,
    seeds=5,
    overlaps=(1.0, 0.8, 0.5, 0.2, 0.0),
    m=20_000,
    dim=100,
    loop=True,
    vmap=True,
):
    """Table 4's solves (cumulative subsets, float64): the engine's
    :func:`~mmtheory.engine.fit_least_squares`, a loop of ``numpy.linalg.lstsq`` (the
    default, rank-revealing SVD driver) and :func:`lstsq_vmap`, each on the same drawn
    designs and each computing the fits and their train MSE. Drawing the data and the
    test risk are outside every timing (the end-to-end grid is ``table4_grid_case``)."""
    import synthetic

    worlds = [synthetic.table4_world(w, dim=dim) for w in overlaps]
    n_sub = 4
    batched_s = loop_s = vmap_s = 0.0
    flops = 0.0
    peak = float("nan")
    warm = True
    for world in worlds:
        widths = list(world.dims.values())
        bounds = np.cumsum(widths)
        for seed in range(seeds):
            data = world.sample(m, seed=seed)
            blocks = [data[k].double().to(device) for k in world.names]
            Yt = data.y.double().reshape(m, -1).to(device)
            cols = [torch.arange(int(bounds[k])) for k in range(n_sub)]
            X1 = torch.cat([*blocks, torch.ones(m, 1, dtype=torch.float64, device=device)], 1)
            masks = torch.stack(
                [
                    torch.cat([torch.arange(bounds[-1]) < bounds[k], torch.tensor([True])])
                    for k in range(n_sub)
                ]
            ).to(device=device, dtype=torch.float64)
            Xn, Yn = X1.cpu().numpy(), Yt.cpu().numpy()

            batched = partial(_cf_batched, blocks, Yt, cols, m)
            numpy_loop = partial(_cf_numpy, Xn, Yn, bounds[:n_sub])
            vmapped = partial(_cf_vmap, X1, masks, Yt)

            if warm:  # the first (world, seed) untimed: every path's one-time costs
                batched(), numpy_loop() if loop else None, vmapped() if vmap else None
                warm = False
            sync(device)
            with PeakMemory(device) as mem:
                t0 = time.perf_counter()
                want = batched()
                sync(device)
                batched_s += time.perf_counter() - t0
            peak = max_defined(peak, mem.mib)
            flops += closed_form_flops(m, widths, Yt.shape[1], [int(b) for b in bounds[:n_sub]])
            # absolute slack on the scale of the targets' energy: exact fits (overlap 1, all
            # modalities) have MSE 0 up to rounding of that size
            scale = float(Yt.pow(2).sum(1).mean())
            for name, on, fn in (("loop", loop, numpy_loop), ("vmap", vmap, vmapped)):
                if not on:
                    continue
                t0 = time.perf_counter()
                got = fn()
                sync(device)
                elapsed = time.perf_counter() - t0
                if not np.allclose(got, want, rtol=CLOSED_FORM_RTOL, atol=CLOSED_FORM_RTOL * scale):
                    raise PathDisagrees(
                        f"closed form {name}, overlap {world.overlap}, seed {seed}: train MSE "
                        f"{np.round(got, 4).tolist()} against the engine's "
                        f"{np.round(want, 4).tolist()}"
                    )
                if name == "loop":
                    loop_s += elapsed
                else:
                    vmap_s += elapsed
    return {
        "n_models": len(worlds) * seeds * n_sub,
        "batched_s": batched_s,
        "loop_s": loop_s if loop else np.nan,
        "vmap_s": vmap_s if vmap else np.nan,
        "gflops": flops / batched_s / 1e9,
        "batched_peak_mib": peak,
    }


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def table4_grid_case(device, *, seeds=5, overlaps=(1.0, 0.8, 0.5, 0.2, 0.0), m=20_000, dim=100):
    """The whole Table 4 grid end to end through ``sweep`` (drawing, Gram matrices, solves,
    exact risks and eta, records in memory), the old way (one independent sweep per world)
    and the new (one :class:`~mmtheory.experiments.SharedWork` for the series: features
    drawn and factored once per seed), alternating, after one untimed warm-up of each.
    The two tables must be identical (``wall_s`` aside) before either time counts.
    ``batched_s`` is the new path, ``loop_s`` the old; CPU seconds of each are returned."""
    import pandas as pd

    import synthetic
    from mmtheory.experiments import SharedWork, sweep

    worlds = [synthetic.table4_world(w, dim=dim) for w in overlaps]

    def grid(shared):
        tables = [
            sweep(
                world,
                "linear",
                "cumulative",
                m=[m],
                seeds=seeds,
                device=str(device),
                progress=False,
                dtype="float32",
                shared=shared,
            )
            for world in worlds
        ]
        return pd.concat(tables, ignore_index=True).drop(columns=["wall_s"])

    small = [synthetic.table4_world(w, dim=dim) for w in overlaps[:2]]
    for shared in (None, SharedWork()):  # warm-up: imports, thread pools, allocator
        for world in small:
            sweep(
                world,
                "linear",
                "cumulative",
                m=[200],
                seeds=1,
                device=str(device),
                progress=False,
                shared=shared,
            )
    times = {}
    tables = {}
    for name, make in (("old", lambda: None), ("new", SharedWork)):
        sync(device)
        c0, t0 = _cpu_seconds(), time.perf_counter()
        tables[name] = grid(make())
        sync(device)
        times[name] = (time.perf_counter() - t0, _cpu_seconds() - c0)
    try:
        pd.testing.assert_frame_equal(tables["old"], tables["new"], check_exact=True)
    except AssertionError as err:
        raise PathDisagrees(f"table4 grid: shared work changed the results: {err}") from err
    return {
        "n_models": len(worlds) * seeds * len(worlds[0].names),
        "batched_s": times["new"][0],
        "loop_s": times["old"][0],
        "vmap_s": np.nan,
        "gflops": np.nan,  # end to end: the arithmetic is the closed-form case's
        "batched_peak_mib": np.nan,
        "batched_cpu_s": times["new"][1],
        "loop_cpu_s": times["old"][1],
    }
