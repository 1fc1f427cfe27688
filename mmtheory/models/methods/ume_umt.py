"""``ume_umt``: the uni-modal ensemble (UME) and the uni-modal teacher (UMT), and the rule
that chooses between them.

Du et al., "On Uni-Modal Feature Learning in Supervised Multi-Modal Learning", ICML 2023
(UMT first in Du et al., arXiv 2106.11059). Neither the authors' code nor the method
section could be read here: the equations follow the abstracts ("choose targeted late-fusion
learning method from UME and UMT according to the distribution of uni-modal and paired
features ... under a simple guiding strategy"; "UMT combines the fusion objective and
uni-modal distillation") and GeWu-Lab's reimplementation of UMT (BalanceBenchmark,
``UMT_trainer.py``). Per model with modalities M:

teachers
    one uni-modal network per modality (its own encoder and linear head), trained alone on
    its modality for ``teacher_steps`` (default: the learner's ``steps``).
UME
    the teachers' ensemble: the prediction is the mean of their logits, written as a fused
    model (encoder k = teacher k's, head block k = teacher k's head / |M|, bias = the mean
    of their biases), so eta and branch eta read it like any late-fusion model.
UMT
    the fused model trained from its initial weights on
    CE(f(x), y) + ``distill`` * sum_{k in M} mean_{i, j} (h_k(x_i)_j - t_k(x_i)_j)^2,
    t_k the frozen teacher's encoder (feature distillation, as BalanceBenchmark).
the rule (``mode="auto"``)
    our reading of the "simple guiding strategy": hold out the last ``holdout`` of the
    training rows, train the teachers and plain joint training (ERM) on the rest, and
    choose UME when the teachers' ensemble has no higher held-out risk than joint
    training (uni-modal features dominate; joint training's modality laziness costs), UMT
    otherwise (paired features matter). Then teachers (and, for UMT, the student) are
    trained on all rows. The choice is recorded per model (``diag_ume_umt_chose_ume``).

Unverified choices (ours): averaging logits rather than probabilities; the distillation
weight 1 (BalanceBenchmark uses 10 with 512-d features); the distillation during all of
training; the student starting from its own initial weights, not the teachers'; the rule's
held-out split and loss. Single-modality models run the same procedure (UME is then the
teacher alone).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmtheory.core.validation import check_choice, check_int, check_real
from mmtheory.models.forward import concat_head, late_latents, per_model
from mmtheory.models.losses import loss_per_model, single_model_loss
from mmtheory.models.methods.base import (
    Ablation,
    Claim,
    Method,
    add_unimodal_heads,
    reference_unimodal_heads,
)
from mmtheory.models.modules import encoder_from
from mmtheory.models.params import (
    ENCODER,
    HEAD,
    UNIMODAL_ENCODER,
    UNIMODAL_HEAD,
    bias,
    select_parts,
    weight,
)

__all__ = ["UMEUMT", "ensemble_logits", "umt_objective"]


def ensemble_logits(unimodal: list[torch.Tensor]) -> torch.Tensor:
    """UME's prediction: the mean of the uni-modal models' logits."""
    return torch.stack(unimodal).mean(0)


def umt_objective(
    fused_loss: torch.Tensor,
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    weight_: float,
) -> torch.Tensor:
    """UMT's loss: fused cross-entropy + weight * sum_k mean squared feature distance."""
    out = fused_loss
    for h, t in zip(student, teacher):
        out = out + weight_ * (h - t).pow(2).mean(dim=(-2, -1))
    return out


def _teacher_logits(learner, params, xs, plan):
    """Per modality (k, member index, teacher logits (G, S_k, m, p))."""
    out = []
    for k, idx, h in late_latents(learner, params, xs, plan, part=UNIMODAL_ENCODER):
        name = plan.names[k]
        logits = per_model(h, params[weight(UNIMODAL_HEAD, 0, name)])
        out.append((k, idx, logits + params[bias(UNIMODAL_HEAD, 0, name)][:, :, None]))
    return out


def _ensemble(teacher_logits, plan, G, m, ref):
    """UME's logits (G, S, m, p): the mean of each model's teachers' logits."""
    total = torch.zeros(G, plan.S, m, plan.out_dim, dtype=ref.dtype, device=ref.device)
    for _k, idx, logits in teacher_logits:
        total.index_add_(1, idx, logits)
    sizes = plan.mask(ref.device).sum(-1).to(ref.dtype)
    return total / sizes[None, :, None, None]


