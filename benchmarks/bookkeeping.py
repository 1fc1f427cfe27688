"""Bookkeeping share of a 100,000-run closed-form sweep (issue 18, item 5).

``python benchmarks/bookkeeping.py`` runs one multi-world spec of many tiny closed-form
runs, so that compute is small and bookkeeping shows: overlap worlds with 4 modalities of
2 features each, 10 overlaps x 4 cumulative subsets x 25 sizes (10 .. 250) x 100 seeds =
100,000 runs, exact risk and eta from the worlds' oracles, records in a temporary folder.
It runs the spec twice under cProfile: a fresh sweep, then the same spec again (a resume
with nothing left to do: every run is found in the records and skipped). Options:
``--worlds W --sizes S --seeds N`` (runs = W x 4 x S x N), ``--profile FILE`` to keep the
fresh sweep's profile, ``--top K`` to print its K largest functions by own time,
``--timed`` to measure the fresh sweep with CPU timers around the bookkeeping functions
only (the measurement of record: no per-call overhead elsewhere, no sampling error),
``--sampler`` to sample it with py-spy instead (py-spy must be on PATH). The sampler
gets a stack for only about 80% of the sweep's CPU time (25.3 s of samples in a 32.2 s
sweep; the rest, in native code, never comes back as a sample), so its share of the
samples overstates bookkeeping; it also prints bookkeeping seconds (samples over the
rate) as a share of the CPU time, which agrees with ``--timed``.

Bookkeeping is what a sweep does besides fitting and measuring models, attributed by
function (cumulative times, never counted twice):

- run ids: ``grid.plan_runs`` (hashing each run's identity);
- resume checks: which runs are finished (``sweep._unfinished``) and ``stale_runs``;
- record reading: ``RecordStore.__init__`` (parsing the record files);
- record building: ``Runner._record`` (one dict per run, iterative learners),
  ``Runner._closed_form_batch`` (the closed form's records as columns),
  ``_measured_columns`` (estimates to record fields) and ``Runner._theory_columns``;
- record writing: ``Runner._flush`` (JSON, write, fsync, progress);
- results table: ``sweep._table`` (each world's table), ``_write_results``,
  ``_write_f1``, and ``run_spec`` outside its sweeps (the series' table and
  ``results.csv``).

Until the closed form built its records as columns (after 0.8.0) its own loop over runs
built them, and ``Runner.closed_form``'s own time counted as record building. It no
longer builds any; what is left there is mostly freeing the previous seed's fitted
tensors (a line profile put 88 of its 96 ms per 30,000 runs on the rebinding that frees
them), which is compute.

The profile counts CPU time (``time.process_time``), not wall time, so that other jobs on
a shared machine do not move the shares; the time spent waiting in ``fsync`` (not CPU) is
measured apart, in wall seconds, and printed beside the sweep's wall time. cProfile
charges every Python call a fixed overhead, and bookkeeping is Python-heavy while the fits
are mostly inside torch, so the profiled share overstates bookkeeping; the unprofiled
times of each phase are printed beside it.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import os
import platform
import pstats
import tempfile
import time
import tomllib
from pathlib import Path

import torch

from mmtheory.experiments import parse_spec, run_spec

SPEC = """
name = "bookkeeping"
device = "cpu"
[world]
kind = "overlap"
n_modalities = 4
dim = 2
overlap = {overlaps}
[[learner]]
kind = "linear"
[grid]
subsets = "cumulative"
m = {sizes}
seeds = {seeds}
"""

#: (module, class or None, attribute) -> category, for ``--timed``. A module-level
#: function is replaced in the module that calls it.
TIMED = {
    ("mmtheory.experiments.sweep", None, "plan_runs"): "run ids",
    ("mmtheory.experiments.sweep", None, "_unfinished"): "resume checks",
    ("mmtheory.experiments.sweep", None, "stale_runs"): "resume checks",
    ("mmtheory.experiments.records", "RecordStore", "__init__"): "record reading",
    ("mmtheory.experiments.runner", "Runner", "_record"): "record building",
    ("mmtheory.experiments.runner", "Runner", "_closed_form_batch"): "record building",
    ("mmtheory.experiments.runner", "Runner", "_theory_columns"): "record building",
    ("mmtheory.experiments.runner", None, "_measured_columns"): "record building",
    ("mmtheory.experiments.runner", "Runner", "_flush"): "record writing",
    ("mmtheory.experiments.sweep", None, "_table"): "results table",
    ("mmtheory.experiments.sweep", None, "_write_results"): "results table",
    ("mmtheory.experiments.sweep", None, "_write_f1"): "results table",
    ("mmtheory.experiments.sweep", None, "sweep"): None,  # the sweeps of the series
}


def _where(module: str, cls: str | None, name: str) -> tuple[str, str]:
    """(file name, function name) of a :data:`TIMED` entry, as profiles name it."""
    owner = importlib.import_module(module)
    fn = getattr(getattr(owner, cls) if cls else owner, name)
    return Path(fn.__code__.co_filename).name, name


#: (file name, function name) -> bookkeeping category, for the profiles: those of
#: :data:`TIMED`, and ``sweep``'s own comprehensions (Python 3.11 gives each its frame).
CATEGORIES = {_where(*key): cat for key, cat in TIMED.items() if cat is not None} | {
    ("sweep.py", "<listcomp>"): "resume checks",
    ("sweep.py", "<setcomp>"): "resume checks",
    ("sweep.py", "<dictcomp>"): "resume checks",
}


#: The categories in the order they are printed.
ORDER = (
    "run ids",
    "resume checks",
    "record reading",
    "record building",
    "record writing",
    "results table",
)


def spec_text(worlds: int, sizes: int, seeds: int) -> str:
    overlaps = [round(i / max(1, worlds - 1), 4) for i in range(worlds)]
    ms = [10 * (i + 1) for i in range(sizes)]
    return SPEC.format(overlaps=overlaps, sizes=ms, seeds=seeds)


def _key(func: tuple) -> tuple[str, str]:
    return Path(func[0]).name, func[2]


def shares(stats: pstats.Stats) -> tuple[float, dict[str, float]]:
    """(total seconds of ``run_spec``, seconds per bookkeeping category) from a profile.

    Each category sums the cumulative time of its functions (none of them calls another
    of them in a series: ``_write_results``, which calls ``_table``, runs only outside
    one); ``run_spec`` minus its sweeps (the series' table and ``results.csv``) is the
    results table."""
    raw = stats.stats  # type: ignore[attr-defined]
    total = sweeps = 0.0
    out: dict[str, float] = {}
    for func, (_, _, _, ct, _) in raw.items():
        key = _key(func)
        if key == ("sweep.py", "run_spec"):
            total += ct
        elif key == ("sweep.py", "sweep"):
            sweeps += ct
        cat = CATEGORIES.get(key)
        if cat is not None:
            out[cat] = out.get(cat, 0.0) + ct
    out["results table"] = out.get("results table", 0.0) + max(0.0, total - sweeps)
    return total, out


def run_once(text: str, out: Path, profile: bool) -> tuple[float, float, pstats.Stats | None]:
    """Run the spec into ``out``; (wall seconds, CPU seconds, profile or None)."""
    spec = parse_spec(tomllib.loads(text))
    prof = cProfile.Profile(time.process_time) if profile else None
    fsync = os.fsync
    waits = [0, 0.0]

    def timed_fsync(fd: int) -> None:
        t0 = time.perf_counter()
        fsync(fd)
        waits[0] += 1
        waits[1] += time.perf_counter() - t0

    os.fsync = timed_fsync
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        if prof is not None:
            prof.enable()
        run_spec(spec, out=out, device="cpu", progress=False)
        if prof is not None:
            prof.disable()
    finally:
        os.fsync = fsync
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(
        f"  fsync: {waits[0]} calls, {waits[1]:.2f} s wall ({waits[1] / wall:.1%} of the wall time)"
    )
    return wall, cpu, pstats.Stats(prof) if prof is not None else None


def sampled_shares(raw: Path) -> tuple[int, dict[str, int]]:
    """(samples inside ``run_spec``, samples per bookkeeping category) from py-spy's raw
    output (one line per distinct stack: frames joined by ``;``, then a count). A sample
    counts for the outermost listed function on its stack (so nothing twice); samples in
    ``run_spec`` outside every sweep are the results table."""
    total = 0
    out: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        if ("sweep.py", "run_spec") not in frames:
            continue
        n = int(count)
        total += n
        cat = next((CATEGORIES[f] for f in frames if f in CATEGORIES), None)
        if cat is None and ("sweep.py", "sweep") not in frames:
            cat = "results table"
        if cat is not None:
            out[cat] = out.get(cat, 0) + n
    return total, out


def _frame(text: str) -> tuple[str, str]:
    """('file.py', 'function') of a py-spy frame ``function (path/file.py:line)``."""
    name, _, where = text.strip().partition(" (")
    name = name.rsplit(".", 1)[-1]  # Class.method -> method
    return Path(where.rsplit(":", 1)[0]).name, name


def timed(text: str, out: Path) -> None:
    """The fresh sweep with a CPU timer (``time.process_time``) around each function of
    :data:`TIMED` (the outermost bookkeeping call only, so nothing counts twice) and
    around each ``sweep`` of the series; ``run_spec`` outside its sweeps (the series'
    table and ``results.csv``) is the results table. About 12,000 timed calls for
    100,000 runs, at about a microsecond each: none of cProfile's charge on every Python
    call, and no sampling error."""
    import importlib

    spent: dict[str, float] = {}
    depth = [0]

    def wrap(fn, cat):
        def timed_call(*args, **kwargs):
            if depth[0] and cat is not None:
                return fn(*args, **kwargs)
            depth[0] += cat is not None
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                key = cat or "sweeps"
                spent[key] = spent.get(key, 0.0) + time.process_time() - t0
                depth[0] -= cat is not None

        return timed_call

    patched = []
    for (module, cls, name), cat in TIMED.items():
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        original = getattr(owner, name)
        patched.append((owner, name, original))
        setattr(owner, name, wrap(original, cat))
    try:
        wall, cpu, _ = run_once(text, out, profile=False)
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)
    sweeps = spent.pop("sweeps", 0.0)
    spent["results table"] = spent.get("results table", 0.0) + max(0.0, cpu - sweeps)
    book = sum(spent.values())
    print(
        f"fresh sweep, timed (CPU timers around the bookkeeping functions): {wall:.1f} s "
        f"wall, {cpu:.1f} s CPU; bookkeeping {book:.2f} s = {book / cpu:.1%}"
    )
    for cat in ORDER:
        v = spent.get(cat, 0.0)
        print(f"  {cat:<16} {v:7.2f} s  {v / cpu:6.1%}")


def sample(text: str, out: Path, rate: int) -> None:
    """The fresh sweep, not profiled, sampled by py-spy (``rate`` Hz, non-blocking: the
    process is never paused) from a child process; prints the shares."""
    import shutil
    import subprocess

    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--sampler needs py-spy on PATH (pip install py-spy)")
    raw = out.with_suffix(".raw")
    spy = subprocess.Popen(
        [exe, "record", "--pid", str(os.getpid()), "--rate", str(rate), "--nonblocking",
         "--format", "raw", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2.0)  # py-spy attaches
    try:
        wall, cpu, _ = run_once(text, out, profile=False)
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
        spy.wait(timeout=60)
    total, cats = sampled_shares(raw)
    book = sum(cats.values())
    print(
        f"fresh sweep, sampled by py-spy at {rate} Hz (not profiled): {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU, {total} samples in run_spec ({total / rate:.1f} s); bookkeeping "
        f"{book / max(1, total):.1%} of the samples, {book / rate:.2f} s = "
        f"{book / rate / cpu:.1%} of the CPU time"
    )
    for cat in ORDER:
        v = cats.get(cat, 0)
        print(f"  {cat:<16} {v:8d} samples  {v / max(1, total):6.1%}  {v / rate:6.2f} s")


def report(label: str, stats: pstats.Stats) -> float:
    total, cats = shares(stats)
    book = sum(cats.values())
    print(f"{label}: run_spec {total:.2f} s of CPU under cProfile; bookkeeping {book / total:.1%}")
    for cat in ORDER:
        v = cats.get(cat, 0.0)
        print(f"  {cat:<16} {v:8.2f} s  {v / total:6.1%}")
    return book / total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=10)
    ap.add_argument("--sizes", type=int, default=25)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--profile", help="keep the fresh sweep's profile in this file")
    ap.add_argument("--top", type=int, default=0, help="print the K largest own times")
    ap.add_argument("--no-plain", action="store_true", help="skip the unprofiled runs")
    ap.add_argument(
        "--sampler",
        action="store_true",
        help="instead of cProfile: sample the fresh sweep with py-spy (no call overhead)",
    )
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument(
        "--timed",
        action="store_true",
        help="instead of cProfile: CPU timers around the bookkeeping functions only",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    text = spec_text(args.worlds, args.sizes, args.seeds)
    n_runs = args.worlds * 4 * args.sizes * args.seeds
    print(
        f"{n_runs:,} closed-form runs ({args.worlds} worlds x 4 subsets x {args.sizes} sizes "
        f"x {args.seeds} seeds); {time.strftime('%Y-%m-%d')}, {platform.node()}, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        "1 torch thread"
    )
    if args.sampler:
        with tempfile.TemporaryDirectory() as tmp:
            sample(text, Path(tmp) / "sampled", args.rate)
        return
    if args.timed:
        with tempfile.TemporaryDirectory() as tmp:
            timed(text, Path(tmp) / "timed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "fresh"
        wall, cpu, stats = run_once(text, fresh, profile=True)
        assert stats is not None
        print(f"fresh sweep, profiled: {wall:.1f} s wall, {cpu:.1f} s CPU")
        if args.profile:
            stats.dump_stats(args.profile)
        report("fresh", stats)
        if args.top:
            stats.sort_stats("tottime").print_stats(args.top)
        wall, cpu, stats = run_once(text, fresh, profile=True)
        assert stats is not None
        print(f"resume (nothing left), profiled: {wall:.1f} s wall, {cpu:.1f} s CPU")
        report("resume", stats)
        if not args.no_plain:
            plain = Path(tmp) / "plain"
            wall, cpu, _ = run_once(text, plain, profile=False)
            print(f"fresh sweep, not profiled: {wall:.1f} s wall, {cpu:.1f} s CPU")
            wall, cpu, _ = run_once(text, plain, profile=False)
            print(f"resume (nothing left), not profiled: {wall:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
