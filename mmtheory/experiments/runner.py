"""Train and measure the pending runs of one world: the work behind :func:`sweep`.

Batching. The closed-form linear learner fits one Gram matrix per seed for all sample sizes
and subsets. Iterative learners train, per sample size, every pending (seed, subset) at
once: seeds on the group axis G, subsets on the model axis S, chunked to fit the memory
budget. Every finished batch is turned into records and handed to the store (written;
fsynced as :mod:`~mmtheory.experiments.records` says) before the next batch starts. The
closed form's records are built as columns
(:class:`~mmtheory.experiments.records.RecordBatch`), one list per field for a seed's
runs, and written as the same lines.
"""

from __future__ import annotations

import operator
import platform
import time
from collections.abc import Callable
from itertools import chain, repeat
from typing import Any, NamedTuple

import numpy as np
import torch

from mmtheory import _version
from mmtheory.core.data import MultiModalData
from mmtheory.engine import GramFactors, latent_route_pays, least_squares_path, train_batched
from mmtheory.estimation import Estimate, Models, Sample, Truth, branch_models, eta, risk
from mmtheory.experiments.grid import Run
from mmtheory.experiments.records import RecordBatch
from mmtheory.experiments.results import world_columns
from mmtheory.experiments.sources import stack_groups
from mmtheory.models import Learner, ModelPlan, init_model, stack_params
from mmtheory.models.params import (
    ENCODER,
    HEAD,
    bias,
    finite_models,
    replace_models,
    weight,
)

__all__ = ["Runner", "model_bytes"]


#: Record fields measured on the trained model (None in a diverged model's record).
_MEASURED = (
    "test_risk",
    "test_risk_se",
    "eta",
    "eta_se",
    "test_accuracy",
    "test_accuracy_se",
    "test_macro_f1",
    "test_weighted_f1",
    "test_f1_per_class",
)


def _versions() -> dict[str, str]:
    return {
        "mmtheory": _version.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _measured_columns(
    risk_ests: list[Estimate], eta_ests: list[Estimate], g: int
) -> dict[str, list]:
    """The measured record columns of group ``g``'s models of each pair of estimates, one
    value per model: the first pair's models, then the next pair's (each estimate's
    numbers converted in one pass, not one array index per value)."""
    sizes = [r.value.shape[1] for r in risk_ests]
    total = sum(sizes)

    def values(ests: list, get=lambda e: e.value) -> list:  # an array over models, per pair
        return np.concatenate([np.asarray(get(e))[g] for e in ests]).tolist()

    def each(per_pair: list) -> list:  # one value per pair, for each of its models
        if all(v == per_pair[0] and type(v) is type(per_pair[0]) for v in per_pair):
            return [per_pair[0]] * total
        return [v for v, S in zip(per_pair, sizes, strict=True) for _ in range(S)]

    def optional(ests: list, key: str, get, missing) -> list:  # an extra some may lack
        if all(e.extras.get(key) is None for e in ests):
            return [missing] * total
        parts = [
            np.asarray(get(e.extras[key]))[g].tolist()
            if e.extras.get(key) is not None
            else [missing] * S
            for e, S in zip(ests, sizes, strict=True)
        ]
        return [v for part in parts for v in part]

    cols = {
        "test_risk": values(risk_ests),
        "test_risk_se": values(risk_ests, lambda e: e.se),
        "risk_method": each([r.method for r in risk_ests]),
        "eta": values(eta_ests),
        "eta_se": values(eta_ests, lambda e: e.se),
        "eta_method": each([e.method for e in eta_ests]),
        "eta_bias_correction": optional(eta_ests, "bias_correction", lambda x: x, 0.0),
        "test_accuracy": optional(risk_ests, "accuracy", lambda x: x.value, None),
        "test_accuracy_se": optional(risk_ests, "accuracy", lambda x: x.se, None),
    }
    if all("f1" in r.extras for r in risk_ests):
        cols["test_macro_f1"] = values(risk_ests, lambda e: e.extras["f1"]["macro"])
        cols["test_weighted_f1"] = values(risk_ests, lambda e: e.extras["f1"]["weighted"])
        cols["test_f1_per_class"] = [
            " ".join(f"{v:.4f}" for v in row)
            for r in risk_ests
            for row in r.extras["f1"]["per_class"][g]
        ]
    return cols


def _measured(risk_est: Estimate, eta_est: Estimate, g: int) -> list[dict]:
    """:func:`_measured_columns` of one pair of estimates, as one dict per model s."""
    cols = _measured_columns([risk_est], [eta_est], g)
    return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]


#: torch's grain size (``at::internal::GRAIN_SIZE``): a reduction of at most this many
#: elements runs in one thread, so a batched sum over such fits adds in the same order.
_ONE_THREAD = 32768


