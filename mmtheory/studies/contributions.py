"""``mmtheory games``: contribution games (retrain vs masked), the imbalance score, exact PID.

Part 1, the games. For each dataset and learner, every one of the 2^K - 1 subset models is
trained in one batched call (seeds on the group axis, subsets on the model axis) and
measured per test row: the retrain game. The model trained on every modality is the joint
model; it is evaluated on every coalition's masked input (zero mask and mean mask): the
masked game. Both share the joint model as v(N) and, under the ``"constant"`` empty
convention, the best constant predictor as v(empty), so the imbalance scores of a dataset
add up to 0. Datasets: the imbalance world (the weak modality must be flagged), the same
world trained five times longer (``imbalance_long``: a score that under-training caused
would shrink), a balanced two-block world (the negative control: no modality may be
flagged), the XOR synergy world (late fusion cannot use synergy, early fusion can) and
mfeat (real data, six views).

Part 2, the PID. The exact Gaussian MMI PID of a grid of linear worlds (one-dimensional
latent blocks, so each modality has a sufficient scalar score), the discretising estimator
(:func:`mmtheory.theory.pid.discretized_pid`) on samples of each, and its bias; the exact
identities that tie the atoms to eta_inf and to the information game; the exact PID of the
synergy world (pure synergy). Tables ``games.csv``, ``imbalance.csv``,
``games_per_sample.csv``, ``pid.csv``, ``pid_bias.csv``; figure ``fig_games``; ``report.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmtheory.core.io import write_csv_atomic, write_text_atomic
from mmtheory.core.subsets import all_subsets
from mmtheory.engine import train_batched
from mmtheory.estimation.estimate import Models, Sample
from mmtheory.estimation.masked import (
    coalition_losses,
    constant_losses,
    per_sample_losses,
    select_models,
)
from mmtheory.experiments.sources import DataSource, WorldSource, stack_groups
from mmtheory.models import Learner, ModelPlan, init_model
from mmtheory.plotting.figures import write_figure
from mmtheory.reporting.games_report import games_report
from mmtheory.theory.game_tables import (
    GAME_COLUMNS,
    IMBALANCE_COLUMNS,
    game_rows,
    imbalance_rows,
    masked_values,
    population_games,
    retrain_values,
)
from mmtheory.theory.games import shapley
from mmtheory.theory.pid import (
    PID_ATOMS,
    discretized_pid,
    gaussian_pid,
    linear_scores,
    mi_from_risks,
    mmi_pid,
)
from mmtheory.theory.statistics import interval

__all__ = ["GAMES_LEARNER", "SYNERGY_LEARNER", "Played", "play_games", "pid_check", "run_games"]

#: The joint model of the games: late fusion, linear encoders to 8-d latents, Adam.
GAMES_LEARNER = {
    "kind": "late_fusion",
    "encoder": "linear",
    "latent_dim": 8,
    "solver": "adam",
    "lr": 0.01,
    "steps": 300,
}
#: A learner that can represent synergy (late fusion's head is additive over modalities).
SYNERGY_LEARNER = {
    "kind": "early_fusion",
    "encoder": "mlp",
    "latent_dim": 32,
    "solver": "adam",
    "lr": 0.01,
    "steps": 300,
}
DATASETS = ("imbalance", "imbalance_long", "balanced", "synergy", "mfeat")
#: How many times longer the imbalance world's training-length control trains.
LONG_FACTOR = 5


@dataclass
class Played:
    """Both games of one dataset and learner: value arrays (G, n, 2^K) per value kind
    (``neg_risk``, and ``accuracy`` for classification), per game key."""

    names: list[str]
    seeds: list[int]
    retrain: dict[str, np.ndarray] = field(default_factory=dict)
    #: (mask, value) -> coalition values of the joint model (coalition 0: all masked)
    masked: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    #: value -> the empty coalition's per-sample values (the best constant predictor)
    constant: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def _constant_correct(y_train: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """1.0 where the training majority class is the label: (G, n)."""
    counts = torch.stack([torch.bincount(row, minlength=n_classes) for row in y_train])
    return (y == counts.argmax(dim=1, keepdim=True)).double()


def play_games(source, learner: Learner, m: int, seeds: list[int]) -> Played:
    """Train every subset model of ``source`` for each seed and play both games (CPU,
    float32 training, float64 values)."""
    names = list(source.names)
    subsets = all_subsets(names)
    plan = ModelPlan(tuple(names), tuple(source.dims.values()), tuple(subsets), source.out_dim)
    xs, y = stack_groups([source.train(s, m) for s in seeds], names, "cpu", torch.float32)
    inits = [
        [
            init_model(
                learner,
                sub,
                source.dims,
                source.out_dim,
                key=("games", source.identity, learner.label, str(sub), m, seed),
            )
            for sub in subsets
        ]
        for seed in seeds
    ]
    res = train_batched(
        learner,
        plan,
        xs,
        y,
        inits,
        task=source.task,
        batch_keys=[("games-batches", source.identity, m, seed) for seed in seeds],
    )
    models = Models(learner, res.params, plan)
    txs, ty = stack_groups([source.test(s) for s in seeds], names, "cpu", torch.float32)
    test = Sample(txs, ty)
    played = Played(names, list(seeds))
    subs = [tuple(s.names) for s in subsets]
    each = per_sample_losses(models, test, source.task)
    const = constant_losses(y, ty, source.task, source.out_dim).numpy()
    played.constant["neg_risk"] = -const
    played.retrain["neg_risk"] = retrain_values(-each.loss.numpy(), subs, names, -const)
    if each.correct is not None:
        const_acc = _constant_correct(y, ty, source.out_dim).numpy()
        played.constant["accuracy"] = const_acc
        played.retrain["accuracy"] = retrain_values(each.correct.numpy(), subs, names, const_acc)
    joint = select_models(models, [len(subsets) - 1])  # all_subsets ends with the full set
    means = [x.mean(dim=1) for x in xs]  # each group's training mean, (G, d_k)
    for mask, fill in (("zero", None), ("mean", means)):
        coal = coalition_losses(joint, test, source.task, fill=fill)
        played.masked[(mask, "neg_risk")] = -coal.loss[:, 0].numpy()
        if coal.correct is not None:
            played.masked[(mask, "accuracy")] = coal.correct[:, 0].numpy()
    return played


def game_tables(played: Played, labels: dict) -> tuple[list[dict], list[dict]]:
    """Game rows (every game, mask, empty convention and value) and imbalance rows."""
    games, imbalance = [], []
    for value, retrain in played.retrain.items():
        rows = game_rows(
            retrain, played.names, game="retrain", mask="none", empty="constant", value=value
        )
        games += [{**labels, **r} for r in rows]
        for mask in ("zero", "mean"):
            coal = played.masked[(mask, value)]
            for empty in ("constant", "masked"):
                v = masked_values(coal, played.constant[value], empty)
                rows = game_rows(
                    v, played.names, game="masked", mask=mask, empty=empty, value=value
                )
                games += [{**labels, **r} for r in rows]
            aligned = masked_values(coal, played.constant[value], "constant")
            rows = imbalance_rows(retrain, aligned, played.names, mask=mask, value=value)
            imbalance += [{**labels, **r} for r in rows]
    return games, imbalance


def per_sample_rows(played: Played, labels: dict) -> list[dict]:
    """Per-sample Shapley values of the masked game (empty: the constant predictor, value
    neg_risk) for the first seed, both masks, beside the retrain game's per-sample values."""
    rows = []
    retrain = shapley(played.retrain["neg_risk"][0])  # (n, K)
    for mask in ("zero", "mean"):
        v = masked_values(
            played.masked[(mask, "neg_risk")][:1], played.constant["neg_risk"][:1], "constant"
        )
        phi = shapley(v[0])
        for i, name in enumerate(played.names):
            for row in range(phi.shape[0]):
                rows.append(
                    {
                        **labels,
                        "seed": played.seeds[0],
                        "mask": mask,
                        "sample": row,
                        "modality": name,
                        "phi_masked": phi[row, i],
                        "phi_retrain": retrain[row, i],
                    }
                )
    return rows


