"""Batched forward passes of the three architectures (see :mod:`mmtheory.models`).

Batching. Parameters are stacked on leading axes (G, S): G data groups (seeds that share a
sample size) and S models per group (subsets x learner variants). Activations have layout
(G, S, m, h): (models, samples, features). A subset is a mask: the layer of modality k is
computed only for the S_k models whose subset contains k (stacked weights (G, S_k, d_k, h)),
and its output is scattered into the S models with ``index_add``. For late fusion this
skips the constant output of an absent encoder, which a linear head with a bias absorbs:
the function class is exactly G_M = {g o p_M} of zero-filling, with no wasted compute. For
early fusion and the linear composite a zero-filled block contributes exactly nothing, so
skipping it changes neither the function nor the gradients.

Grouping. Late fusion's encoder instances (one per model and modality it contains, E =
sum_k S_k of them) are computed together: each layer is one batched GEMM over all G x E
instances (the per-modality weights concatenated along the model axis), and the head's
first layer is one batched GEMM and one ``index_add`` into the S models. Layer 1 is one
wide GEMM per (group, modality), (S_k * width, d_k) @ (d_k, m) (:func:`_wide_gemm`: the
transpose of x_k W_k, faster on the CPU with few columns), all in one ``bmm`` when
the modalities have equal dims and member counts (every "all subsets" plan); otherwise
one per modality, and the later layers are grouped. The GEMMs have the per-modality
layers' shapes, so the arithmetic is theirs (bit for bit on the CPU: the golden numbers
stand). The per-modality loop is kept behind :func:`per_modality_layers` (the
benchmark's old engine, and the tests that require both to agree).

Collapse. Late fusion with linear encoders, concatenation and a one-layer head is linear
end to end: its output is bh + sum_k x_k (W_k Wh_k) + b_k Wh_k. Where only the output is
asked for (training, risk), it is formed that way (:func:`_collapsed_late_fusion`): the
same function of the same parameters with the same gradients, rounding aside, and GEMMs of
width S_k p instead of S_k lat (the crossover's 32-d latents and 6 classes: 36% less CPU
for its sweep). Latents, the related methods' own forms and the per-modality engine keep
the layers; :func:`through_latents` keeps them everywhere.

Depth. A late-fusion MLP encoder has ``learner.encoder_depth`` layers (slots
``(part, 1..depth, k)``), the activation between them. The head's first layer (slot layer
0: per-modality blocks for concatenation, one matrix otherwise) is followed by
``learner.head_layers`` shared layers (slots ``(HEAD, 1..head_layers)``), each after the
activation; with ``activation="identity"`` the whole network is linear.

Sequences. A modality may be a sequence, (n, T, d). The ``conv`` encoder is a 1-D
convolution over time of width ``window`` (``hidden`` channels, the activation),
mean-pooled over the T - window + 1 positions, then a linear map to the latent:

    g_k(x) = W2^T mean_t act(W1^T [x_t; x_{t+1}; ...; x_{t+window-1}] + b1) + b2

computed as one GEMM over all windows. A vector modality (n, d) is a sequence of length 1,
zero-padded to the window, which makes ``conv`` the MLP encoder on it. Every other encoder
needs vectors: pool sequences first (the loaders' ``pool="mean"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch

from mmtheory.models.params import ENCODER, HEAD, Params, bias, weight
from mmtheory.models.plan import ModelPlan

if TYPE_CHECKING:
    from mmtheory.models.learner import Learner

__all__ = [
    "ACTIVATIONS",
    "GroupedLatents",
    "Latents",
    "concat_head",
    "forward",
    "head_stack",
    "late_latents",
    "per_model",
    "per_modality_layers",
    "scatter_blocks",
    "scatter_instances",
    "sliding_windows",
    "through_latents",
]


def identity(x: torch.Tensor) -> torch.Tensor:
    """The identity activation (linear networks)."""
    return x


ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": torch.nn.functional.gelu,
    "identity": identity,
}

#: Activations applied in place to a fresh layer output (one buffer fewer per layer).
_IN_PLACE = {"relu": torch.relu_, "tanh": torch.tanh_}

#: Per-modality outputs of a layer: (k, member index (S_k,), tensor (G, S_k, m, h)).
Latents = list[tuple[int, torch.Tensor, torch.Tensor]]

_GROUPED: ContextVar[bool] = ContextVar("mmtheory_grouped_layers", default=True)
_COLLAPSE: ContextVar[bool] = ContextVar("mmtheory_collapse_linear", default=True)


@contextmanager
def per_modality_layers() -> Iterator[None]:
    """Inside this block late fusion runs one GEMM per modality and layer (the engine
    before grouping): the benchmark times it as the old engine, tests compare the two."""
    token = _GROUPED.set(False)
    try:
        yield
    finally:
        _GROUPED.reset(token)


@contextmanager
def through_latents() -> Iterator[None]:
    """Inside this block late fusion's output is always formed through its latents, also
    where it collapses to composite maps (:func:`forward`): the related methods form their
    latents, so the tests that require them to train ERM's models bit for bit train ERM
    this way."""
    token = _COLLAPSE.set(False)
    try:
        yield
    finally:
        _COLLAPSE.reset(token)


class GroupedLatents(list):
    """Late fusion's latents as :data:`Latents` (per-modality views) that also carry the
    grouped tensor: ``h`` (G, E, m, lat) over the E encoder instances, modality-major
    (modality k's S_k members in ``plan.members(k)`` order), and ``owner`` (E,), each
    instance's model. A method that builds its own list drops the grouping (the head then
    loops over modalities)."""

    h: torch.Tensor
    owner: torch.Tensor


def modality_layer(
    xs: list[torch.Tensor], params: Params, part: str, layer: int, plan: ModelPlan, width: int
) -> Latents:
    """Per modality k: (k, member index, x_k W_k) of shape (G, S_k, m, width).

    One wide GEMM per group (:func:`_wide_gemm`), then one transposing copy.
    """
    out = []
    for k, name in enumerate(plan.names):
        slot = weight(part, layer, name)
        if slot in params:
            y = _wide_gemm(xs[k], params[slot].mT, name).contiguous()
            out.append((k, plan.member_index(k, y.device), y))
    return out


def _wide_gemm(x: torch.Tensor, Wt: torch.Tensor, name: str) -> torch.Tensor:
    """x (G, m, d) times each member's W, given transposed as ``Wt`` (G, S_k, w, d), in
    one GEMM per group: (G, S_k, m, w), a transposed view.

    The GEMM is (S_k w, d) @ (d, m), the transpose of (m, d) @ (d, S_k w): with few output
    columns (S_k w = 6 to 24 in the crossover) MKL runs the latter 1.1-2.4x slower forward
    and 1.1-5.9x slower backward (its weight gradient, (S_k w, m) @ (m, d) here) at one
    thread; with 128 or more the two take the same time (measured on this project's
    2-core CPU, torch 2.13, m = 132 to 13,200, d = 100 and 500)."""
    G, Sk, w, d = Wt.shape
    if x.ndim != 3:
        raise ValueError(
            f"modality {name!r} is a sequence {tuple(x.shape[1:])}: use encoder "
            f"'conv' (late fusion) or pool it to vectors first"
        )
    if x.shape[0] != G or x.shape[-1] != d:
        raise ValueError(
            f"modality {name!r}: data {tuple(x.shape)} does not fit weights {tuple(Wt.mT.shape)}"
        )
    y = torch.bmm(Wt.reshape(G, Sk * w, d), x.mT)  # (G, S_k w, m)
    return y.view(G, Sk, w, x.shape[1]).transpose(2, 3)


def per_model(h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """(G, S, m, a) @ (G, S, a, b) -> (G, S, m, b) as one bmm over G * S models."""
    G, S, m, a = h.shape
    return torch.bmm(h.reshape(G * S, m, a), W.reshape(G * S, a, W.shape[-1])).view(G, S, m, -1)


def forward(
    learner: Learner,
    params: Params,
    xs: list[torch.Tensor],
    plan: ModelPlan,
    *,
    return_latent: bool = False,
):
    """Outputs of all G x S models on their groups' data.

    Parameters
    ----------
    xs : list over modalities of (G, m, d_k)
        Each group's features (unmasked: the plan masks).

    Returns
    -------
    out : (G, S, m, p) predictions (regression) or logits.
    latent : (G, S, m, q), only with ``return_latent``: the encoder's output g(x)
        (late fusion: the concatenated latents, absent modalities zero-filled, then any
        blocks the method adds; early fusion: the fused layer; linear: the outputs).
    """
    G, m = xs[0].shape[0], xs[0].shape[1]
    S, p = plan.S, plan.out_dim
    kind = learner.kind
    act = ACTIVATIONS[learner.activation]
    bh = params[bias(HEAD)]
    if kind == "linear":
        out = bh[:, :, None].expand(G, S, m, p).clone()
        for _, idx, y in modality_layer(xs, params, ENCODER, 1, plan, p):
            out.index_add_(1, idx, y)
        return (out, out) if return_latent else out
    if kind == "early_fusion":
        lat = learner.latent_dim
        pre = params[bias(ENCODER, 1)][:, :, None].expand(G, S, m, lat).clone()
        for _, idx, y in modality_layer(xs, params, ENCODER, 1, plan, lat):
            pre.index_add_(1, idx, y)
        z = act(pre) if learner.encoder == "mlp" else pre
        out = head_stack(learner, params, per_model(z, params[weight(HEAD)]) + bh[:, :, None])
        return (out, z) if return_latent else out
    lat = learner.latent_dim
    if not return_latent and _collapses(learner):
        return _collapsed_late_fusion(params, xs, plan)
    latents = late_latents(learner, params, xs, plan)
    if learner.fusion == "sum":
        out = bh[:, :, None].expand(G, S, m, bh.shape[-1]).clone()
        summed = torch.zeros(G, S, m, lat, dtype=bh.dtype, device=bh.device)
        if isinstance(latents, GroupedLatents) and latents:  # one scatter for every instance
            scatter_instances(summed, latents, latents.h)
        else:
            for _, idx, h in latents:
                summed.index_add_(1, idx, h)
        out = head_stack(learner, params, out + per_model(summed, params[weight(HEAD)]))
        return (out, summed) if return_latent else out
    out = head_stack(learner, params, concat_head(params, latents, plan, G, m))
    out, blocks = learner.method.forward(learner, params, xs, plan, out, [latents])
    if not return_latent:
        return out
    return out, scatter_blocks(blocks, plan, lat, G, m, bh)


def _collapses(learner: Learner) -> bool:
    """Whether late fusion's output is the composite linear map of :func:`_collapsed_late_fusion`:
    linear encoders, concatenation, a one-layer head, a method that keeps the head's output,
    and the grouped engine (the per-modality one stays as it was, for the benchmark), outside
    :func:`through_latents`."""
    return (
        learner.encoder == "linear"
        and learner.fusion == "concat"
        and not learner.head_layers
        and learner.method.keeps_head_output()
        and _GROUPED.get()
        and _COLLAPSE.get()
    )


def _collapsed_late_fusion(params: Params, xs: list[torch.Tensor], plan: ModelPlan) -> torch.Tensor:
    """Late fusion with linear encoders and a linear head, its output formed from the
    composite maps: out = bh + sum_k x_k (W_k Wh_k) + b_k Wh_k, (G, S, m, p).

    The same function of the same parameters as encoding then fusing, and, by the chain
    rule, the same gradients (autograd forms them through the small products W_k Wh_k);
    only rounding differs. The data's GEMM is (:func:`_wide_gemm`) (S_k p, d_k) @ (d_k, m)
    where the latents need (S_k lat, d_k) @ (d_k, m) plus the head's products: the
    crossover's 32-d latents and 6 classes do a fifth of the arithmetic."""
    G, m = xs[0].shape[0], xs[0].shape[1]
    bh = params[bias(HEAD)]
    p = bh.shape[-1]
    out = bh[:, :, None].expand(G, plan.S, m, p).clone()
    for k, name in enumerate(plan.names):
        slot = weight(ENCODER, 1, name)
        if slot not in params:
            continue
        Wh = params[weight(HEAD, 0, name)]  # (G, S_k, lat, p)
        shift = params[bias(ENCODER, 1, name)][:, :, None] @ Wh  # (G, S_k, 1, p)
        # the composite transposed, Wh^T W^T (G, S_k, p, d): with p output columns its
        # products (and their gradients) ran 4.5x slower than with d
        y = _wide_gemm(xs[k], Wh.mT @ params[slot].mT, name) + shift
        out.index_add_(1, plan.member_index(k, y.device), y)
    return out


