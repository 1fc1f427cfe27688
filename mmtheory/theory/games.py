"""Cooperative games over modalities: exact Shapley values, interactions and the peers' conventions.

A game over K modalities is an array of values ``v`` with a last axis of length 2^K indexed
by coalition bitmask: bit k of ``c`` is set when modality k (in the data's order) is
present; ``v[..., 0]`` is the empty coalition. Leading axes are anything (seeds, samples,
classes), so one call gives the per-sample values of a whole batch.

Two games are played on the same models (:mod:`mmtheory.studies.contributions`):

- **retrain** (learnability): ``v(S) = -risk`` of the ERM trained on the modalities of S;
- **masked** (reliance): ``v(S) = -risk`` of the *one* joint model trained on every
  modality, with the modalities outside S replaced by zeros (``"zero"`` mask) or by their
  training means (``"mean"`` mask).

How the empty coalition is valued is a convention (:data:`EMPTY_CONVENTIONS`):
``"constant"`` (the best constant predictor, the null risk: mmtheory's retrain game),
``"masked"`` (the joint model with everything masked) or ``"zero"`` (0; AGM's output game).
Pairwise interactions come in two conventions (:data:`INTERACTION_CONVENTIONS`): the
Shapley interaction index of Grabisch and Roubens (``"grabisch"``) and InterSHAP's, which
is half of it (``"intershap_half"``).

Exact formulas (K players, N the grand coalition, s = |S|):

    phi_i  = sum_{S in N - i}  s! (K - s - 1)! / K!          [v(S + i) - v(S)]
    I_ij   = sum_{S in N - ij} s! (K - s - 2)! / (K - 1)!    [v(S+ij) - v(S+i) - v(S+j) + v(S)]

Both are linear in v, so they are computed as one matrix product with a (2^K, K) or
(2^K, K(K-1)/2) coefficient matrix; per-sample values average to the values of the mean
game exactly.

Peers' conventions, transcribed from their source text (read in their public repositories;
tests on hand-computable games in ``tests/theory/test_games.py``):

- InterSHAP (Wenderoth et al., AAAI 2025; the paper's repository
  ``synergy_evaluation/interaction_values.py`` and the ``intershap`` package's
  ``explainer.py``, both read): the pairwise value carries the weight
  s! (K - s - 2)! / (2 (K - 1)!), half the Grabisch index; the main effect is
  phi_ii = phi_i - sum_{j != i} phi_ij; the score is the share of absolute interaction.
  The paper's repository counts each pair twice (the symmetric matrix) and masks with random
  background rows, valuing the empty set at the mean model output; the package counts each
  pair once and masks with the training mean, valuing the empty set at the model's output
  on all means. Both are here (:func:`intershap_matrix`, :func:`intershap_score`).
- MM-SHAP (Parcalabescu and Frank, ACL 2023; ``mmshap/core.py`` and ``mmshap/masking.py``,
  read): zero masking; a modality's share is sum |phi| of its players over sum |phi| of all.
  Its players are tokens and patches; :func:`mmshap_shares` treats each modality as one
  player, which is MM-SHAP's share when a modality is a single player (not otherwise).
- BalanceBenchmark (Xu et al. 2025; ``balancemm/evaluation/modalitys.py`` and the models'
  ``validation_step``, read): zero masking, value = accuracy. ``Calculate_Shapley`` sums the
  *unweighted* marginals over the non-empty coalitions of the other modalities (the empty
  one only with ``include_empty=True``); ``Calculate_Shapley_Sample`` weights them as
  Shapley does but skips the empty coalition (:func:`balancebenchmark_shapley`).
- AGM (Li et al., ICCV 2023; the ``model/*_net.py`` files of a public copy of the official
  code, and BalanceBenchmark's ``AGM_trainer.py``, read): zero masking on the output logits;
  the mono-modal response is the Shapley value with v(empty) = 0 (not the output on all
  zeros), so the responses add up to the joint output (:func:`agm_responses`).
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np

__all__ = [
    "EMPTY_CONVENTIONS",
    "INTERACTION_CONVENTIONS",
    "agm_responses",
    "balancebenchmark_shapley",
    "coalition",
    "coalition_size",
    "interaction_matrix",
    "interactions",
    "intershap_matrix",
    "intershap_score",
    "mmshap_shares",
    "n_players",
    "pairs",
    "shapley",
    "shapley_matrix",
]

#: How the empty coalition is valued (a column of the games table).
EMPTY_CONVENTIONS = {
    "constant": "the best constant predictor (the null risk)",
    "masked": "the joint model with every modality masked",
    "zero": "zero (AGM's convention for output games)",
}
#: Pairwise interaction conventions (a column of the games table).
INTERACTION_CONVENTIONS = {
    "grabisch": "Shapley interaction index (Grabisch and Roubens 1999)",
    "intershap_half": "InterSHAP's pairwise value: half the Grabisch index",
}


def n_players(v: np.ndarray) -> int:
    """K from a value array whose last axis has 2^K entries (a ValueError otherwise)."""
    size = int(np.shape(v)[-1])
    K = size.bit_length() - 1
    if size < 2 or 2**K != size:
        raise ValueError(f"a game's last axis must have 2^K >= 2 entries, got {size}")
    return K


def coalition(members, K: int) -> int:
    """The bitmask of the modality indices ``members`` (each in 0..K-1)."""
    c = 0
    for k in members:
        if not 0 <= int(k) < K:
            raise ValueError(f"coalition member {k} is out of range 0..{K - 1}")
        c |= 1 << int(k)
    return c


def coalition_size(c: int) -> int:
    return int(c).bit_count()


def pairs(K: int) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, in the order of :func:`interaction_matrix`'s columns."""
    return list(itertools.combinations(range(K), 2))


