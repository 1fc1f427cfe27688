"""Real datasets: shipped UCI Multiple Features, the generic .npz format, HTAD (optional)."""

from mmtheory.datasets.htad import load_htad
from mmtheory.datasets.iemocap import load_iemocap
from mmtheory.datasets.loaders import MFEAT_CITATION, Loaded, load_mfeat, load_npz, pooled

__all__ = [
    "Loaded",
    "MFEAT_CITATION",
    "load_htad",
    "load_iemocap",
    "load_mfeat",
    "load_npz",
    "pooled",
]
