"""Which modalities each model of a batch uses: the :class:`ModelPlan`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmtheory.core.subsets import Subset

__all__ = ["ModelPlan"]


@dataclass(frozen=True)
class ModelPlan:
    """The S models of a batch: ``subsets[s]`` is model s's subset of ``names``.

    ``members(k)`` lists the positions (into S) of the models whose subset contains
    modality k; per-modality parameters are stacked over exactly those models.
    """

    names: tuple[str, ...]
    dims: tuple[int, ...]
    subsets: tuple[Subset, ...]
    out_dim: int

    @property
    def S(self) -> int:
        return len(self.subsets)

    @property
    def K(self) -> int:
        return len(self.names)

    def members(self, k: int) -> list[int]:
        name = self.names[k]
        return [s for s, sub in enumerate(self.subsets) if name in sub]

    def member_index(self, k: int, device) -> torch.Tensor:
        """``members(k)`` as a long tensor on ``device``, built once per plan (hot path)."""
        cache = self.__dict__.setdefault("_index_cache", {})
        key = (k, str(device))
        if key not in cache:
            cache[key] = torch.tensor(self.members(k), dtype=torch.long, device=device)
        return cache[key]

    def instance_index(self, ks: tuple[int, ...], device) -> torch.Tensor:
        """The model of every encoder instance of modalities ``ks``, modality-major:
        ``members(k)`` for each k in turn, as one long tensor (E,), built once per plan."""
        cache = self.__dict__.setdefault("_index_cache", {})
        key = ("instances", ks, str(device))
        if key not in cache:
            flat = [s for k in ks for s in self.members(k)]
            cache[key] = torch.tensor(flat, dtype=torch.long, device=device)
        return cache[key]

    def mask(self, device=None) -> torch.Tensor:
        """(S, K) bool: model s contains modality k."""
        return torch.tensor(
            [[name in sub for name in self.names] for sub in self.subsets],
            dtype=torch.bool,
            device=device,
        )

    def single(self, k: int) -> ModelPlan:
        """The plan of modality k's members, each seen as a model of the subset {k}."""
        from mmtheory.core.subsets import parse_subset

        one = parse_subset(self.names[k], self.names)
        return ModelPlan(self.names, self.dims, (one,) * len(self.members(k)), self.out_dim)
