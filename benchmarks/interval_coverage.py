"""Coverage of the measured intervals by simulation, against the exact truth.

Runs the coverage part of `mmtheory predict` (mmtheory.studies.prediction.coverage_part)
on chosen shipped linear worlds: the predict study's sweeps with GROUPS x SEEDS seeds, cut
into independent groups of SEEDS, and how often each group's 95% intervals cover the exact
expected risk and the exact m* (mmtheory.theory.versus.interval_coverage).

    python benchmarks/interval_coverage.py --worlds 0,1,2,5,6,8 --groups 10 --seeds 20 \
        --out runs/coverage
"""

from __future__ import annotations

import argparse

from mmtheory.studies.prediction import accuracy_worlds, coverage_part


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", default="0,1,2,5,6,8", help="indices into accuracy_worlds()")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=20, help="seeds per group (the report's)")
    ap.add_argument("--out", default="runs/coverage")
    args = ap.parse_args()
    worlds = accuracy_worlds()
    chosen = [worlds[int(i)] for i in args.worlds.split(",")]
    cfg = {"seeds": args.seeds, "coverage_groups": args.groups, "per_decade": 10}
    table = coverage_part(args.out, cfg, worlds=chosen)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
