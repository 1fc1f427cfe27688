"""Real datasets: shipped UCI Multiple Features, the generic .npz format."""

from mmtheory.datasets.iemocap import load_iemocap
from mmtheory.datasets.loaders import MFEAT_CITATION, Loaded, load_mfeat, load_npz

__all__ = ["Loaded", "MFEAT_CITATION", "load_iemocap", "load_mfeat", "load_npz"]
