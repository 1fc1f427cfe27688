"""The protocol every training method implements; its defaults are plain ERM.

A method is a frozen dataclass whose fields are its options (``OGMGE(alpha=0.5)``). Adding
a method is one new module in this package defining one subclass with a ``name``: the
registry (:mod:`mmtheory.models.methods`) finds it, and no other file names it. Each hook
below has ERM's behaviour by default; a method overrides only what it changes:

model
    :meth:`Method.extra_params` (parameters beyond the fused model's, drawn after them from
    the same stream), :meth:`Method.forward` (what the model outputs, and latent blocks it
    adds), ``has_linear_head`` (whether eta can warm-start from a linear head).
training (batched, :mod:`mmtheory.engine`)
    :meth:`Method.start` (per-training state, e.g. a noise stream), :meth:`Method.prepare`
    (a phase before ERM, with snapshots whose eta the sweep reports as ``eta_<name>``),
    :meth:`Method.objective` and :meth:`Method.backward` (the gradient of one step).
reference (per model, :mod:`mmtheory.reference.loop`)
    the same method written for one ``nn.Module``: :meth:`Method.reference_modules`,
    :meth:`Method.reference_forward`, :meth:`Method.reference_loss`,
    :meth:`Method.reference_backward`, :meth:`Method.reference_pretrain`. Tests train both
    and require equal models: the batched hooks are checked against an independent
    per-model transcription of the same equations.
claims
    ``claims``: what the method's paper says it improves, tested by ``mmtheory methods``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mmtheory.models.forward import Latents, forward, per_model
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.params import UNIMODAL_HEAD, Params, bias, weight
from mmtheory.models.plan import ModelPlan

if TYPE_CHECKING:
    from torch import nn

    from mmtheory.models.init import InitContext
    from mmtheory.models.learner import Learner

__all__ = [
    "Ablation",
    "Probe",
    "Claim",
    "Method",
    "ReferenceContext",
    "StepContext",
    "REGISTRY",
    "model_key",
    "unimodal_losses",
]

#: name -> Method subclass; filled by ``Method.__init_subclass__``.
REGISTRY: dict[str, type[Method]] = {}


@dataclass(frozen=True)
class Claim:
    """A published claim about a method, tested as a paired difference over seeds.

    ``statistic`` names a column of the results table (``"test_risk"``, ``"eta"``,
    ``"eta_branch"`` for the weakest modality's branch, or ``"eta_<snapshot>"``);
    ``sign`` is -1 when the method should lower it relative to ``baseline``
    (``"erm"``, or ``"self:<column>"`` for the same method's other column).
    """

    text: str
    statistic: str
    sign: int = -1
    baseline: str = "erm"


@dataclass(frozen=True)
class Ablation:
    """A variant of a method that keeps one of its components, for the comparison.

    ``label`` is appended to the method's name in result tables (``ogm_ge-modulation``),
    ``component`` says in words what the variant keeps ("modulation alone"), ``options``
    override the method's options, and ``recipe`` says which training recipe it runs
    under: ``"original"`` (the method's :attr:`Method.recipe`) or ``"common"`` (the
    comparison's shared recipe, the one every method runs under in the equal-recipe table).
    """

    label: str
    component: str
    options: dict[str, object] = field(default_factory=dict)
    recipe: str = "original"


@dataclass(frozen=True)
class Probe:
    """How the comparison measures a method's mechanism: the method with ``options``
    against the same method with ``neutral`` options (the mechanism switched off), from
    the same initial weights and data, for the first ``fraction`` of the steps; it reports
    how far each encoder's weights moved relative to the neutral run, beside the method's
    diagnostics (``diag_*``)."""

    options: dict[str, object]
    neutral: dict[str, object]
    fraction: float = 1.0


@dataclass
class StepContext:
    """What a training step needs beyond the parameters and the batch (batched engine)."""

    learner: Learner
    plan: ModelPlan
    task: str
    #: ridge penalty per model, (G, S), of the current parameters
    penalty: Callable[[Params], torch.Tensor]
    #: builds an optimiser over a list of leaves with the learner's solver
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    #: the learner's per-model gradient clipping: ``clip(params, group=None)`` (a no-op
    #: without ``clip_norm``); ``group`` maps a slot to the network it belongs to
    clip: Callable[..., None]
    #: one stream key per group (its minibatch order); method randomness derives from them
    batch_keys: list[tuple]
    #: ``batches_on(n, tag)``: minibatches over the first n rows, from a stream of their own
    #: (phases that hold out the last rows: G-Blending, UME/UMT)
    batches_on: Callable[[int, str], Any]
    #: optimiser steps of the main phase, and the current one (0-based)
    steps: int
    step: int = 0
    #: whatever :meth:`Method.start` returned (methods may update it in ``prepare``)
    state: Any = None
    #: per-model numbers a method reports, name -> (G, S) (NaN where not defined); the
    #: sweep records them as columns ``diag_<name>``
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)

    def model_keys(self) -> list[list[tuple]]:
        """One stream key per model, ``[g][s]``: its group's key and its subset."""
        return [[model_key(key, sub) for sub in self.plan.subsets] for key in self.batch_keys]


@dataclass
class ReferenceContext:
    """What one reference model's training needs (per-model loop)."""

    learner: Learner
    task: str
    subset: Any
    batch_key: tuple
    #: the next minibatch (dict of modalities, targets) of the main stream
    batch: Callable[[], tuple[dict, torch.Tensor]]
    #: ``batches_on(n, tag)``: a minibatch function over the first n rows (own stream)
    batches_on: Callable[[int, str], Callable[[], tuple[dict, torch.Tensor]]]
    #: the learner's optimiser over a list of parameters
    make_opt: Callable[[list], torch.optim.Optimizer]
    #: ``clip(parameters)``: ``clip_grad_norm_`` with the learner's ``clip_norm`` (or nothing)
    clip: Callable[[list], None]
    #: ``penalty(model)``: the ridge penalty of a module's weights (0 without ridge)
    penalty: Callable[[Any], torch.Tensor]
    xs: dict
    y: torch.Tensor
    steps: int
    step: int = 0
    state: Any = None

    @property
    def model_key(self) -> tuple:
        return model_key(self.batch_key, self.subset)


def model_key(batch_key: tuple, subset: object) -> tuple:
    """The stream key of one model: its group's key and its subset's label."""
    return (*batch_key, str(subset))


@dataclass(frozen=True)
class Method:
    """Plain ERM; subclasses override the hooks they change (module docstring)."""

    name: ClassVar[str] = ""
    #: the paper the method comes from (empty for ERM)
    paper: ClassVar[str] = ""
    #: non-empty when the implementation is our reconstruction; says what departs
    reconstruction: ClassVar[str] = ""
    classification_only: ClassVar[bool] = False
    late_concat_only: ClassVar[bool] = True
    has_linear_head: ClassVar[bool] = True
    #: one training step is the same GPU work every step (no per-step Python decisions,
    #: host reads or fresh random draws), so the engine may capture it in a CUDA graph;
    #: read from the class's own body (a subclass that changes the step must say it again)
    capturable: ClassVar[bool] = False
    claims: ClassVar[tuple[Claim, ...]] = ()
    #: the learner settings of the original training recipe (``solver``, ``momentum``,
    #: ``clip_norm``); empty when the original's recipe is unknown or is the common one
    recipe: ClassVar[dict[str, object]] = {}
    #: variants that isolate the method's components (see :class:`Ablation`)
    ablations: ClassVar[tuple[Ablation, ...]] = ()
    #: how the comparison measures the mechanism (see :class:`Probe`), or None
    probe: ClassVar[Probe | None] = None
    #: what of the original was read to write this module (code, paper, abstract only)
    provenance: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls

    # ----------------------------------------------------------------- settings
    def options(self) -> dict[str, object]:
        """The method's options (its dataclass fields), recorded in run settings."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, learner: Learner) -> None:
        """Raise ValueError when ``learner`` cannot run this method."""
        if self.late_concat_only and (learner.kind != "late_fusion" or learner.fusion != "concat"):
            raise ValueError(
                f"method {self.name!r} needs kind 'late_fusion' with fusion 'concat', "
                f"got kind {learner.kind!r}, fusion {learner.fusion!r}"
            )

    def check_task(self, task: str) -> None:
        if self.classification_only and task != "classification":
            raise ValueError(
                f"method {self.name!r} needs a classification task (it reads class "
                f"probabilities); this task is {task!r}"
            )

    # -------------------------------------------------------------------- model
    def extra_params(self, ctx: InitContext) -> None:
        """Add this method's parameters to ``ctx.params`` (drawn after the fused model's)."""

    def forward(
        self,
        learner: Learner,
        params: Params,
        xs: list[torch.Tensor],
        plan: ModelPlan,
        out: torch.Tensor,
        blocks: list[Latents],
    ) -> tuple[torch.Tensor, list[Latents]]:
        """The model's output from the fused head's ``out`` (G, S, m, p), and the latent
        blocks whose concatenation is the encoder's output (default: unchanged)."""
        return out, blocks

    def keeps_head_output(self) -> bool:
        """Whether the model's output is the fused head's (:meth:`forward` not overridden),
        so that linear late fusion may form it from composite maps
        (:func:`mmtheory.models.forward.forward`)."""
        return type(self).forward is Method.forward

    # ----------------------------------------------------------------- training
    def start(self, ctx: StepContext) -> Any:
        """State for one training call (stored in :attr:`StepContext.state`)."""
        return None

    def prepare(
        self, ctx: StepContext, params: Params, xs: list[torch.Tensor], y: torch.Tensor, batches
    ) -> tuple[Params, dict[str, Params]]:
        """A phase before ERM: returns the parameters to train and named snapshots."""
        return params, {}

    def objective(
        self,
        learner: Learner,
        params: Params,
        xs: list[torch.Tensor],
        y: torch.Tensor,
        plan: ModelPlan,
        task: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training objective, prediction loss), each (G, S)."""
        pred = loss_per_model(forward(learner, params, xs, plan), y, task)
        return pred, pred

    def backward(
        self, ctx: StepContext, params: Params, xs: list[torch.Tensor], y: torch.Tensor
    ) -> torch.Tensor:
        """Set every leaf's ``.grad`` for one step; return the batch's losses (G, S)."""
        obj, losses = self.objective(ctx.learner, params, xs, y, ctx.plan, ctx.task)
        (obj + ctx.penalty(params)).sum().backward()
        return losses.detach()

    def finish(self, ctx: StepContext, params: Params) -> Params:
        """A phase after training: the final parameters (default: unchanged)."""
        return params

    # ---------------------------------------------------------------- reference
    def reference_modules(self, model: nn.Module, init: dict) -> None:
        """Add this method's modules to one reference model, from the same init dict."""

    def reference_forward(self, model: nn.Module, xs: dict, out: torch.Tensor) -> torch.Tensor:
        return out

    def reference_trainable(self, model: nn.Module) -> list[torch.nn.Parameter]:
        return list(model.parameters())

    def reference_pretrain(self, model: nn.Module, ref: ReferenceContext) -> None:
        """A phase before ERM, one model (default: none)."""

    def reference_loss(
        self, model: nn.Module, xs: dict, y: torch.Tensor, task: str
    ) -> torch.Tensor:
        return single_model_loss(model(xs), y, task)

    def reference_backward(
        self,
        model: nn.Module,
        xs: dict,
        y: torch.Tensor,
        task: str,
        trainable: list,
        ref: ReferenceContext,
    ) -> None:
        """Set the gradients of one reference model's step (before the ridge term)."""
        self.reference_loss(model, xs, y, task).backward()

    def reference_finish(self, model: nn.Module, ref: ReferenceContext) -> None:
        """A phase after training, one model (default: none)."""


# ------------------------------------------------------------ shared by several methods
def add_unimodal_heads(ctx: InitContext) -> None:
    """One linear head per modality of the subset on that modality's latent."""
    lat = ctx.learner.latent_dim
    for k in ctx.subset:
        ctx.draw(weight(UNIMODAL_HEAD, 0, k), (lat, ctx.out_dim), lat)
        ctx.draw(bias(UNIMODAL_HEAD, 0, k), (ctx.out_dim,), lat)


def unimodal_losses(
    params: Params, latents: Latents, y: torch.Tensor, plan: ModelPlan, task: str, G: int
) -> torch.Tensor:
    """Per-modality head losses on the fused model's latents, scattered to (G, S, K)
    (0 where a modality is absent)."""
    ref = next(iter(params.values()))
    L = torch.zeros(G, plan.S, plan.K, dtype=ref.dtype, device=ref.device)
    for k, idx, h in latents:
        name = plan.names[k]
        logits = per_model(h, params[weight(UNIMODAL_HEAD, 0, name)])
        logits = logits + params[bias(UNIMODAL_HEAD, 0, name)][:, :, None]
        onehot = torch.zeros(plan.K, dtype=ref.dtype, device=ref.device)
        onehot[k] = 1
        L = L.index_add(1, idx, loss_per_model(logits, y, task)[..., None] * onehot)
    return L


def reference_unimodal_heads(model: nn.Module, init: dict) -> None:
    """The per-modality heads as ``nn.Linear`` modules of one reference model."""
    from torch import nn

    from mmtheory.models.modules import linear_from

    model.uni_heads = nn.ModuleDict(
        {
            k: linear_from(init[weight(UNIMODAL_HEAD, 0, k)], init[bias(UNIMODAL_HEAD, 0, k)])
            for k in model.mods  # type: ignore[union-attr]  # a reference SingleModel
        }
    )
