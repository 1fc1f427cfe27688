"""The world interface and the linear latent-model machinery with exact oracles.

A world is a data-generating process whose truth is known; the interface is
:class:`mmtheory.core.world.World` (identity, parameters, ``sample``, ``bayes_risk``,
``oracle``). Worlds here add ``g_star`` / ``h_star``.

:class:`LinearLatentWorld` covers every world whose modalities are linear maps of a
latent vector z (plus independent noise) and whose target is linear in z:

    x_k = T_k z + sigma_k e_k,   y = B z + s eps,   z, e, eps with unit variances.

All second moments are closed forms (zero means):
Sigma = T T^T + diag(sigma^2), Sigma_xy = T B^T, Sigma_yy = B B^T + s^2 I. For
squared loss this gives the exact population risk of any linear predictor, the exact
eta of any linear encoder and the large-sample eta_inf(M) (docs/theory.md section 3).
The latent and the noise may be Gaussian or uniform on [-sqrt 3, sqrt 3] (bounded,
same second moments): every second-moment formula holds for both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import special
from scipy.stats import qmc

from mmtheory.core.data import MultiModalData
from mmtheory.core.seeding import SeedLike, as_generator
from mmtheory.core.validation import check_choice, check_int, check_int_list, check_real
from mmtheory.core.world import World

__all__ = [
    "World",
    "LinearLatentWorld",
    "check_latent_dims",
    "check_target",
    "check_unit_interval",
    "floats",
    "per_modality",
]

_SQRT3 = float(np.sqrt(3.0))
#: Sample size of the fixed Monte Carlo estimate of a Bayes risk without closed form.
BAYES_MC_SAMPLES = 400_000
#: Outer sample and inner Sobol points of the classification Bayes risk (see
#: LinearLatentWorld.classification_bayes), and the fixed seed that makes it reproducible.
BAYES_OUTER = 40_000
BAYES_INNER = 512
#: Rows of the posterior formed at a time (its (rows, inner points) matrix: 16 MiB).
POSTERIOR_ROWS = 4096
BAYES_SEED = 2**31 - 1
_CLASSIFICATION_BAYES: dict[str, tuple[float, float, str]] = {}
#: Assumed range of an unbounded (Gaussian) scalar target, in standard deviations.
UNBOUNDED_TARGET_SDS = 4.0


def check_unit_interval(value: float, name: str) -> float:
    """``value`` as a float in [0, 1], or a ValueError naming ``name``."""
    return check_real(value, name, low=0.0, high=1.0)


def check_latent_dims(dims, latent_dim: int) -> list[int]:
    """``dims`` as a list of K >= 1 integers, each >= ``latent_dim`` (injective maps)."""
    check_int(latent_dim, "latent_dim", low=1)
    dims = check_int_list(dims, "dims", low=1)
    for i, d in enumerate(dims):
        if d < latent_dim:
            raise ValueError(
                f"dims[{i}]={d} must be >= latent_dim={latent_dim} so that the modality "
                "map is injective"
            )
    return dims


def check_target(task: str, n_classes: int, scale: float, label_noise: float) -> None:
    """Validate the target settings shared by the latent worlds."""
    check_choice(task, "task", ("regression", "classification"))
    if task == "classification":
        check_int(n_classes, "n_classes", low=2)
    check_real(scale, "scale", low=0, low_open=True)
    check_real(label_noise, "label_noise", low=0)


def per_modality(
    value: float | Sequence[float], k: int, name: str, *, low: float = 0.0
) -> np.ndarray:
    """Broadcast a scalar to ``k`` modalities, or check a sequence has ``k`` entries >= low."""
    items = [value] if np.isscalar(value) or isinstance(value, bool) else list(value)
    if len(items) not in (1, k):
        raise ValueError(f"{name} must be a number or a list of {k} numbers, got {value!r}")
    arr = np.array([check_real(v, name, low=low) for v in items], dtype=float)
    return np.broadcast_to(arr, (k,)).copy()


def floats(values) -> list[float]:
    """A canonical list of floats (for :meth:`~mmtheory.core.world.World.params`)."""
    return [float(v) for v in values]


def _draw(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Unit-variance draws: standard normal, or uniform on [-sqrt 3, sqrt 3]."""
    if kind == "gaussian":
        return rng.standard_normal(shape)
    return rng.uniform(-_SQRT3, _SQRT3, size=shape)


