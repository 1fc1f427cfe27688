"""CPU time of the real-data protocol's batched softmax solver and of the eta refit, on the
batches that ``mmtheory reproduce --quick`` gives them (issue 18, item 4).

    python benchmarks/softmax_solver.py [--old REV]

1. Runs the quick mfeat protocol (3 splits, m = 40 and 200, every subset, inner CV) once,
   recording every batch handed to ``solve_softmax_batch``; then solves each recorded
   batch again with this checkout's solver and, with ``--old REV``, with the solver of
   git revision REV (its ``mmtheory/engine/convex_batched.py`` loaded from ``git show``),
   alternating, and prints CPU seconds, problem-iterations and how far the answers differ.
2. Runs the quick crossover sweep's refits the same way (``fit_softmax_heads``; the old
   revision's ``mmtheory/estimation/eta.py`` with ``--old``).

One torch thread and one BLAS thread (``threadpoolctl`` when installed, else the
``OPENBLAS_NUM_THREADS`` variable set before numpy loads): CPU time is the measure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmtheory.studies.reproduce import (  # noqa: E402
    CROSSOVER_TOTAL,
    crossover_learner,
    crossover_sizes,
    reproduce_settings,
)

ROOT = Path(__file__).resolve().parents[1]


def _module_at(rev: str, path: str, name: str):
    """The module at ``path`` as it was at git revision ``rev``."""
    text = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(text)
    spec = importlib.util.spec_from_file_location(name, tmp)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _solver_batches():
    from mmtheory.datasets import load_mfeat
    from mmtheory.datasets.loaders import pooled

    protocol = importlib.import_module("mmtheory.experiments.protocol")
    real = protocol.solve_softmax_batch
    batches = []

    def spy(F, Y, w, lam, **kw):
        batches.append((F, Y, w, lam, kw))
        return real(F, Y, w, lam, **kw)

    cfg = reproduce_settings(quick=True)
    protocol.solve_softmax_batch = spy
    try:
        protocol.run_protocol(
            pooled(load_mfeat()),
            sizes=cfg["mfeat_sizes"],
            protocol=protocol.Protocol(n_splits=cfg["mfeat_splits"]),
        )
    finally:
        protocol.solve_softmax_batch = real
    return batches


def _refit_inputs():
    import mmtheory as mt
    import synthetic

    eta = importlib.import_module("mmtheory.estimation.eta")
    real = eta.fit_softmax_heads
    inputs = []

    def spy(z, y, C, **kw):
        inputs.append((z, y, C, kw))
        return real(z, y, C, **kw)

    cfg = reproduce_settings(quick=True)
    n = cfg["n_eval"]
    eta.fit_softmax_heads = spy
    try:
        mt.sweep(
            synthetic.iemocap_like(), crossover_learner(cfg["steps"]), "all",
            m=crossover_sizes(cfg["ratios"], CROSSOVER_TOTAL), seeds=cfg["cx_seeds"],
            device="cpu", n_test=n, n_refit=n, n_eval=n, progress=False,
        )  # fmt: skip
    finally:
        eta.fit_softmax_heads = real
    return inputs


def _solve_all(mod, batches):
    t0 = time.process_time()
    outs = [mod.solve_softmax_batch(F, Y, w, lam, **kw) for F, Y, w, lam, kw in batches]
    return time.process_time() - t0, outs


def _refit_all(mod, inputs):
    t0 = time.process_time()
    outs = [mod.fit_softmax_heads(z, y, C, **kw) for z, y, C, kw in inputs]
    return time.process_time() - t0, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", help="git revision to compare with (e.g. 819e38a)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    torch.set_num_threads(1)
    import mmtheory

    print(f"mmtheory {mmtheory.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    new_cb = importlib.import_module("mmtheory.engine.convex_batched")
    new_eta = importlib.import_module("mmtheory.estimation.eta")
    solvers = {"this checkout": new_cb}
    refits = {"this checkout": new_eta}
    if args.old:
        solvers[args.old] = _module_at(args.old, "mmtheory/engine/convex_batched.py", "cb_old")
        refits[args.old] = _module_at(args.old, "mmtheory/estimation/eta.py", "eta_old")

    batches = _solver_batches()
    P = sum(len(b[0]) for b in batches)
    print(f"\nsoftmax solver: {len(batches)} batches, {P} problems (quick mfeat protocol)")
    mine = None
    for rep in range(args.repeats):
        for name, mod in solvers.items():
            dt, outs = _solve_all(mod, batches)
            its = sum(int(o.iterations.sum()) for o in outs)
            ok = all(bool(o.converged.all()) for o in outs)
            print(
                f"  {name:>14}  run {rep + 1}: {dt:6.2f} s CPU, {its} problem-iterations "
                f"({dt / its * 1e6:.1f} us each), all converged: {ok}"
            )
            if mine is None:
                mine = outs
            else:
                dB = max(float(np.abs(a.B - b.B).max()) for a, b in zip(mine, outs))
                print(f"  {'':>14}  max |B - B(this checkout, run 1)| = {dB:.2e}")
    inputs = _refit_inputs()
    print(f"\neta refit: {len(inputs)} calls of fit_softmax_heads (quick crossover sweep)")
    for rep in range(args.repeats):
        for name, mod in refits.items():
            dt, outs = _refit_all(mod, inputs)
            g = max(float(o[2].max()) for o in outs)
            print(f"  {name:>14}  run {rep + 1}: {dt:6.2f} s CPU, largest final gradient {g:.2e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
