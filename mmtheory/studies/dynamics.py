"""``mmtheory dynamics``: the learning dynamics of two-modality late fusion against their
closed forms (Zhang, Latham & Saxe, ICML 2024; :mod:`mmtheory.theory.dynamics`).

Grid: correlation rho x standard-deviation ratio sigma_A / sigma_B of the two-modality
Gaussian world (:class:`synthetic.GaussianPairWorld`, y = x_A + x_B), seeds of the
initialisation. Each world is scaled so that |Sigma_yA| = 1: modality A's learning time is
then the same across the grid, and one batched call (every world a data group, every
subset a model) trains and records all of them. Each group trains on a sample whose
moments equal the world's exactly, so full-batch gradient descent is gradient descent on
the population loss: the setting of the closed forms, with no sampling error. The network
is two-layer linear late fusion (one linear encoder per modality, a concatenation head)
from a small initialisation.

Depth part: the same worlds (a few correlations, one variance ratio) trained by deep
linear networks of L layers fused at every layer L_f = 1 (early) .. L (late), from a
moderate initialisation (the unimodal phase of a deep network lasts ~ u0^(2 - L)): the
measured time ratio against :func:`~mmtheory.theory.dynamics.time_ratio_depth`, and the
paper's claim that the ratio grows with L_f. Written to ``depth.csv``.

Multi-dimensional part: random worlds with three coordinates per modality (independent
correlated pairs, |Sigma_yA| = 1, kept when the predicted ratio lies in [1.5, max]), the
measured time ratio against the moment form 1 + (|Sigma_yA| - |Sigma_yB|) /
|Sigma_yB - W_A^uni Sigma_AB|. Written to ``multidim.csv``.

Writes into ``out``: ``dynamics.csv`` (per group: the grid, the times read off, predicted
and measured time ratio, misattribution, plateau weights, their gaps), ``trajectories.csv``
(per group and recorded step: both modalities' effective weights, the loss and the
per-branch losses), ``verdicts.csv`` (the checks and their negative controls), the figure
``fig_dynamics`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import synthetic
from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.core.seeding import as_generator
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import Record, cpu_threads, resolve_device, train_batched
from mmtheory.models import Learner, ModelPlan, init_model
from mmtheory.plotting.figures import write_figure
from mmtheory.reporting.dynamics_report import render_dynamics_report
from mmtheory.theory.dynamics import (
    COLUMNS,
    DynamicsRun,
    PairMoments,
    Tolerances,
    dynamics_verdicts,
    fusion_order_verdict,
    measured_dynamics,
    predicted_dynamics,
    read_times,
)

__all__ = [
    "DEFAULTS",
    "QUICK",
    "depth_learner",
    "depth_part",
    "dynamics_learner",
    "multidim_part",
    "pair_world",
    "random_pair_worlds",
    "run_dynamics",
    "train_pairs",
]

#: the full study (under 2 CPU-minutes)
DEFAULTS: dict = {
    "rhos": [-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75],
    "ratios": [1.5, 2.0, 3.0],
    "seeds": 2,
    "init_scale": 1e-10,
    "width": 32,
    "lr": 0.01,
    "steps": 28_000,
    "points": 400,
    "rows": 4,
    # the depth part: L layers, fused at every L_f = 1..L
    "depth_layers": 4,
    "depth_rhos": [-0.5, 0.0, 0.5],
    "depth_ratio": 2.0,
    "depth_seeds": 2,
    "depth_init_scale": 0.2,
    "depth_steps": 12_000,
    # the multi-dimensional part: random worlds of multi_dim coordinates per modality
    "multi_worlds": 8,
    "multi_dim": 3,
    "multi_max_ratio": 10.0,
    "multi_steps": 14_000,
}
#: ``--quick``: a smaller grid, one seed, shorter runs (about 30 CPU-seconds)
QUICK: dict = {
    **DEFAULTS,
    "rhos": [-0.5, 0.0, 0.5],
    "ratios": [1.5, 2.0],
    "seeds": 1,
    "steps": 7_500,
    "points": 300,
    "init_scale": 1e-10,
    "depth_layers": 3,
    "depth_rhos": [0.0, 0.5],
    "depth_seeds": 1,
    "depth_init_scale": 0.1,
    "depth_steps": 6_000,
    "multi_worlds": 4,
    "multi_max_ratio": 5.0,
    "multi_steps": 7_500,
}


def pair_world(rho: float, ratio: float, names: tuple[str, str] = ("A", "B")):
    """The two-modality world with correlation ``rho`` and sigma_A / sigma_B = ``ratio``,
    scaled so that |Sigma_yA| = sigma_A^2 + rho sigma_A sigma_B = 1 (the time unit)."""
    k = ratio**2
    sigma_b = 1.0 / math.sqrt(k + rho * ratio)
    return synthetic.GaussianPairWorld(ratio * sigma_b, sigma_b, rho, names=names)


def dynamics_learner(cfg: dict) -> Learner:
    """Two-layer linear late fusion, full-batch gradient descent from a small start."""
    return Learner(
        kind="late_fusion",
        encoder="linear",
        latent_dim=cfg["width"],
        solver="gd",
        lr=cfg["lr"],
        steps=cfg["steps"],
        init_scale=cfg["init_scale"],
        name="late_fusion-2layer-linear",
    )


def depth_learner(layers: int, fuse: int, cfg: dict) -> Learner:
    """The deep linear network with L = ``layers`` weight layers per path, the first
    L_f = ``fuse`` of them modality-specific (:func:`~mmtheory.theory.dynamics.fusion_layers`):
    early fusion for L_f = 1, late fusion with an L_f - 1 layer encoder otherwise."""
    common = dict(
        latent_dim=cfg["width"],
        hidden=cfg["width"],
        activation="identity",
        solver="gd",
        lr=cfg["lr"],
        steps=cfg["depth_steps"],
        init_scale=cfg["depth_init_scale"],
        name=f"deep-linear-L{layers}-Lf{fuse}",
    )
    if fuse == 1:
        return Learner(kind="early_fusion", head_layers=layers - 2, **common)
    return Learner(
        kind="late_fusion",
        encoder="linear" if fuse == 2 else "mlp",
        depth=None if fuse == 2 else fuse - 1,
        head_layers=layers - fuse,
        **common,
    )


def train_pairs(worlds: list, seeds: list[int], learner: Learner, cfg: dict, device="cpu"):
    """Train every (world, seed) group's all-subset models in one call, in float64
    (``cfg``: ``rows`` per exact-moment sample, ``points`` recorded steps).

    Returns the :class:`~mmtheory.theory.dynamics.DynamicsRun` of the all-modality models
    (``oracles[g]`` group g's world) and the plan.
    """
    names = worlds[0].names
    dims = worlds[0].dims
    subsets = all_subsets(names)
    plan = ModelPlan(names, tuple(dims.values()), tuple(subsets), 1)
    groups = [(w, s) for w in worlds for s in seeds]
    datas = [w.sample_exact_moments(cfg["rows"], seed=s) for w, s in groups]
    xs = [torch.stack([d[k] for d in datas]).double().to(device) for k in names]
    y = torch.stack([d.y for d in datas]).double().to(device)[..., None]
    inits = [
        [
            init_model(learner, sub, dims, 1, ("dynamics", w.world_id, s, str(sub)), torch.float64)
            for sub in subsets
        ]
        for w, s in groups
    ]
    with cpu_threads(1):  # tiny models: operator overhead, not arithmetic (engine.device)
        res = train_batched(
            learner,
            plan,
            xs,
            y,
            inits,
            task="regression",
            dtype=torch.float64,
            record=Record(points=cfg["points"]),
        )
    assert res.trajectory is not None
    model = [len(sub) for sub in subsets].index(len(names))  # the all-modality model
    run = DynamicsRun(res.trajectory, model, [w for w, _ in groups], (names[0], names[1]), learner)
    return run, plan


def _wrong_rho(rho: float) -> float:
    """A deliberately wrong correlation for the negative controls: |rho| moved by 0.5
    (the time ratio depends on rho^2, so a sign flip would not do)."""
    return math.copysign(abs(rho) + 0.5 if abs(rho) < 0.5 else abs(rho) - 0.5, rho or 1.0)


def _truncated(run: DynamicsRun, t: float) -> DynamicsRun:
    """``run`` with its trajectory cut after step ``t`` (training stopped there)."""
    traj = run.trajectory
    keep = traj.steps <= t
    cut = dataclasses.replace(
        traj,
        steps=traj.steps[keep],
        loss=traj.loss[:, :, keep],
        branch_loss=None if traj.branch_loss is None else traj.branch_loss[:, :, keep],
        weights=None if traj.weights is None else traj.weights[:, :, keep],
        bias=None if traj.bias is None else traj.bias[:, :, keep],
    )
    return dataclasses.replace(run, trajectory=cut)


def _trajectory_table(run: DynamicsRun, times: pd.DataFrame) -> pd.DataFrame:
    """Long table: group, step, w_first, w_second, loss, branch losses (scalar modalities;
    Frobenius norms otherwise)."""
    traj = run.trajectory
    frames = []
    for g in range(run.G):
        first, second = times.loc[g, "first"], times.loc[g, "second"]
        wa = traj.modality_weights(first)[g, run.model]
        wb = traj.modality_weights(second)[g, run.model]
        T = len(traj.steps)
        ka, kb = traj.names.index(first), traj.names.index(second)
        frame = {
            "group": g,
            "step": traj.steps,
            "w_first": wa.reshape(T, -1)[:, 0]
            if wa[0].size == 1
            else np.linalg.norm(wa.reshape(T, -1), axis=1),
            "w_second": wb.reshape(T, -1)[:, 0]
            if wb[0].size == 1
            else np.linalg.norm(wb.reshape(T, -1), axis=1),
            "loss": traj.loss[g, run.model],
        }
        if traj.branch_loss is not None:
            frame["branch_loss_first"] = traj.branch_loss[g, run.model, :, ka]
            frame["branch_loss_second"] = traj.branch_loss[g, run.model, :, kb]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def dynamics_table(run: DynamicsRun, grid: pd.DataFrame) -> pd.DataFrame:
    """The grid's columns, the times read off, and every quantity predicted and measured."""
    predicted, measured = predicted_dynamics(run), measured_dynamics(run)
    times = read_times(run)
    out = grid.reset_index(drop=True).copy()
    out.index.name = "group"
    out = out.join(times)
    for c in COLUMNS:
        out[f"{c}_predicted"] = predicted[c]
        out[f"{c}_measured"] = measured[c]
    out["time_ratio_rel_error"] = out.time_ratio_measured / out.time_ratio_predicted - 1
    return out.reset_index()


def depth_part(cfg: dict, device="cpu") -> tuple[pd.DataFrame, float]:
    """Train every fusion layer L_f = 1..L on the depth grid; returns the table (one row
    per L_f and group) and the training time."""
    L = cfg["depth_layers"]
    worlds = [pair_world(float(r), float(cfg["depth_ratio"])) for r in cfg["depth_rhos"]]
    seeds = list(range(cfg["depth_seeds"]))
    frames, train_s = [], 0.0
    for fuse in range(1, L + 1):
        learner = depth_learner(L, fuse, cfg)
        t0 = time.perf_counter()
        run, _ = train_pairs(worlds, seeds, learner, cfg, device)
        train_s += time.perf_counter() - t0
        times = read_times(run)
        predicted, measured = predicted_dynamics(run), measured_dynamics(run)
        frames.append(
            pd.DataFrame(
                {
                    "layers": L,
                    "fuse": fuse,
                    "rho": [float(w.rho[0]) for w in worlds for _ in seeds],
                    "sigma_ratio": float(cfg["depth_ratio"]),
                    "seed": [s for _ in worlds for s in seeds],
                    "init_scale": float(cfg["depth_init_scale"]),
                    "t_first": times.t_first.to_numpy(),
                    "t_second": times.t_second.to_numpy(),
                    "time_ratio_predicted": predicted.time_ratio.to_numpy(),
                    "time_ratio_measured": measured.time_ratio.to_numpy(),
                    "final_gap_measured": measured.final_gap.to_numpy(),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table["time_ratio_rel_error"] = table.time_ratio_measured / table.time_ratio_predicted - 1
    return table, train_s


def random_pair_worlds(n: int, dim: int, max_ratio: float, seed: int = 0) -> list:
    """``n`` worlds of ``dim`` correlated pairs: sigma_A,i ~ U(0.5, 2), sigma_B,i ~ U(0.3, 1),
    rho_i ~ U(-0.6, 0.6), scaled to |Sigma_yA| = 1, kept when A is learned first and the
    predicted time ratio lies in [1.5, max_ratio] (drawn from the named stream of ``seed``)."""
    rng = as_generator(seed, "dynamics", "multidim")
    out: list = []
    for _ in range(1000 * n):
        if len(out) == n:
            break
        sa, sb = rng.uniform(0.5, 2.0, dim), rng.uniform(0.3, 1.0, dim)
        rho = rng.uniform(-0.6, 0.6, dim)
        w = synthetic.GaussianPairWorld(list(sa), list(sb), list(rho))
        pm = PairMoments.of(w, w.names)
        scale = 1.0 / math.sqrt(pm.rates[0])
        w = synthetic.GaussianPairWorld(list(sa * scale), list(sb * scale), list(rho))
        pm = PairMoments.of(w, w.names)
        if pm.first == w.names[0] and 1.5 <= pm.time_ratio() <= max_ratio:
            out.append(w)
    if len(out) < n:
        raise ValueError(f"multi_max_ratio {max_ratio} admits too few random worlds")
    return out


def _alignment(pm: PairMoments) -> float:
    """cos of the angle between Sigma_yB and B's plateau residual (1: the moment form's
    assumption holds exactly)."""
    res = pm.sigma_yb - pm.unimodal_first @ pm.sigma_ab
    return float(np.sum(pm.sigma_yb * res) / (np.linalg.norm(pm.sigma_yb) * np.linalg.norm(res)))


def multidim_part(cfg: dict, tol: Tolerances, device="cpu"):
    """Train the random multi-dimensional worlds; returns (table, verdict rows, train time)."""
    worlds = random_pair_worlds(cfg["multi_worlds"], cfg["multi_dim"], cfg["multi_max_ratio"])
    sub_cfg = {**cfg, "steps": cfg["multi_steps"], "rows": 2 * cfg["multi_dim"] + 2}
    t0 = time.perf_counter()
    run, _ = train_pairs(worlds, [0], dynamics_learner(sub_cfg), sub_cfg, device)
    train_s = time.perf_counter() - t0
    predicted, measured = predicted_dynamics(run), measured_dynamics(run)
    table = pd.DataFrame(
        {
            "world": range(len(worlds)),
            "dim": cfg["multi_dim"],
            "sigma_a": [" ".join(f"{v:.4g}" for v in w.sigma_a) for w in worlds],
            "sigma_b": [" ".join(f"{v:.4g}" for v in w.sigma_b) for w in worlds],
            "rho": [" ".join(f"{v:.4g}" for v in w.rho) for w in worlds],
            "alignment": [_alignment(run.moments(g)) for g in range(run.G)],
            "time_ratio_predicted": predicted.time_ratio.to_numpy(),
            "time_ratio_measured": measured.time_ratio.to_numpy(),
            "plateau_gap_measured": measured.plateau_gap.to_numpy(),
            "final_gap_measured": measured.final_gap.to_numpy(),
        }
    )
    table["time_ratio_rel_error"] = table.time_ratio_measured / table.time_ratio_predicted - 1
    wrong = [
        synthetic.GaussianPairWorld(
            list(w.sigma_a), list(w.sigma_b), [_wrong_rho(float(r)) for r in w.rho]
        )
        for w in worlds
    ]
    rows = dynamics_verdicts(predicted, measured, tol)
    control = dynamics_verdicts(
        predicted_dynamics(dataclasses.replace(run, oracles=wrong)), measured, tol
    )
    verdicts = pd.concat(
        [
            rows[rows.check == "time_ratio"].assign(kind="check"),
            control[control.check == "time_ratio"].assign(kind="control: rho moved by 0.5"),
        ],
        ignore_index=True,
    ).assign(check="time_ratio_multidim")
    return table, verdicts, train_s


def run_dynamics(
    out: str | Path = "runs/dynamics",
    quick: bool = False,
    device: str = "auto",
    *,
    settings: dict | None = None,
    tol: Tolerances | None = None,
) -> Path:
    """Run the study into ``out`` (module docstring); returns the report's path."""
    t_start = time.perf_counter()
    cfg = {**(QUICK if quick else DEFAULTS), **(settings or {})}
    tol = tol or Tolerances()
    dev = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    worlds, grid_rows = [], []
    seeds = list(range(cfg["seeds"]))
    for rho in cfg["rhos"]:
        for ratio in cfg["ratios"]:
            w = pair_world(float(rho), float(ratio))
            worlds.append(w)
            for s in seeds:
                grid_rows.append(
                    {
                        "rho": float(rho),
                        "sigma_ratio": float(ratio),
                        "k": float(ratio) ** 2,
                        "sigma_a": float(w.sigma_a[0]),
                        "sigma_b": float(w.sigma_b[0]),
                        "seed": s,
                        "world_id": w.world_id,
                    }
                )
    learner = dynamics_learner(cfg)
    t0 = time.perf_counter()
    run, _ = train_pairs(worlds, seeds, learner, cfg, device=str(dev))
    train_s = time.perf_counter() - t0
    grid = pd.DataFrame(grid_rows)
    table = dynamics_table(run, grid)
    write_csv_atomic(table, out / "dynamics.csv")
    write_csv_atomic(_trajectory_table(run, read_times(run)), out / "trajectories.csv")

    predicted, measured = predicted_dynamics(run), measured_dynamics(run)
    verdicts = dynamics_verdicts(predicted, measured, tol).assign(kind="check")
    # negative controls: predictions from worlds with a wrong correlation must fail; a
    # run read as if training had stopped on the first plateau must fail to converge
    wrong = [
        pair_world(_wrong_rho(r), q)  # the same variance ratio, |rho| moved by 0.5
        for r in cfg["rhos"]
        for q in cfg["ratios"]
        for _ in seeds
    ]
    wrong_run = dataclasses.replace(run, oracles=wrong)
    control = dynamics_verdicts(predicted_dynamics(wrong_run), measured, tol)
    control = control[control.check != "converged"].assign(kind="control: rho moved by 0.5")
    times = read_times(run)
    stop = float(np.nanmin(times.t_plateau))
    early = dynamics_verdicts(predicted, measured_dynamics(_truncated(run, stop)), tol)
    early = early[early.check == "converged"].assign(kind="control: stopped on the plateau")
    parts = [verdicts, control, early]
    depth = None
    if cfg.get("depth_layers"):
        depth, depth_s = depth_part(cfg, str(dev))
        train_s += depth_s
        write_csv_atomic(depth, out / "depth.csv")
        reversed_order = depth.assign(fuse=depth.layers + 1 - depth.fuse)
        parts += [
            fusion_order_verdict(depth).assign(kind="check"),
            fusion_order_verdict(reversed_order).assign(kind="control: L_f order reversed"),
        ]
    multidim = None
    if cfg.get("multi_worlds"):
        multidim, multi_verdicts, multi_s = multidim_part(cfg, tol, str(dev))
        train_s += multi_s
        write_csv_atomic(multidim, out / "multidim.csv")
        parts.append(multi_verdicts)
    all_verdicts = pd.concat(parts, ignore_index=True)
    write_csv_atomic(all_verdicts, out / "verdicts.csv")

    figures = write_figure("fig_dynamics", out)
    timings = {"train": train_s, "total": time.perf_counter() - t_start}
    text = render_dynamics_report(
        table, all_verdicts, figures, cfg, tol, timings, str(dev), depth=depth, multidim=multidim
    )
    report = out / "report.md"
    write_text_atomic(text, report)
    return report
