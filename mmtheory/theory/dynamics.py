"""Closed forms of multimodal learning dynamics, and the same quantities read off trajectories.

Zhang, Latham & Saxe, "Understanding Unimodal Bias in Multimodal Deep Linear Networks",
ICML 2024 (arXiv 2312.00935). A deep linear network whose two modalities A and B are fused
at layer L_f of L, trained by gradient descent on the squared loss from a small
initialisation, first learns the modality with the larger input-output correlation (A),
sits on a plateau, then learns B. With Sigma the features' second moments and
Sigma_yk = E[y x_k^T]:

- plateau: the network equals the least-squares predictor on {A} alone,
  W_A^uni = Sigma_yA Sigma_AA^-1, and W_B = 0 (the subset ERM of
  :meth:`~mmtheory.core.world.LinearOracle.best_linear`);
- misattribution: W_A(plateau) - W_A(final) = W_A^uni - W_A^*, which for two scalar
  modalities with y = x_A + x_B is rho sigma_B / sigma_A;
- time ratio at last-layer fusion (L_f = L, any L):
  t_B / t_A = 1 + (|Sigma_yA| - |Sigma_yB|) / |Sigma_yB - W_A^uni Sigma_AB|,
  for scalars with y = x_A + x_B: 1 + (k - 1) / (1 - rho^2), k = (sigma_A / sigma_B)^2.
  When Sigma_yB points against B's plateau residual (scalars: sigma_B + rho sigma_A < 0),
  B's useful direction shrinks at rate |Sigma_yB| while A is learned, and |Sigma_yB|
  enters with a minus sign: the scalar closed form holds for every rho, the norm form only
  when they point the same way (:attr:`PairMoments.rates`);
- intermediate fusion (1 < L_f < L): 1 + lag / I, with I the time A takes (an integral
  over A's per-layer scale u from the initial scale u0 to 1) and lag B's extra time
  (:func:`time_ratio_depth`); early fusion (L_f = 1): 1.

Reconstruction notes. The paper's own text could not be read here; the formulas above
were re-derived (gradient flow of balanced scalar chains: du/dt = u^(L_f-1) v^(L-L_f) g,
with v^2 = u_A^2 + u_B^2 for the shared layers and g the residual input-output
correlation) and agree with the brief's statements and with the authors' released code
(github.com/yedizhang/unimodal-bias, read, not copied). Choices made:

- time: a modality's time is the first (linearly interpolated) step at which the norm of
  its effective weights reaches half its reference value: for A, half its plateau value
  |W_A^uni| (as in the authors' code); for B, half its final value. Times count steps from
  the initialisation, so t_B / t_A is unitless and the same for any learning rate;
- plateau time: the midpoint (t_A + t_B) / 2 (as in the authors' code); the weights there
  are interpolated linearly between recorded steps;
- "final": the last recorded step (training must have converged: ``final_gap``);
- which modality is A: the one with the larger |Sigma_yk| (Frobenius norm);
- multi-dimensional modalities: norms replace absolute values (the paper's multi-
  dimensional time ratio, signed as above), and ``misattribution`` and ``plateau_*`` hold
  Frobenius norms. When Sigma_yB is neither along nor against the residual, B's growth
  while A is learned is only partly along its later direction, and the formula is an
  approximation (the paper's multi-dimensional sweep shows the same scatter);
- the intermediate-fusion integral takes A's per-layer scale from u0 to 1 and B's
  remaining growth after A is learned at the plateau's residual correlation, with shared
  layers of scale |W_A^uni|^(1/L) (the authors' approximations). u0 is an input:
  :func:`initial_scale` gives the one this module uses for trained networks.

Theory beside measurement: :func:`predicted_dynamics` and :func:`measured_dynamics` take
the same :class:`DynamicsRun` and return tables of the same shape (:data:`COLUMNS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate

from mmtheory.core.world import LinearOracle
from mmtheory.engine.recording import Trajectory
from mmtheory.models.learner import Learner

__all__ = [
    "COLUMNS",
    "VERDICT_COLUMNS",
    "DynamicsRun",
    "PairMoments",
    "Tolerances",
    "dynamics_verdicts",
    "fusion_layers",
    "fusion_order_verdict",
    "initial_scale",
    "measured_dynamics",
    "misattribution_scalar",
    "predicted_dynamics",
    "read_times",
    "time_ratio_depth",
    "time_ratio_scalar",
]

#: the columns of :func:`predicted_dynamics` and :func:`measured_dynamics`, one row per group
COLUMNS = (
    "time_ratio",
    "misattribution",
    "plateau_first",
    "plateau_second",
    "plateau_gap",
    "final_gap",
)


# ----------------------------------------------------------------- closed forms
def time_ratio_scalar(sigma_a: float, sigma_b: float, rho: float) -> float:
    """t_B / t_A = 1 + (k - 1) / (1 - rho^2), k = (sigma_A / sigma_B)^2, for two scalar
    modalities and y = x_A + x_B, two-layer (or last-layer) late fusion. Needs |rho| < 1."""
    if not abs(rho) < 1:
        raise ValueError(f"rho must be in (-1, 1) for a finite time ratio, got {rho}")
    k = (sigma_a / sigma_b) ** 2
    return 1.0 + (k - 1.0) / (1.0 - rho**2)


def misattribution_scalar(sigma_a: float, sigma_b: float, rho: float) -> float:
    """W_A(plateau) - W_A(final) = rho sigma_B / sigma_A (scalars, y = x_A + x_B)."""
    return rho * sigma_b / sigma_a


@dataclass(frozen=True)
class PairMoments:
    """The second moments two modalities' dynamics depend on, from a linear oracle.

    ``first`` is A, the modality with the larger |Sigma_yk| (learned first). Arrays:
    ``sigma_aa`` (d_A, d_A), ``sigma_ab`` (d_A, d_B), ``sigma_ya`` (p, d_A),
    ``sigma_yb`` (p, d_B).
    """

    first: str
    second: str
    sigma_aa: np.ndarray
    sigma_ab: np.ndarray
    sigma_ya: np.ndarray
    sigma_yb: np.ndarray

    @classmethod
    def of(cls, oracle: LinearOracle, names: Sequence[str]) -> PairMoments:
        """The moments of modalities ``names`` (two of the oracle's), A chosen by |Sigma_yk|."""
        if len(names) != 2:
            raise ValueError(f"the dynamics oracles need two modalities, got {list(names)}")
        sigma, sxy, _ = oracle.second_moments()
        sl = oracle.feature_slices()
        a, b = names
        if np.linalg.norm(sxy[sl[b]]) > np.linalg.norm(sxy[sl[a]]):
            a, b = b, a
        return cls(a, b, sigma[sl[a], sl[a]], sigma[sl[a], sl[b]], sxy[sl[a]].T, sxy[sl[b]].T)

    @property
    def unimodal_first(self) -> np.ndarray:
        """W_A^uni = Sigma_yA Sigma_AA^-1, (p, d_A): the least-squares predictor on {A}."""
        return np.linalg.solve(self.sigma_aa.T, self.sigma_ya.T).T

    @property
    def rates(self) -> tuple[float, float, float]:
        """(g_A, g_B, g_B'): A's growth rate |Sigma_yA| from a small initialisation; B's,
        |Sigma_yB| signed by whether Sigma_yB points along B's plateau residual
        Sigma_yB - W_A^uni Sigma_AB (negative: B's useful direction shrinks while A is
        learned); and g_B' = |Sigma_yB - W_A^uni Sigma_AB|, B's rate on A's plateau."""
        residual = self.sigma_yb - self.unimodal_first @ self.sigma_ab
        g_b = float(np.linalg.norm(self.sigma_yb))
        if float(np.sum(self.sigma_yb * residual)) < 0:
            g_b = -g_b
        return float(np.linalg.norm(self.sigma_ya)), g_b, float(np.linalg.norm(residual))

    def time_ratio(self) -> float:
        """t_B / t_A at last-layer fusion: 1 + (g_A - g_B) / g_B' (:attr:`rates`): the
        multi-dimensional form |Sigma_yA|, |Sigma_yB|, |Sigma_yB - W_A^uni Sigma_AB| when
        Sigma_yB points along the plateau residual; for scalars, signed, it is
        :func:`time_ratio_scalar` for either sign of rho."""
        g_a, g_b, g_res = self.rates
        if g_res == 0:
            return math.inf
        return 1.0 + (g_a - g_b) / g_res


def _integrand(u: float, g_a: float, k: float, u0: float, depth: int, fuse: int) -> float:
    """1 / (du_A/dt) while A is learned: g_A u^(L_f-1) (u^2 + u_B(u)^2)^((L-L_f)/2), with
    u_B(u) from d u_B / d u_A = k (u_B / u_A)^(L_f - 1) (B grows at the ratio k of rates)."""
    if fuse == 2:
        ub = math.exp(k * math.log(u) + (1 - k) * math.log(u0))
    else:
        ub = (k * u ** (2 - fuse) + (1 - k) * u0 ** (2 - fuse)) ** (1 / (2 - fuse))
    return 1.0 / (g_a * u ** (fuse - 1) * (u**2 + ub**2) ** ((depth - fuse) / 2))


def time_ratio_depth(moments: PairMoments, depth: int, fuse: int, u0: float) -> float:
    """t_B / t_A of a depth-L linear network fused at layer L_f (1 <= L_f <= L), from a
    balanced initial per-layer scale u0 (0 < u0 < 1).

    L_f = 1 (early fusion): 1. L_f = L (last-layer fusion), or L = 2: the closed form
    :meth:`PairMoments.time_ratio`, whatever u0. Otherwise 1 + lag / I with
    I = int_{u0}^{1} du / (g_A u^(L_f-1) (u^2 + u_B(u)^2)^((L-L_f)/2)) (A's time) and
    lag = u_B0^(2-L_f) / ((L_f - 2) g_B' W^((L-L_f)/L)) for L_f > 2, or
    (1 - k) ln(1/u0) / (g_B' W^((L-L_f)/L)) for L_f = 2 (B's remaining time on A's
    plateau), where k = g_B / g_A, u_B0^(2-L_f) = (1 - k) u0^(2-L_f), g_B' the plateau's
    residual correlation and W = |W_A^uni|.
    """
    if not (1 <= fuse <= depth):
        raise ValueError(f"fusion layer must be in 1..{depth} (the depth), got {fuse}")
    if not (0 < u0 < 1):
        raise ValueError(f"u0 (initial per-layer scale) must be in (0, 1), got {u0}")
    if fuse == 1:
        return 1.0
    if fuse == depth or depth == 2:
        return moments.time_ratio()
    g_a, g_b, g_res = moments.rates
    k = g_b / g_a
    shared = float(np.linalg.norm(moments.unimodal_first)) ** ((depth - fuse) / depth)
    if fuse == 2:
        lag = (1 - k) * math.log(1 / u0) / (g_res * shared)
    else:
        lag = (1 - k) * u0 ** (2 - fuse) / ((fuse - 2) * g_res * shared)
    time_a, _ = integrate.quad(_integrand, u0, 1.0, args=(g_a, k, u0, depth, fuse), limit=200)
    return 1.0 + lag / time_a


def fusion_layers(learner: Learner) -> tuple[int, int]:
    """(L, L_f) of a learner in the paper's notation: L weight layers along each path, the
    first L_f of them modality-specific. Late fusion: the encoder's layers and the head's
    block, then ``head_layers`` shared layers; early fusion: L_f = 1."""
    if learner.kind == "late_fusion":
        fuse = learner.encoder_depth + 1
        return fuse + learner.head_layers, fuse
    if learner.kind == "early_fusion":
        return 2 + learner.head_layers, 1
    raise ValueError(f"fusion layers are defined for late and early fusion, got {learner.kind!r}")


def initial_scale(learner: Learner) -> float:
    """u0 for :func:`time_ratio_depth`: the typical magnitude of one initial weight entry,
    ``init_scale / sqrt(3 * fan_in)`` at fan-in 1 (the uniform draw's standard deviation)
    (a modelling choice: the theory's chains are balanced scalars)."""
    return learner.init_scale / math.sqrt(3.0)


# ---------------------------------------------------------------- the two tables
@dataclass
class DynamicsRun:
    """Recorded trajectories of G groups, each trained on its own world, and the model
    read in each: ``trajectory`` (G, S, T, ...), ``model`` the position in the plan of the
    model holding both modalities, ``oracles[g]`` group g's world oracle, ``names`` the two
    modalities, ``learner`` the architecture (for the fusion layer), ``u0`` the initial
    per-layer scale (default :func:`initial_scale`)."""

    trajectory: Trajectory
    model: int
    oracles: Sequence[LinearOracle]
    names: tuple[str, str]
    learner: Learner
    u0: float | None = None

    def __post_init__(self) -> None:
        if self.trajectory.weights is None:
            raise ValueError("dynamics need effective weights: train a linear network")
        G = self.trajectory.weights.shape[0]
        if len(self.oracles) != G:
            raise ValueError(f"oracles needs one oracle per group ({G}), got {len(self.oracles)}")

    @property
    def G(self) -> int:
        return len(self.oracles)

    def moments(self, g: int) -> PairMoments:
        return PairMoments.of(self.oracles[g], self.names)


def _scalar(pm: PairMoments) -> bool:
    return pm.sigma_ab.shape == (1, 1) and pm.sigma_ya.shape == (1, 1)


def _value(block: np.ndarray, scalar: bool) -> float:
    return float(block.ravel()[0]) if scalar else float(np.linalg.norm(block))


def predicted_dynamics(run: DynamicsRun) -> pd.DataFrame:
    """The theory's values of :data:`COLUMNS` for every group (index ``group``).

    plateau_first / plateau_second: A's and B's weights on the plateau (W_A^uni and 0);
    misattribution: W_A^uni - W_A^* (the full least-squares predictor); plateau_gap and
    final_gap: 0 (the plateau is the subset ERM, training ends at the full ERM). Scalars
    are signed values; multi-dimensional blocks are Frobenius norms.
    """
    L, Lf = fusion_layers(run.learner)
    u0 = run.u0 if run.u0 is not None else initial_scale(run.learner)
    rows = []
    for g in range(run.G):
        pm = run.moments(g)
        oracle = run.oracles[g]
        sl = oracle.feature_slices()
        full = oracle.best_linear(None)[sl[pm.first]].T  # (p, d_A)
        scalar = _scalar(pm)
        rows.append(
            {
                "group": g,
                "time_ratio": time_ratio_depth(pm, L, Lf, u0),
                "misattribution": _value(pm.unimodal_first - full, scalar),
                "plateau_first": _value(pm.unimodal_first, scalar),
                "plateau_second": 0.0,
                "plateau_gap": 0.0,
                "final_gap": 0.0,
            }
        )
    return pd.DataFrame(rows).set_index("group")[list(COLUMNS)]


def _crossing(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First step at which ``values`` reaches ``level`` (linear interpolation between
    records), NaN when it never does."""
    above = np.nonzero(values >= level)[0]
    if above.size == 0 or level <= 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(steps[0])
    v0, v1 = values[i - 1], values[i]
    return float(steps[i - 1] + (level - v0) * (steps[i] - steps[i - 1]) / (v1 - v0))


def _at(steps: np.ndarray, values: np.ndarray, t: float) -> np.ndarray:
    """``values`` (T, ...) interpolated linearly at step ``t``."""
    i = int(np.clip(np.searchsorted(steps, t), 1, len(steps) - 1))
    w = (t - steps[i - 1]) / (steps[i] - steps[i - 1])
    return (1 - w) * values[i - 1] + w * values[i]


def read_times(run: DynamicsRun) -> pd.DataFrame:
    """Per group: ``t_first`` and ``t_second`` (the steps at which A's and B's effective
    weights reach half their plateau and final norms), ``t_plateau`` (their midpoint),
    and ``first`` / ``second`` (which modality is A and B)."""
    traj = run.trajectory
    steps = traj.steps.astype(float)
    rows = []
    for g in range(run.G):
        pm = run.moments(g)
        Wa = traj.modality_weights(pm.first)[g, run.model]  # (T, d_A, p)
        Wb = traj.modality_weights(pm.second)[g, run.model]
        na = np.linalg.norm(Wa.reshape(len(steps), -1), axis=1)
        nb = np.linalg.norm(Wb.reshape(len(steps), -1), axis=1)
        t_a = _crossing(steps, na, 0.5 * float(np.linalg.norm(pm.unimodal_first)))
        t_b = _crossing(steps, nb, 0.5 * nb[-1])
        rows.append(
            {
                "group": g,
                "first": pm.first,
                "second": pm.second,
                "t_first": t_a,
                "t_second": t_b,
                "t_plateau": 0.5 * (t_a + t_b),
            }
        )
    return pd.DataFrame(rows).set_index("group")


def measured_dynamics(run: DynamicsRun) -> pd.DataFrame:
    """The same quantities as :func:`predicted_dynamics`, read off the trajectories.

    time_ratio = t_second / t_first (:func:`read_times`); plateau_* the weights at
    t_plateau; misattribution = W_A(t_plateau) - W_A(final); plateau_gap the largest
    absolute difference between the weights at t_plateau and the least-squares predictor
    on {A} (both modalities' rows); final_gap the same between the final weights and the
    full least-squares predictor.
    """
    traj = run.trajectory
    assert traj.weights is not None  # checked by DynamicsRun
    steps = traj.steps.astype(float)
    times = read_times(run)
    rows = []
    for g in range(run.G):
        pm = run.moments(g)
        oracle = run.oracles[g]
        W = traj.weights[g, run.model]  # (T, D, p)
        t_a, t_b, t_p = times.loc[g, ["t_first", "t_second", "t_plateau"]]
        plateau = _at(steps, W, t_p) if np.isfinite(t_p) else np.full(W.shape[1:], np.nan)
        sa, sb = traj.rows(pm.first), traj.rows(pm.second)
        scalar = _scalar(pm)
        rows.append(
            {
                "group": g,
                "time_ratio": t_b / t_a,
                "misattribution": _value((plateau[sa] - W[-1, sa]).T, scalar),
                "plateau_first": _value(plateau[sa].T, scalar),
                "plateau_second": _value(plateau[sb].T, scalar),
                "plateau_gap": float(np.abs(plateau - oracle.best_linear([pm.first])).max()),
                "final_gap": float(np.abs(W[-1] - oracle.best_linear(None)).max()),
            }
        )
    return pd.DataFrame(rows).set_index("group")[list(COLUMNS)]


# ------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Tolerances:
    """What "the theory holds" means for :func:`dynamics_verdicts`.

    ratio : relative error allowed on the time ratio (the closed forms neglect O(1) times
        against ln(1 / initial scale): a systematic, not a statistical, error)
    fraction : the share of rows whose time ratio must be within ``ratio``
    weights : absolute error allowed on plateau weights, misattribution and the final
        weights (gradient descent from a small initialisation sits within
        O(initial scale) of the fixed points)
    """

    ratio: float = 0.10
    fraction: float = 0.90
    weights: float = 1e-3


#: the columns of :func:`dynamics_verdicts`
VERDICT_COLUMNS = ("check", "rule", "value", "holds")


def dynamics_verdicts(
    predicted: pd.DataFrame, measured: pd.DataFrame, tol: Tolerances | None = None
) -> pd.DataFrame:
    """Four checks of measured against predicted (tables of :data:`COLUMNS`, same index):

    - ``time_ratio``: the share of rows with |measured / predicted - 1| <= tol.ratio is at
      least tol.fraction;
    - ``plateau``: every row's plateau weights (first and second modality) within
      tol.weights of the prediction (the least-squares predictor on the first modality);
    - ``misattribution``: every row within tol.weights;
    - ``converged``: every run ended at the full least-squares predictor (measured
      ``final_gap`` <= tol.weights), the precondition of reading "final" weights.

    Rows with a missing value (a time never reached) count as failures.
    """
    tol = tol or Tolerances()
    if not predicted.index.equals(measured.index):
        raise ValueError("predicted and measured tables must have the same rows")
    rel = (measured.time_ratio / predicted.time_ratio - 1).abs()
    share = float((rel <= tol.ratio).mean())
    plateau = pd.concat(
        [
            (measured.plateau_first - predicted.plateau_first).abs(),
            (measured.plateau_second - predicted.plateau_second).abs(),
        ],
        axis=1,
    ).max(axis=1, skipna=False)
    mis = (measured.misattribution - predicted.misattribution).abs()

    def worst(values: pd.Series) -> float:
        return math.inf if values.isna().any() else float(values.max())

    rows = [
        (
            "time_ratio",
            f"share of rows within {tol.ratio:.0%} >= {tol.fraction:.0%}",
            share,
            share >= tol.fraction,
        ),
        (
            "plateau",
            f"max |error| <= {tol.weights:g}",
            worst(plateau),
            worst(plateau) <= tol.weights,
        ),
        (
            "misattribution",
            f"max |error| <= {tol.weights:g}",
            worst(mis),
            worst(mis) <= tol.weights,
        ),
        (
            "converged",
            f"max final_gap <= {tol.weights:g}",
            worst(measured.final_gap),
            worst(measured.final_gap) <= tol.weights,
        ),
    ]
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def fusion_order_verdict(
    table: pd.DataFrame,
    keys: Sequence[str] = ("rho", "sigma_ratio", "seed"),
    column: str = "time_ratio_measured",
    order: str = "fuse",
) -> pd.DataFrame:
    """ "The deeper the fusion, the longer the unimodal phase": the share of runs (rows
    grouped by ``keys``) whose ``column`` strictly increases with ``order`` (the fusion
    layer L_f); holds when every run does. One row of :data:`VERDICT_COLUMNS`."""
    increasing = [
        bool(np.all(np.diff(run.sort_values(order)[column].to_numpy()) > 0))
        for _, run in table.groupby(list(keys))
    ]
    share = float(np.mean(increasing)) if increasing else math.nan
    return pd.DataFrame(
        [("deeper_fusion", "t_B/t_A increases with L_f in every run", share, share == 1.0)],
        columns=list(VERDICT_COLUMNS),
    )
