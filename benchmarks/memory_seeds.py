"""Peak memory (RSS) of one sweep against the number of seeds (issue 21, item 3).

Each count runs in a fresh process (``python benchmarks/memory_seeds.py 5 20``): an
IEMOCAP-shaped world (100 + 500 + 100 features, 10,000 test, refit and evaluation rows per
seed), late fusion, all 7 subsets, m = 100, 5 Adam steps, CPU, one thread. Prints one line
per count: seeds, peak RSS in MiB, wall seconds.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

CHILD = """
import sys, synthetic
from mmtheory import sweep
sweep(synthetic.iemocap_like(), {"kind": "late_fusion", "latent_dim": 16, "steps": 5},
      "all", m=[100], seeds=int(sys.argv[1]), device="cpu", progress=False)
"""


def peak_rss_mib(seeds: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, str(seeds)], check=True)
    wall = time.perf_counter() - t0
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, wall


if __name__ == "__main__":
    for count in [int(a) for a in sys.argv[1:]] or [5, 20]:
        rss, wall = peak_rss_mib(count)
        print(f"seeds {count}: peak RSS {rss:,.0f} MiB, {wall:.0f} s", flush=True)
