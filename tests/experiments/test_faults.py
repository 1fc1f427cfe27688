"""Reliability under faults: a diverging model among healthy ones, write failures, corrupt
records, two writers on one directory, deterministic tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

import synthetic
from mmtheory.experiments import sweep

# early fusion with an MLP encoder on a regression world: eta refits least-squares heads
# with one batched eigh over every model of the chunk
WORLD = synthetic.LinearWorld((6, 10, 6), names=["t", "v", "a"])
SIZES = dict(n_test=200, n_refit=200, n_eval=200, progress=False)
MLP = {"kind": "early_fusion", "encoder": "mlp", "solver": "gd", "lr": 0.05, "steps": 20}


def _plant_nan(monkeypatch, subset_index: int, seed_index: int = 0):
    """Make train_batched return NaN parameters for one model (and not flag it)."""
    import mmtheory.experiments.runner as runner

    real = runner.train_batched

    def planted(learner, plan, *args, **kwargs):
        res = real(learner, plan, *args, **kwargs)
        for slot, t in res.params.items():
            if not slot.per_modality:
                t = t.clone()
                t[seed_index, subset_index] = float("nan")
                res.params[slot] = t
        return res

    monkeypatch.setattr(runner, "train_batched", planted)


def test_one_nan_model_is_dropped_and_the_others_are_written(tmp_path, monkeypatch):
    clean = sweep(WORLD, MLP, "all", m=[30], seeds=2, **SIZES)
    _plant_nan(monkeypatch, subset_index=3, seed_index=1)
    hit = sweep(WORLD, MLP, "all", m=[30], seeds=2, out=tmp_path, **SIZES)
    assert len(hit) == 14 and len((tmp_path / "records.jsonl").read_text().splitlines()) == 14
    bad = hit.diverged.astype(bool)
    assert bad.sum() == 1
    row = hit[bad].iloc[0]
    assert row.seed == 1
    assert not row.converged and pd.isna(row.test_risk) and pd.isna(row.eta)
    cols = ["train_risk", "test_risk", "test_risk_se", "eta", "eta_se", "converged"]
    pd.testing.assert_frame_equal(
        hit.loc[~bad, cols].reset_index(drop=True), clean.loc[~bad, cols].reset_index(drop=True)
    )


def test_real_divergence_among_healthy_models_keeps_the_healthy_ones():
    """gd with lr 1: the unimodal text model trains, the others blow up (float32 overflow
    to NaN); before, the batched eigh of eta failed for the whole chunk and nothing was
    written."""
    lrn = {"kind": "early_fusion", "encoder": "mlp", "solver": "gd", "lr": 1.0, "steps": 100}
    world = synthetic.LinearWorld((20, 60, 20), names=["t", "v", "a"])
    df = sweep(world, lrn, "all", m=[50], seeds=[0], **SIZES)
    assert len(df) == 7
    assert df.diverged.astype(bool).sum() >= 1 and (~df.diverged.astype(bool)).sum() >= 1
    ok = df[~df.diverged.astype(bool)]
    assert np.isfinite(ok.test_risk.astype(float)).all() and np.isfinite(ok.eta.astype(float)).all()
    assert df[df.diverged.astype(bool)].test_risk.isna().all()