# ------------------------------------------------------------------------ datasets
def balanced_world():
    """The negative control: two exchangeable modalities (a symmetric two-block world)."""
    import synthetic

    return synthetic.SynergyWorld(
        dims=(20, 20), latent_dim=4, combine="sum", noise=0.6, label_noise=0.3
    )


def _cases(quick: bool, seeds: int | None, steps: int | None, n_test: int | None):
    import synthetic
    from mmtheory.datasets import load_mfeat

    n = n_test or (2000 if quick else 5000)
    many = seeds or 20  # the flag rate needs many seeds; each costs well under a second
    lf = dict(GAMES_LEARNER, steps=steps or (150 if quick else GAMES_LEARNER["steps"]))
    ef = dict(SYNERGY_LEARNER, steps=steps or (150 if quick else SYNERGY_LEARNER["steps"]))
    world = WorldSource(synthetic.imbalance_world(), n_test=n, n_refit=2, n_eval=2)
    yield "imbalance", world, [Learner(**lf)], 2000, many
    if not quick:  # does the score shrink with training? (under-training would)
        yield (
            "imbalance_long",
            world,
            [Learner(**dict(lf, steps=LONG_FACTOR * lf["steps"]))],
            2000,
            many,
        )
    yield (
        "balanced",
        WorldSource(balanced_world(), n_test=n, n_refit=2, n_eval=2),
        [Learner(**lf)],
        2000,
        many,
    )
    xor = synthetic.SynergyWorld(dims=(8, 8), latent_dim=2, combine="xor", noise=0.3)
    yield (
        "synergy",
        WorldSource(xor, n_test=n, n_refit=2, n_eval=2),
        [
            Learner(**lf),
            Learner(**ef),
        ],
        2000,
        seeds or (5 if quick else 10),
    )
    loaded = load_mfeat()
    source = DataSource(loaded.train, loaded.test, name="mfeat")
    # six seeds at least: fewer cannot pass the sign test of a flag (6 of 6: p = 0.03)
    yield "mfeat", source, [Learner(**lf)], loaded.train.n, seeds or (6 if quick else 8)


