"""What one model is: the :class:`Learner` configuration (architecture, training, method).

Three architectures share one batched representation (:mod:`mmtheory.models.forward`):

- ``linear``: the linear composite h o g, logits = sum_k x_k W_k + b.
- ``late_fusion`` (the paper's model): one encoder per modality (linear, an MLP with one
  hidden layer, or ``conv``: a temporal encoder for sequences) to a latent of
  ``latent_dim``; the latents are concatenated (or summed) and a linear head maps them
  to the outputs.
- ``early_fusion``: the modalities' features enter one first layer together
  (sum_k x_k W_k + b), an activation (``encoder="mlp"``) or none, then a linear head.

Fusion depth (Zhang, Latham & Saxe 2024, "Understanding Unimodal Bias in Multimodal Deep
Linear Networks"): ``depth`` sets the number of layers of each late-fusion MLP encoder
before fusion, and ``head_layers`` adds shared layers after the head's first layer (late
fusion: after the fusion layer; early fusion: after the fused layer's head). With
``activation="identity"`` every such network is a deep linear network. ``init_scale``
multiplies every initial parameter (small initialisation: the regime of that paper).
The defaults keep the architecture, the initial parameters and the run ids of earlier
versions.

The training method (ERM or a related method, :mod:`mmtheory.models.methods`) is a field
holding a method object with its own options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mmtheory.core.validation import check_choice, check_int, check_real
from mmtheory.models.forward import ACTIVATIONS

__all__ = ["ENCODERS", "LEARNER_KINDS", "SOLVERS", "Learner"]

LEARNER_KINDS = ("linear", "late_fusion", "early_fusion")
#: Settings recorded only when they differ from these defaults (added after 0.2.0: runs
#: recorded before them keep their ids).
_QUIET_DEFAULTS: dict[str, object] = {
    "momentum": 0.0,
    "clip_norm": None,
    "init_name": "",
    "depth": None,
    "head_layers": 0,
    "init_scale": 1.0,
}
ENCODERS = ("linear", "mlp", "conv")
SOLVERS = ("closed_form", "gd", "sgd", "adam", "rmsprop")
#: layers of each late-fusion encoder when ``depth`` is left unset
DEFAULT_DEPTH = {"linear": 1, "mlp": 2, "conv": 2}


@dataclass(frozen=True)
class Learner:
    """Architecture and training settings of one model (hashable, recorded per run).

    Parameters
    ----------
    kind : "linear", "late_fusion" or "early_fusion"
    encoder : "linear" or "mlp" (late and early fusion), or "conv" (late fusion: the
        temporal encoder for sequence modalities, see :mod:`mmtheory.models.forward`)
    latent_dim : latent size of each encoder (late fusion) or of the fused layer (early)
    hidden : hidden width of MLP encoders, channels of conv encoders (late fusion)
    window : time steps per convolution window (conv encoder)
    fusion : "concat" or "sum" (late fusion)
    activation : "relu", "tanh", "gelu" or "identity" (linear networks)
    solver : "closed_form" (linear, squared loss), or an iterative optimiser: "gd" and
        "sgd" (both ``torch.optim.SGD``: the same update, "gd" read as full batch), "adam",
        "rmsprop" (``torch.optim.RMSprop`` with its defaults); default: closed_form for
        kind "linear", adam otherwise
    lr : learning rate of the iterative solvers
    momentum : momentum of "gd" / "sgd" / "rmsprop" in [0, 1) (default 0; Adam has its own)
    clip_norm : clip each model's gradient to this L2 norm before every step (per model,
        ``torch.nn.utils.clip_grad_norm_``'s rule); None (default) never clips
    steps : optimiser steps
    batch_size : minibatch size of the iterative solvers; None or 0 means full batch
    ridge : L2 penalty per sample (closed form: added to the Gram matrix / m)
    grad_tol : a model with full-batch gradient norm below this has converged
    plateau_tol : ... or whose full-batch loss changed by less than this (relative)
        over the last tenth of training
    method : a method name ("erm", "i2m2", "mimo", "bogc", "ogm_ge", "xmodal") or a
        method object with options (``OGMGE(alpha=0.3)``); see
        :mod:`mmtheory.models.methods`
    depth : layers of each late-fusion encoder before fusion (None: the encoder's default,
        1 for "linear", 2 for "mlp" and "conv"); more than 2 needs encoder "mlp"
        (widths d_k -> hidden -> ... -> hidden -> latent_dim, the activation between layers)
    head_layers : shared layers after the head's first layer (0: the head is one layer).
        The head's first layer then maps to ``hidden`` units, followed by the activation and
        ``head_layers`` layers (hidden -> ... -> outputs), the activation between them
    init_scale : multiplies every initial parameter (default 1: PyTorch's nn.Linear default)
    name : the ``learner`` column of result tables (default: derived from the settings)
    init_name : the name of the stream the initial weights are drawn from; "" (default)
        uses the ``learner`` column, so learners with different names start from different
        weights. Learners that share an ``init_name`` start from the same fused model
        (common random numbers, as the methods comparison needs)

    ``depth``, ``head_layers``, ``init_scale``, ``momentum``, ``clip_norm`` and
    ``init_name`` are recorded (and hashed into run ids) only when they differ from their
    defaults, so earlier runs keep their ids.
    """

    kind: str = "linear"
    encoder: str = "linear"
    latent_dim: int = 16
    hidden: int = 32
    window: int = 3
    fusion: str = "concat"
    activation: str = "relu"
    solver: str | None = None
    lr: float = 0.01
    momentum: float = 0.0
    clip_norm: float | None = None
    steps: int = 200
    batch_size: int | None = None
    ridge: float = 0.0
    grad_tol: float = 1e-4
    plateau_tol: float = 1e-3
    method: Any = "erm"
    depth: int | None = None
    head_layers: int = 0
    init_scale: float = 1.0
    name: str = field(default="", compare=False)
    init_name: str = ""

    def __post_init__(self) -> None:
        from mmtheory.models.methods import Method, make_method

        check_choice(self.kind, "learner kind", LEARNER_KINDS)
        if self.solver is None:
            object.__setattr__(self, "solver", "closed_form" if self.kind == "linear" else "adam")
        check_choice(self.encoder, "encoder", ENCODERS)
        if self.encoder == "conv" and self.kind != "late_fusion":
            raise ValueError(f"encoder 'conv' needs kind 'late_fusion', got kind {self.kind!r}")
        check_choice(self.fusion, "fusion", ("concat", "sum"))
        check_choice(self.activation, "activation", sorted(ACTIVATIONS))
        check_choice(self.solver, "solver", SOLVERS)
        if self.solver == "closed_form" and self.kind != "linear":
            raise ValueError(
                f"solver 'closed_form' needs kind 'linear' (squared loss), got kind {self.kind!r}"
            )
        for name in ("latent_dim", "hidden", "steps", "window"):
            check_int(getattr(self, name), name, low=1)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size (0 or None: full batch)", low=0)
        for name in ("lr", "ridge", "grad_tol", "plateau_tol"):
            check_real(getattr(self, name), name, low=0)
        if self.lr == 0 and self.solver != "closed_form":
            raise ValueError("lr must be > 0 for iterative solvers, got 0")
        check_real(self.momentum, "momentum", low=0, high=1, high_open=True)
        if self.momentum and self.solver not in ("gd", "sgd", "rmsprop"):
            raise ValueError(
                f"momentum needs solver 'gd', 'sgd' or 'rmsprop', got solver {self.solver!r} "
                f"with momentum {self.momentum!r}"
            )
        if self.clip_norm is not None:
            check_real(self.clip_norm, "clip_norm (None: no clipping)", low=0, low_open=True)
            if self.solver == "closed_form":
                raise ValueError("clip_norm needs an iterative solver, got solver 'closed_form'")
        if not isinstance(self.init_name, str):
            raise TypeError(f"init_name must be a string, got {self.init_name!r}")
        method = self.method
        if isinstance(method, str):
            method = make_method(method)
        elif not isinstance(method, Method):
            raise ValueError(f"method must be a method name or object, got {method!r}")
        object.__setattr__(self, "method", method)
        method.validate(self)
        self._check_depth()

    def _check_depth(self) -> None:
        """Validate ``depth``, ``head_layers`` and ``init_scale``; a depth equal to the
        encoder's default is stored as None (one spelling per architecture)."""
        object.__setattr__(
            self, "init_scale", check_real(self.init_scale, "init_scale", low=0, low_open=True)
        )
        check_int(self.head_layers, "head_layers", low=0)
        if self.head_layers and self.kind == "linear":
            raise ValueError(
                f"head_layers needs kind 'late_fusion' or 'early_fusion', got kind {self.kind!r}"
            )
        if self.depth is not None:
            check_int(self.depth, "depth", low=1)
            if self.kind != "late_fusion":
                raise ValueError(
                    f"depth (encoder layers before fusion) needs kind 'late_fusion', "
                    f"got kind {self.kind!r}"
                )
            default = DEFAULT_DEPTH[self.encoder]
            if self.depth != default and self.encoder != "mlp":
                raise ValueError(
                    f"depth {self.depth} needs encoder 'mlp' (encoder {self.encoder!r} has "
                    f"{default} layer(s)), got encoder {self.encoder!r}"
                )
            if self.depth < 2 and self.encoder == "mlp":
                raise ValueError(f"depth must be >= 2 for encoder 'mlp', got {self.depth}")
            if self.depth == default:
                object.__setattr__(self, "depth", None)
        if (self.depth is not None or self.head_layers) and self.method.name != "erm":
            raise ValueError(
                f"depth and head_layers need method 'erm', got method {self.method.name!r}"
            )

    @property
    def encoder_depth(self) -> int:
        """Layers of each late-fusion encoder (``depth`` or the encoder's default)."""
        return self.depth if self.depth is not None else DEFAULT_DEPTH[self.encoder]

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> Learner:
        """A learner from a flat dict (TOML, presets): the method's options may sit beside
        the learner's fields (``{"method": "ogm_ge", "alpha": 0.3}``)."""
        from mmtheory.models.methods import get_method, make_method

        own = {f.name for f in dataclasses.fields(cls)}
        method = fields.get("method", "erm")
        rest = {k: v for k, v in fields.items() if k not in own}
        if isinstance(method, str):
            options = set(get_method(method).__dataclass_fields__)
            unknown = sorted(set(rest) - options)
            if unknown:
                raise ValueError(
                    f"unknown learner field {unknown[0]!r}; known fields: {sorted(own | options)}"
                )
            method = make_method(method, **rest)
        elif rest:
            raise ValueError(
                f"unknown learner field {sorted(rest)[0]!r}; known fields: {sorted(own)}"
            )
        kept: dict[str, Any] = {k: v for k, v in fields.items() if k in own and k != "method"}
        return cls(**kept, method=method)

    @property
    def method_name(self) -> str:
        return self.method.name

    @property
    def label(self) -> str:
        """The ``learner`` column of result tables; a non-default ``depth`` or
        ``head_layers`` adds ``-depth<d>`` / ``-head<h>`` (default labels are unchanged)."""
        if self.name:
            return self.name
        if self.method.name != "erm":
            return f"{self.method.name}-{self.encoder}"
        if self.kind == "linear":
            return "linear" if self.solver == "closed_form" else f"linear-{self.solver}"
        depth = f"-depth{self.depth}" if self.depth is not None else ""
        head = f"-head{self.head_layers}" if self.head_layers else ""
        return f"{self.kind}-{self.encoder}{depth}{head}"

    def settings(self) -> dict[str, object]:
        """Every setting as a flat dict: recorded in run records and hashed into run ids
        (a change invalidates runs). ``window`` is recorded for conv encoders only."""
        out: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method"
        }
        out["method"] = self.method.name
        out.update(self.method.options())
        if self.encoder != "conv":
            del out["window"]
        for key, default in _QUIET_DEFAULTS.items():
            if out[key] == default:
                del out[key]
        return out

    @property
    def init_stream(self) -> str:
        """The name the initial weights' stream is keyed by (``init_name`` or the label)."""
        return self.init_name or self.label

    @property
    def full_batch(self) -> bool:
        return not self.batch_size
