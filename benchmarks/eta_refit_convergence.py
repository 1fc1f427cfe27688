"""How far eta's softmax-head refit stops from its optimum (docs/statistics.md).

Runs `reproduce --quick`'s crossover sweep (one seed, one thread), keeps the first four
batched refits (latents, labels, the refit's answer and its gradient norms), solves each
again in float64 with the same batched L-BFGS from the refit's answer to a gradient norm
of 1e-10 (at most 2,000 iterations), and prints per refit: the refit's final gradient
norms, the float64 solution's, and the refit's mean cross-entropy on its rows above the
float64 optimum. Not a timing.

    PYTHONPATH=. python benchmarks/eta_refit_convergence.py
"""

from __future__ import annotations

import importlib
import shutil
import tempfile

import torch

import synthetic
from mmtheory.engine import cpu_threads
from mmtheory.engine.threads import numpy_blas_threads
from mmtheory.experiments.sweep import sweep
from mmtheory.studies.reproduce import (
    CROSSOVER_TOTAL,
    crossover_learner,
    crossover_sizes,
    reproduce_settings,
)

eta_module = importlib.import_module("mmtheory.estimation.eta")
solve = eta_module._lbfgs_heads
kept: list[tuple] = []


def keep(zs, idx, theta, *, iters, tol, memory):
    out, gnorm = solve(zs, idx, theta, iters=iters, tol=tol, memory=memory)
    if len(kept) < 4:
        kept.append((zs.clone(), idx.clone(), out.clone(), gnorm.clone(), tol, iters))
    return out, gnorm


def mean_cross_entropy(zs, idx, theta):  # theta (B, q + 1, C): rows W, then b
    q = zs.shape[-1]
    logits = zs @ theta[:, :q] + theta[:, q:]
    return (torch.logsumexp(logits, -1) - logits.gather(-1, idx).squeeze(-1)).mean(-1)


def main() -> None:
    eta_module._lbfgs_heads = keep
    cfg = reproduce_settings(True)
    out = tempfile.mkdtemp()
    try:
        with cpu_threads(1), numpy_blas_threads(1):
            sweep(
                synthetic.iemocap_like(),
                crossover_learner(cfg["steps"]),
                "all",
                m=crossover_sizes(cfg["ratios"], cfg.get("total", CROSSOVER_TOTAL)),
                seeds=1,
                device="cpu",
                out=out,
                n_test=cfg["n_eval"],
                n_refit=cfg["n_eval"],
                n_eval=cfg["n_eval"],
                progress=False,
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print("refit | heads | tol, iterations | refit grad norm | float64 grad norm | excess (nats)")
    for i, (zs, idx, theta, gnorm, tol, iters) in enumerate(kept):
        z64, t64 = zs.double(), theta.double()
        best, g64 = solve(z64, idx, t64.clone(), iters=2000, tol=1e-10, memory=10)
        excess = mean_cross_entropy(z64, idx, t64) - mean_cross_entropy(z64, idx, best)
        print(
            f"{i} | {len(gnorm)} | {tol:g}, {iters} | {gnorm.min():.2g}-{gnorm.max():.2g} | "
            f"{g64.max():.2g} | {excess.min():.2g}-{excess.max():.2g}"
        )


if __name__ == "__main__":
    main()
