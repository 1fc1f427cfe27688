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
from mmtheory.engine.capture import eager_steps
from mmtheory.models import Learner, ModelPlan, forward, init_model
from mmtheory.models.forward import per_modality_layers
from mmtheory.models.params import ENCODER
from mmtheory.reference import train_loop, train_vmap

__all__ = [
    "COMPUTE_SIZES",
    "SMALL_SIZES",
    "PathDisagrees",
    "ROUNDING_SAFETY",
    "TABLE4_ROUTE_RTOL",
    "closed_form_case",
    "closed_form_flops",
    "eigh_lstsq",
    "lstsq_vmap",
    "mlp_case",
    "rounding_tolerance",
    "table4_grid_case",
    "train_flops",
]


SMALL_SIZES = [20, 40, 80, 160, 320, 640]


COMPUTE_SIZES = [50, 100, 250, 500, 1000, 2000]

#: The MLP check runs every path again in float64 from the same initial parameters on the
#: same data: two correct paths then differ only by float64 rounding amplified by training,
#: while the timed float32 runs may differ by percents (measured: 2.8% at K = 3, m = 320,
#: where the float64 runs agree to 9e-13). The allowed difference is derived, not chosen:
#: the batched path's own float32 and float64 runs measure how much the training amplifies
#: a rounding of unit u (A = their largest relative difference / u32); two orderings in
#: float64 then differ by about A * u64, and the check allows ROUNDING_SAFETY times that
#: (two paths round independently, with different op counts). A is clipped to [1, 1/u32],
#: so the tolerance is at most 100 * u64 / u32 ~ 1.9e-7: it can never become loose, and a
#: wrong learning rate (x 1.001), a skipped step or one wrong model moves the worst model's
#: loss by 1e-2..1e-1 (tests/bench/test_referee.py).
ROUNDING_SAFETY = 100.0

U32 = torch.finfo(torch.float32).eps / 2
U64 = torch.finfo(torch.float64).eps / 2

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


