"""The two-block world: each modality sees its own latent block; the target combines them.

Latent blocks z_1, z_2 ~ N(0, I_r), independent. Modality k sees only its block:
x_k = f_k (A_k z_k + sigma_k e_k), A_k (d_k x r) with orthonormal columns, f_k a feature
scale (slow or fast to learn by gradient steps; no effect on information). The target
depends on one unit-variance scalar per block, a = u_1'z_1 and b = u_2'z_2, combined by

- ``"xor"`` (classification): y = 1[sign a != sign b]. Pure synergy: y is independent of
  each modality alone (I(y; x_k) = 0 exactly), so every partial information decomposition
  with non-negative atoms gives redundancy = uniques = 0 and synergy = I(y; x_1, x_2).
  No linear predictor beats a constant.
- ``"product"`` (regression): y = a b + s eps. Uncorrelated with every modality: the best
  linear predictor on any subset is the constant, and only a joint nonlinear model learns.
- ``"sum"`` (classification): y = 1[w_1 a + w_2 b + s eps > 0]. No synergy in the XOR
  sense; with equal weights, noises and feature scales the two modalities are exchangeable
  (the balanced control of the imbalance score).

Exact truth. Given x_k the block's scalar is Gaussian: a | x_1 ~ N(m_a, s_a^2) with
m_a = u_1'A_1'x_1 / (f_1 (1 + sigma_1^2)) ~ N(0, 1 - s_a^2) and s_a^2 = sigma_1^2 / (1 + sigma_1^2).
So p(y | x_S) is a closed form of m_a, m_b, and the Bayes risk and the mutual information
I(y; x_S) = H(y) - E H(y | x_S) are one- or two-dimensional Gaussian integrals, computed
by Gauss-Hermite quadrature (exact to rounding). For ``"product"`` the Bayes risk is
E Var(ab | x) + s^2 = 1 - (1 - s_a^2)(1 - s_b^2) + s^2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special

from mmtheory.core.data import MultiModalData
from mmtheory.core.seeding import SeedLike, as_generator
from mmtheory.core.validation import check_choice, check_int, check_real
from mmtheory.core.world import World
from synthetic.base import check_latent_dims, floats, per_modality

__all__ = ["SynergyWorld", "COMBINE"]

#: How the two blocks' scalars make the target, and the task each gives.
COMBINE = {"xor": "classification", "product": "regression", "sum": "classification"}
_NODES = 96  # Gauss-Hermite nodes per dimension


def _orthonormal(rng: np.random.Generator, d: int, r: int) -> np.ndarray:
    q, rr = np.linalg.qr(rng.standard_normal((d, r)))
    return q * np.sign(np.diag(rr))


def _entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in nats, 0 at p in {0, 1}."""
    p = np.clip(p, 0.0, 1.0)
    return special.entr(p) + special.entr(1.0 - p)


