"""Coverage of the measured intervals by simulation, against the exact truth.

Sweeps shipped linear worlds of `mmtheory predict` (exact least squares, float64, the
predict study's size grid) with GROUPS x SEEDS seeds, cuts the seeds into independent
groups of SEEDS and reports how often each group's 95% intervals cover the exact expected
risk and the exact m* (mmtheory.theory.versus.interval_coverage). The predict study's
coverage part does the same for every world; this script picks worlds, for a quicker run.

    python benchmarks/interval_coverage.py --worlds 0,1,2,5 --groups 10 --seeds 20 \
        --out runs/coverage
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mmtheory.experiments.sweep import sweep
from mmtheory.studies.prediction import accuracy_worlds, crossover_sizes
from mmtheory.theory.versus import interval_coverage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", default="0,1,2,5", help="indices into accuracy_worlds()")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=20, help="seeds per group (the report's)")
    ap.add_argument("--out", default="runs/coverage")
    args = ap.parse_args()
    worlds = accuracy_worlds()
    chosen = [worlds[int(i)] for i in args.worlds.split(",")]
    out = Path(args.out)
    results = []
    for w in chosen:
        res = sweep(
            w,
            "linear",
            "all",
            m=crossover_sizes(w, 10),
            seeds=args.groups * args.seeds,
            dtype="float64",
            out=out / w.world_id,
            progress=True,
        )
        results.append(res[["world", "world_id", "learner", "subset", "m", "seed", "test_risk"]])
    table = interval_coverage(pd.concat(results, ignore_index=True), chosen, args.seeds)
    table.to_csv(out / "coverage.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
