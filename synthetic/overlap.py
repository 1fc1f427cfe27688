"""The overlap world: a reconstruction of the paper's Table 4 generator.

Shared c ~ N(0, I_d), private u_k ~ N(0, I_d); modality k observes [c; u_k]
(optionally through a random orthogonal mix); the target latent is
z* = w c + (1 - w) sum_k u_k. The paper's generator was not published; this
reconstruction reproduces Table 4 within about 2% (docs/theory.md section 5). Its
large-sample latent MSE is eta_inf(M) = d (1 - w)^2 (K - |M|).
"""

from __future__ import annotations

import numpy as np

from mmtheory.core.seeding import as_generator
from mmtheory.core.validation import check_bool, check_choice, check_int, check_real
from synthetic.base import LinearLatentWorld, check_unit_interval

__all__ = ["OverlapWorld"]


class OverlapWorld(LinearLatentWorld):
    """K modalities sharing a latent block c, each with a private block u_k.

    Parameters
    ----------
    n_modalities : int >= 1
        K; modalities are named ``m1 .. mK``.
    dim : int >= 1
        d, the size of each latent block; each modality has 2 d features.
    overlap : float in [0, 1]
        w: the weight of the shared block in the target.
    noise : float >= 0
        Observation noise standard deviation on every feature (0 in the paper).
    mix : bool
        Observe an invertible (random orthogonal) mix of [c; u_k] instead of [c; u_k].
    latent : "gaussian" or "uniform"
        Distribution of the unit-variance latent coordinates.
    seed : int
        Seed of the fixed mixing matrices (only used when ``mix``).
    """

    def __init__(
        self,
        n_modalities: int = 4,
        dim: int = 100,
        overlap: float = 0.5,
        *,
        noise: float = 0.0,
        mix: bool = False,
        latent: str = "gaussian",
        seed: int = 0,
    ) -> None:
        K = check_int(n_modalities, "n_modalities", low=1)
        d = check_int(dim, "dim", low=1)
        check_choice(latent, "latent", ("gaussian", "uniform"))
        self.noise = check_real(noise, "noise", low=0)
        w = check_unit_interval(overlap, "overlap")
        self.world_seed = check_int(seed, "seed", low=0)
        self.n_modalities, self.dim, self.overlap = K, d, w
        self.mix, self.latent = check_bool(mix, "mix"), latent
        self.names = tuple(f"m{k + 1}" for k in range(K))
        self.task = "regression"
        r = d * (K + 1)  # z = [c, u_1, ..., u_K]
        eye = np.eye(d)
        self._T, self._noise = {}, {}
        for k, name in enumerate(self.names):
            Tk = np.zeros((2 * d, r))
            Tk[:d, :d] = eye
            Tk[d:, d * (k + 1) : d * (k + 2)] = eye
            if self.mix:
                q, rr = np.linalg.qr(
                    as_generator(seed, "mix", name).standard_normal((2 * d, 2 * d))
                )
                Tk = (q * np.sign(np.diag(rr))) @ Tk
            self._T[name] = Tk
            self._noise[name] = self.noise
        B = np.zeros((d, r))
        B[:, :d] = w * eye
        for k in range(K):
            B[:, d * (k + 1) : d * (k + 2)] = (1 - w) * eye
        self._B = B
        self._label_noise = 0.0

    _features_are_linear = True  # column selection: z T_k^T with 0/1 T_k

    def _features(self, z: np.ndarray, name: str) -> np.ndarray:
        if self.mix:
            return super()._features(z, name)
        d, k = self.dim, self.names.index(name)
        return np.concatenate([z[:, :d], z[:, d * (k + 1) : d * (k + 2)]], axis=1)

    @property
    def name(self) -> str:
        return "overlap"

    def params(self) -> dict[str, object]:
        return {
            "n_modalities": self.n_modalities,
            "dim": self.dim,
            "overlap": self.overlap,
            "noise": self.noise,
            "mix": self.mix,
            "latent": self.latent,
            "seed": self.world_seed,
        }

    def eta_inf_closed_form(self, subset: object) -> float:
        """d (1 - w)^2 (K - |M|): exact when ``noise == 0``."""
        if self.noise != 0:
            raise ValueError("the closed form d (1 - w)^2 (K - |M|) holds only for noise = 0")
        return self.dim * (1 - self.overlap) ** 2 * (self.n_modalities - len(self.subset(subset)))

    def __repr__(self) -> str:
        return (
            f"OverlapWorld(n_modalities={self.n_modalities}, dim={self.dim}, "
            f"overlap={self.overlap})"
        )