def _gauss(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal nodes (n^dim, dim) and weights (n^dim,) of a product rule."""
    t, w = np.polynomial.hermite_e.hermegauss(_NODES)
    w = w / w.sum()
    grids = np.meshgrid(*([t] * dim), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * dim), indexing="ij"), axis=0)
    return np.stack([g.ravel() for g in grids], axis=1), weights.ravel()


class SynergyWorld(World):
    """Two modalities, one latent block each, a target that combines them (module docstring).

    Parameters
    ----------
    dims : two ints, each >= ``latent_dim``
    names : two modality names (default ``m1``, ``m2``)
    latent_dim : r, the size of each block
    combine : ``"xor"``, ``"product"`` or ``"sum"``
    noise : float or two floats >= 0, observation noise sigma_k
    feature_scale : float or two floats > 0, f_k
    weight : float or two floats >= 0, w_k (``"sum"`` only)
    label_noise : float >= 0, s (``"sum"`` and ``"product"``)
    seed : int, seed of the maps A_k and directions u_k
    """

    def __init__(
        self,
        dims: Sequence[int] = (8, 8),
        *,
        names: Sequence[str] | None = None,
        latent_dim: int = 2,
        combine: str = "xor",
        noise: float | Sequence[float] = 0.5,
        feature_scale: float | Sequence[float] = 1.0,
        weight: float | Sequence[float] = 1.0,
        label_noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        dims = check_latent_dims(dims, latent_dim)
        if len(dims) != 2:
            raise ValueError(f"dims must list two modalities, got {len(dims)}: {dims}")
        check_choice(combine, "combine", tuple(COMBINE))
        sigma = per_modality(noise, 2, "noise")
        fscale = per_modality(feature_scale, 2, "feature_scale")
        if any(v <= 0 for v in fscale):
            raise ValueError(f"feature_scale must be > 0 for every modality, got {list(fscale)}")
        weights = per_modality(weight, 2, "weight")
        label_noise = check_real(label_noise, "label_noise", low=0)
        seed = check_int(seed, "seed", low=0)
        names = ["m1", "m2"] if names is None else names
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"names must be a list of strings, got {names!r}")
        names = list(names)
        if len(names) != 2 or len(set(names)) != 2:
            raise ValueError(f"names must be two distinct strings, got {names}")
        uses_weight, uses_noise = combine == "sum", combine in ("sum", "product")
        self.names = tuple(names)
        self.combine = combine
        self.task = COMBINE[combine]
        self.noise, self.feature_scale = sigma, fscale
        self.weight = weights if uses_weight else np.ones(2)
        self.label_noise = label_noise if uses_noise else 0.0
        self.latent_block = int(latent_dim)
        self._params = {
            "dims": dims,
            "names": names,
            "latent_dim": int(latent_dim),
            "combine": combine,
            "noise": floats(sigma),
            "feature_scale": floats(fscale),
            "weight": floats(self.weight),
            "label_noise": float(self.label_noise),
            "seed": seed,
        }
        self._A = [
            _orthonormal(as_generator(seed, "A", n), d, latent_dim) for n, d in zip(names, dims)
        ]
        u = [as_generator(seed, "u", n).standard_normal(latent_dim) for n in names]
        self._u = [v / np.linalg.norm(v) for v in u]
        #: posterior variance of each block's scalar given its modality
        self._post = sigma**2 / (1.0 + sigma**2)
        self.bayes_risk_method = "exact"

    # ------------------------------------------------------------- interface
    @property
    def name(self) -> str:
        return "synergy"

    @property
    def dims(self) -> dict[str, int]:
        return {n: int(A.shape[0]) for n, A in zip(self.names, self._A)}

    @property
    def output_dim(self) -> int:
        return 1 if self.task == "regression" else 2

    def params(self) -> dict[str, object]:
        return dict(self._params)

    def __repr__(self) -> str:
        return f"SynergyWorld(combine={self.combine!r}, noise={list(self.noise)})"

    def sample(self, n: int, seed: SeedLike = None) -> MultiModalData:
        n = self._check_n(n)
        r = self.latent_block
        z = [as_generator(seed, "latent", k).standard_normal((n, r)) for k in self.names]
        x = {}
        for k, (name, A, zk) in enumerate(zip(self.names, self._A, z)):
            e = as_generator(seed, "noise", name).standard_normal((n, A.shape[0]))
            x[name] = self.feature_scale[k] * (zk @ A.T + self.noise[k] * e)
        a, b = z[0] @ self._u[0], z[1] @ self._u[1]
        eps = as_generator(seed, "label").standard_normal(n)
        if self.combine == "product":
            return MultiModalData(x, a * b + self.label_noise * eps)
        if self.combine == "xor":
            y = (np.sign(a) != np.sign(b)).astype(np.int64)
        else:
            y = self.weight[0] * a + self.weight[1] * b + self.label_noise * eps > 0
            y = y.astype(np.int64)
        return MultiModalData(x, y, n_classes=2)

    # ------------------------------------------------------------- truth
    def block_scalars(self, data: MultiModalData) -> np.ndarray:
        """(n, 2): the posterior means E[a | x_1], E[b | x_2] of the block scalars."""
        out = []
        for k, (name, A, u) in enumerate(zip(self.names, self._A, self._u)):
            xk = np.asarray(data[name], dtype=float) / self.feature_scale[k]
            out.append(xk @ A @ u / (1.0 + self.noise[k] ** 2))
        return np.stack(out, axis=1)

    def conditional_entropy(self, subset: object | None = None) -> float:
        """H(y | x_S) in nats (exact to quadrature rounding); classification only.

        ``subset``: a subset of the modalities, or None for none (H(y) = log 2).
        """
        if self.task != "classification":
            raise ValueError(
                f"conditional_entropy needs a classification world; combine={self.combine!r} "
                "is regression"
            )
        keep = () if subset is None else self.subset(subset).indices
        post = self._post
        sd = np.sqrt(1.0 - post)  # standard deviation of the posterior means
        nodes, w = _gauss(2)
        m = nodes * sd  # (N, 2): posterior means of a and b
        # a block outside the subset: posterior mean 0 and variance 1
        mean = np.where(np.isin(np.arange(2), keep), m, 0.0)
        var = np.where(np.isin(np.arange(2), keep), post, 1.0)
        if self.combine == "xor":
            with np.errstate(divide="ignore", invalid="ignore"):
                pa = np.where(var > 0, special.ndtr(mean / np.sqrt(np.where(var > 0, var, 1))), 0)
            pa = np.where(var > 0, pa, (mean > 0).astype(float))
            p = pa[:, 0] * (1 - pa[:, 1]) + (1 - pa[:, 0]) * pa[:, 1]
        else:
            wts = self.weight
            loc = mean @ wts
            scale = np.sqrt(var @ wts**2 + self.label_noise**2)
            if scale == 0:
                p = (loc > 0).astype(float)
            else:
                p = special.ndtr(loc / scale)
        return float(np.sum(w * _entropy(p)))

    def mutual_information(self, subset: object) -> float:
        """I(y; x_S) = H(y) - H(y | x_S) in nats (exact to quadrature rounding)."""
        return self.conditional_entropy(None) - self.conditional_entropy(subset)

    def bayes_risk(self) -> float:
        """Classification: the Bayes cross-entropy H(y | x). Product: the Bayes squared risk
        1 - (1 - s_a^2)(1 - s_b^2) + s^2 (both exact)."""
        if self.task == "classification":
            return self.conditional_entropy(self.names)
        sa2, sb2 = self._post
        return float(1.0 - (1.0 - sa2) * (1.0 - sb2) + self.label_noise**2)