def scatter_blocks(
    blocks: list[Latents], plan: ModelPlan, lat: int, G: int, m: int, ref: torch.Tensor
) -> torch.Tensor:
    """Concatenate blocks of per-modality latents into (G, S, m, lat * K * len(blocks)),
    absent modalities zero-filled."""
    K = plan.K
    z = torch.zeros(G, plan.S, m, lat * K * len(blocks), dtype=ref.dtype, device=ref.device)
    for b, block in enumerate(blocks):
        for k, idx, h in block:
            start = (b * K + k) * lat
            z[..., start : start + lat].index_add_(1, idx, h)
    return z


def concat_head(params: Params, latents: Latents, plan: ModelPlan, G: int, m: int) -> torch.Tensor:
    """The head's first layer on concatenated latents: bh + sum_k h_k Wh_k, (G, S, m, w)
    with w the outputs p (a one-layer head) or ``hidden`` (before :func:`head_stack`)."""
    bh = params[bias(HEAD)]
    out = bh[:, :, None].expand(G, plan.S, m, bh.shape[-1]).clone()
    if isinstance(latents, GroupedLatents) and latents:  # one GEMM over every instance
        Wh = torch.cat([params[weight(HEAD, 0, plan.names[k])] for k, _, _ in latents], 1)
        return scatter_instances(out, latents, per_model(latents.h, Wh))
    for k, idx, h in latents:
        out.index_add_(1, idx, per_model(h, params[weight(HEAD, 0, plan.names[k])]))
    return out