def _pinvh(S: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric PSD matrix with a relative eigenvalue cut-off."""
    w, V = np.linalg.eigh(S)
    cut = max(S.shape) * np.finfo(float).eps * max(float(w.max()), 0.0) * 10
    keep = w > cut
    return (V[:, keep] / w[keep]) @ V[:, keep].T


def _pinv_quad(S: np.ndarray, C: np.ndarray) -> float:
    """trace(C^T S^+ C) for symmetric PSD ``S``, with an eigenvalue cut-off (pinvh)."""
    if S.shape[0] == 0:
        return 0.0
    w, V = np.linalg.eigh(S)
    cut = max(S.shape) * np.finfo(float).eps * max(float(w.max()), 0.0) * 10
    keep = w > cut
    P = V[:, keep].T @ C
    return float(np.sum(P**2 / w[keep][:, None]))


class LinearLatentWorld(World):
    """x_k = T_k z + sigma_k e_k, target linear in z (see the module docstring).

    Subclasses set ``names``, ``task``, ``_T`` (dict name -> (d_k, r)), ``_noise``
    (dict name -> sigma_k), ``_B`` ((p, r)), ``_label_noise`` and ``latent``.
    For classification the rows of ``B z`` are the logits of p classes and labels
    are drawn from their softmax; the second-moment oracles then describe x only.
    """

    latent: str = "gaussian"
    _T: dict[str, np.ndarray]
    _noise: dict[str, float]
    _B: np.ndarray
    _label_noise: float

    #: The methods that draw a sample. The closed-form truth (:meth:`bayes_risk`, the
    #: linear oracle, the classification posterior) is computed from the declared model,
    #: not from these: a subclass that draws another way must give its own truth.
    #: ``_features`` may be overridden (structure, the same law: OverlapWorld).
    DRAWS = ("sample", "sample_latent", "sample_from_latent", "targets_from_latent")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        redrawn = cls.redrawn()
        if redrawn and cls.bayes_risk is LinearLatentWorld.bayes_risk:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(redrawn)}: LinearLatentWorld's closed-"
                f"form Bayes risk and oracle describe the declared model x = T z + noise, not "
                f"the samples {cls.__name__} draws; override bayes_risk (and oracle, or it is "
                f"None) or subclass mmtheory's World instead"
            )

    @classmethod
    def redrawn(cls) -> list[str]:
        """The :data:`DRAWS` methods ``cls`` overrides (empty for the declared model)."""
        return [n for n in cls.DRAWS if getattr(cls, n) is not getattr(LinearLatentWorld, n)]

    # ---------------------------------------------------------------- basics
    @property
    def dims(self) -> dict[str, int]:
        return {k: int(self._T[k].shape[0]) for k in self.names}

    @property
    def latent_dim(self) -> int:
        return int(self._B.shape[1])

    @property
    def output_dim(self) -> int:
        return int(self._B.shape[0])

    def oracle(self) -> LinearLatentWorld | None:
        """This world itself when its linear oracles are exact (regression, sampled as
        declared: :meth:`redrawn` is empty), else None."""
        return self if self.task == "regression" and not self.redrawn() else None

    def target_bound(self) -> tuple[float, bool]:
        """(B, rigorous) with ||y||_2 <= B almost surely (regression, any number of outputs).

        Uniform latents and noise bound output k by sqrt(3) (||B_k||_1 + label noise), so
        ||y|| <= the Euclidean norm of those (rigorous); Gaussian worlds have no bound, and 4
        standard deviations of ||y|| are assumed (not rigorous).
        """
        if self.task != "regression":
            raise ValueError("target_bound covers regression worlds")
        if self.latent == "uniform":
            per_output = np.sqrt(3.0) * (np.abs(self._B).sum(axis=1) + self._label_noise)
            return float(np.linalg.norm(per_output)), True
        return float(UNBOUNDED_TARGET_SDS * np.sqrt(np.trace(self.second_moments()[2]))), False

    def feature_bound(self, subset: object | None = None) -> tuple[float, bool]:
        """(X, rigorous) with ||(x_M, 1)||_2 <= X almost surely: the features of ``subset``
        (default all) with the constant 1 of an intercept appended.

        Uniform latents and noise bound feature i by sqrt(3) (||T_i||_1 + sigma_i)
        (rigorous); Gaussian features are unbounded, and 4 times the root mean square norm is
        assumed (not rigorous).
        """
        sl = self.feature_slices()
        names = self.names if subset is None else tuple(self.subset(subset))
        cols = np.concatenate([np.arange(sl[k].start, sl[k].stop) for k in names])
        if self.latent == "uniform":
            noise = np.concatenate(
                [np.full(self._T[k].shape[0], self._noise[k]) for k in self.names]
            )
            per_feature = np.sqrt(3.0) * (np.abs(self.T).sum(axis=1) + noise)
            return float(np.sqrt((per_feature[cols] ** 2).sum() + 1.0)), True
        trace = float(np.trace(self.second_moments()[0][np.ix_(cols, cols)]))
        return float(UNBOUNDED_TARGET_SDS * np.sqrt(trace + 1.0)), False

    @property
    def T(self) -> np.ndarray:
        """(sum d_k, r): the stacked modality maps."""
        return np.concatenate([self._T[k] for k in self.names], axis=0)

    @property
    def B(self) -> np.ndarray:
        """(p, r): the target map (regression) or logit map (classification)."""
        return self._B.copy()

    def feature_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for k in self.names:
            d = self._T[k].shape[0]
            out[k] = slice(start, start + d)
            start += d
        return out

    # -------------------------------------------------------------- sampling
    def sample_latent(self, n: int, seed: SeedLike = None) -> np.ndarray:
        """The latent z of ``sample(n, seed)``, shape (n, r)."""
        n = self._check_n(n)
        return _draw(as_generator(seed, "latent"), (n, self.latent_dim), self.latent)

    def sample(self, n: int, seed: SeedLike = None) -> MultiModalData:
        n = self._check_n(n)
        return self.sample_from_latent(self.sample_latent(n, seed), seed)

    def sample_from_latent(self, z: np.ndarray, seed: SeedLike = None) -> MultiModalData:
        """The sample ``sample(n, seed)`` built from its latent ``z`` (n, r): features
        from ``z`` and the ``noise`` streams, targets from :meth:`targets_from_latent`."""
        x = {}
        for k in self.names:
            xk = self._features(z, k)
            if self._noise[k] > 0:
                e = _draw(as_generator(seed, "noise", k), xk.shape, self.latent)
                xk = xk + self._noise[k] * e
            x[k] = xk
        y = self.targets_from_latent(z, seed)
        if self.task == "regression":
            return MultiModalData(x, y)
        return MultiModalData(x, y, n_classes=self.output_dim)

    def targets_from_latent(self, z: np.ndarray, seed: SeedLike = None) -> np.ndarray:
        """The targets of ``sample(n, seed)`` from its latent ``z`` (n, r): (n,) or (n, p)
        floats (regression), (n,) int64 labels (classification)."""
        signal = z @ self._B.T
        if self.task == "regression":
            y = signal
            if self._label_noise > 0:
                y = y + self._label_noise * _draw(as_generator(seed, "label"), y.shape, self.latent)
            return y[:, 0] if y.shape[1] == 1 else y
        u = as_generator(seed, "label").random(len(z))
        p = _softmax(signal)
        labels = np.minimum((np.cumsum(p, axis=1) < u[:, None]).sum(axis=1), p.shape[1] - 1)
        return labels.astype(np.int64)

    def shared_draw_key(self) -> str | None:
        """Worlds with equal keys draw the same latent and the same features for every
        ``(n, seed)`` and differ only in their targets (Table 4's overlap worlds), so a
        sweep over them may draw and factor the features once per seed. The key hashes
        everything the latent and features depend on: the class (its ``_features``), the
        latent's size and law, each modality's map and noise level. None for a subclass
        that draws its latent or features another way."""
        if set(self.redrawn()) - {"targets_from_latent"}:  # its own latent or features
            return None
        import hashlib

        h = hashlib.sha256()
        h.update(f"{type(self).__module__}.{type(self).__qualname__}".encode())
        h.update(f"{self.latent_dim}|{self.latent}|{self.names}".encode())
        for k in self.names:
            h.update(f"{k}|{self._noise[k]!r}|{self._T[k].shape}".encode())
            h.update(np.ascontiguousarray(self._T[k]).tobytes())
        return h.hexdigest()

    def latent_linear_maps(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(T, B)`` when every sample is exactly linear in its latent: x = T z (all
        modalities stacked, (d, r); no feature noise) and y = B z ((p, r); regression, no
        label noise), so that least squares needs only the latent's moments
        (:meth:`~mmtheory.engine.GramFactors.from_latent`); else None. Subclasses that
        draw, build features or targets another way get None, unless the class that
        defines ``_features`` declares it equal to z T_k^T (``_features_are_linear = True``
        in its own body: a subclass overriding it again is not taken for linear)."""
        cls = type(self)
        owner = next(c for c in cls.__mro__ if "_features" in c.__dict__)
        linear = owner is LinearLatentWorld or owner.__dict__.get("_features_are_linear", False)
        if (
            self.task != "regression"
            or self.shared_draw_key() is None
            or not linear
            or "targets_from_latent" in cls.redrawn()
            or any(self._noise[k] > 0 for k in self.names)
            or self._label_noise > 0
        ):
            return None
        return np.concatenate([self._T[k] for k in self.names]), self._B.copy()

    def _features(self, z: np.ndarray, name: str) -> np.ndarray:
        """Noise-free features of modality ``name``: z T_k^T (subclasses may use structure)."""
        return z @ self._T[name].T

    def sample_exact_moments(self, n: int, seed: SeedLike = None) -> MultiModalData:
        """``n`` rows whose empirical moments equal the population's exactly (regression).

        The latent, the feature noise and the target noise are drawn jointly, centred and
        whitened (scaled orthonormal columns of a QR factorisation), so that the sample mean
        of every feature and of the target is 0 and (1/n) sum_i (x_i, y_i)(x_i, y_i)^T is the
        world's second-moment matrix, up to rounding. Full-batch gradient descent of any
        model that is linear in x (deep linear networks included) on this sample is gradient
        descent on the population squared loss: the setting of closed-form learning
        dynamics. The rows are not i.i.d. draws.

        Needs n > r + (noisy feature dimensions) + (p if the target is noisy).
        """
        self._require_oracles("sample_exact_moments")
        n = self._check_n(n)
        r = self.latent_dim
        noisy = [k for k in self.names if self._noise[k] > 0]
        widths = [r] + [self._T[k].shape[0] for k in noisy]
        widths += [self.output_dim] if self._label_noise > 0 else []
        q = sum(widths)
        if n < q + 1:
            raise ValueError(
                f"n must be >= {q + 1} for exact moments (latent and noise dimensions + 1), got {n}"
            )
        u = as_generator(seed, "exact_moments").standard_normal((n, q))
        u -= u.mean(axis=0)
        Q, R = np.linalg.qr(u)
        w = np.sqrt(n) * Q * np.sign(np.diag(R))  # zero column means, (1/n) w^T w = I
        cuts = np.cumsum([0] + widths)
        z = w[:, : cuts[1]]
        x = {k: self._features(z, k) for k in self.names}
        for j, k in enumerate(noisy):
            x[k] = x[k] + self._noise[k] * w[:, cuts[j + 1] : cuts[j + 2]]
        y = z @ self._B.T
        if self._label_noise > 0:
            y = y + self._label_noise * w[:, cuts[-2] :]
        return MultiModalData(x, y[:, 0] if y.shape[1] == 1 else y)

    # ------------------------------------------------------- second moments
    def second_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Sigma (d, d), Sigma_xy (d, p), Sigma_yy (p, p)), exact, zero means.

        For classification Sigma_xy and Sigma_yy describe the logits ``B z``.
        Computed once (worlds are immutable); the arrays returned are read-only.
        """
        cached = self.__dict__.get("_moments")
        if cached is None:
            cached = self._compute_moments()
            for a in cached:
                a.setflags(write=False)
            self.__dict__["_moments"] = cached
        return cached

    def _compute_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        T = self.T
        noise = np.concatenate([np.full(self._T[k].shape[0], self._noise[k]) for k in self.names])
        sigma = T @ T.T + np.diag(noise**2)
        sxy = T @ self._B.T
        syy = self._B @ self._B.T
        if self.task == "regression":
            syy = syy + self._label_noise**2 * np.eye(self.output_dim)
        return sigma, sxy, syy

    def _require_oracles(self, what: str) -> None:
        if self.oracle() is None:
            raise ValueError(
                f"{what} has a closed form only for regression worlds with squared loss; "
                f"this world's task is {self.task!r}"
            )

    def risk_linear(self, W: np.ndarray | torch.Tensor, bias: object = None) -> np.ndarray | float:
        """Exact population squared risk of ``x -> W^T x`` (summed over outputs).

        Parameters
        ----------
        W : array ``(d,)``, ``(d, p)`` or batched ``(B, d, p)``; d = sum of modality dims.
        bias : array ``(p,)`` or ``(B, p)``, optional intercept (the features have zero mean,
            so it adds ``|b|^2``).

        Returns
        -------
        float, or array ``(B,)`` for batched W:
        ``tr(W^T Sigma W) - 2 tr(W^T Sigma_xy) + tr(Sigma_yy)``.
        """
        self._require_oracles("risk_linear")
        W = np.asarray(W.detach().cpu() if isinstance(W, torch.Tensor) else W, dtype=float)
        sigma, sxy, syy = self.second_moments()
        squeeze = W.ndim < 3
        if W.ndim == 1:
            W = W[:, None]
        if W.ndim == 2:
            W = W[None]
        if W.shape[1] != sigma.shape[0] or W.shape[2] != self.output_dim:
            raise ValueError(
                f"W must have shape (d={sigma.shape[0]}, p={self.output_dim}) or (B, d, p), "
                f"got {W.shape}"
            )
        quad = np.sum((sigma @ W) * W, axis=(1, 2))
        cross = np.sum(W * sxy, axis=(1, 2))
        # a risk is >= 0; the cancellation can leave -1e-16 where it is exactly 0
        risk = np.maximum(quad - 2 * cross + np.trace(syy), 0.0)
        if bias is not None:
            # zero means: E|W^T x + b - y|^2 = risk(W) + |b|^2
            b = np.asarray(
                bias.detach().cpu() if isinstance(bias, torch.Tensor) else bias, dtype=float
            )
            risk = risk + (b.reshape(risk.shape[0], -1) ** 2).sum(axis=1)
        return float(risk[0]) if squeeze else risk

    def _best_value(self, B: np.ndarray) -> float:
        """trace(Sigma_yx B (B^T Sigma B)^+ B^T Sigma_xy): variance explained by x -> B^T x."""
        sigma, sxy, _ = self.second_moments()
        return _pinv_quad(B.T @ sigma @ B, B.T @ sxy)

    def bayes_risk(self) -> float:
        """r(h* o g*).

        Regression: the risk of the best linear predictor on all modalities, exact. It is the
        Bayes risk for Gaussian worlds and for noise-free modalities; for uniform latents
        with noisy modalities E[y | x] is not linear, and the value is the best *linear*
        risk (``bayes_risk_method`` says "best_linear"). Classification: the cross-entropy
        of the true posterior p(y | x) (see :meth:`classification_bayes`).
        """
        if self.task == "classification":
            return self.classification_bayes()[0]
        if "_bayes_exact" not in self.__dict__:
            _, _, syy = self.second_moments()
            self.__dict__["_bayes_exact"] = float(np.trace(syy)) - self._explained(None)
        return self.__dict__["_bayes_exact"]

    @property
    def bayes_risk_method(self) -> str:  # type: ignore[override]
        """How :meth:`bayes_risk` is obtained: "exact", "monte_carlo" (an exact expectation
        estimated by sampling, SE in ``bayes_risk_se``), "lower_bound" or "best_linear"."""
        if self.task == "classification":
            return self.classification_bayes()[2]
        noisy = any(v > 0 for v in self._noise.values())
        return "best_linear" if self.latent == "uniform" and noisy else "exact"

    @property
    def bayes_risk_se(self) -> float:  # type: ignore[override]
        return self.classification_bayes()[1] if self.task == "classification" else 0.0

    # ------------------------------------------------------ classification truth
    def logit_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(K (C, d), L (C, r)): for a Gaussian world the logits u = B z given the features
        x are Gaussian, u | x ~ N(K x, L L^T), with K = Sigma_ux Sigma^+ and L L^T the
        Schur complement Sigma_uu - Sigma_ux Sigma^+ Sigma_xu, projected off the all-ones
        direction (softmax ignores it)."""
        if "_logit_posterior" not in self.__dict__:
            T = self.T
            sigma, _, _ = self.second_moments()
            pinv = _pinvh(sigma)
            K = self._B @ T.T @ pinv
            S = self._B @ self._B.T - self._B @ T.T @ pinv @ T @ self._B.T
            C = S.shape[0]
            P = np.eye(C) - np.ones((C, C)) / C
            vals, V = np.linalg.eigh(P @ S @ P)
            keep = vals > max(float(vals.max()), 0.0) * 1e-10
            L = V[:, keep] * np.sqrt(vals[keep])
            self.__dict__["_logit_posterior"] = (K, L)
        return self.__dict__["_logit_posterior"]

    def class_posterior(self, x: np.ndarray, n_inner: int = BAYES_INNER) -> np.ndarray:
        """The true posterior p(y | x), (n, C), of a Gaussian classification world for
        concatenated features x (n, d): E[softmax(u) | x] over u | x ~ N(K x, L L^T), by
        scrambled Sobol points in the posterior's r <= C - 1 dimensions (fixed, so the same
        x always gives the same answer; 512 points are within 1e-4 nats of 8,192)."""
        if self.latent != "gaussian":
            raise ValueError("class_posterior needs a Gaussian world (latent='gaussian')")
        K, _ = self.logit_posterior()
        return self._posterior_of_means(np.asarray(x, dtype=float) @ K.T, n_inner)

    def _posterior_of_means(self, mu: np.ndarray, n_inner: int = BAYES_INNER) -> np.ndarray:
        """:meth:`class_posterior` from the posterior means mu = K x (n, C) of the logits.

        With a_c = exp(mu_c - max mu) and e_jc = exp(noise_jc - max_c noise_jc) for inner
        point j, softmax(mu + noise_j)_c = a_c e_jc / D_j with D_j = sum_c a_c e_jc, so the
        average over the points is a_c (sum_j e_jc / D_j) / n_inner: two products (rows x
        C x points) and one pass over the (rows, points) matrix D. Each term is at most 1
        and D_j >= max(e_j at argmax mu, a at argmax noise_j); rows where some D_j is below
        ``1e-250`` (logit spreads of hundreds of nats) take the max-shifted softmax per
        point instead. Each entry's error is within a few 1e-15 of its row's largest; an
        entry below about 1e-80 of it may lose its relative precision or round to 0 (no
        effect on the entropy: such terms are below 1e-78 nats)."""
        _, L = self.logit_posterior()
        if L.shape[1] == 0:
            return _softmax(mu)
        sobol = qmc.Sobol(d=L.shape[1], scramble=True, seed=BAYES_SEED)
        noise = special.ndtri(sobol.random(n_inner)) @ L.T
        e = np.exp(noise - noise.max(axis=1, keepdims=True))
        p = np.exp(mu - mu.max(axis=1, keepdims=True))  # a, then the posterior in place
        for start in range(0, len(p), POSTERIOR_ROWS):  # D is (rows, points): bounded memory
            a = p[start : start + POSTERIOR_ROWS]
            D = a @ e.T
            tiny = np.flatnonzero((D < 1e-250).any(axis=1))
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # rows redone
                np.reciprocal(D, out=D)
                a *= (D @ e) / n_inner
            for i in tiny:  # the direct form: a softmax per inner point
                u = mu[start + i] + noise
                u = np.exp(u - u.max(axis=1, keepdims=True))
                a[i] = (u / u.sum(axis=1, keepdims=True)).mean(axis=0)
        return p

    def _entropy_of_means(self, cov: np.ndarray) -> tuple[float, float]:
        """(E[H(p(y | x))], its standard error) over the fixed sample of ``BAYES_OUTER``
        posterior means drawn from N(0, ``cov``) (:meth:`classification_bayes`)."""
        vals, V = np.linalg.eigh(cov)
        root = V * np.sqrt(np.clip(vals, 0.0, None))
        z = as_generator(BAYES_SEED, "bayes_means").standard_normal((BAYES_OUTER, len(cov)))
        p = np.clip(self._posterior_of_means(z @ root.T), 1e-300, None)
        h = -(p * np.log(p)).sum(axis=1)
        return float(h.mean()), float(h.std(ddof=1) / np.sqrt(h.size))

    def classification_bayes(self) -> tuple[float, float, str]:
        """(Bayes cross-entropy, its standard error, method) of a classification world.

        Gaussian worlds: E_x[H(p(y | x))] with the exact posterior of
        :meth:`class_posterior`, averaged over a fixed sample of 40,000 x, drawn as their
        posterior means K x ~ N(0, K Sigma K^T), through which alone x enters
        ("monte_carlo": an exact expectation, estimated; SE about 0.002 nats). Other
        latents: the entropy of p(y | latent), E[H(softmax(B z))], which is the Bayes risk
        only when x determines the latent and a lower bound otherwise ("lower_bound" unless
        the modalities are noise-free). Computed once per world (cached by identity).
        """
        key = self.identity()
        if key not in _CLASSIFICATION_BAYES:
            if self.latent == "gaussian":
                # x ~ N(0, Sigma) enters only through mu = K x ~ N(0, K Sigma K^T): the
                # C-dimensional means are drawn, not the d-dimensional features
                K, _ = self.logit_posterior()
                mean, se = self._entropy_of_means(K @ self.second_moments()[0] @ K.T)
                result = (mean, se, "monte_carlo")
            else:
                mean, se = latent_entropy_risk(self, lambda z: z @ self._B.T)
                noisy = any(v > 0 for v in self._noise.values())
                result = (mean, se, "lower_bound" if noisy else "monte_carlo")
            _CLASSIFICATION_BAYES[key] = result
        return _CLASSIFICATION_BAYES[key]

    def eta_linear(self, A: np.ndarray | torch.Tensor, subset: object | None = None) -> float:
        """Exact eta of the linear encoder g(x) = A^T p_M x (best linear head, squared loss).

        Parameters
        ----------
        A : array ``(d, k)``: encoder over the concatenated features.
        subset : subset M, or None when ``A`` is already masked.
        """
        self._require_oracles("eta_linear")
        A = np.asarray(A.detach().cpu() if isinstance(A, torch.Tensor) else A, dtype=float)
        if A.ndim == 1:
            A = A[:, None]
        d = sum(self.dims.values())
        if A.ndim != 2 or A.shape[0] != d:
            raise ValueError(f"A must have shape (d={d}, k), got {A.shape}")
        if subset is not None:
            A = self.mask_matrix(subset) @ A
        _, _, syy = self.second_moments()
        return float(np.trace(syy)) - self._best_value(A) - self.bayes_risk()

    def mask_matrix(self, subset: object) -> np.ndarray:
        """P_M: the (d, d) diagonal 0/1 matrix that keeps the modalities of ``subset``."""
        sub = self.subset(subset)
        keep = np.concatenate([np.full(self.dims[k], k in sub, dtype=float) for k in self.names])
        return np.diag(keep)

    def _sigma_eigh(self, subset: object | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cols, V_k, w_k)``: the columns of ``subset`` (all when None) and the kept
        eigenpairs of Sigma_MM (the pinvh cut-off), computed once per subset: the exact
        oracles (eta_inf, the Bayes risk, the best predictors) all solve with Sigma_MM."""
        sub = self.subset(self.names if subset is None else subset)
        cache = self.__dict__.setdefault("_sigma_eighs", {})
        key = tuple(sub)
        if key not in cache:
            sl = self.feature_slices()
            cols = np.concatenate([np.arange(sl[k].start, sl[k].stop) for k in sub])
            sigma, _, _ = self.second_moments()
            S = sigma[np.ix_(cols, cols)]
            w, V = np.linalg.eigh(S)
            keep = w > max(S.shape) * np.finfo(float).eps * max(float(w.max()), 0.0) * 10
            held = (cols, V[:, keep], w[keep])
            for a in held:
                a.setflags(write=False)
            cache[key] = held
        return cache[key]

    def _explained(self, subset: object | None) -> float:
        """trace(Sigma_yM Sigma_MM^+ Sigma_My): the target variance the best linear
        predictor on ``subset`` explains."""
        cols, V, w = self._sigma_eigh(subset)
        _, sxy, _ = self.second_moments()
        P = V.T @ sxy[cols]
        return float(np.sum(P**2 / w[:, None]))

    def eta_inf(self, subset: object) -> float:
        """Large-sample eta(M): the Schur-complement excess risk of the best predictor on M."""
        self._require_oracles("eta_inf")
        _, _, syy = self.second_moments()
        return float(np.trace(syy)) - self._explained(subset) - self.bayes_risk()

    def best_linear(self, subset: object | None = None) -> np.ndarray:
        """(d, p): the population least-squares predictor on ``subset`` (zero rows elsewhere):
        Sigma_MM^+ Sigma_My (minimum norm)."""
        sigma, sxy, _ = self.second_moments()
        cols, V, w = self._sigma_eigh(subset)
        W = np.zeros((sigma.shape[0], sxy.shape[1]))
        W[cols] = V @ ((V.T @ sxy[cols]) / w[:, None])
        return W

    # ------------------------------------------------------------ g*, h*
    def g_star(self, x: np.ndarray) -> np.ndarray:
        """g*: (n, d) concatenated features -> (n, r) best linear estimate of the latent."""
        sigma, _, _ = self.second_moments()
        return np.asarray(x) @ np.linalg.pinv(sigma, hermitian=True) @ self.T

    def h_star(self, z: np.ndarray) -> np.ndarray:
        """h*: (n, r) latent -> (n, p) target mean (regression) or class probabilities."""
        out = np.asarray(z) @ self._B.T
        return out if self.task == "regression" else _softmax(out)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def latent_entropy_risk(world: LinearLatentWorld | World, logits_fn, n: int = BAYES_MC_SAMPLES):
    """Monte Carlo E[H(softmax(logits))] over the latent and its standard error.

    The cross-entropy risk of the true conditional p(y | latent): the Bayes risk of a
    classifier that sees the latent, a lower bound for any classifier of x, equal to
    the Bayes risk when x determines the latent (noise-free, injective maps).
    """
    chunks, total = [], 0
    rng_seed = BAYES_SEED  # fixed: the same world always reports the same number
    while total < n:
        m = min(100_000, n - total)
        z = _draw(as_generator(rng_seed, "bayes", total), (m, world.latent_dim), world.latent)
        p = _softmax(logits_fn(z))
        chunks.append(-(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1))
        total += m
    h = np.concatenate(chunks)
    return float(h.mean()), float(h.std(ddof=1) / np.sqrt(h.size))