def _fit_norms(fits) -> tuple[list[list[float]], list[list[float]]]:
    """``(||W||, ||(W, b)||)`` of every fit of a path, ``[i][j]`` as ``fits`` (the norm of
    the whole affine map, intercept included: the class of the bound checks is a ball in
    (W, b)); one batched reduction instead of a few tensor operations per fit."""
    flat = [f for row in fits for f in row]
    if not flat:
        return [], []
    if flat[0].W.numel() <= _ONE_THREAD:  # each fit's sum in one thread's order, as alone
        W = torch.stack([f.W for f in flat])
        b = torch.stack([f.b for f in flat])
        weight = torch.linalg.vector_norm(W, dim=(1, 2)).tolist()
        param = torch.sqrt(W.pow(2).sum((1, 2)) + b.pow(2).sum(1)).tolist()
    else:  # large fits: torch splits one sum across threads; the batch would split it otherwise
        weight = [float(f.W.norm()) for f in flat]
        param = [float(torch.sqrt(f.W.pow(2).sum() + f.b.pow(2).sum())) for f in flat]
    S = len(fits[0])
    return (
        [weight[i : i + S] for i in range(0, len(flat), S)],
        [param[i : i + S] for i in range(0, len(flat), S)],
    )


def _put(shared: dict, columns: dict, name: str, value, per_record: bool) -> None:
    """Set field ``name`` of a batch's records, as a dict's update would: ``value`` is
    one per record (``per_record``) or one for all; the field leaves the other dict."""
    (shared if per_record else columns).pop(name, None)
    (columns if per_record else shared)[name] = value


class _SizePart(NamedTuple):
    """One size of a seed's closed-form fits, as its records need it."""

    index: int  # the size's position in the seed's sizes
    runs: list[Run]  # its pending runs
    positions: list[int]  # each run's subset position
    fits: list  # one fit per subset
    wall: float  # seconds per run so far


def _diagnostic(values: torch.Tensor):
    """A method's per-model diagnostic (G, S) as a column function (None where NaN)."""

    def column(g: int, s: int):
        v = float(values[g, s])
        return None if v != v else v

    return column


def model_bytes(source, learner, m: int) -> tuple[int, int]:
    """Estimated bytes of training one model (activations, parameters, optimiser state)
    and one group (its training data and, for conv encoders, windows) at size m."""
    src = source
    rows = min(m, learner.batch_size) if learner.batch_size else m
    conv = learner.encoder == "conv" and learner.kind == "late_fusion"
    steps = src.steps if conv else dict.fromkeys(src.names, 1)
    T, w = max(steps.values()), learner.window if conv else 1  # conv: per-step activations
    widths = {
        "linear": src.out_dim,
        "early_fusion": 2 * learner.latent_dim + src.out_dim,
        "late_fusion": len(src.names) * (learner.hidden * T + 2 * learner.latent_dim) + src.out_dim,
    }
    per_model = (
        rows * widths[learner.kind] * 4 * 6
        + 4 * 4 * sum(src.dims.values()) * max(learner.hidden, learner.latent_dim, src.out_dim) * w
    )
    # the data, and (conv) its windows
    per_group = m * sum(d * steps[k] for k, d in src.dims.items()) * 4 * (2 * w)
    return per_model, per_group


#: Bytes of cached evaluation samples a runner keeps from one training chunk to the next.
SAMPLE_CACHE_BYTES = 2**28


