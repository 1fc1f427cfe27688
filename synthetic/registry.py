"""The one registry of world kinds: the names a spec's ``[world] kind`` may take.

``mmtheory.core.world.make_world(kind, **params)`` reads this registry; so do the spec
parser, the CLI and the benchmark. Adding a world kind is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from mmtheory.core.world import World
from synthetic.linear import LinearWorld
from synthetic.nonlinear import NonlinearWorld
from synthetic.overlap import OverlapWorld
from synthetic.pair import GaussianPairWorld
from synthetic.presets import iemocap_like, imbalance_world, table4_world
from synthetic.sequence import SequenceWorld
from synthetic.synergy import SynergyWorld

__all__ = ["WORLD_KINDS"]

#: kind -> factory (a World class or a preset function returning one)
WORLD_KINDS: dict[str, Callable[..., World]] = {
    "overlap": OverlapWorld,
    "linear": LinearWorld,
    "nonlinear": NonlinearWorld,
    "iemocap_like": iemocap_like,
    "imbalance": imbalance_world,
    "table4": table4_world,
    "sequence": SequenceWorld,
    "synergy": SynergyWorld,
    "gaussian_pair": GaussianPairWorld,
}
