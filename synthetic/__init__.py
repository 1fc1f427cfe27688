"""Ground-truth worlds for mmtheory: data-generating processes that hand back their truth."""

from synthetic.base import LinearLatentWorld, World
from synthetic.linear import LinearWorld
from synthetic.nonlinear import NonlinearWorld
from synthetic.overlap import OverlapWorld
from synthetic.pair import GaussianPairWorld
from synthetic.presets import iemocap_like, imbalance_world, table4_world
from synthetic.registry import WORLD_KINDS
from synthetic.sequence import SequenceWorld
from synthetic.synergy import SynergyWorld

__all__ = [
    "World",
    "GaussianPairWorld",
    "LinearLatentWorld",
    "LinearWorld",
    "NonlinearWorld",
    "OverlapWorld",
    "SequenceWorld",
    "SynergyWorld",
    "WORLD_KINDS",
    "iemocap_like",
    "imbalance_world",
    "table4_world",
]
