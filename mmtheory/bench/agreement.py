"""The same sweeps compared across reruns, chunkings, dtypes and devices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mmtheory.core.world import make_world
from mmtheory.engine import resolve_device

__all__ = ["AGREEMENT_CASES", "agreement_markdown", "device_agreement"]


# ------------------------------------------------------------------ device agreement
#: Sweeps whose tables are compared across devices, dtypes, reruns and chunkings.
AGREEMENT_CASES = {
    "closed-form-linear": dict(
        world=("linear", {"dims": (8, 8, 8), "latent_dim": 3}), learner="linear", m=[50, 200]
    ),
    "late-fusion-mlp": dict(
        world=("nonlinear", {"dims": (8, 8, 8), "latent_dim": 4, "n_classes": 4}),
        learner={
            "kind": "late_fusion",
            "encoder": "mlp",
            "latent_dim": 8,
            "hidden": 16,
            "steps": 100,
        },
        m=[100],
    ),
    "bogc-imbalance": dict(
        world=("imbalance", {}),
        learner={"kind": "late_fusion", "latent_dim": 8, "steps": 100, "method": "bogc"},
        m=[100],
    ),
}


_AGREEMENT_COLUMNS = ["train_risk", "test_risk", "eta"]


def _max_diffs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    x = a[_AGREEMENT_COLUMNS].to_numpy(float)
    y = b[_AGREEMENT_COLUMNS].to_numpy(float)
    diff = np.abs(x - y)
    scale = np.maximum(np.maximum(np.abs(x), np.abs(y)), 1e-8)
    return float(np.nanmax(diff)), float(np.nanmax(diff / scale))


def device_agreement(
    device: str = "cuda", *, seeds: int = 3, n_eval: int = 2000, cases: dict | None = None
) -> pd.DataFrame:
    """Compare the same sweeps (train risk, test risk, eta) across reruns, chunkings, dtypes
    and devices. One row per (case, comparison) with the largest absolute and relative
    difference over every run and column:

    - ``rerun``: the same sweep twice on ``device`` (bit-identical means 0);
    - ``chunked``: one model per chunk (a 1-byte memory budget) against one batch, and
      ``chunked float64`` the same in float64 (where rounding cannot hide a difference:
      chunking changes the GEMMs' shapes, whose float32 rounding training amplifies);
    - ``float32 vs cpu`` and ``float64 vs cpu``: ``device`` against the CPU, same dtype;
    - ``float32 vs float64``: on ``device``, what float32 itself costs.
    """
    from mmtheory.experiments.sweep import sweep

    dev = resolve_device(device)
    rows = []
    for name, case in (cases or AGREEMENT_CASES).items():
        world = make_world(case["world"][0], **case["world"][1])
        kw = dict(
            learner=case["learner"],
            subsets="all",
            m=case["m"],
            seeds=seeds,
            progress=False,
            n_test=n_eval,
            n_refit=n_eval,
            n_eval=n_eval,
        )

        def on(d, dtype, _world=world, _kw=kw, **more):
            return sweep(_world, device=str(d), dtype=dtype, **_kw, **more)

        a = on(dev, "float32")
        pairs = {
            "rerun": (a, on(dev, "float32")),
            "chunked": (a, on(dev, "float32", memory_budget=1.0)),
            "float32 vs cpu": (a, on("cpu", "float32")),
        }
        a64 = on(dev, "float64")
        pairs["chunked float64"] = (a64, on(dev, "float64", memory_budget=1.0))
        pairs["float64 vs cpu"] = (a64, on("cpu", "float64"))
        pairs["float32 vs float64"] = (a, a64)
        for what, (x, y) in pairs.items():
            mx_abs, mx_rel = _max_diffs(x, y)
            rows.append(
                {
                    "case": name,
                    "comparison": what,
                    "device": str(dev),
                    "runs": len(x),
                    "max_abs": mx_abs,
                    "max_rel": mx_rel,
                    "identical": mx_abs == 0.0,
                }
            )
    df = pd.DataFrame(rows)
    df["torch"] = torch.__version__
    if dev.type == "cuda":
        df["gpu"] = torch.cuda.get_device_name(dev)
    return df


def agreement_markdown(df: pd.DataFrame) -> str:
    head = f"device {df.device.iloc[0]}" + (f" ({df.gpu.iloc[0]})" if "gpu" in df else "")
    lines = [
        f"{head}, torch {df.torch.iloc[0]}; largest difference over every run of the case in "
        f"train risk, test risk and eta",
        "",
        "| case | comparison | runs | max abs | max rel | bit-identical |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.case} | {r.comparison} | {r.runs} | {r.max_abs:.2e} | {r.max_rel:.2e} | "
            f"{'yes' if r.identical else 'no'} |"
        )
    return "\n".join(lines) + "\n"
