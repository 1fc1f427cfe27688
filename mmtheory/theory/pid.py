"""Partial information decomposition (PID): exact for Gaussian worlds, estimated from samples.

Two sources x_1, x_2 (two modalities, or two groups of modalities) and a target y share
I(y; x_1, x_2) out in four atoms: redundancy R, unique U_1 and U_2, synergy S, with

    I(y; x_1) = R + U_1,   I(y; x_2) = R + U_2,   I(y; x_1, x_2) = R + U_1 + U_2 + S.

For jointly Gaussian (y, x_1, x_2) the minimum-mutual-information (MMI) PID,
R = min(I(y; x_1), I(y; x_2)), is the one the common PIDs reduce to (Barrett 2015,
Phys. Rev. E 91, 052802): every atom is a closed form of the covariance,

    I(y; x_S) = 1/2 log det Sigma_yy / det(Sigma_yy - Sigma_yS Sigma_SS^+ Sigma_Sy)   (nats).

:func:`gaussian_pid` computes it from a linear world's exact second moments. For a scalar
target the mutual information is the log-ratio of two squared risks,
I(y; x_S) = 1/2 log(Var y / r_S), r_S = bayes_risk + eta_inf(S) the best linear risk on S.
Hence the identities the report uses: dropping x_2 raises eta_inf by
(bayes + eta_inf(1)) / (bayes + eta_inf(12)) = exp(2 (U_2 + S)), so redundant modalities
leave eta_inf unchanged (U_2 + S = 0) and unique or synergistic information raises it; and
in the information game v(S) = I(y; x_S), v(empty) = 0, the Shapley value of x_1 is
U_1 + R/2 + S/2 and the Grabisch interaction is S - R (for K = 2 and any PID).

Estimation (:func:`discretized_pid`): each source is a scalar score, y and the scores are
binned into equal-frequency bins, and the PID of the binned joint distribution is computed
by plug-in (:func:`discrete_pid`): MMI, MMI with the Miller-Madow bias correction of each
mutual information, and the Williams-Beer I_min (Williams and Beer 2010, arXiv:1004.2515).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "PID",
    "PID_ATOMS",
    "discrete_pid",
    "discretized_pid",
    "gaussian_mi",
    "gaussian_pid",
    "linear_scores",
    "mi_from_risks",
    "mmi_pid",
]

PID_ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")


@dataclass(frozen=True)
class PID:
    """The four atoms and the three mutual informations, in nats."""

    redundancy: float
    unique_1: float
    unique_2: float
    synergy: float
    mi_1: float
    mi_2: float
    mi_12: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mmi_pid(mi_1: float, mi_2: float, mi_12: float) -> PID:
    """The MMI decomposition of three mutual informations: R = min(I_1, I_2)."""
    red = min(mi_1, mi_2)
    return PID(red, mi_1 - red, mi_2 - red, mi_12 - mi_1 - mi_2 + red, mi_1, mi_2, mi_12)


def _pinv_quad(S: np.ndarray, C: np.ndarray) -> np.ndarray:
    """C^T S^+ C for symmetric PSD S (eigenvalues below the rounding level are cut)."""
    if S.shape[0] == 0:
        return np.zeros((C.shape[1], C.shape[1]))
    w, V = np.linalg.eigh(S)
    cut = max(S.shape) * np.finfo(float).eps * max(float(w.max()), 0.0) * 10
    keep = w > cut
    P = V[:, keep].T @ C
    return P.T @ (P / w[keep][:, None])


def gaussian_mi(cov: np.ndarray, target, source) -> float:
    """I(y; x_S) in nats of a zero-mean Gaussian with covariance ``cov`` ((D, D)).

    ``target`` and ``source``: index arrays into ``cov``. A target determined by the source
    (singular conditional covariance) has infinite information.
    """
    cov = np.asarray(cov, dtype=float)
    t, s = np.asarray(target, dtype=int), np.asarray(source, dtype=int)
    Syy = cov[np.ix_(t, t)]
    cond = Syy - _pinv_quad(cov[np.ix_(s, s)], cov[np.ix_(s, t)])
    sign_y, logdet_y = np.linalg.slogdet(Syy)
    if sign_y <= 0:
        raise ValueError("the target's covariance is singular: it carries no entropy")
    w = np.linalg.eigvalsh((cond + cond.T) / 2)
    if w.min() <= np.finfo(float).eps * max(float(np.abs(w).max()), 1.0) * 10 * len(w):
        return float("inf")
    return float(0.5 * (logdet_y - np.sum(np.log(w))))


def gaussian_pid(world, groups=None) -> PID:
    """The exact MMI PID of a linear world from its second moments (nats).

    Parameters
    ----------
    world : a linear latent world (``second_moments()``, ``feature_slices()``, ``names``)
    groups : two lists of modality names (the two sources); default the world's two
        modalities (a world with K != 2 needs ``groups``)

    The target is y for regression worlds; for classification worlds the second moments
    describe the logits B z, and the PID is that of the logits. Gaussian worlds only give
    the world's own PID; for uniform latents it is the PID of the Gaussian with the same
    covariance.
    """
    names = tuple(world.names)
    if groups is None:
        if len(names) != 2:
            raise ValueError(
                f"groups: a world with {len(names)} modalities needs two groups of them, got none"
            )
        groups = [[names[0]], [names[1]]]
    groups = [list(g) for g in groups]
    if len(groups) != 2 or not all(groups):
        raise ValueError(f"groups must be two non-empty lists of modality names, got {groups}")
    unknown = [k for g in groups for k in g if k not in names]
    if unknown:
        raise ValueError(f"groups: unknown modality {unknown[0]!r}; known: {list(names)}")
    if set(groups[0]) & set(groups[1]):
        raise ValueError(f"groups must not share a modality, got {groups}")
    sigma, sxy, syy = world.second_moments()
    d, p = sigma.shape[0], syy.shape[0]
    cov = np.block([[sigma, sxy], [sxy.T, syy]])
    sl = world.feature_slices()
    idx = [np.concatenate([np.arange(sl[k].start, sl[k].stop) for k in g]) for g in groups]
    y = np.arange(d, d + p)
    return mmi_pid(
        gaussian_mi(cov, y, idx[0]),
        gaussian_mi(cov, y, idx[1]),
        gaussian_mi(cov, y, np.concatenate(idx)),
    )


def mi_from_risks(var_y: float, risk: float) -> float:
    """I(y; x_S) = 1/2 log(Var y / r_S) for a Gaussian scalar target (nats), where r_S is
    the best linear squared risk on S."""
    return float(0.5 * np.log(var_y / risk))


# ------------------------------------------------------------------ discrete PIDs
def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mi(pxy: np.ndarray) -> float:
    """I(X; Y) of a 2-D joint pmf (nats)."""
    return _entropy(pxy.sum(1)) + _entropy(pxy.sum(0)) - _entropy(pxy.ravel())


def _imin(p: np.ndarray) -> float:
    """Williams-Beer redundancy: sum_y p(y) min_k I(Y = y; X_k), p[y, x1, x2]."""
    py = p.sum(axis=(1, 2))
    specific = []
    for axis in (2, 1):  # marginal of (y, x1), then of (y, x2)
        pyx = p.sum(axis=axis)
        px = pyx.sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_y_given_x = np.where(px > 0, pyx / np.where(px > 0, px, 1), 0)
            p_x_given_y = np.where(py[:, None] > 0, pyx / np.where(py > 0, py, 1)[:, None], 0)
            ratio = np.where(pyx > 0, np.log(p_y_given_x / py[:, None]), 0.0)
        specific.append((p_x_given_y * ratio).sum(1))
    return float((py * np.minimum(*specific)).sum())


def discrete_pid(p, *, redundancy: str = "mmi", n: int | None = None) -> PID:
    """PID of a discrete joint pmf ``p[y, x1, x2]`` (nats).

    ``redundancy``: ``"mmi"`` (min of the two mutual informations) or ``"imin"``
    (Williams-Beer). ``n``: with a sample size, each plug-in mutual information gets the
    Miller-Madow correction -(cells_xy - cells_x - cells_y + 1) / (2 n), counting occupied
    cells (MMI only).
    """
    p = np.asarray(p, dtype=float)
    if p.ndim != 3 or (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"p must be a 3-D pmf p[y, x1, x2] adding up to 1, got shape {p.shape}")
    if redundancy not in ("mmi", "imin"):
        raise ValueError(f"redundancy must be 'mmi' or 'imin', got {redundancy!r}")
    if n is not None and redundancy != "mmi":
        raise ValueError("the Miller-Madow correction (n) applies to redundancy 'mmi' only")
    pairs = [p.sum(axis=2), p.sum(axis=1), p.reshape(p.shape[0], -1)]
    mis = []
    for pyx in pairs:
        mi = _mi(pyx)
        if n is not None:
            cells = (pyx > 0).sum() - (pyx.sum(1) > 0).sum() - (pyx.sum(0) > 0).sum() + 1
            mi -= cells / (2 * n)
        mis.append(mi)
    if redundancy == "mmi":
        return mmi_pid(*mis)
    red = _imin(p)
    m1, m2, m12 = mis
    return PID(red, m1 - red, m2 - red, m12 - m1 - m2 + red, m1, m2, m12)


def _codes(v: np.ndarray, bins: int) -> np.ndarray:
    """Equal-frequency bin codes 0..bins-1 of a float vector (integers are kept as codes)."""
    v = np.asarray(v)
    if np.issubdtype(v.dtype, np.integer):
        return np.unique(v, return_inverse=True)[1]
    ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable")
    return (ranks * bins) // len(v)


def discretized_pid(y, s1, s2, *, bins: int = 8, redundancy: str = "mmi", correct=False) -> PID:
    """The plug-in PID of binned samples: y (n,) and two scalar source scores (n,) each.

    Each float variable is cut into ``bins`` equal-frequency bins (integer class labels are
    used as they are); ``correct`` applies Miller-Madow (MMI only).
    """
    y, s1, s2 = (np.asarray(a).ravel() for a in (y, s1, s2))
    if not len(y) == len(s1) == len(s2):
        raise ValueError(f"y, s1 and s2 must have one row each, got {len(y)}, {len(s1)}, {len(s2)}")
    cy, c1, c2 = _codes(y, bins), _codes(s1, bins), _codes(s2, bins)
    p = np.zeros((cy.max() + 1, c1.max() + 1, c2.max() + 1))
    np.add.at(p, (cy, c1, c2), 1.0)
    return discrete_pid(p / len(y), redundancy=redundancy, n=len(y) if correct else None)


def linear_scores(x_fit, y_fit, x_eval) -> np.ndarray:
    """A source's scalar score: its least-squares prediction of y (with intercept), fitted on
    ``x_fit`` (n_fit, d), ``y_fit`` (n_fit,) and evaluated on ``x_eval`` (n, d) -> (n,).

    For jointly Gaussian data whose source depends on a one-dimensional latent, the score is
    a sufficient statistic of the source for y and for the other source.
    """
    A = np.column_stack([np.asarray(x_fit, dtype=float), np.ones(len(x_fit))])
    coef, *_ = np.linalg.lstsq(A, np.asarray(y_fit, dtype=float), rcond=None)
    return np.column_stack([np.asarray(x_eval, dtype=float), np.ones(len(x_eval))]) @ coef
