"""What theory predicts for least squares: expected risk curves, their spread, and m*.

For a linear world with Gaussian features, least squares on subset M behaves as least
squares on p_M = rank(Sigma_MM) features with noise variance s2_M = r(h* o g*) + eta_inf(M)
(summed over outputs), because the part of y that x_M cannot explain is independent of
x_M. Three regimes, each labelled in every predicted row (``regime``):

``exact`` (m > p + 2 with an intercept, m > p + 1 without; Gaussian features)
    E r_M(m) = s2_M (1 + 1/m) (m - 2) / (m - p_M - 2)      (no intercept: s2_M (m-1)/(m-p_M-1)),
    the classical result (e.g. Breiman and Freedman 1983), and the expected risks of nested
    M over N cross once, at m* = p_M + 2 + (p_M - p_N) s2_M / (eta_inf(N) - eta_inf(M)) (no
    intercept: p_M + 1 + ...): a crossover exists if and only if eta_inf(N) > eta_inf(M).
``approximate``
    below the interpolation threshold, m <= 0.75 p: the minimum-norm (ridgeless) solution's
    deterministic equivalent (Hastie, Montanari, Rosset and Tibshirani 2022; Bach 2023): with
    kappa solving sum_i l_i / (l_i + kappa) = n (l the eigenvalues of Sigma_MM), df2 =
    sum_i l_i^2 / (l_i + kappa)^2, excess risk = s2 df2 / (n - df2) + kappa^2 sum_i l_i w_i^2
    / (l_i + kappa)^2 n / (n - df2), w the best predictor in Sigma's eigenbasis (n = m - 1
    with an intercept). It reduces to the isotropic formulas (Belkin, Hsu and Xu 2020) when
    Sigma = I, and holds to 1-2% for m <= 0.75 p when p >= 40. Also ``approximate``: the
    exact formula on non-Gaussian (uniform) features, and the spread of the risk (below).
``none``
    0.75 p < m <= p + 2: nothing simple holds near the interpolation threshold; no value is
    predicted (and no curve is drawn).

The spread over training samples (``test_risk_sd``, approximate): given the design, the
excess risk s2 u^T W^{-1} u (u standard normal, W the Wishart design Gram) has conditional
mean s2 tr W^{-1} and variance 2 s2^2 tr W^{-2}; their inverse-Wishart moments give
Var = s2^2 (2 E tr W^{-2} + Var tr W^{-1}) (an intercept counted as one fewer sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from mmtheory.core.seeding import derive
from mmtheory.core.subsets import label_size, parse_subset

__all__ = [
    "CROSSOVER_COLUMNS",
    "LSProblem",
    "PREDICTED_COLUMNS",
    "REGIMES",
    "crossover_ls",
    "crossover_se",
    "deterministic_risk",
    "expected_risk_ls",
    "min_norm_risk",
    "predict",
    "predict_crossovers",
    "predict_ls",
    "risk_sd_ls",
    "ls_problem",
    "softmax_asymptotics",
]

#: Below the interpolation threshold the deterministic equivalent is used for m <= this * p.
APPROX_LIMIT = 0.75


def expected_risk_ls(s2, p, m, *, intercept: bool = True):
    """Exact expected test risk of least squares on ``p`` Gaussian features with residual
    variance ``s2`` at sample size ``m`` (arrays broadcast). NaN where the expectation is
    infinite or the formula does not hold (m <= p + 2 with an intercept, m <= p + 1 without).
    """
    s2, p, m = np.broadcast_arrays(
        np.asarray(s2, float), np.asarray(p, float), np.asarray(m, float)
    )
    if intercept:
        ok = m > p + 2
        value = s2 * (1 + 1 / m) * (m - 2) / np.where(ok, m - p - 2, 1.0)
    else:
        ok = m > p + 1
        value = s2 * (m - 1) / np.where(ok, m - p - 1, 1.0)
    out = np.where(ok, value, np.nan)
    return float(out) if out.ndim == 0 else out


def crossover_ls(s2_M, p_M, s2_N, p_N, *, intercept: bool = True) -> float:
    """The sample size m* where the expected risks of least squares on M and on N are equal
    (M nested over N: p_M >= p_N); ``inf`` when M is never better (s2_M >= s2_N)."""
    if s2_N <= s2_M:
        return float("inf")
    base = p_M + (2 if intercept else 1)
    return float(base + (p_M - p_N) * s2_M / (s2_N - s2_M))


def crossover_se(m_star: float, p_M: int, p_N: int, seeds: int) -> float:
    """Approximate standard error of a crossover measured over ``seeds`` seeds: about
    sqrt(2 / k) / sqrt(S) relative, k = p_M - p_N (checked against sweeps: the measured m*
    spreads this much; see docs/theory.md)."""
    k = max(p_M - p_N, 1)
    return float(m_star * math.sqrt(2.0 / k) / math.sqrt(max(seeds, 1)))


def risk_sd_ls(s2, p, m, *, intercept: bool = True) -> float:
    """Approximate standard deviation of the test risk of least squares over training
    samples (module docstring); NaN where m <= p + 4 (the moments do not exist)."""
    n = m - 1 if intercept else m
    a = n - p
    if a <= 4:
        return float("nan")
    e_tr2 = p * (n - 1) / (a * (a - 1) * (a - 3))  # E tr W^{-2}
    var_tr = 2 * p / ((a - 1) ** 2 * (a - 3)) + 2 * p * (p - 1) / (a * (a - 1) ** 2 * (a - 3))
    return float(s2 * math.sqrt(2 * e_tr2 + var_tr))


def _deterministic_kappa(lam: np.ndarray, n: float, ridge: float) -> float:
    """The effective regularisation kappa of ridge with penalty ``ridge`` on n samples:
    ridge = kappa (1 - sum_i l_i / (l_i + kappa) / n) (kappa = 0 when ridge = 0 and n > p)."""

    def gap(kappa):
        return kappa * (1 - float(np.sum(lam / (lam + kappa))) / n) - ridge

    if ridge == 0 and n > len(lam):
        return 0.0
    high = ridge + float(lam.sum()) / n + 1e-12
    return float(optimize.brentq(gap, 1e-14 * float(lam.max()), high))


def deterministic_risk(
    eigs: np.ndarray, w2: np.ndarray, s2: float, n: float, ridge: float = 0.0
) -> float:
    """Deterministic equivalent of the test risk of ridge regression with penalty ``ridge``
    (objective (1/n) |y - X w|^2 + ridge |w|^2) on n samples (Hastie, Montanari, Rosset and
    Tibshirani 2022; Bach 2023): with kappa from :func:`_deterministic_kappa` and df2 =
    sum_i l_i^2 / (l_i + kappa)^2, risk = (s2 + kappa^2 sum_i l_i w_i^2 / (l_i + kappa)^2)
    / (1 - df2 / n). Eigenvalues ``eigs`` of Sigma, squared coefficients ``w2`` of the best
    predictor in its eigenbasis (summed over outputs), residual variance ``s2``. With
    ridge = 0 it is the minimum-norm (ridgeless) risk below the threshold and s2 n / (n - p)
    above it. NaN where it has no finite value (ridge 0 and n = p)."""
    eigs = np.asarray(eigs, float)
    keep = eigs > eigs.max() * 1e-12
    lam, w2 = eigs[keep], np.asarray(w2, float)[keep]
    if ridge == 0 and abs(n - len(lam)) < 1:
        return float("nan")
    kappa = _deterministic_kappa(lam, float(n), float(ridge))
    df2 = float(np.sum(lam**2 / (lam + kappa) ** 2))
    bias = kappa**2 * float(np.sum(lam * w2 / (lam + kappa) ** 2))
    return float((s2 + bias) / (1 - df2 / n))


def min_norm_risk(eigs: np.ndarray, w2: np.ndarray, s2: float, n: float) -> float:
    """Deterministic equivalent of the minimum-norm least-squares risk for n < p samples
    (module docstring): eigenvalues ``eigs`` of Sigma, squared coefficients ``w2`` of the
    best predictor in its eigenbasis (summed over outputs), residual variance ``s2``."""
    eigs = np.asarray(eigs, float)
    if n >= int(np.sum(eigs > eigs.max() * 1e-12)):
        return float("nan")
    return deterministic_risk(eigs, w2, s2, n, 0.0)


@dataclass(frozen=True)
class LSProblem:
    """What least squares on one subset sees: the eigenvalues of Sigma_MM, the squared
    coefficients of the best predictor in that eigenbasis (summed over outputs), the residual
    variance s2 = r(h* o g*) + eta_inf(M), and whether the features are Gaussian."""

    eigs: np.ndarray
    w2: np.ndarray
    s2: float
    gaussian: bool = True

    @property
    def p(self) -> int:
        return int(np.sum(self.eigs > self.eigs.max() * 1e-12)) if len(self.eigs) else 0

    @classmethod
    def from_oracle(cls, oracle, subset, bayes_risk: float, gaussian: bool = True) -> LSProblem:
        """The problem of ``subset`` in a world with a linear oracle."""
        sl = oracle.feature_slices()
        names = tuple(parse_subset(subset, tuple(sl)))
        cols = np.concatenate([np.arange(sl[k].start, sl[k].stop) for k in names])
        sigma, _, _ = oracle.second_moments()
        S = sigma[np.ix_(cols, cols)]
        w = np.asarray(oracle.best_linear(subset))[cols]  # (d_M, p)
        eigs, V = np.linalg.eigh(S)
        w2 = ((V.T @ w) ** 2).sum(axis=1)
        return cls(eigs, w2, float(bayes_risk + oracle.eta_inf(subset)), gaussian)


def predict_ls(problem: LSProblem, m: int, *, intercept: bool = True) -> tuple[float, float, str]:
    """(expected test risk, its standard deviation over training samples, regime) of least
    squares on ``problem`` at sample size ``m``; NaN values where the regime is "none"."""
    p = problem.p
    if m > p + (2 if intercept else 1):
        mean = expected_risk_ls(problem.s2, p, m, intercept=intercept)
        sd = risk_sd_ls(problem.s2, p, m, intercept=intercept)
        return mean, sd, "exact" if problem.gaussian else "approximate"
    if m <= APPROX_LIMIT * p:
        n = m - 1 if intercept else m
        return min_norm_risk(problem.eigs, problem.w2, problem.s2, n), float("nan"), "approximate"
    return float("nan"), float("nan"), "none"


# ------------------------------------------------------------------ world-level predictions
#: How much a predicted value can be trusted (the ``regime`` column).
REGIMES = ("exact", "approximate", "plug-in", "none")
#: Columns of :func:`predict` (the measured table's names where they mean the same thing).
PREDICTED_COLUMNS = [
    "world",
    "world_id",
    "learner",
    "subset",
    "n_modalities",
    "m",
    "p",
    "test_risk",
    "test_risk_sd",
    "eta",
    "eta_inf",
    "bayes_risk",
    "regime",
    "method",
    "reason",
]
CROSSOVER_COLUMNS = [
    "world",
    "world_id",
    "learner",
    "M",
    "N",
    "p_M",
    "p_N",
    "m_star",
    "m_star_se",
    "exists",
    "regime",
    "method",
    "reason",
]
#: The classical asymptotics of a softmax fit are used only where m >= this x parameters.
ASYMPTOTIC_FACTOR = 5
#: Samples drawn for Monte Carlo plug-ins (nonlinear regression, softmax asymptotics).
PLUGIN_SAMPLES = 60_000
_PLUGINS: dict[tuple, object] = {}


def _resolve(learner, task: str):
    from mmtheory.models.presets import resolve_learners

    return resolve_learners(learner, task)[0]


def _labels(world, subsets) -> list[str]:
    from mmtheory.core.subsets import parse_subsets

    return [str(s) for s in parse_subsets(subsets, world.names)]


def _plugin_problem(world, subset: str) -> LSProblem:
    """Least squares on a world without linear oracles (nonlinear regression): the second
    moments, best linear predictor and its residual variance from a fixed Monte Carlo sample
    of :data:`PLUGIN_SAMPLES` rows (the effective noise and dimension of the plug-in)."""
    key = ("ls", world.identity(), subset)
    if key not in _PLUGINS:
        data = world.sample(PLUGIN_SAMPLES, seed=derive(0, "predict"))
        x = data.concat(subset).double().numpy()
        y = data.y.double().numpy().reshape(len(x), -1)
        x, y = x - x.mean(0), y - y.mean(0)
        S = x.T @ x / len(x)
        w = np.linalg.lstsq(x, y, rcond=None)[0]
        s2 = float(((y - x @ w) ** 2).sum(1).mean())
        eigs, V = np.linalg.eigh(S)
        _PLUGINS[key] = LSProblem(eigs, ((V.T @ w) ** 2).sum(1), s2, gaussian=False)
    return _PLUGINS[key]  # type: ignore[return-value]


def ls_problem(world, subset: str) -> LSProblem:
    """What least squares on ``subset`` of ``world`` sees: from the world's exact oracle
    when it has one, else the Monte Carlo plug-in (:func:`_plugin_problem`). Computed once
    per (world, subset): predictions at many sizes and every pair reuse it."""
    key = ("problem", world.identity(), subset)
    if key not in _PLUGINS:
        oracle = world.oracle()
        if oracle is None:
            _PLUGINS[key] = _plugin_problem(world, subset)
        else:
            gaussian = getattr(world, "latent", "gaussian") == "gaussian"
            _PLUGINS[key] = LSProblem.from_oracle(oracle, subset, world.bayes_risk(), gaussian)
    return _PLUGINS[key]  # type: ignore[return-value]


def softmax_asymptotics(world, subset: str) -> tuple[float, float, int]:
    """(r_inf, k_eff, k) of a linear softmax model on ``subset``: the population
    cross-entropy of the best linear softmax (``r_inf``), the effective number of parameters
    k_eff = tr(H^+ G) (sandwich: H the Hessian, G the gradient covariance at the optimum),
    whose classical asymptotics give E r(m) = r_inf + k_eff / (2 m) + o(1/m), and the
    number of free parameters k = (rank(x_M) + 1)(C - 1). Both from a fixed Monte Carlo sample of
    :data:`PLUGIN_SAMPLES` rows, the optimum by L-BFGS in float64 (a plug-in estimate)."""
    key = ("softmax", world.identity(), subset)
    if key not in _PLUGINS:
        data = world.sample(PLUGIN_SAMPLES, seed=derive(0, "predict"))
        x = data.concat(subset).double().numpy()
        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        y = data.y.numpy().astype(int)
        n, d1 = x.shape
        C = int(world.output_dim)
        onehot = np.eye(C)[y]

        def objective(flat):
            W = flat.reshape(d1, C)
            logits = x @ W
            logits -= logits.max(1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            p = np.exp(logp)
            return -(onehot * logp).sum() / n, (x.T @ (p - onehot) / n).ravel()

        fit = optimize.minimize(
            objective,
            np.zeros(d1 * C),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 2000, "gtol": 1e-9},
        )
        W = fit.x.reshape(d1, C)
        logits = x @ W
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        r_inf = float(-(np.log(p[np.arange(n), y])).mean())
        # H = E[(diag p - p p^T) (x) x x^T], G = E[(p - e_y)(p - e_y)^T (x) x x^T]
        H = np.zeros((d1 * C, d1 * C))
        G = np.zeros((d1 * C, d1 * C))
        for i in range(0, n, 4096):
            xi, pi, ri = x[i : i + 4096], p[i : i + 4096], (p - onehot)[i : i + 4096]
            # parameters are W (d1, C) raveled: index d * C + c
            for c in range(C):
                H[c::C, c::C] += (xi * pi[:, c : c + 1]).T @ xi
            A = np.einsum("nc,nd->ndc", pi, xi).reshape(len(xi), -1)
            H -= A.T @ A
            B = np.einsum("nc,nd->ndc", ri, xi).reshape(len(xi), -1)
            G += B.T @ B
        H /= n
        G /= n
        k_eff = float(np.trace(np.linalg.pinv(H, hermitian=True, rcond=1e-10) @ G))
        xc = x[:, :-1] - x[:, :-1].mean(0)
        ev = np.linalg.eigvalsh(xc.T @ xc / n)
        rank = int((ev > max(float(ev.max()), 0.0) * 1e-10).sum())
        _PLUGINS[key] = (r_inf, k_eff, (rank + 1) * (C - 1))
    return _PLUGINS[key]  # type: ignore[return-value]


def _no_prediction(learner) -> str:
    return (
        f"no prediction: {learner.kind} ({learner.encoder} encoders) trained by "
        f"{learner.solver} has no closed form and no asymptotics that hold at these sizes"
    )


def _predict_subset(world, learner, subset: str, sizes) -> list[dict]:
    """Predicted rows of one subset (see :func:`predict`)."""
    bayes = float(world.bayes_risk())
    regression = world.task == "regression"
    rows = []
    linear = learner.kind == "linear" and learner.method.name == "erm"
    if regression and linear and learner.solver == "closed_form":
        problem = ls_problem(world, subset)
        label = None if world.oracle() is not None else "plug-in"
        eta_inf = problem.s2 - bayes  # s2 = Bayes risk + eta_inf(M)
        for m in sizes:
            if learner.ridge > 0:
                mean = deterministic_risk(
                    problem.eigs, problem.w2, problem.s2, m - 1, learner.ridge
                )
                sd, regime, method = float("nan"), "approximate", "ridge deterministic equivalent"
            else:
                mean, sd, regime = predict_ls(problem, m)
                method = {
                    "exact": "least squares, Gaussian design",
                    "approximate": "least squares" if m > problem.p else "min-norm equivalent",
                    "none": "",
                }[regime]
                if regime == "approximate" and m > problem.p and not problem.gaussian:
                    method = "least squares, non-Gaussian design"
            if label and regime != "none":
                regime = label
            reason = (
                "no prediction near the interpolation threshold "
                f"(0.75 p < m <= p + 2, p = {problem.p})"
                if regime == "none"
                else ""
            )
            rows.append(
                dict(
                    m=m,
                    p=problem.p,
                    test_risk=mean,
                    test_risk_sd=sd,
                    eta_inf=eta_inf,
                    regime=regime,
                    method=method,
                    reason=reason,
                )
            )
        return [dict(r, bayes_risk=bayes) for r in rows]
    if not regression and linear:
        r_inf, k_eff, k = softmax_asymptotics(world, subset)
        for m in sizes:
            ok = m >= ASYMPTOTIC_FACTOR * k
            rows.append(
                dict(
                    m=m,
                    p=k,
                    test_risk=r_inf + k_eff / (2 * m) if ok else float("nan"),
                    test_risk_sd=float("nan"),
                    eta_inf=r_inf - bayes,
                    regime="plug-in" if ok else "none",
                    method="softmax asymptotics r_inf + tr(H^+ G) / (2 m)" if ok else "",
                    reason=""
                    if ok
                    else f"m < {ASYMPTOTIC_FACTOR} x parameters ({k}): the asymptotics do not hold",
                )
            )
        return [dict(r, bayes_risk=bayes) for r in rows]
    reason = _no_prediction(learner)
    return [
        dict(
            m=m,
            p=float("nan"),
            test_risk=float("nan"),
            test_risk_sd=float("nan"),
            eta_inf=float("nan"),
            regime="none",
            method="",
            reason=reason,
            bayes_risk=bayes,
        )
        for m in sizes
    ]


def predict(world, learner="linear", subsets="all", m=(100,)) -> pd.DataFrame:
    """What theory predicts a sweep of ``learner`` on ``world`` will measure: one row per
    (subset, m) with the measured table's column names (``test_risk`` is the *expected*
    test risk over training samples, ``test_risk_sd`` its spread, ``eta`` = E test_risk -
    Bayes risk), and ``regime`` saying how far to trust it:

    ``exact``
        least squares on a Gaussian linear world above the interpolation threshold;
    ``approximate``
        least squares below it (the min-norm deterministic equivalent), ridge (its
        deterministic equivalent), or non-Gaussian features (the Gaussian formula);
    ``plug-in``
        no closed form: least squares on a nonlinear world (effective noise and dimension
        from a Monte Carlo sample), a linear softmax model on a classification world
        (classical asymptotics, only where m >= 5 x its parameters);
    ``none``
        nothing holds (near the interpolation threshold, or an architecture such as
        Adam-trained late fusion): the value is NaN and ``reason`` says why.

    Same call as :func:`mmtheory.sweep` (``world, learner, subsets, m``), no training.
    """
    sizes = [int(v) for v in (m if isinstance(m, list | tuple | range | np.ndarray) else [m])]
    rows = []
    for learner_obj in [_resolve(learner, world.task)]:
        for subset in _labels(world, subsets):
            for r in _predict_subset(world, learner_obj, subset, sizes):
                rows.append(
                    dict(
                        r,
                        world=world.name,
                        world_id=world.world_id,
                        learner=learner_obj.label,
                        subset=subset,
                        n_modalities=label_size(subset),
                        eta=r["test_risk"] - r["bayes_risk"],
                    )
                )
    return pd.DataFrame(rows, columns=PREDICTED_COLUMNS)


def predict_crossovers(world, learner="linear", subsets="all", seeds: int | None = None):
    """Predicted m* of every nested pair (M over N) of ``subsets``: the sample size from
    which the expected risk of M is below N's (``inf`` with ``exists`` False when M never
    wins: eta_inf(M) >= eta_inf(N)), with the standard error of an m* measured over
    ``seeds`` seeds (:func:`crossover_se`) and the regime of the risk predictions it comes
    from (least squares: exact on Gaussian worlds; linear softmax: the plug-in asymptotics,
    m* = (k_M - k_N) / (2 (r_inf(N) - r_inf(M))), valid only where m* >= 5 x parameters)."""
    from mmtheory.core.subsets import nested_label_pairs

    learner_obj = _resolve(learner, world.task)
    labels = _labels(world, subsets)
    rows = []
    for n_sub, m_sub in nested_label_pairs(labels):
        base = dict(
            world=world.name,
            world_id=world.world_id,
            learner=learner_obj.label,
            M=m_sub,
            N=n_sub,
            m_star_se=float("nan"),
            reason="",
        )
        linear = learner_obj.kind == "linear" and learner_obj.method.name == "erm"
        if world.task == "regression" and linear and learner_obj.solver == "closed_form":
            if learner_obj.ridge > 0:
                rows.append(
                    dict(
                        base,
                        m_star=float("nan"),
                        exists=False,
                        regime="none",
                        method="",
                        reason="no closed-form m* under ridge",
                    )
                )
                continue
            oracle = world.oracle()
            gaussian = getattr(world, "latent", "gaussian") == "gaussian"
            pm, pn = ls_problem(world, m_sub), ls_problem(world, n_sub)
            m_star = crossover_ls(pm.s2, pm.p, pn.s2, pn.p)
            regime = "plug-in" if oracle is None else "exact" if gaussian else "approximate"
            method = "least squares: p_M + 2 + (p_M - p_N) s2_M / (s2_N - s2_M)"
            se = (
                crossover_se(m_star, pm.p, pn.p, seeds)
                if seeds and math.isfinite(m_star)
                else float("nan")
            )
            rows.append(
                dict(
                    base,
                    p_M=pm.p,
                    p_N=pn.p,
                    m_star=m_star,
                    m_star_se=se,
                    exists=math.isfinite(m_star),
                    regime=regime,
                    method=method,
                )
            )
        elif world.task == "classification" and linear:
            rm, km, kpm = softmax_asymptotics(world, m_sub)
            rn, kn, _ = softmax_asymptotics(world, n_sub)
            m_star = (km - kn) / (2 * (rn - rm)) if rn > rm else float("inf")
            ok = math.isfinite(m_star) and m_star >= ASYMPTOTIC_FACTOR * kpm
            rows.append(
                dict(
                    base,
                    m_star=m_star,
                    exists=math.isfinite(m_star),
                    regime="plug-in" if ok or not math.isfinite(m_star) else "none",
                    method="softmax asymptotics: (k_M - k_N) / (2 (r_inf(N) - r_inf(M)))",
                    reason=""
                    if ok or not math.isfinite(m_star)
                    else f"m* < {ASYMPTOTIC_FACTOR} x parameters ({kpm}): the asymptotics "
                    "do not hold there",
                )
            )
        else:
            rows.append(
                dict(
                    base,
                    m_star=float("nan"),
                    exists=False,
                    regime="none",
                    method="",
                    reason=_no_prediction(learner_obj),
                )
            )
    return pd.DataFrame(rows, columns=CROSSOVER_COLUMNS)
