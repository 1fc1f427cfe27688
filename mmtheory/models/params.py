"""Typed parameters: every tensor of a model is named by a :class:`Slot`, never by a string.

A :class:`Slot` says which *part* of the model a tensor belongs to (the fused model's
encoders, its head, a method's unimodal encoders or heads, xmodal's decoders), which layer,
whether it is a weight matrix or a bias, and which modality it reads (``""`` for tensors
shared by the whole model). Code that needs "every weight" (the ridge penalty), "the
encoders of modality k" (OGM-GE, branch eta) or "the decoders" (xmodal) asks the slot.

Batched parameters (:data:`Params`) map slots to stacked tensors. A per-modality slot's
tensor has shape (G, S_k, ...) over the S_k models whose subset contains the modality (see
:class:`~mmtheory.models.plan.ModelPlan`); a shared slot's tensor (G, S, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from mmtheory.models.plan import ModelPlan

__all__ = [
    "ENCODER",
    "HEAD",
    "UNIMODAL_ENCODER",
    "UNIMODAL_HEAD",
    "DECODER",
    "PARTS",
    "Params",
    "Slot",
    "bias",
    "weight",
    "stack_params",
    "per_model_sq_norm",
    "finite_models",
    "replace_models",
    "select_parts",
    "branch_params",
]

#: The fused model's per-modality encoder layers (for the linear composite: its weight).
ENCODER = "encoder"
#: The fused model's head (per-modality blocks for concatenation, or one matrix).
HEAD = "head"
#: A method's per-modality encoders beside the fused model's (I2M2's intra-modality models).
UNIMODAL_ENCODER = "unimodal_encoder"
#: A method's per-modality heads on a modality's latent (I2M2, MIMO, BOGC-MML).
UNIMODAL_HEAD = "unimodal_head"
#: xmodal's decoders (cross-modal prediction; dropped after pretraining).
DECODER = "decoder"
PARTS = (ENCODER, HEAD, UNIMODAL_ENCODER, UNIMODAL_HEAD, DECODER)

_SHORT = {ENCODER: "", HEAD: "h", UNIMODAL_ENCODER: "u", UNIMODAL_HEAD: "uh", DECODER: "d"}


@dataclass(frozen=True, order=True)
class Slot:
    """The name of one parameter tensor of a model.

    Attributes
    ----------
    part : one of :data:`PARTS`
    layer : 1, 2 for encoder layers; 0 for single-layer parts (heads, decoders)
    weight : True for a weight matrix (penalised by ridge), False for a bias
    modality : the modality this tensor reads, or "" when the whole model shares it
    """

    part: str
    layer: int
    weight: bool
    modality: str = ""

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"slot part must be one of {PARTS}, got {self.part!r}")

    @property
    def per_modality(self) -> bool:
        return self.modality != ""

    def with_part(self, part: str) -> Slot:
        return Slot(part, self.layer, self.weight, self.modality)

    def __str__(self) -> str:  # "W1.m1", "Wh.m2", "bh", "Wu1.m1", ... (for messages only)
        letter = "W" if self.weight else "b"
        layer = str(self.layer) if self.layer else ""
        tail = f".{self.modality}" if self.modality else ""
        return f"{letter}{_SHORT[self.part]}{layer}{tail}"


def weight(part: str, layer: int = 0, modality: str = "") -> Slot:
    """The slot of a weight matrix."""
    return Slot(part, layer, True, modality)


def bias(part: str, layer: int = 0, modality: str = "") -> Slot:
    """The slot of a bias vector."""
    return Slot(part, layer, False, modality)


#: Batched parameters: slot -> stacked tensor (see the module docstring).
Params = dict[Slot, torch.Tensor]


def stack_params(
    models: list[list[dict[Slot, torch.Tensor]]], plan: ModelPlan, device, dtype
) -> Params:
    """Stack per-model dicts ``models[g][s]`` into batched leaves that require grad.

    Per-modality slots get shape (G, S_k, ...) over the models containing the modality;
    shared slots (G, S, ...).
    """
    out: Params = {}
    slots = set().union(*(m.keys() for row in models for m in row))
    for slot in sorted(slots):
        cols = plan.members(plan.names.index(slot.modality)) if slot.per_modality else range(plan.S)
        t = torch.stack([torch.stack([row[s][slot] for s in cols]) for row in models])
        out[slot] = t.to(device=device, dtype=dtype).requires_grad_(True)
    return out


def per_model_sq_norm(
    tensors: dict[Slot, torch.Tensor], plan: ModelPlan, *, dtype=None
) -> torch.Tensor:
    """sum over slots of each model's squared entries, (G, S): per-modality tensors are
    scattered to their member models."""
    ref = next(iter(tensors.values()))
    G = ref.shape[0]
    total = torch.zeros(G, plan.S, dtype=dtype or ref.dtype, device=ref.device)
    for slot, t in tensors.items():
        sq = t.to(total.dtype).pow(2).flatten(2).sum(-1)
        if slot.per_modality:
            idx = plan.member_index(plan.names.index(slot.modality), t.device)
            total = total.index_add(1, idx, sq)
        else:
            total = total + sq
    return total


def finite_models(params: Params, plan: ModelPlan) -> torch.Tensor:
    """(G, S) bool: True where every entry of the model's parameters is finite (a sum of
    squares in float64, so a large but finite float32 entry does not count as overflow)."""
    return torch.isfinite(per_model_sq_norm(params, plan, dtype=torch.float64))


def replace_models(params: Params, plan: ModelPlan, mask: torch.Tensor, other: Params) -> Params:
    """``params`` with the models where ``mask`` (G, S) is True taken from ``other`` (same
    slots and shapes); every other model's tensors are copied unchanged, bit for bit."""
    out: Params = {}
    for slot, t in params.items():
        cols = plan.members(plan.names.index(slot.modality)) if slot.per_modality else None
        m = mask[:, cols] if cols is not None else mask
        m = m.to(t.device).reshape(*m.shape, *([1] * (t.dim() - 2)))
        out[slot] = torch.where(m, other[slot].to(t.dtype), t)
    return out


def select_parts(params: Params, parts: Iterable[str]) -> Params:
    """The slots of ``params`` whose part is one of ``parts``."""
    keep = set(parts)
    return {slot: t for slot, t in params.items() if slot.part in keep}


def branch_params(params: Params, plan: ModelPlan, k: int) -> tuple[Params, list[int]]:
    """Modality k's branch of every model containing it: k's own slots and the shared
    slots of those models, to be read with ``plan.single(k)`` (each member seen as a model
    of the subset {k}, the other modalities' branches removed).

    Returns (params, the members' positions in the plan); empty when no model contains k.
    """
    name = plan.names[k]
    members = plan.members(k)
    if not members:
        return {}, []
    out: Params = {slot: v for slot, v in params.items() if slot.modality == name}
    for slot, v in params.items():
        if not slot.per_modality:
            out[slot] = v[:, members]
    return out, members
