"""Preset worlds named after what they mimic."""

from __future__ import annotations

from mmtheory.seeding import SeedLike
from synthetic.linear import LinearWorld
from synthetic.overlap import OverlapWorld

__all__ = ["iemocap_like", "table4_world", "PRESETS"]

#: IEMOCAP's training-set size in the paper (13,200 utterances).
IEMOCAP_TRAIN_SIZE = 13_200


#: The IEMOCAP-shaped preset's parameters (LinearWorld keywords); ``iemocap_like(**overrides)``
#: replaces any of them.
IEMOCAP_LIKE = {
    "dims": (100, 500, 100),
    "names": ("text", "video", "audio"),
    "latent_dim": 8,
    "rho": 0.3,
    "noise": (0.5, 1.0, 0.7),
    "strength": (1.0, 0.6, 0.5),
    "task": "classification",
    "n_classes": 6,
    "scale": 2.0,
}


def iemocap_like(seed: SeedLike = 0, *, latent: str = "gaussian", **overrides) -> LinearWorld:
    """An IEMOCAP-shaped classification world: text 100-d, video 500-d, audio 100-d, 6 classes.

    Text is the strongest and cleanest modality, video the weakest, noisiest and largest,
    audio in between (unequal strengths, as in the paper's Table 1). The large, weak video
    view makes bigger subsets lose at small sample sizes and win at large ones (the
    crossover of the paper's Fig. 2a). A synthetic stand-in, not IEMOCAP. Keywords in
    ``overrides`` replace entries of :data:`IEMOCAP_LIKE`.
    """
    unknown = sorted(set(overrides) - set(IEMOCAP_LIKE))
    if unknown:
        raise ValueError(f"unknown iemocap_like parameter {unknown[0]!r}; known: {sorted(IEMOCAP_LIKE)}")
    return LinearWorld(**{**IEMOCAP_LIKE, **overrides}, latent=latent, seed=seed)


def table4_world(overlap: float, *, dim: int = 100, n_modalities: int = 4) -> OverlapWorld:
    """The overlap world of the paper's Table 4 (reconstructed): K = 4, d = 100."""
    return OverlapWorld(n_modalities=n_modalities, dim=dim, overlap=overlap)


PRESETS = {"iemocap_like": iemocap_like, "table4": table4_world}