def _nbytes(value) -> int:
    """Bytes of a cached sample: a data set (``_sample``) or stacked tensors (``_eval_data``:
    a list of tensors and a tensor)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, MultiModalData):
        return sum(_nbytes(value[k]) for k in value.names) + _nbytes(value.y)
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    raise TypeError(f"not a cached sample: {type(value).__name__}")


class Runner:
    """Trains runs of one source and turns them into records.

    Parameters
    ----------
    source : a :class:`~mmtheory.experiments.sources.WorldSource` or ``DataSource``
    device : torch device
    dtype : "float32" or "float64" (iterative solvers; the closed form's Gram matrix)
    store : a :class:`~mmtheory.experiments.records.RecordStore`, or None (keep the
        records in memory, in ``new_records``)
    memory_budget : bytes one batch of models may use
    extra : settings recorded in every record and hashed into run ids
    branch_eta : also measure each modality's branch (late fusion with concatenation)
    on_records : called with each batch's records once they are stored (progress)
    shared : a :class:`~mmtheory.experiments.shared.SharedWork`: the closed form draws the
        latent and factors once per seed for worlds that differ only in their target
    """

    def __init__(
        self,
        source,
        device,
        dtype: str,
        store,
        memory_budget: float,
        extra: dict,
        branch_eta: bool = False,
        on_records: Callable[[list[dict] | RecordBatch], None] | None = None,
        shared=None,
    ):
        self.source, self.device, self.store = source, device, store
        self.shared = shared
        self.branch_eta = branch_eta
        self.dtype_name = dtype
        self.extra = extra
        self.memory_budget = memory_budget
        self.on_records = on_records
        self.versions = _versions()
        self.bayes = source.bayes_risk()
        self._cache: dict[tuple, object] = {}
        self.new_records: list[dict] = []
        # the same in every record of this runner: computed once, not once per run
        self._world_columns = world_columns(source.params)

    # ---------------------------------------------------------------- samples
    def _sample(self, kind: str, seed: int):
        """The source's ``test`` / ``refit`` / ``evaluation`` sample of ``seed``, drawn once."""
        key = (kind, seed)
        if key not in self._cache:
            self._cache[key] = getattr(self.source, kind)(seed)
        return self._cache[key]

    def release_samples(self) -> None:
        """Forget cached per-seed samples beyond :data:`SAMPLE_CACHE_BYTES` (or an eighth
        of the memory budget), so memory does not grow with the number of seeds. Below
        that they are kept for the next chunk, which would draw the same seeds' samples
        again (a sample is a function of its seed, so the numbers are the same either
        way). Chunks visit the seeds in the same order, so the lowest seeds that fit are
        kept and the others forgotten (keeping the newest instead would evict each seed
        just before it is needed again). Scalars stay."""
        by_seed: dict[Any, list[tuple]] = {}
        for key in self._cache:
            if key[0] in ("test", "refit", "evaluation"):
                by_seed.setdefault(key[1], []).append(key)
        room = min(SAMPLE_CACHE_BYTES, self.memory_budget / 8)
        for seed in sorted(by_seed):
            room -= sum(_nbytes(self._cache[k]) for k in by_seed[seed])
            if room < 0:
                for key in by_seed[seed]:
                    del self._cache[key]

    def _eval_data(self, kind: str, seed: int, dtype):
        key = (kind, seed, dtype)
        if key not in self._cache:
            self._cache[key] = stack_groups(
                [self._sample(kind, seed)], self.source.names, self.device, dtype
            )
        return self._cache[key]

    def _stacked(self, kind: str, seeds: list[int], dtype) -> Sample:
        parts = [self._eval_data(kind, s, dtype) for s in seeds]
        xs = [torch.cat([p[0][k] for p in parts]) for k in range(len(self.source.names))]
        return Sample(xs, torch.cat([p[1] for p in parts]))

    def _truth(self, seeds: list[int], dtype, *, samples: bool = True) -> Truth:
        """What the estimates of these seeds' models may use (samples drawn on demand)."""
        src = self.source
        truth = Truth(src.task, self.bayes, src.oracle, sampled=src.risk_method)
        if samples:
            truth.test = self._stacked("test", seeds, dtype)
            truth.refit = self._stacked("refit", seeds, dtype)
            truth.evaluation = self._stacked("evaluation", seeds, dtype)
        return truth

    # ---------------------------------------------------------------- records
    def _record(
        self,
        run: Run,
        measured: dict,
        *,
        train_risk,
        converged=True,
        diverged=False,
        grad_norm=0.0,
        wall=0.0,
        dtype="float64",
        extra_columns=None,
    ) -> dict:
        """One run's record: ``measured`` (one model's columns, :func:`_measured`), the
        run's own fields, and the fields every record of this learner shares
        (:meth:`_fields`, for one run)."""
        status = {
            "converged": bool(converged),
            "diverged": bool(diverged),
            "grad_norm": float(grad_norm),
        }
        shared, columns = self._fields(
            run.learner,
            dtype,
            [run],
            [str(run.subset)],
            [float(train_risk)],
            {name: [value] for name, value in measured.items()},
            [wall],
            status,
        )
        rec = RecordBatch(shared, columns).record(0)
        rec.update(extra_columns or {})
        if diverged:  # measured on a stand-in (the initialisation): nothing to report
            for key in list(rec):
                if key in _MEASURED or (
                    key.startswith("eta_") and key not in ("eta_inf", "eta_method")
                ):
                    rec[key] = None
        return rec

    def _fields(
        self,
        learner: Learner,
        dtype: str,
        runs: list[Run],
        labels: list[str],
        train_risk: list[float],
        measured: dict[str, list],
        wall: list[float],
        status: dict,
        eta_inf: list[float] | None = None,
    ) -> tuple[dict, dict[str, list]]:
        """The fields every record of this source has, for ``runs`` (their subsets'
        texts ``labels``), as ``(shared, columns)`` of a :class:`RecordBatch`; later
        fields win, as in a dict's update: the run's own, the ``measured`` columns,
        ``status`` (converged, diverged, grad_norm: one value for all), the run id and
        ``wall`` time, the fields this learner's records share (:meth:`_shared_fields`),
        the null risk and, with an oracle, eta_inf (``eta_inf``, or each subset's)."""
        sizes = {label: len(run.subset) for label, run in dict(zip(labels, runs)).items()}
        columns: dict[str, list] = {
            "subset": labels,
            "n_modalities": list(map(sizes.__getitem__, labels)),
            "m": [run.m for run in runs],
            "seed": [run.seed for run in runs],
            "train_risk": train_risk,
            **measured,
        }
        shared: dict = {}
        for name, value in status.items():
            _put(shared, columns, name, value, per_record=False)
        _put(shared, columns, "run_id", [run.run_id for run in runs], per_record=True)
        _put(shared, columns, "wall_s", wall, per_record=True)
        for name, value in self._shared_fields(learner, dtype).items():
            _put(shared, columns, name, value, per_record=False)
        # a field per record even where one seed gives one object: batches of a runner
        # then share a line template (records.py)
        null = {seed: self._null_risk(seed) for seed in set(columns["seed"])}
        _put(shared, columns, "null_risk", list(map(null.__getitem__, columns["seed"])), True)
        if self.source.oracle is not None:  # the exact large-sample eta of the subset
            if eta_inf is None:
                eta_inf = [self._eta_inf(run.subset) for run in runs]
            _put(shared, columns, "eta_inf", eta_inf, per_record=True)
        return shared, columns

    def _shared_fields(self, learner: Learner, dtype: str) -> dict:
        """The record fields that are the same for every run of ``learner`` on this
        source (world, learner settings, device, versions, estimation sizes): one dict per
        (learner, dtype), merged into each record (the settings and versions dicts are
        shared by the records, not copied)."""
        key = ("shared", id(learner), dtype)
        held = self._cache.get(key)
        if held is None:
            src = self.source
            held = {
                "world": src.name,
                "learner": learner.label,
                "learner_kind": learner.kind,
                "solver": learner.solver,
                "bayes_risk": self.bayes,
                "bayes_risk_se": src.bayes_risk_se,
                "bayes_risk_method": src.bayes_risk_method,
                **self._world_columns,
                "world_id": src.world_id,
                "world_identity": src.identity,
                "learner_settings": learner.settings(),
                "device": str(self.device),
                "dtype": dtype,
                "versions": self.versions,
                **self.extra,
            }
            self._cache[key] = held
        return held

    def _null_risk(self, seed: int) -> float:
        """Risk of the best constant predictor (the empty modality set): exact from the
        oracle, else fitted on the refit sample and measured on the test sample."""
        key = ("null", seed)
        if key not in self._cache:
            src = self.source
            if src.oracle is not None:
                value = float(np.trace(src.oracle.second_moments()[2]))
            else:
                test = self._sample("test", seed)
                fit = self._sample("refit", seed)
                if src.task == "regression":
                    y_fit = fit.y.double().reshape(fit.n, -1)
                    y = test.y.double().reshape(test.n, -1)
                    value = float(((y - y_fit.mean(0)) ** 2).sum(1).mean())
                else:
                    k = src.out_dim
                    counts = torch.bincount(fit.y, minlength=k).double() + 0.5
                    logp = torch.log(counts / counts.sum())
                    value = float(-logp[test.y].mean())
            self._cache[key] = value
        return self._cache[key]

    def _eta_inf(self, subset) -> float:
        key = ("eta_inf", str(subset))
        if key not in self._cache:
            self._cache[key] = float(self.source.oracle.eta_inf(subset))
        return self._cache[key]

    def _flush(self, records: list[dict] | RecordBatch) -> None:
        """Store a finished batch (kept in ``new_records`` when there is no store)."""
        if self.store is not None:
            self.store.append(records)
        elif isinstance(records, RecordBatch):
            self.new_records.extend(records.records())
        else:
            self.new_records.extend(records)
        if self.on_records is not None:
            self.on_records(records)

    # ------------------------------------------------------------- closed form
    def closed_form(self, learner: Learner, runs: list[Run], grid: list[Run] | None = None) -> None:
        """Fit ``runs`` (pending). Each seed's fit covers every size and subset of ``grid``
        (this learner's runs of the whole grid; default ``runs``), whatever is pending, so a
        run's numbers never depend on which other runs are left (shards, resumes)."""
        src = self.source
        pending = {r.run_id for r in runs}
        seeds_todo = {r.seed for r in runs}
        runs = [r for r in (grid or runs) if r.seed in seeds_todo]
        sl, start = {}, 0
        for k in src.names:
            sl[k] = torch.arange(start, start + src.dims[k])
            start += src.dims[k]
        by_seed: dict[int, list[Run]] = {}
        for run in runs:
            by_seed.setdefault(run.seed, []).append(run)
        for seed, seed_runs in by_seed.items():
            t0 = time.perf_counter()
            sizes = sorted({r.m for r in seed_runs})
            subs = list(dict.fromkeys(str(r.subset) for r in seed_runs))
            sub_obj = {str(r.subset): r.subset for r in seed_runs}
            cols = [torch.cat([sl[k] for k in sub_obj[s]]) for s in subs]
            X, y, factors, target_map = self._closed_form_data(seed, sizes, cols, learner.ridge)
            # the oracle's training risk on each prefix comes with the fits, from the same
            # Gram matrix and X^T Y (worlds with exact oracles)
            w_star = self._theory_constants([])[0] if src.oracle is not None else None
            path = least_squares_path(
                X,
                y,
                sizes,
                cols,
                ridge=learner.ridge,
                factors=factors,
                probe=w_star,
                target_map=target_map,
            )
            fits = path.fits
            plan = ModelPlan(
                src.names, tuple(src.dims.values()), tuple(sub_obj[s] for s in subs), src.out_dim
            )
            theory = self._theory_columns([sub_obj[s] for s in subs])
            by_m: dict[int, list[Run]] = {}
            for run in seed_runs:
                if run.run_id in pending:
                    by_m.setdefault(run.m, []).append(run)
            # each run's subset position, by the subset object's identity (plan_runs gives
            # the runs of a subset one object) or else by its text
            at_id = {id(sub_obj[s]): j for j, s in enumerate(subs)}
            parts, estimates = [], []
            for i, m in enumerate(sizes):
                if m not in by_m:  # fitted (the fit covers the grid), nothing to measure
                    continue
                estimates.append(self._estimate_linear(plan, fits[i], seed))
                wall = (time.perf_counter() - t0) / max(1, len(seed_runs))
                m_runs = by_m[m]
                js = [
                    at_id[id(r.subset)] if id(r.subset) in at_id else subs.index(str(r.subset))
                    for r in m_runs
                ]
                parts.append(_SizePart(i, m_runs, js, fits[i], wall))
            measured = (
                _measured_columns(*map(list, zip(*estimates, strict=True)), 0) if estimates else {}
            )
            self.release_samples()
            batch = self._closed_form_batch(
                learner,
                [sub_obj[s] for s in subs],
                parts,
                measured,
                _fit_norms(fits),
                path.probe_risk,
                theory,
            )
            self._flush(batch)

    def _closed_form_batch(
        self,
        learner: Learner,
        subsets: list,
        parts: list[_SizePart],
        measured: dict[str, list],
        norms,
        oracle_train: list[float] | None,
        theory: dict[str, dict] | None,
    ) -> RecordBatch:
        """The records of one seed's closed-form fits as columns: the fields of
        :meth:`_fields` (those of :meth:`_record`), then the fits' norms, the oracle's
        training risk and the theory columns; one list per field, not one dict per run.
        ``parts``: one :class:`_SizePart` per size with pending runs; ``measured``: the
        measured columns of every part's models, part after part; ``oracle_train`` per
        size index; ``theory`` per subset."""
        labels = [str(sub) for sub in subsets]
        runs = list(chain.from_iterable(p.runs for p in parts))
        part_of = list(chain.from_iterable(repeat(k, len(p.runs)) for k, p in enumerate(parts)))
        subset_of = list(chain.from_iterable(p.positions for p in parts))

        def per_part(values: list) -> list:  # values[k], for each run of part k
            return list(map(values.__getitem__, part_of))

        def per_subset(values: list) -> list:  # values[j], for each run of subset j
            return list(map(values.__getitem__, subset_of))

        width = len(subsets)
        cell_of = list(map(operator.add, map(width.__mul__, part_of), subset_of))

        def per_model(flat: list) -> list:  # flat[k * width + j]: part k's models in a row
            return list(map(flat.__getitem__, cell_of))

        def per_cell(rows: list) -> list:  # rows[k][j], for each run of part k, subset j
            return per_model(list(chain.from_iterable(rows)))  # a value per subset in each

        shared, columns = self._fields(
            learner,
            "float64",
            runs,
            per_subset(labels),
            per_cell([[float(f.train_loss) for f in p.fits] for p in parts]),
            {name: per_model(values) for name, values in measured.items()},
            per_part([p.wall for p in parts]),
            {"converged": True, "diverged": False, "grad_norm": 0.0},
            per_subset([self._eta_inf(sub) for sub in subsets])
            if self.source.oracle is not None
            else None,
        )
        for name, norm in zip(("weight_norm", "param_norm"), norms, strict=True):
            _put(shared, columns, name, per_cell([norm[p.index] for p in parts]), True)
        if theory is not None and oracle_train is not None:
            risk = per_part([oracle_train[p.index] for p in parts])
            _put(shared, columns, "oracle_train_risk", risk, True)
            fields = [theory[label] for label in labels]
            for name in fields[0] if fields else ():
                first = fields[0][name]
                if all(f[name] is first for f in theory.values()):  # the world's alone
                    _put(shared, columns, name, first, False)
                else:
                    _put(shared, columns, name, per_subset([f[name] for f in fields]), True)
        return RecordBatch(shared, columns)

    def _closed_form_data(self, seed: int, sizes: list[int], cols: list, ridge: float):
        """What the closed form fits for ``seed``: ``(X blocks, y, factors, target_map)``.

        A world whose samples are exactly linear in their latent (``latent_maps``) gives
        ``(None, None, factors of its latent's moments, B)``: no features or targets are
        formed (when that costs less: ``latent_route_pays``). Otherwise the training
        sample's blocks and targets in float64 on the device, with factors None (built by
        the fit) or, with shared work and a world that shares its draws
        (``shared_draw_key``), the features and factors of the first world that drew this
        seed; only this world's targets are computed. The route depends on the world and
        the grid alone, not on shared work, so a world's numbers never depend on it."""
        src, n = self.source, sizes[-1]
        # float64 always: near the interpolation threshold a float32 Gram matrix silently
        # regularises (p = 700, m = 705: mean risk 5.4 against 105 exact)
        f64 = torch.float64
        maps = src.latent_maps()
        if maps is not None and not latent_route_pays(maps[0], n, len(sizes)):
            maps = None  # many sizes of a dense map: forming the features costs less
        draw_key = src.draw_key() if (self.shared is not None or maps is not None) else None
        key = (
            "closed_form" if maps is None else "latent",
            draw_key,
            seed,
            tuple(sizes),
            tuple(tuple(c.tolist()) for c in cols),
            ridge,
            str(self.device),
        )
        held = self.shared.draw(key) if self.shared is not None else None
        if maps is not None:
            target_map = torch.from_numpy(maps[1]).to(device=self.device, dtype=f64)
            if held is None:
                z = torch.from_numpy(src.train_latent(seed, n)).to(device=self.device, dtype=f64)
                T = torch.from_numpy(maps[0]).to(device=self.device, dtype=f64)
                held = GramFactors.from_latent(
                    z, T, sizes, cols, ridge=ridge, keep=self.shared is not None
                )
                if self.shared is not None:
                    self.shared.hold(key, held, 3 * held.nbytes())
            return None, None, held, target_map
        if draw_key is None:
            data = src.train(seed, n).to(device=self.device, dtype=f64)
            return [data[k] for k in src.names], data.y, None, None
        if held is None:
            z = src.train_latent(seed, n)
            data = src.train_from_latent(z, seed).to(device=self.device, dtype=f64)
            blocks = {k: data[k] for k in src.names}
            factors = GramFactors(
                [blocks[k] for k in src.names], sizes, cols, ridge=ridge, keep=True
            )
            nbytes = z.nbytes + sum(b.numel() * 8 for b in blocks.values())
            # the eigendecompositions are memoised as the first fit computes them
            self.shared.hold(key, (z, blocks, factors), nbytes + 3 * factors.nbytes())
            return [blocks[k] for k in src.names], data.y, factors, None
        z, blocks, factors = held
        y = torch.from_numpy(src.train_targets(z, seed)).to(device=self.device, dtype=f64)
        return [blocks[k] for k in src.names], y, factors, None

    def _theory_columns(self, subsets) -> dict[str, dict] | None:
        """Columns the bound checks need, for worlds with exact oracles (regression, any
        number of outputs), per subset: E||x_M||^2 = tr Sigma_MM and the rank of
        Sigma_MM, the bounds ||(x_M, 1)|| <= X and ||y|| <= B_y and whether they are
        rigorous, and the a priori radius of the linear class (fixed by the world, before
        any data: RADIUS_FACTOR times the norm of the best linear predictor); the world's
        alone, computed once per runner. Each record also holds ``oracle_train_risk``,
        the oracle's empirical risk on its training prefix (from the fit). None without
        an oracle."""
        if self.source.oracle is None:
            return None
        return self._theory_constants(subsets)[1]

    def _theory_constants(self, subsets) -> tuple[torch.Tensor, dict[str, dict]]:
        """The world's part of :meth:`_theory_columns`: the best linear predictor on the
        device and, per subset, the columns that depend on the world alone (memoised)."""
        from mmtheory.theory.bounds import RADIUS_FACTOR

        oracle = self.source.oracle
        held: Any = self._cache.get(("theory", "world"))
        if held is None:
            w_np = np.asarray(oracle.best_linear())
            w_star = torch.from_numpy(w_np).to(self.device).double()
            y_bound, y_rigorous = oracle.target_bound()
            x_all, x_rigorous = oracle.feature_bound()
            sigma, _, _ = oracle.second_moments()
            world = {
                "feature_energy_all": float(np.diag(sigma).sum()),
                "feature_bound_all": x_all,
                "target_bound": y_bound,
                "bounded_world": bool(x_rigorous and y_rigorous),
                "radius_apriori": RADIUS_FACTOR * float(np.linalg.norm(w_np)),
                "n_outputs": int(w_np.shape[1]),
            }
            held = (w_star, world, {})
            self._cache[("theory", "world")] = held
        w_star, world, per_subset = held
        missing = [sub for sub in subsets if str(sub) not in per_subset]
        if missing:
            sigma, _, _ = oracle.second_moments()
            diag = np.diag(sigma)
            sl = oracle.feature_slices()
            for sub in missing:
                cols = np.concatenate([np.arange(sl[k].start, sl[k].stop) for k in sub])
                rank = np.linalg.matrix_rank(sigma[np.ix_(cols, cols)], hermitian=True)
                per_subset[str(sub)] = {  # the order of the record's columns
                    "feature_energy": float(sum(diag[sl[k]].sum() for k in sub)),
                    "feature_energy_all": world["feature_energy_all"],
                    "feature_bound": oracle.feature_bound(sub)[0],
                    "feature_rank": int(rank),
                    **world,
                }
        return w_star, per_subset

    def _estimate_linear(self, plan: ModelPlan, row, seed: int) -> tuple[Estimate, Estimate]:
        """Risk and eta of the closed-form fits of one seed and size: exact from the oracle
        when the world has one, else on the source's samples."""
        src = self.source
        models = Models(
            Learner(kind="linear", solver="closed_form"), self._linear_params(plan, row), plan
        )
        exact = src.oracle is not None
        truth = self._truth([seed], torch.float64, samples=not exact)
        risk_est = risk(models, truth, "exact" if exact else src.risk_method)
        eta_est = eta(models, truth, "exact" if exact else src.eta_method)
        return risk_est, eta_est

    def _linear_params(self, plan: ModelPlan, row):
        """The fits of one row as stacked linear-learner parameters (one group)."""
        slices, start = {}, 0
        for k, d in zip(plan.names, plan.dims):
            slices[k] = slice(start, start + d)
            start += d
        models = [
            [
                {**{weight(ENCODER, 1, k): f.W[slices[k]] for k in sub}, bias(HEAD): f.b}
                for f, sub in zip(row, plan.subsets)
            ]
        ]
        params = stack_params(models, plan, self.device, torch.float64)
        return {k: v.detach() for k, v in params.items()}

    # --------------------------------------------------------------- iterative
    def iterative(self, learner: Learner, runs: list[Run], grid: list[Run] | None = None) -> None:
        """Train ``runs`` (pending) in the chunks of ``grid`` (this learner's runs of the
        whole grid; default ``runs``): a chunk with any pending run is trained whole and
        only its pending runs are recorded, so batch shapes, and with them every number,
        never depend on which other runs are left (shards, resumes after a fault)."""
        dtype = torch.float64 if self.dtype_name == "float64" else torch.float32
        pending = {r.run_id for r in runs}
        for m, seed_chunk, sub_chunk, cell in self.chunk_cells(learner, grid or runs):
            todo = [r for r in cell if r.run_id in pending]
            if todo:
                self._train_chunk(learner, m, seed_chunk, sub_chunk, todo, dtype)

    def chunk_cells(self, learner: Learner, grid: list[Run]):
        """(m, seeds, subsets, runs) of every training chunk of ``grid``: a function of the
        grid and the memory budget only."""
        by_m: dict[int, list[Run]] = {}
        for run in grid:
            by_m.setdefault(run.m, []).append(run)
        for m, m_runs in sorted(by_m.items()):
            seeds = sorted({r.seed for r in m_runs})
            subs = list(dict.fromkeys(str(r.subset) for r in m_runs))
            sub_obj = {str(r.subset): r.subset for r in m_runs}
            for seed_chunk, sub_chunk in self._chunks(learner, m, seeds, subs):
                keep_seeds, keep_subs = set(seed_chunk), set(sub_chunk)
                cell = [r for r in m_runs if r.seed in keep_seeds and str(r.subset) in keep_subs]
                yield m, seed_chunk, [sub_obj[s] for s in sub_chunk], cell

    def work_units(self, learners: list[Learner], grid: list[Run]) -> dict[str, str]:
        """run id -> the name of the unit of work that computes it (a closed-form seed or a
        training chunk); shards split the grid by unit, so that every run is computed in the
        same batch as in one process."""
        units: dict[str, str] = {}
        for lrn in learners:
            mine = [r for r in grid if r.learner is lrn]
            if lrn.solver == "closed_form":
                for r in mine:
                    units[r.run_id] = f"{lrn.label}|seed={r.seed}"
                continue
            for m, seeds, subs, cell in self.chunk_cells(lrn, mine):
                key = f"{lrn.label}|m={m}|seeds={seeds}|subsets={[str(s) for s in subs]}"
                units.update(dict.fromkeys((r.run_id for r in cell), key))
        return units

    def _chunks(self, learner, m, seeds, subs):
        per_model, per_group = model_bytes(self.source, learner, m)
        budget = self.memory_budget
        s_chunk = max(1, min(len(subs), int((budget - per_group) // max(per_model, 1))))
        g_chunk = max(1, min(len(seeds), int(budget // max(per_group + s_chunk * per_model, 1))))
        for i in range(0, len(seeds), g_chunk):
            for j in range(0, len(subs), s_chunk):
                yield seeds[i : i + g_chunk], subs[j : j + s_chunk]

    def _train_chunk(self, learner, m, seeds, subsets, m_runs, dtype) -> None:
        src = self.source
        t0 = time.perf_counter()
        plan = ModelPlan(src.names, tuple(src.dims.values()), tuple(subsets), src.out_dim)
        datas = [src.train(seed, m) for seed in seeds]
        xs, y = stack_groups(datas, src.names, self.device, dtype)
        inits = [
            [
                init_model(
                    learner,
                    sub,
                    src.dims,
                    src.out_dim,
                    key=("init", src.identity, learner.init_stream, str(sub), m, seed),
                    dtype=dtype,
                )
                for sub in subsets
            ]
            for seed in seeds
        ]
        res = train_batched(
            learner,
            plan,
            xs,
            y,
            inits,
            task=src.task,
            dtype=dtype,
            batch_keys=[("batches", src.identity, m, seed) for seed in seeds],
        )
        # a non-finite (diverged) model would poison every batched step after training
        # (one eigh over the chunk fails for all): its parameters are replaced by its finite
        # initialisation for those steps, and its record says diverged with no risk or eta
        fallback = {k: v.detach() for k, v in stack_params(inits, plan, self.device, dtype).items()}
        bad = res.diverged.to(torch.bool).cpu() | ~finite_models(res.params, plan).cpu()
        snapshots = {}
        for snap in res.snapshots.values():
            bad |= ~finite_models(snap, plan).cpu()
        params = replace_models(res.params, plan, bad, fallback) if bad.any() else res.params
        for name, snap in res.snapshots.items():
            snapshots[name] = replace_models(snap, plan, bad, fallback) if bad.any() else snap
        models = Models(learner, params, plan)
        # measured one seed at a time: memory holds one seed's samples whatever the number
        # of seeds, and a model's numbers never depend on which seeds share its chunk
        wanted = {(r.seed, str(r.subset)): r for r in m_runs}
        records = []
        for g, seed in enumerate(seeds):
            cells = [
                (s, wanted[(seed, str(sub))])
                for s, sub in enumerate(subsets)
                if (seed, str(sub)) in wanted
                and not (self.store is not None and wanted[(seed, str(sub))].run_id in self.store)
            ]
            if not cells:
                continue
            one = slice(g, g + 1)
            mg = models.groups(one)
            truth = self._truth([seed], dtype)
            risk_est = risk(mg, truth, src.risk_method)
            eta_est = eta(mg, truth, src.eta_method)
            snaps = {n: {k: v[one] for k, v in p.items()} for n, p in snapshots.items()}
            more = self._more_etas(mg, snaps, truth)
            measured = _measured(risk_est, eta_est, 0)
            for s, run in cells:
                columns = {col: fn(0, s) for col, fn in more.items()}
                for name, values in res.diagnostics.items():
                    columns[f"diag_{name}"] = _diagnostic(values)(g, s)
                records.append(
                    self._record(
                        run,
                        measured[s],
                        train_risk=res.train_loss[g, s].item(),
                        converged=bool(res.converged[g, s]) and not bool(bad[g, s]),
                        diverged=bool(bad[g, s]),
                        grad_norm=float(res.grad_norm[g, s]),
                        dtype=str(dtype).split(".")[-1],
                        extra_columns=columns,
                    )
                )
            del truth
            self.release_samples()
        wall = (time.perf_counter() - t0) / (len(seeds) * len(subsets))
        for rec in records:
            rec["wall_s"] = wall
        del models, params, res
        self._flush(records)

    def _more_etas(self, models: Models, snapshots: dict, truth: Truth) -> dict:
        """Extra eta columns, as functions of (g, s): ``eta_<snapshot>`` for each snapshot a
        method saved (xmodal: ``eta_pretrain``, the encoder before fine-tuning) and, with
        ``branch_eta``, ``eta_branch_<modality>`` (late fusion with concatenation: the
        refit-head eta of the encoders that read that modality)."""
        src = self.source
        cols = {}

        def column(est, positions):
            where = {s: i for i, s in enumerate(positions)}
            return lambda g, s: float(est.value[g, where[s]]) if s in where else None

        for name, params in snapshots.items():
            est = eta(Models(models.learner, params, models.plan), truth, src.eta_method)
            cols[f"eta_{name}"] = column(est, range(models.plan.S))
        learner = models.learner
        if self.branch_eta and learner.kind == "late_fusion" and learner.fusion == "concat":
            for k, name in enumerate(models.plan.names):
                view = branch_models(models, k)
                if view is None:
                    continue
                est = eta(view[0], truth, src.eta_method)
                cols[f"eta_branch_{name}"] = column(est, view[1])
        return cols