def scatter_instances(
    out: torch.Tensor, latents: GroupedLatents, values: torch.Tensor, *, serial: bool | None = None
) -> torch.Tensor:
    """``out.index_add_(1, latents.owner, values)``: each encoder instance's values (G, E,
    ...) added into its model's row of ``out`` (G, S, ...), in instance order. On the CPU
    one call (a serial loop). On CUDA one call per modality: within it no two instances
    share a model, so no two atomic adds race and each model's sum is formed in modality
    order, as on the CPU; a single call would add a model's instances in whatever order
    the threads run (rounding that changes from run to run). ``serial`` (default: on the
    CPU) picks the single call."""
    if serial if serial is not None else out.device.type == "cpu":
        return out.index_add_(1, latents.owner, values)
    start = 0
    for _, idx, h in latents:
        out.index_add_(1, idx, values[:, start : start + h.shape[1]])
        start += h.shape[1]
    return out


def head_stack(learner: Learner, params: Params, h: torch.Tensor) -> torch.Tensor:
    """The shared head layers after the head's first layer: for i = 1..head_layers,
    h <- act(h) W_i + b_i. (G, S, m, w) -> (G, S, m, p); the identity when there are none."""
    if not learner.head_layers:
        return h
    act = ACTIVATIONS[learner.activation]
    for i in range(1, learner.head_layers + 1):
        h = per_model(act(h), params[weight(HEAD, i)]) + params[bias(HEAD, i)][:, :, None]
    return h


