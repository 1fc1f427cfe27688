"""Work that a series of sweeps shares: record files read once, features drawn once.

A multi-world spec (or the Table 4 reproduction) runs one :func:`sweep` per world into
one output directory. Passing the same :class:`SharedWork` to each:

- opens each record store once, so the record files are read once per series, not once
  per world;
- for the closed form, draws each seed's latent once, and computes the Gram matrices and
  eigendecompositions once, for all worlds that differ only in their target (equal
  ``world.shared_draw_key()``, e.g. Table 4's five overlap worlds). Worlds whose samples
  are linear in their latent (``latent_linear_maps``; Table 4) share the latent's moments
  and fit from them; others share the features, and each world's targets come from the
  shared latent through ``world.targets_from_latent``, exactly as ``world.sample``
  computes them. Either way every number is bit-identical to a sweep without it.

Held draws are bounded by ``max_bytes`` (oldest dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from mmtheory.experiments.records import RecordStore

__all__ = ["SharedWork"]


class SharedWork:
    """Record stores and per-seed draws shared by a series of sweeps (module docstring)."""

    def __init__(self, max_bytes: float = 3 * 2**30) -> None:
        self.max_bytes = max_bytes
        self._stores: dict[tuple[str, tuple[int, int] | None], RecordStore] = {}
        self._draws: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()

    def store(self, out: str | Path, shard: tuple[int, int] | None) -> RecordStore:
        """The record store of ``out`` (and ``shard``), read from disk on first use only."""
        key = (str(Path(out).resolve()), shard)
        if key not in self._stores:
            self._stores[key] = RecordStore(out, shard)
        return self._stores[key]

    def close(self) -> None:
        """Close every store of the series (releasing their writer locks)."""
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    def __enter__(self) -> SharedWork:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def draw(self, key: tuple) -> Any | None:
        """A held draw, or None."""
        hit = self._draws.get(key)
        if hit is None:
            return None
        self._draws.move_to_end(key)
        return hit[0]

    def hold(self, key: tuple, value: Any, nbytes: int) -> None:
        """Hold ``value`` (``nbytes`` large), dropping the oldest draws beyond the bound."""
        self._draws[key] = (value, nbytes)
        self._draws.move_to_end(key)
        while len(self._draws) > 1 and sum(n for _, n in self._draws.values()) > self.max_bytes:
            self._draws.popitem(last=False)