@cache
def _shapley_matrix(K: int) -> np.ndarray:
    M = np.zeros((2**K, K))
    fact = math.factorial
    for c in range(2**K):
        s = coalition_size(c)
        for i in range(K):
            if c >> i & 1:
                M[c, i] += fact(s - 1) * fact(K - s) / fact(K)
            else:
                M[c, i] -= fact(s) * fact(K - s - 1) / fact(K)
    M.setflags(write=False)
    return M


def shapley_matrix(K: int) -> np.ndarray:
    """(2^K, K): phi = v @ M, the exact Shapley weights (read-only)."""
    return _shapley_matrix(int(K))


@cache
def _interaction_matrix(K: int) -> np.ndarray:
    P = pairs(K)
    M = np.zeros((2**K, len(P)))
    fact = math.factorial
    for col, (i, j) in enumerate(P):
        for c in range(2**K):
            if c >> i & 1 or c >> j & 1:
                continue
            s = coalition_size(c)
            w = fact(s) * fact(K - s - 2) / fact(K - 1)
            M[c | 1 << i | 1 << j, col] += w
            M[c | 1 << i, col] -= w
            M[c | 1 << j, col] -= w
            M[c, col] += w
    M.setflags(write=False)
    return M


def interaction_matrix(K: int) -> np.ndarray:
    """(2^K, K(K-1)/2): I = v @ M, the Grabisch indices of :func:`pairs` (read-only)."""
    if K < 2:
        raise ValueError(f"interactions need K >= 2 players, got K={K}")
    return _interaction_matrix(int(K))


def shapley(v) -> np.ndarray:
    """Exact Shapley values: v (..., 2^K) -> (..., K). They add up to v[..., -1] - v[..., 0]."""
    v = np.asarray(v, dtype=float)
    return v @ shapley_matrix(n_players(v))


def interactions(v, convention: str = "grabisch") -> np.ndarray:
    """Pairwise interactions: v (..., 2^K) -> (..., K(K-1)/2), pairs as in :func:`pairs`.

    ``convention``: ``"grabisch"`` (the Shapley interaction index) or ``"intershap_half"``
    (InterSHAP's pairwise value, half of it).
    """
    if convention not in INTERACTION_CONVENTIONS:
        raise ValueError(
            f"convention must be one of {sorted(INTERACTION_CONVENTIONS)}, got {convention!r}"
        )
    v = np.asarray(v, dtype=float)
    out = v @ interaction_matrix(n_players(v))
    return out / 2 if convention == "intershap_half" else out