def _teacher_network(slot) -> str:
    return slot.modality


@dataclass(frozen=True)
class UMEUMT(Method):
    """Uni-modal teachers, then their ensemble (UME) or distillation into the fused model
    (UMT), chosen per model by the paper's rule (``mode="auto"``) or fixed.

    Parameters
    ----------
    mode : "auto" (the rule), "ume" or "umt"
    distill : weight >= 0 of the feature distillation (UMT)
    holdout : fraction of the training rows the rule holds out (auto)
    teacher_steps : steps of the teachers' (and the rule's) training; None: the learner's
    """

    mode: str = "auto"
    distill: float = 1.0
    holdout: float = 0.2
    teacher_steps: int | None = None

    name = "ume_umt"
    paper = "Du et al., ICML 2023"
    provenance = "abstracts and GeWu-Lab's UMT reimplementation (authors' code unread)"
    reconstruction = (
        "method section and code unread: logit averaging, distillation weight 1, the rule's "
        "held-out split and loss are ours"
    )
    classification_only = True
    ablations = (
        Ablation("ume", "the uni-modal ensemble", {"mode": "ume"}),
        Ablation("umt", "the uni-modal teacher (distillation)", {"mode": "umt"}),
    )
    claims = (
        Claim("lowers the test risk of the fused model", "test_risk"),
        Claim("improves the fused encoder's eta", "eta"),
        Claim("improves the weakest branch", "eta_branch"),
    )

    def __post_init__(self) -> None:
        check_choice(self.mode, "mode", ("auto", "ume", "umt"))
        check_real(self.distill, "distill", low=0)
        check_real(self.holdout, "holdout", low=0, high=1, low_open=True, high_open=True)
        if self.teacher_steps is not None:
            check_int(self.teacher_steps, "teacher_steps (None: the learner's steps)", low=1)

    def extra_params(self, ctx) -> None:
        for k in ctx.subset:  # the teachers
            ctx.add_encoder(k, UNIMODAL_ENCODER)
        add_unimodal_heads(ctx)

    # ----------------------------------------------------------------- batched
    def prepare(self, ctx, params, xs, y, batches):
        plan, learner, task = ctx.plan, ctx.learner, ctx.task
        G, m = xs[0].shape[:2]
        steps = self.teacher_steps or ctx.steps
        teachers = select_parts(params, (UNIMODAL_ENCODER, UNIMODAL_HEAD))
        student = select_parts(params, (ENCODER, HEAD))
        if self.mode == "auto":
            choice = self._rule(ctx, teachers, student, xs, y, steps)
        else:
            choice = torch.full((G, plan.S), self.mode == "ume", device=xs[0].device)
        opt = ctx.make_optimizer(list(teachers.values()))
        for _ in range(steps):
            bx, by = batches.take(xs, y)
            opt.zero_grad(set_to_none=True)
            obj = ctx.penalty(teachers).sum()
            for _k, _idx, logits in _teacher_logits(learner, teachers, bx, plan):
                obj = obj + loss_per_model(logits, by, task).sum()
            obj.backward()
            ctx.clip(teachers, _teacher_network)
            opt.step()
        opt.zero_grad(set_to_none=True)
        frozen = {k: v.detach() for k, v in teachers.items()}
        ctx.state = {"choice": choice, "teachers": frozen}
        ctx.diagnostics["ume_umt_chose_ume"] = choice.to(torch.float64)
        return student, {}

    def _rule(self, ctx, teachers, student, xs, y, steps) -> torch.Tensor:
        """Per model: True (UME) when the teachers' ensemble has no higher held-out risk
        than joint training, both trained on the first rows."""
        plan, learner, task = ctx.plan, ctx.learner, ctx.task
        G, m = xs[0].shape[:2]
        n = m - math.ceil(self.holdout * m)
        if n < 1 or n >= m:
            raise ValueError(
                f"method 'ume_umt' holds out {self.holdout:g} of {m} rows: needs at least "
                "one row on each side"
            )
        t_copy = {k: v.detach().clone().requires_grad_(True) for k, v in teachers.items()}
        f_copy = {k: v.detach().clone().requires_grad_(True) for k, v in student.items()}
        fit_x, fit_y = [x[:, :n] for x in xs], y[:, :n]
        batches = ctx.batches_on(n, "ume-umt-rule")
        opt = ctx.make_optimizer(list(t_copy.values()) + list(f_copy.values()))
        for _ in range(steps):
            bx, by = batches.take(fit_x, fit_y)
            gm = bx[0].shape[1]
            opt.zero_grad(set_to_none=True)
            fused = loss_per_model(
                concat_head(f_copy, late_latents(learner, f_copy, bx, plan), plan, G, gm), by, task
            )
            obj = fused.sum() + ctx.penalty(t_copy).sum() + ctx.penalty(f_copy).sum()
            for _k, _idx, logits in _teacher_logits(learner, t_copy, bx, plan):
                obj = obj + loss_per_model(logits, by, task).sum()
            obj.backward()
            ctx.clip(f_copy)
            ctx.clip(t_copy, _teacher_network)
            opt.step()
        val_x, val_y = [x[:, n:] for x in xs], y[:, n:]
        with torch.no_grad():
            vm = val_x[0].shape[1]
            joint = loss_per_model(
                concat_head(f_copy, late_latents(learner, f_copy, val_x, plan), plan, G, vm),
                val_y,
                task,
            )
            ref = next(iter(f_copy.values()))
            ume = loss_per_model(
                _ensemble(_teacher_logits(learner, t_copy, val_x, plan), plan, G, vm, ref),
                val_y,
                task,
            )
        return ume <= joint

    def backward(self, ctx, params, xs, y):
        """UMT's loss for the models that chose UMT (the others only take the ridge term:
        their fused model is replaced by the ensemble at the end)."""
        plan, learner = ctx.plan, ctx.learner
        G, m = xs[0].shape[:2]
        state = ctx.state
        if self.mode == "ume":  # nothing to train: every model becomes its ensemble
            with torch.no_grad():
                fused = loss_per_model(
                    concat_head(params, late_latents(learner, params, xs, plan), plan, G, m),
                    y,
                    ctx.task,
                )
            pen = ctx.penalty(params)
            if pen.requires_grad:
                pen.sum().backward()
            return fused
        latents = late_latents(learner, params, xs, plan)
        fused = loss_per_model(concat_head(params, latents, plan, G, m), y, ctx.task)
        teach = {
            k: h
            for k, _idx, h in late_latents(
                learner, state["teachers"], xs, plan, part=UNIMODAL_ENCODER
            )
        }
        obj = fused
        for k, idx, h in latents:
            dist = (h - teach[k]).pow(2).mean(dim=(-2, -1))  # (G, S_k)
            obj = obj.index_add(1, idx, self.distill * dist)
        obj = torch.where(state["choice"], torch.zeros_like(obj), obj)
        (obj + ctx.penalty(params)).sum().backward()
        return fused.detach()

    def finish(self, ctx, params):
        """The models that chose UME become their teachers' ensemble."""
        plan = ctx.plan
        state = ctx.state
        choice, teachers = state["choice"], state["teachers"]
        sizes = plan.mask(choice.device).sum(-1).to(params[bias(HEAD)].dtype)  # (S,)
        out = {}
        with torch.no_grad():
            for slot, t in params.items():
                if slot.part == ENCODER:
                    ume = teachers[slot.with_part(UNIMODAL_ENCODER)]
                elif slot.part == HEAD and slot.weight:
                    k = plan.names.index(slot.modality)
                    idx = plan.member_index(k, t.device)
                    ume = (
                        teachers[weight(UNIMODAL_HEAD, 0, slot.modality)]
                        / sizes[idx][None, :, None, None]
                    )
                else:  # the fused bias: the mean of the teachers' biases
                    ume = torch.zeros_like(t)
                    for k, name in enumerate(plan.names):
                        idx = plan.member_index(k, t.device)
                        if len(idx):
                            ume.index_add_(1, idx, teachers[bias(UNIMODAL_HEAD, 0, name)])
                    ume = ume / sizes[None, :, None]
                cols = (
                    plan.member_index(plan.names.index(slot.modality), t.device)
                    if slot.per_modality
                    else slice(None)
                )
                pick = choice[:, cols].reshape(*choice[:, cols].shape, *[1] * (t.ndim - 2))
                out[slot] = torch.where(pick, ume.to(t.dtype), t.detach()).requires_grad_(True)
        return out

    # ------------------------------------------------------------ reference
    def reference_modules(self, model, init) -> None:
        model.uni_encoders = nn.ModuleDict(
            {k: encoder_from(model.learner, init, UNIMODAL_ENCODER, k) for k in model.mods}
        )
        reference_unimodal_heads(model, init)

    def reference_trainable(self, model):
        teachers = {id(p) for p in model.uni_encoders.parameters()}
        teachers |= {id(p) for p in model.uni_heads.parameters()}
        return [p for p in model.parameters() if id(p) not in teachers]

    def reference_pretrain(self, model, ref) -> None:
        mods, task = model.mods, ref.task
        steps = self.teacher_steps or ref.steps
        if self.mode == "auto":
            choice = self._reference_rule(model, ref, steps)
        else:
            choice = self.mode == "ume"
        nets = {
            k: list(model.uni_encoders[k].parameters()) + list(model.uni_heads[k].parameters())
            for k in mods
        }
        opt = ref.make_opt([p for k in mods for p in nets[k]])
        teachers = nn.ModuleDict({"enc": model.uni_encoders, "heads": model.uni_heads})
        for _ in range(steps):
            bx, by = ref.batch()
            opt.zero_grad()
            loss = sum(
                single_model_loss(model.uni_heads[k](model.uni_encoders[k](bx[k])), by, task)
                for k in mods
            )
            (loss + ref.penalty(teachers)).backward()
            for k in mods:
                ref.clip(nets[k])
            opt.step()
        for p in teachers.parameters():
            p.requires_grad_(False)
        ref.state = {"choice": bool(choice)}

    def _reference_rule(self, model, ref, steps) -> bool:
        mods, task = model.mods, ref.task
        m = len(ref.y)
        n = m - math.ceil(self.holdout * m)
        # copies of the model's networks (Any: nested ModuleDicts are indexed below)
        joint: Any = copy.deepcopy(nn.ModuleDict({"enc": model.encoders, "head": model.head}))
        teach: Any = copy.deepcopy(
            nn.ModuleDict({"enc": model.uni_encoders, "heads": model.uni_heads})
        )
        batch = ref.batches_on(n, "ume-umt-rule")
        opt = ref.make_opt(list(joint.parameters()) + list(teach.parameters()))
        for _ in range(steps):
            bx, by = batch()
            opt.zero_grad()
            loss = single_model_loss(
                joint["head"](torch.cat([joint["enc"][k](bx[k]) for k in mods], -1)), by, task
            )
            for k in mods:
                loss = loss + single_model_loss(teach["heads"][k](teach["enc"][k](bx[k])), by, task)
            (loss + ref.penalty(joint) + ref.penalty(teach)).backward()
            ref.clip(list(joint.parameters()))
            for k in mods:
                ref.clip(list(teach["enc"][k].parameters()) + list(teach["heads"][k].parameters()))
            opt.step()
        vx, vy = {k: v[n:] for k, v in ref.xs.items()}, ref.y[n:]
        with torch.no_grad():
            joint_risk = single_model_loss(
                joint["head"](torch.cat([joint["enc"][k](vx[k]) for k in mods], -1)), vy, task
            )
            ume = ensemble_logits([teach["heads"][k](teach["enc"][k](vx[k])) for k in mods])
            ume_risk = single_model_loss(ume, vy, task)
        return bool(ume_risk <= joint_risk)

    def reference_backward(self, model, xs, y, task, trainable, ref) -> None:
        if ref.state["choice"]:
            return
        lat = model.latents(xs)
        with torch.no_grad():
            teach = [model.uni_encoders[k](xs[k]) for k in model.mods]
        umt_objective(
            single_model_loss(model.fused(lat), y, task),
            [lat[k] for k in model.mods],
            teach,
            self.distill,
        ).backward()

    def reference_finish(self, model, ref) -> None:
        if not ref.state["choice"]:
            return
        mods, lat_dim = model.mods, model.learner.latent_dim
        with torch.no_grad():
            for k in mods:
                model.encoders[k].load_state_dict(model.uni_encoders[k].state_dict())
            for i, k in enumerate(mods):
                blk = slice(i * lat_dim, (i + 1) * lat_dim)
                model.head.weight[:, blk] = model.uni_heads[k].weight / len(mods)
            model.head.bias.copy_(torch.stack([model.uni_heads[k].bias for k in mods]).mean(0))
