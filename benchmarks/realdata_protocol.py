"""The real-data protocol on mfeat: the batched eigenbasis solver against the reference
(one scipy L-BFGS-B fit at a time), in one process, on a reduced grid.

Both solvers run the same protocol (the same splits, prefixes, inner folds, penalty path
and stopping rule) on the same grid; the script reports CPU seconds of each (process time:
every thread counted, so a busy shared machine inflates both alike and the ratio is the
number to read), whether they chose the same penalties, and the largest score gaps. With
``--full`` it also times the batched solver alone at the defaults of ``mmtheory data
mfeat`` (5 splits, 5 sizes up to 1,500 rows, all 63 subsets).

    python benchmarks/realdata_protocol.py [--splits 1] [--sizes 40,245] [--full]

Writes benchmarks/realdata_protocol.csv and prints the table of
benchmarks/realdata_protocol.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from mmtheory.datasets import load_mfeat
from mmtheory.datasets.loaders import pooled
from mmtheory.experiments.protocol import Protocol, run_protocol


def _timed(data, sizes, protocol):
    wall, cpu = time.perf_counter(), time.process_time()
    res = run_protocol(data, sizes=sizes, protocol=protocol).results
    return res, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=1)
    ap.add_argument("--sizes", default="40,245")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    data = pooled(load_mfeat())
    sizes = [int(v) for v in args.sizes.split(",")]
    grid = Protocol(n_splits=args.splits)
    rows = []
    runs = {}
    for solver in ("batched", "reference"):
        res, cpu, wall = _timed(data, sizes, replace(grid, solver=solver))
        runs[solver] = res
        rows.append({"grid": f"{args.splits} split(s), sizes {sizes}, 63 subsets",
                     "solver": solver, "cpu_s": cpu, "wall_s": wall,
                     "fits_converged": bool(res.converged.all())})  # fmt: skip
    ref, fast = runs["reference"], runs["batched"]
    same = (ref.lam.to_numpy() == fast.lam.to_numpy()).mean()
    gaps = {c: float((ref[c] - fast[c]).abs().max())
            for c in ("test_error", "test_cross_entropy", "test_brier", "test_ece")}  # fmt: skip
    for r in rows:
        r.update(same_penalty_share=same, **{f"max_gap_{k[5:]}": v for k, v in gaps.items()})
    if args.full:
        res, cpu, wall = _timed(data, None, Protocol())
        rows.append({"grid": "defaults (5 splits, 5 sizes to 1500, 63 subsets)",
                     "solver": "batched", "cpu_s": cpu, "wall_s": wall,
                     "fits_converged": bool(res.converged.all())})  # fmt: skip
    table = pd.DataFrame(rows)
    out = Path(__file__).with_name("realdata_protocol.csv")
    table.to_csv(out, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"cpu ratio reference / batched: {rows[1]['cpu_s'] / rows[0]['cpu_s']:.1f}x")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