def _check(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> float:
    """``got`` and ``want``: per-model losses; relative agreement within ``tol``. Returns
    the largest relative difference."""
    err = float(((got - want).abs() / want.abs().clamp_min(1e-3)).max())
    if not err <= tol:
        raise PathDisagrees(
            f"{name}: float64 training loss {err:.3g} (relative) from the batched path's "
            f"(allowed {tol:.3g})"
        )
    return err


def rounding_tolerance(loss32: torch.Tensor, loss64: torch.Tensor) -> float:
    """The allowed relative difference of two float64 trainings (see ``ROUNDING_SAFETY``):
    ``loss32``, ``loss64`` are the batched path's per-model losses in float32 and float64,
    from the same initial parameters; a non-finite float32 loss is rejected."""
    if not bool(torch.isfinite(loss32).all() and torch.isfinite(loss64).all()):
        raise PathDisagrees("batched path: a non-finite training loss, nothing to compare")
    spread = float(((loss32.double() - loss64).abs() / loss64.abs().clamp_min(1e-3)).max())
    amplification = min(max(spread / U32, 1.0), 1.0 / U32)
    return ROUNDING_SAFETY * amplification * U64


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the last-but-one axis: out (..., m, C), y (..., m)."""
    return (torch.logsumexp(out, -1) - out.gather(-1, y[..., None]).squeeze(-1)).mean(-1)


def _timed(fn, device):
    """(fn(), (wall seconds, CPU seconds of the process)), the device synchronised on both
    sides. CPU seconds count every thread of this process and nothing of other processes:
    on a shared machine they measure the work where wall time also measures the sharing."""
    sync(device)
    c0, t0 = _cpu_seconds(), time.perf_counter()
    out = fn()
    sync(device)
    return out, (time.perf_counter() - t0, _cpu_seconds() - c0)


def _batched_losses(learner, plan, xs, y, inits, dtype):
    """Train with the batched engine in ``dtype``; per-model final losses (G * S,) and
    (wall, CPU) seconds of the training alone."""
    xs = [x.to(dtype) for x in xs]
    res, seconds = _timed(
        lambda: train_batched(learner, plan, xs, y, inits, task="classification", dtype=dtype),
        y.device,
    )
    with torch.no_grad():
        out = forward(learner, res.params, xs, plan)  # (G, S, m, p)
        losses = _loss(out, y[:, None].expand(-1, plan.S, -1))
    return losses.flatten(), seconds


def _old_losses(learner, names, subs, xs, y, inits, dtype):
    """The batched engine as it was before issue 18's item 3: one GEMM per modality and
    layer (:func:`~mmtheory.models.forward.per_modality_layers`) and every op of every step
    launched (:func:`~mmtheory.engine.capture.eager_steps`; on the CPU nothing is captured
    anyway): losses (G * S,), (wall, CPU) seconds."""
    dims = tuple(x.shape[-1] for x in xs)
    plan = ModelPlan(tuple(names), dims, tuple(subs), int(y.max()) + 1)
    with per_modality_layers(), eager_steps():
        return _batched_losses(learner, plan, xs, y, inits, dtype)


def _loop_losses(learner, names, subs, xs, y, inits, dtype):
    """One fused-Adam ``train_loop`` per model in ``dtype``: losses (G * S,), (wall, CPU)
    seconds."""
    xs = [x.to(dtype) for x in xs]

    def train():
        models = []
        for s in range(len(inits)):
            x = {k: xs[i][s] for i, k in enumerate(names)}
            for j, sub in enumerate(subs):
                init = {slot: t.to(dtype) for slot, t in inits[s][j].items()}
                models.append(
                    train_loop(learner, sub, x, y[s], init, task="classification", fused=True)
                )
        return models

    models, seconds = _timed(train, y.device)
    with torch.no_grad():
        losses = []
        for i, model in enumerate(models):
            s = i // len(subs)
            losses.append(_loss(model({k: xs[c][s] for c, k in enumerate(names)}), y[s]))
    return torch.stack(losses), seconds


def _vmap_losses(learner, names, subs, xs, y, inits, dtype):
    """``torch.func`` ensembling of every model in ``dtype``: losses (G * S,), (wall, CPU)
    seconds."""
    flat = [
        {slot: t.to(dtype) for slot, t in inits[s][j].items()}
        for s in range(len(inits))
        for j in range(len(subs))
    ]
    per_model = {
        k: xs[i].to(dtype).repeat_interleave(len(subs), dim=0) for i, k in enumerate(names)
    }
    targets = y.repeat_interleave(len(subs), dim=0)
    outs: list = []
    _, seconds = _timed(
        lambda: train_vmap(
            learner,
            [sub for _ in range(len(inits)) for sub in subs],
            names,
            per_model,
            targets,
            flat,
            task="classification",
            fused=True,
            outputs=outs,
        ),
        y.device,
    )
    return _loss(outs[0], targets), seconds


def mlp_case(
    K, sizes, device, *, seeds=5, steps=100, loop=True, vmap=True, old=True, progress=True
):
    """Late fusion with MLP encoders on all 2^K - 1 subsets x ``seeds`` x ``sizes``.

    Every path is timed in float32; before its time counts it is run again in float64 from
    the same initial parameters and data (untimed) and must give the batched path's float64
    losses within :func:`rounding_tolerance`. Returns totals over the sizes and
    ``per_size``: one dict per sample size with each path's seconds (ratios per size come
    from the same run), the tolerance and each path's float64 difference. ``old`` also
    times the batched engine before grouping (one GEMM per modality and layer)."""
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
        total=n_models * (1 + loop + vmap + old),
        desc=f"bench K={K}",
        disable=not progress,
        unit="model",
    )
    per_size = []
    f32, f64 = torch.float32, torch.float64
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
        row = {"m": m, "n_models": len(subs) * seeds}
        row |= {f"{path}{t}": np.nan for path in ("loop", "vmap", "old") for t in ("_s", "_cpu_s")}
        with PeakMemory(device) as mem:
            want32, (row["batched_s"], row["batched_cpu_s"]) = _batched_losses(
                learner, plan, xs, y, inits, f32
            )
        peak_mib = max_defined(peak_mib, mem.mib)
        want, _ = _batched_losses(learner, plan, xs, y, inits, f64)
        row["check_tol"] = tol = rounding_tolerance(want32, want)
        row["flops"] = train_flops(inits, m, steps)
        flops += row["flops"]
        bar.update(len(subs) * seeds)
        others = (
            ("old", old, _old_losses),
            ("loop", loop, _loop_losses),
            ("vmap", vmap, _vmap_losses),
        )
        for name, on, train in others:
            if not on:
                continue
            _, (row[f"{name}_s"], row[f"{name}_cpu_s"]) = train(
                learner, world.names, subs, xs, y, inits, f32
            )
            got, _ = train(learner, world.names, subs, xs, y, inits, f64)
            row[f"{name}_err64"] = _check(f"{name} K={K} m={m}", got, want, tol)
            bar.update(len(subs) * seeds)
        per_size.append(row)
    bar.close()
    batched_s = sum(r["batched_s"] for r in per_size)
    return {
        "n_models": n_models,
        "batched_s": batched_s,
        "loop_s": sum(r["loop_s"] for r in per_size) if loop else np.nan,
        "vmap_s": sum(r["vmap_s"] for r in per_size) if vmap else np.nan,
        "old_s": sum(r["old_s"] for r in per_size) if old else np.nan,
        **{
            f"{path}_cpu_s": sum(r[f"{path}_cpu_s"] for r in per_size)
            for path in ("batched", "old", "loop", "vmap")
        },
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


#: Table 4's grid, latent route against features formed: the largest difference allowed,
#: relative to each column's scale. The solves are well conditioned (Sigma's nonzero
#: eigenvalues lie in [1, K] and the sample Gram's within (1 +- sqrt(r / m))^2 of them),
#: so float64 rounding of the two routes differs by ~1e-14 of the scale (measured: 5e-14);
#: 1e-10 leaves room for other seeds and sizes and is far below any difference that matters.
TABLE4_ROUTE_RTOL = 1e-10


def _features_route(world):
    """``world`` with the closed form's latent route switched off, so that its features and
    targets are formed and their Gram matrix computed as before 0.7.0 (a fresh object: no
    memoised oracles)."""
    cls = type(world)
    forced = type(
        cls.__name__,
        (cls,),
        {
            "latent_linear_maps": lambda self: None,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )
    return forced(**world.params())


def _assert_routes_agree(want, got, what: str) -> None:
    """Every column equal, floats within TABLE4_ROUTE_RTOL of the column's scale."""
    if list(want.columns) != list(got.columns) or len(want) != len(got):
        raise PathDisagrees(f"{what}: different tables")
    for col in want.columns:
        a, b = want[col].to_numpy(), got[col].to_numpy()
        if want[col].dtype.kind == "f":
            scale = max(1.0, float(np.nanmax(np.abs(a)))) if np.isfinite(a).any() else 1.0
            same_nan = np.array_equal(np.isnan(a), np.isnan(b))
            if not same_nan or np.nanmax(np.abs(a - b), initial=0.0) > TABLE4_ROUTE_RTOL * scale:
                raise PathDisagrees(f"{what}: column {col} differs beyond rounding")
        elif not (want[col].astype(str) == got[col].astype(str)).all():
            raise PathDisagrees(f"{what}: column {col} differs")