# ------------------------------------------------------------------------ PID check
def pid_worlds() -> list:
    """The grid of linear worlds of the PID check: one-dimensional latent blocks (each
    modality's least-squares score is sufficient), rho x noise x strength (20 worlds)."""
    import synthetic

    worlds = []
    for rho in (0.0, 0.3, 0.6, 0.9, 1.0):
        for noise in ((0.3, 0.3), (0.3, 1.0)):
            for strength in ((1.0, 1.0), (1.0, 0.4)):
                worlds.append(
                    synthetic.LinearWorld(
                        (4, 4),
                        latent_dim=1,
                        rho=rho,
                        noise=noise,
                        strength=strength,
                        label_noise=0.5,
                        seed=1,
                    )
                )
    return worlds


def _pid_rows(family: str, world_label: str, params: dict, exact, estimates) -> list[dict]:
    rows = []
    for atom in PID_ATOMS:
        base = {"family": family, "world": world_label, **params, "atom": atom}
        value = getattr(exact, atom)
        rows.append(
            {**base, "estimator": "exact", "exact": value, "estimate": value, "estimate_sd": 0.0}
            | {"reps": 0}
        )
        for name, reps in estimates.items():
            vals = np.array([getattr(p, atom) for p in reps])
            rows.append(
                {
                    **base,
                    "estimator": name,
                    "exact": getattr(exact, atom),
                    "estimate": float(vals.mean()),
                    "estimate_sd": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
                    "reps": len(vals),
                }
            )
    return rows