def late_latents(
    learner: Learner, params: Params, xs: list[torch.Tensor], plan: ModelPlan, part: str = ENCODER
) -> Latents:
    """Late fusion's per-modality latents: (k, member index, h_k) with h_k (G, S_k, m, lat).

    ``part`` names whose encoders are read: the fused model's (:data:`ENCODER`) or a
    method's own per-modality encoders (I2M2's intra-modality models).
    """
    act = ACTIVATIONS[learner.activation]
    if learner.encoder == "conv":
        return _conv_latents(learner, params, xs, plan, part, act)
    if _GROUPED.get():
        return _grouped_latents(learner, params, xs, plan, part, act)
    width = learner.hidden if learner.encoder == "mlp" else learner.latent_dim
    out = []
    for k, idx, y in modality_layer(xs, params, part, 1, plan, width):
        name = plan.names[k]
        h = y + params[bias(part, 1, name)][:, :, None]
        for layer in range(2, learner.encoder_depth + 1):  # MLP: act, then the next layer
            h = (
                per_model(act(h), params[weight(part, layer, name)])
                + params[bias(part, layer, name)][:, :, None]
            )
        out.append((k, idx, h))
    return out


def _grouped_latents(learner, params, xs, plan, part, act) -> GroupedLatents:
    """:func:`late_latents` with one batched GEMM per layer over all G x E instances."""
    ks = [k for k in range(plan.K) if weight(part, 1, plan.names[k]) in params]
    out = GroupedLatents()
    if not ks:
        return out
    names = [plan.names[k] for k in ks]

    def cat(slot_of) -> torch.Tensor:  # (G, E, ...): the per-modality tensors, modality-major
        return torch.cat([params[slot_of(name)] for name in names], 1)

    width = learner.hidden if learner.encoder == "mlp" else learner.latent_dim
    sizes = [params[weight(part, 1, name)].shape[1] for name in names]
    G, E = params[weight(part, 1, names[0])].shape[0], sum(sizes)
    b1 = cat(lambda n: bias(part, 1, n)).reshape(G * E, 1, width)
    if len({xs[k].shape for k in ks}) == 1 and len(set(sizes)) == 1 and xs[ks[0]].ndim == 3:
        # equal dims and member counts (every "all subsets" plan): one wide GEMM per
        # (group, modality), (S_k * width, d) @ (d, m) as in _wide_gemm, all in one bmm,
        # the same arithmetic as the per-modality layers
        (m, d), Kg, S_k = xs[ks[0]].shape[1:], len(ks), sizes[0]
        for k in ks:
            W = params[weight(part, 1, plan.names[k])]
            if xs[k].shape[0] != G or d != W.shape[-2]:
                raise ValueError(
                    f"modality {plan.names[k]!r}: data {tuple(xs[k].shape)} does not fit "
                    f"weights {tuple(W.shape)}"
                )
        X = torch.stack([xs[k] for k in ks], 1).reshape(G * Kg, m, d)
        W1 = cat(lambda n: weight(part, 1, n)).view(G, Kg, S_k, d, width)
        y = torch.bmm(W1.mT.reshape(G * Kg, S_k * width, d), X.mT)
        y = y.view(G, Kg, S_k, width, m).transpose(3, 4).reshape(G * E, m, width)
    else:  # one wide GEMM per modality for layer 1, grouped from layer 2 on
        y = torch.cat([y for _, _, y in modality_layer(xs, params, part, 1, plan, width)], 1)
        m = y.shape[2]
        y = y.reshape(G * E, m, width)
    h = y + b1
    # in place on a fresh sum that no backward reads (never on a view: autograd
    # would copy it whole)
    in_place = _IN_PLACE.get(learner.activation, act)
    for layer in range(2, learner.encoder_depth + 1):  # MLP: act, then the next layer
        b, W = cat(lambda n, i=layer: bias(part, i, n)), cat(lambda n, i=layer: weight(part, i, n))
        a = in_place(h) if h._base is None else act(h)
        h = torch.bmm(a, W.flatten(0, 1)) + b.reshape(G * E, 1, -1)
    out.h = h.view(G, E, m, h.shape[-1])
    out.owner = plan.instance_index(tuple(ks), out.h.device)
    start = 0
    for k, n in zip(ks, sizes):
        out.append((k, plan.member_index(k, out.h.device), out.h[:, start : start + n]))
        start += n
    return out