def table4_grid_case(
    device, *, seeds=5, overlaps=(1.0, 0.8, 0.5, 0.2, 0.0), m=20_000, dim=100, repeats=2
):
    """The whole Table 4 grid end to end through ``sweep`` (drawing, Gram matrices, solves,
    exact risks and eta, records in memory), three ways:

    - ``batched`` (0.7.0): the closed form from the latent's moments (no features formed),
      shared across the five worlds (one :class:`~mmtheory.experiments.SharedWork`);
    - ``old`` (0.6.1): features formed, drawn and factored once per seed for all worlds;
    - ``loop`` (0.6.0): features formed, one independent sweep per world.

    Each path builds its own worlds (no oracle memoised by another path), after one untimed
    warm-up of each; the paths then run ``repeats`` times in alternating order and each
    keeps its fastest (wall) run, with that run's CPU seconds. ``old`` and ``loop`` must give
    identical tables, ``batched`` the same within TABLE4_ROUTE_RTOL (``wall_s`` aside),
    before any time counts."""
    import pandas as pd

    import synthetic
    from mmtheory.experiments import SharedWork, sweep

    paths = {
        "batched": (lambda w: w, SharedWork),
        "old": (_features_route, SharedWork),
        "loop": (_features_route, lambda: None),
    }

    def grid(path, overlaps=overlaps, m=m, seeds=seeds):
        route, make_shared = paths[path]
        shared = make_shared()
        tables = [
            sweep(
                route(synthetic.table4_world(w, dim=dim)),
                "linear",
                "cumulative",
                m=[m],
                seeds=seeds,
                device=str(device),
                progress=False,
                shared=shared,
            )
            for w in overlaps
        ]
        return pd.concat(tables, ignore_index=True).drop(columns=["wall_s"])

    for path in paths:  # warm-up: imports, thread pools, allocator
        grid(path, overlaps=overlaps[:2], m=200, seeds=1)
    times: dict[str, tuple[float, float]] = {}
    tables = {}
    for _ in range(repeats):
        for path in paths:
            sync(device)
            c0, t0 = _cpu_seconds(), time.perf_counter()
            tables[path] = grid(path)
            sync(device)
            took = (time.perf_counter() - t0, _cpu_seconds() - c0)
            times[path] = min(times.get(path, took), took)
    try:
        pd.testing.assert_frame_equal(tables["loop"], tables["old"], check_exact=True)
    except AssertionError as err:
        raise PathDisagrees(f"table4 grid: shared features changed the results: {err}") from err
    _assert_routes_agree(tables["old"], tables["batched"], "table4 grid, latent route")
    return {
        "n_models": len(overlaps) * seeds * 4,
        "batched_s": times["batched"][0],
        "old_s": times["old"][0],
        "loop_s": times["loop"][0],
        "vmap_s": np.nan,
        "gflops": np.nan,  # end to end: the arithmetic is the closed-form case's
        "batched_peak_mib": np.nan,
        "batched_cpu_s": times["batched"][1],
        "old_cpu_s": times["old"][1],
        "loop_cpu_s": times["loop"][1],
    }