def pid_check(
    *, quick: bool = False, n: int | None = None, reps: int | None = None, bins: int = 8
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The exact PIDs, the estimator's values and its bias: (pid, bias, identities) tables.

    Each world is sampled ``reps`` times (seeds 0..reps-1): a fitting half for the scores
    and an evaluation half of ``n`` rows each for the binned PID.
    """
    import synthetic

    n = n or (5000 if quick else 20000)
    reps = reps or (2 if quick else 5)
    rows, ident = [], []
    for w_index, world in enumerate(pid_worlds()):
        exact = gaussian_pid(world)
        p = world.params()
        params = {
            "rho": p["rho"],
            "noise_1": p["noise"][0],
            "noise_2": p["noise"][1],
            "strength_2": p["strength"][1],
        }
        est: dict[str, list] = {"mmi_plugin": [], "mmi_miller_madow": [], "imin_plugin": []}
        for r in range(reps):
            fit = world.sample(n, seed=r * 2)
            ev = world.sample(n, seed=r * 2 + 1)
            s = [linear_scores(fit[k].numpy(), fit.y.numpy(), ev[k].numpy()) for k in world.names]
            y = ev.y.numpy()
            est["mmi_plugin"].append(discretized_pid(y, *s, bins=bins))
            est["mmi_miller_madow"].append(discretized_pid(y, *s, bins=bins, correct=True))
            est["imin_plugin"].append(discretized_pid(y, *s, bins=bins, redundancy="imin"))
        rows += _pid_rows("linear", f"linear-{w_index}", params, exact, est)
        # the identities that tie the atoms to eta_inf and to the games
        var_y = float(world.second_moments()[2][0, 0])
        bayes = world.bayes_risk()
        eta = {k: world.eta_inf(k) for k in ("m1", "m2", "all")}
        retrain, masked = population_games(world)
        info = np.array([0.0, exact.mi_1, exact.mi_2, exact.mi_12])
        phi_info = shapley(info)
        phi_r, phi_m = shapley(retrain), shapley(masked)
        ident.append(
            {
                "world": f"linear-{w_index}",
                **params,
                **{f"eta_inf_{k}": v for k, v in eta.items()},
                "drop_m2_log_ratio": mi_from_risks(bayes + eta["m1"], bayes + eta["all"]),
                "unique_2_plus_synergy": exact.unique_2 + exact.synergy,
                "drop_m1_log_ratio": mi_from_risks(bayes + eta["m2"], bayes + eta["all"]),
                "unique_1_plus_synergy": exact.unique_1 + exact.synergy,
                "mi_from_risk_m1": mi_from_risks(var_y, bayes + eta["m1"]),
                "mi_1": exact.mi_1,
                "phi_info_m1": phi_info[0],
                "u1_plus_half_r_s": exact.unique_1 + (exact.redundancy + exact.synergy) / 2,
                "interaction_info": info[3] - info[1] - info[2] + info[0],
                "synergy_minus_redundancy": exact.synergy - exact.redundancy,
                "gap_m1": phi_r[0] - phi_m[0],
                "gap_m2": phi_r[1] - phi_m[1],
                "interaction_risk": retrain[3] - retrain[1] - retrain[2] + retrain[0],
            }
        )
    # the synergy world: pure synergy, exact by quadrature; scores are the block posteriors
    for combine in ("xor", "sum"):
        world = synthetic.SynergyWorld(dims=(8, 8), latent_dim=2, combine=combine, noise=0.3)
        mi = [world.mutual_information(s) for s in ("m1", "m2", "all")]
        exact = mmi_pid(*mi)
        est = {"mmi_plugin": [], "mmi_miller_madow": []}
        for r in range(reps):
            ev = world.sample(n, seed=r)
            s = world.block_scalars(ev)
            y = ev.y.numpy()
            est["mmi_plugin"].append(discretized_pid(y, s[:, 0], s[:, 1], bins=bins))
            est["mmi_miller_madow"].append(
                discretized_pid(y, s[:, 0], s[:, 1], bins=bins, correct=True)
            )
        rows += _pid_rows("synergy", f"synergy-{combine}", {"rho": float("nan")}, exact, est)
    pid = pd.DataFrame(rows)
    pid["n"], pid["bins"] = n, bins
    bias = _bias(pid[pid.family == "linear"])
    return pid, bias, pd.DataFrame(ident)


def _bias(pid: pd.DataFrame) -> pd.DataFrame:
    """Per estimator and atom: mean error over worlds (95% t-interval), RMSE, max |error|."""
    rows = []
    for (estimator, atom), grp in pid[pid.estimator != "exact"].groupby(
        ["estimator", "atom"], sort=False
    ):
        err = (grp.estimate - grp.exact).to_numpy()
        iv = interval(err, method="t")
        rows.append(
            {
                "estimator": estimator,
                "atom": atom,
                "n_worlds": len(err),
                "bias": iv.estimate,
                "ci_low": iv.low,
                "ci_high": iv.high,
                "rmse": float(np.sqrt(np.mean(err**2))),
                "max_abs_error": float(np.abs(err).max()),
                "mean_exact": float(grp.exact.mean()),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ the study
def run_games(
    out: str | Path,
    *,
    quick: bool = False,
    datasets: tuple[str, ...] = DATASETS,
    seeds: int | None = None,
    steps: int | None = None,
    n_test: int | None = None,
    pid_n: int | None = None,
    pid_reps: int | None = None,
) -> Path:
    """Play both games on each dataset, run the PID check; write the tables, the figure
    and ``report.md`` into ``out``; return the report's path."""
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise ValueError(f"datasets: unknown dataset {unknown[0]!r}; known: {', '.join(DATASETS)}")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    games, imbalance, samples, walls = [], [], [], {}
    for name, source, learners, m, n_seeds in _cases(quick, seeds, steps, n_test):
        if name not in datasets:
            continue
        t1 = time.perf_counter()
        for learner in learners:
            played = play_games(source, learner, m, list(range(n_seeds)))
            labels = {"dataset": name, "learner": learner.label, "m": m}
            g, i = game_tables(played, labels)
            games += g
            imbalance += i
            samples += per_sample_rows(played, labels)
        walls[name] = time.perf_counter() - t1
    lead = ["dataset", "learner", "m"]
    games_df = pd.DataFrame(games, columns=lead + GAME_COLUMNS)
    imb_df = pd.DataFrame(imbalance, columns=lead + IMBALANCE_COLUMNS)
    write_csv_atomic(games_df, out / "games.csv")
    write_csv_atomic(imb_df, out / "imbalance.csv")
    write_csv_atomic(pd.DataFrame(samples), out / "games_per_sample.csv")
    t1 = time.perf_counter()
    pid, bias, ident = pid_check(quick=quick, n=pid_n, reps=pid_reps)
    walls["pid"] = time.perf_counter() - t1
    write_csv_atomic(pid, out / "pid.csv")
    write_csv_atomic(bias, out / "pid_bias.csv")
    write_csv_atomic(ident, out / "pid_identities.csv")
    if len(imb_df):
        write_figure("fig_games", out)
    report = out / "report.md"
    text = games_report(games_df, imb_df, pid, bias, ident, walls, time.perf_counter() - t0)
    write_text_atomic(text, report)
    return report