def intershap_matrix(v) -> np.ndarray:
    """InterSHAP's (K, K) matrix per game: v (..., 2^K) -> (..., K, K).

    Off the diagonal, half the Grabisch index (symmetric); on it, the main effect
    phi_i - sum_{j != i} phi_ij. Every row adds up to phi_i, the whole matrix to
    v(N) - v(empty).
    """
    v = np.asarray(v, dtype=float)
    K = n_players(v)
    phi = shapley(v)
    half = interactions(v, "intershap_half")
    out = np.zeros(v.shape[:-1] + (K, K))
    for col, (i, j) in enumerate(pairs(K)):
        out[..., i, j] = out[..., j, i] = half[..., col]
    for i in range(K):
        out[..., i, i] = phi[..., i] - out[..., i, :].sum(axis=-1)
    return out


def intershap_score(v, *, pairs_counted: str = "twice") -> np.ndarray:
    """InterSHAP's score per game: the share of absolute interaction, v (..., 2^K) -> (...).

    ``pairs_counted="twice"``: sum |off-diagonal| / sum |all entries| of
    :func:`intershap_matrix` (the paper's repository); ``"once"``: each pair once,
    sum_{i<j} |phi_ij| / (that + sum_i |phi_ii|) (the ``intershap`` package). A game with
    no contribution at all scores 0.
    """
    if pairs_counted not in ("twice", "once"):
        raise ValueError(f"pairs_counted must be 'twice' or 'once', got {pairs_counted!r}")
    m = np.abs(intershap_matrix(v))
    diag = np.trace(m, axis1=-2, axis2=-1)
    off = m.sum(axis=(-2, -1)) - diag
    if pairs_counted == "once":
        off = off / 2
    total = off + diag
    return np.where(total > 0, off / np.where(total > 0, total, 1.0), 0.0)


def mmshap_shares(phi) -> np.ndarray:
    """MM-SHAP's contribution shares |phi_k| / sum_j |phi_j|: phi (..., K) -> (..., K).

    Each modality is one player here (MM-SHAP's players are tokens and patches). All-zero
    contributions give equal shares.
    """
    a = np.abs(np.asarray(phi, dtype=float))
    total = a.sum(axis=-1, keepdims=True)
    K = a.shape[-1]
    return np.where(total > 0, a / np.where(total > 0, total, 1.0), 1.0 / K)


def balancebenchmark_shapley(
    v, *, per_sample: bool = False, include_empty: bool = False
) -> np.ndarray:
    """BalanceBenchmark's modality "Shapley" values: v (..., 2^K) -> (..., K).

    ``per_sample=False`` (``Calculate_Shapley``): sum over the non-empty coalitions S of the
    other modalities of v(S + i) - v(S), unweighted; ``include_empty`` adds S = empty.
    ``per_sample=True`` (``Calculate_Shapley_Sample``): the Shapley weights, S = empty
    skipped (``include_empty`` is ignored there, as in the source).
    """
    v = np.asarray(v, dtype=float)
    K = n_players(v)
    out = np.zeros(v.shape[:-1] + (K,))
    fact = math.factorial
    for i in range(K):
        for S in range(2**K):
            if S >> i & 1:
                continue
            if S == 0 and (per_sample or not include_empty):
                continue
            s = coalition_size(S)
            w = fact(s) * fact(K - s - 1) / fact(K) if per_sample else 1.0
            out[..., i] += w * (v[..., S | 1 << i] - v[..., S])
    return out


def agm_responses(v) -> np.ndarray:
    """AGM's mono-modal responses: Shapley values of the output game with v(empty) := 0.

    v (..., 2^K) -> (..., K); the responses add up to v(N), the joint output.
    """
    v = np.array(v, dtype=float, copy=True)
    n_players(v)
    v[..., 0] = 0.0
    return shapley(v)