def sliding_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(G, m, T, d) or (G, m, d) -> (G, m, P, window * d): every window of ``window``
    consecutive steps, flattened step-major ([x_t; x_{t+1}; ...]); P = max(T - window + 1, 1).
    A sequence shorter than the window (a vector is length 1) is zero-padded at the end."""
    if x.ndim == 3:
        x = x[:, :, None]
    T = x.shape[2]
    if T < window:
        x = torch.nn.functional.pad(x, (0, 0, 0, window - T))
    G, m, _, d = x.shape
    win = x.unfold(2, window, 1)  # (G, m, P, d, window)
    return win.transpose(-1, -2).reshape(G, m, win.shape[2], window * d)


def _conv_latents(learner, params, xs, plan, part, act) -> Latents:
    """The conv encoder's latents: one GEMM over every window of every sample, the
    activation, a mean over the window positions, then the latent map."""
    flat, positions = [], []
    for x in xs:
        win = sliding_windows(x, learner.window)  # (G, m, P, w * d)
        positions.append(win.shape[2])
        flat.append(win.reshape(win.shape[0], -1, win.shape[-1]))  # (G, m * P, w * d)
    out = []
    for k, idx, y in modality_layer(flat, params, part, 1, plan, learner.hidden):
        name = plan.names[k]
        G, Sk, rows, hid = y.shape
        P = positions[k]
        h = act(y.view(G, Sk, rows // P, P, hid) + params[bias(part, 1, name)][:, :, None, None])
        h = (
            per_model(h.mean(dim=3), params[weight(part, 2, name)])
            + params[bias(part, 2, name)][:, :, None]
        )
        out.append((k, idx, h))
    return out
