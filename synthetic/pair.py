"""Two correlated Gaussian modalities and the target y = sum(x_A) + sum(x_B): the setting of
Zhang, Latham & Saxe (ICML 2024), "Understanding Unimodal Bias in Multimodal Deep Linear
Networks", whose gradient-descent dynamics have closed forms (:mod:`mmtheory.theory.dynamics`).

Each modality has ``d`` coordinates; coordinate i of A and coordinate i of B are a
correlated pair, independent of the other pairs:

    x_A,i = sigma_A,i z_i,   x_B,i = sigma_B,i (rho_i z_i + sqrt(1 - rho_i^2) z'_i),
    y = sum_i (x_A,i + x_B,i) + label_noise * eps,

z, z', eps independent standard normal. So Var x_A,i = sigma_A,i^2, Var x_B,i = sigma_B,i^2,
corr(x_A,i, x_B,i) = rho_i. With scalars (d = 1) this is the paper's two-modality world.
All second moments, the best linear predictor on any subset and every exact risk come from
:class:`~synthetic.base.LinearLatentWorld`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmtheory.core.validation import check_real
from synthetic.base import LinearLatentWorld, floats

__all__ = ["GaussianPairWorld"]


def _per_pair(value: float | Sequence[float], name: str, **bounds) -> list[float]:
    items = [value] if np.isscalar(value) or isinstance(value, bool) else list(value)
    if not items:
        raise ValueError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")
    return [check_real(v, name, **bounds) for v in items]


class GaussianPairWorld(LinearLatentWorld):
    """Two modalities of correlated Gaussian pairs, y their sum (module docstring).

    Parameters
    ----------
    sigma_a, sigma_b : float > 0, or one per coordinate
        Standard deviations of modality A's and B's coordinates.
    rho : float in [-1, 1], or one per coordinate
        Correlation of each pair (x_A,i, x_B,i).
    names : the two modality names (default ``A``, ``B``)
    label_noise : float >= 0, standard deviation of the target noise

    Lists are broadcast against each other (a number counts as a list of one); their common
    length is the dimension d of each modality.
    """

    def __init__(
        self,
        sigma_a: float | Sequence[float] = 2.0,
        sigma_b: float | Sequence[float] = 1.0,
        rho: float | Sequence[float] = 0.0,
        *,
        names: Sequence[str] = ("A", "B"),
        label_noise: float = 0.0,
    ) -> None:
        sa = _per_pair(sigma_a, "sigma_a", low=0, low_open=True)
        sb = _per_pair(sigma_b, "sigma_b", low=0, low_open=True)
        rh = _per_pair(rho, "rho", low=-1.0, high=1.0)
        d = max(len(sa), len(sb), len(rh))
        for vals, name in ((sa, "sigma_a"), (sb, "sigma_b"), (rh, "rho")):
            if len(vals) not in (1, d):
                raise ValueError(
                    f"{name} must be a number or a list of {d} numbers (one per coordinate), "
                    f"got {len(vals)}"
                )
        sa, sb, rh = (np.broadcast_to(np.array(v), (d,)).copy() for v in (sa, sb, rh))
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"names must be a list of two strings, got {names!r}")
        names = list(names)
        if len(names) != 2 or names[0] == names[1]:
            raise ValueError(f"names must be two distinct strings, got {names!r}")
        label_noise = check_real(label_noise, "label_noise", low=0)

        self.names = tuple(names)
        self.task, self.latent = "regression", "gaussian"
        self.sigma_a, self.sigma_b, self.rho = sa, sb, rh
        self._params = {
            "sigma_a": floats(sa),
            "sigma_b": floats(sb),
            "rho": floats(rh),
            "names": names,
            "label_noise": label_noise,
        }
        T_a = np.concatenate([np.diag(sa), np.zeros((d, d))], axis=1)  # latent (z, z')
        T_b = np.concatenate([np.diag(sb * rh), np.diag(sb * np.sqrt(1 - rh**2))], axis=1)
        self._T = {names[0]: T_a, names[1]: T_b}
        self._noise = {names[0]: 0.0, names[1]: 0.0}
        self._B = np.ones((1, d)) @ (T_a + T_b)  # y = sum_i x_A,i + sum_i x_B,i
        self._label_noise = label_noise
        self.label_noise = label_noise

    @property
    def name(self) -> str:
        return "gaussian_pair"

    def params(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, list) else v for k, v in self._params.items()}

    def __repr__(self) -> str:
        return (
            f"GaussianPairWorld(sigma_a={self._params['sigma_a']}, "
            f"sigma_b={self._params['sigma_b']}, rho={self._params['rho']})"
        )
