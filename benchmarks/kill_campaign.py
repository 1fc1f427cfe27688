"""A kill campaign you can rerun: sweeps killed at random (seeded) times, resumed, checked.

Each scenario is a small but realistic sweep run by the command line in its own process
group, as a terminal or a scheduler runs it:

- ``table4``: the closed form on a Table-4-like overlap world (4 modalities of 10
  features, 2 overlaps, all 15 subsets, 2 sizes, 2 seeds: 120 runs);
- ``mlp``: an iterative grid (late fusion with MLP encoders, Adam, plus the closed form) on
  a 20/100/20-feature world, with a small memory budget so that every size trains in
  several chunks;
- ``shards``: the same grid as 3 concurrent ``--shard i/3`` processes, then the merge;
- ``jobs``: the same grid as ``--jobs 2`` (the local multi-process executor);
- ``submitit``: the same grid as ``--executor submitit --tasks 2`` (local cluster).

``jobs`` and ``submitit`` are compared with one process whose thread pools are pinned as
their 2 shard processes pin theirs (cores // 2): BLAS reductions round differently with
another thread count, so the last bits of float64 numbers would differ otherwise (about
1e-15 relative; docs/clusters.md). ``mlp`` and ``shards`` run through this script's
``child`` wrapper, which sets the small memory budget and then calls the command line.

A round starts a fresh directory and repeats: start the command, wait a random time drawn
uniformly from ``[0, 1.1 x T]``, where T is the uninterrupted run's wall time times the
share of runs still missing (at least 0.2; so kills land in start-up, training, record
writes and the table write alike, and a resume that has little left is still hit), and
by 1.5 for every kill in a row that saw no new record (so that on a loaded machine, where
start-up alone can outlast T, kills still reach the training), send
SIGKILL or SIGINT (seeded choice) to the whole process group, then check. A round ends
when the command finishes before its kill (or after ``--max-kills-per-round`` kills,
default 6, a last run finishes it). Checks:

- **lost**: a run whose record line was complete (JSON, line end) after one step and is
  gone after a later one;
- **duplicated**: a run id on more than one record line of the directory, or on more than
  one row of ``results.csv``;
- **mismatch**: the final ``results.csv`` not equal, as text, to the uninterrupted run's
  (every column but ``wall_s``, a timing);
- **traceback**: "Traceback" on the stderr of any process after a SIGINT (or at all);
- **bad exit**: after SIGINT an exit status other than 130 (interrupted), -2 (the SIGINT
  came as the interpreter exited) or 0, after SIGKILL other than -9 or 0; the stderr of
  every process with a traceback or a bad exit is kept under ``--out``/problems;
- **stray**: a temporary file (``*.tmp``, ``.mmtheory-write-test.*``) left in the
  directory after the round's last run.

Run from the repository root (the uninterrupted reference runs are timed first)::

    python benchmarks/kill_campaign.py --kills 40 --seed 0 --out /tmp/kill-campaign

It prints one line per kill and a summary, and writes ``summary.json`` under ``--out``.
Exit status 0 when every count is zero, 1 otherwise.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    # the wrapper's own start-up: a SIGINT here is the command line's interruption (the
    # command line's main() answers SIGINT; this script's imports come before it)
    def _interrupted(signum, frame):
        print("mmtheory sweep: interrupted; finished runs are saved", file=sys.stderr)
        raise SystemExit(130)

    signal.signal(signal.SIGINT, _interrupted)

import argparse
import datetime
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: A closed-form Table-4-like grid: overlap world, all subsets, 2 sizes, 2 seeds (120 runs).
TABLE4 = """
name = "kill-table4"
[world]
kind = "overlap"
n_modalities = 4
dim = 10
overlap = [0.5, 0.0]
[[learner]]
kind = "linear"
solver = "closed_form"
[grid]
subsets = "all"
m = [200, 1000]
seeds = 2
"""

#: The smoke version (tests): one overlap, one size, one seed (15 runs).
TINY_TABLE4 = (
    TABLE4.replace("overlap = [0.5, 0.0]", "overlap = 0.5")
    .replace("m = [200, 1000]", "m = [200]")
    .replace("seeds = 2", "seeds = 1")
)

#: An iterative grid: late fusion with MLP encoders (Adam) and the closed form, 7 subsets,
#: 2 sizes, 2 seeds (56 runs).
MLP = """
name = "kill-mlp"
dtype = "float32"
[world]
kind = "linear"
dims = [20, 100, 20]
latent_dim = 4
[[learner]]
kind = "late_fusion"
encoder = "mlp"
latent_dim = 8
solver = "adam"
lr = 0.01
steps = 10
[[learner]]
kind = "linear"
[grid]
subsets = "all"
m = [40, 80]
seeds = 2
[estimation]
n_test = 500
n_refit = 500
n_eval = 500
"""

#: Bytes of one batch of models in the child processes of ``mlp`` and ``shards``: small,
#: so that each size trains in 4 chunks (2 seeds x 2 subset groups; the default on a CPU
#: holds a size's 14 models in one).
SMALL_BUDGET = 1.5e6

SCENARIOS = ("table4", "mlp", "shards", "jobs", "submitit")
#: The uninterrupted single-process run each scenario must equal: the closed form; the MLP
#: grid with the small budget (for mlp and shards, which use it); the MLP grid with the
#: machine's budget (for jobs and submitit, whose processes use that).
REFERENCE = {"table4": "table4", "mlp": "mlp", "shards": "mlp", "jobs": "jobs", "submitit": "jobs"}


def child(argv: list[str]) -> int:
    """``kill_campaign.py child BUDGET sweep ...``: the mmtheory command line with the
    memory budget of one batch set to BUDGET bytes ("default" keeps the machine's)."""
    budget, rest = argv[0], argv[1:]
    import mmtheory.experiments.sweep as sweep_module
    from mmtheory.cli import main

    sweep_module.default_memory_budget = lambda device: float(budget)  # type: ignore[assignment]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, the CLI's own
    return main(rest)


def _mmtheory(budget: str | None) -> list[str]:
    if budget is None:
        return [sys.executable, "-m", "mmtheory"]
    return [sys.executable, str(Path(__file__).resolve()), "child", budget]


def stages(name: str, spec: Path, out: Path) -> list[list[list[str]]]:
    """The commands of a scenario: a list of stages, each a list of concurrent commands."""
    s, o = str(spec), str(out)
    if name == "table4":
        return [[[*_mmtheory(None), "sweep", s, "--out", o, "--device", "cpu"]]]
    if name == "mlp":
        return [[[*_mmtheory(str(SMALL_BUDGET)), "sweep", s, "--out", o, "--device", "cpu"]]]
    if name == "shards":
        base = [*_mmtheory(str(SMALL_BUDGET)), "sweep", s, "--out", o, "--device", "cpu"]
        return [[base + ["--shard", f"{i}/3"] for i in (1, 2, 3)], [base]]
    if name == "jobs":
        return [[[*_mmtheory(None), "sweep", s, "--out", o, "--device", "cpu", "--jobs", "2"]]]
    if name == "submitit":
        cmd = [*_mmtheory(None), "sweep", s, "--out", o, "--device", "cpu"]
        return [[cmd + ["--executor", "submitit", "--tasks", "2"]]]
    raise ValueError(f"unknown scenario {name!r}; known: {SCENARIOS}")


# ------------------------------------------------------------------------ observations
def finished_records(out: Path) -> tuple[dict[str, int], int]:
    """run id -> number of complete record lines holding it (every record file of ``out``
    but the corrupt one), and the number of incomplete lines (cut short by a kill)."""
    counts: dict[str, int] = {}
    partial = 0
    for path in sorted(out.glob("records*.jsonl")):
        if path.name == "records.corrupt.jsonl":
            continue
        for raw in path.read_bytes().splitlines(keepends=True):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                ok = raw.endswith(b"\n") and isinstance(rec, dict) and "run_id" in rec
            except ValueError:
                ok = False
            if not ok:
                partial += 1
                continue
            counts[rec["run_id"]] = counts.get(rec["run_id"], 0) + 1
    return counts, partial


def stray_files(out: Path) -> list[str]:
    """Temporary files under ``out`` (atomic-write leftovers, write probes)."""
    return sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and (p.name.endswith(".tmp") or p.name.startswith(".mmtheory-write-test"))
    )


def numbers(out: Path):
    """results.csv as text, without the timing column, or None when absent."""
    import pandas as pd

    path = out / "results.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return table.drop(columns=[c for c in ("wall_s",) if c in table.columns])


# ------------------------------------------------------------------------ processes
def start(commands: list[list[str]], cwd: Path, threads: int | None = None):
    """Start the commands at once, each in its own process group."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        from mmtheory.experiments.executors.processes import shard_env

        env = shard_env(threads, env)
    return [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, as a terminal job
        )
        for cmd in commands
    ]


def wait_all(procs: list[subprocess.Popen], timeout: float) -> bool:
    """Wait until every process has exited or ``timeout`` seconds pass; True if all did."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(p.poll() is not None for p in procs):
            return True
        time.sleep(0.05)
    return all(p.poll() is not None for p in procs)


def signal_groups(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass


def reap(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Exit status and stderr of every process (whose group is then killed, in case a
    grandchild outlived its parent)."""
    done = []
    for p in procs:
        _, err = p.communicate()
        done.append((p.returncode, err.decode("utf-8", "replace")))
    signal_groups(procs, signal.SIGKILL)
    return done


def run_clean(commands_by_stage, cwd: Path, threads: int | None = None) -> tuple[float, list[str]]:
    """Run every stage to the end, uninterrupted (with every thread pool at ``threads``
    when given); wall seconds and any stderr problems."""
    t0 = time.perf_counter()
    problems = []
    for commands in commands_by_stage:
        for rc, err in reap(start(commands, cwd, threads)):
            if rc != 0 or "Traceback" in err:
                problems.append(f"exit {rc}: {err.strip().splitlines()[-1:] or ''}")
    return time.perf_counter() - t0, problems


# ------------------------------------------------------------------------ the campaign
@dataclass
class Counts:
    kills: int = 0
    sigkill: int = 0
    sigint: int = 0
    missed: int = 0  # the command finished before its kill time
    rounds: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    tracebacks: int = 0
    bad_exits: int = 0
    stray_files: int = 0
    hangs: int = 0
    partial_lines_seen: int = 0  # record lines cut short by a kill (redone by the resume)
    notes: list[str] = field(default_factory=list)


def run_round(name, spec, out, ref, ref_wall, rng, counts: Counts, max_kills: int, log) -> None:
    """One round of a scenario in a fresh ``out``: kills and resumes until it finishes."""
    shutil.rmtree(out, ignore_errors=True)
    plan = stages(name, spec, out)
    stage = 0
    seen: set[str] = set()
    kills_here = 0
    stretch = 1.0  # grows by half after every kill that saw no new record (a loaded machine)
    counts.rounds += 1
    while stage < len(plan):
        procs = start(plan[stage], out.parent)
        kill = kills_here < max_kills
        missing = 1.0 - len(seen) / len(ref) if stage == 0 else 0.0
        window = 1.1 * ref_wall * max(missing, 0.2) * stretch
        delay = float(rng.uniform(0.0, window)) if kill else 3600.0
        sig = int(rng.choice([signal.SIGKILL, signal.SIGINT])) if kill else None
        try:
            finished = wait_all(procs, delay)
        except BaseException:  # the campaign itself interrupted: leave nothing running
            signal_groups(procs, signal.SIGKILL)
            raise
        if not finished:
            assert sig is not None
            signal_groups(procs, sig)
            counts.kills += 1
            kills_here += 1
            if sig == signal.SIGKILL:
                counts.sigkill += 1
            else:
                counts.sigint += 1
            if not wait_all(procs, 120.0):
                counts.hangs += 1
                counts.notes.append(f"{name}: no exit 120 s after signal {sig}")
        results = reap(procs)
        for rc, err in results:
            # after SIGINT: 130 (the command line's "interrupted"), or -2 (a SIGINT that
            # came as the interpreter was exiting, after the command had finished)
            ok = {0} if finished else ({0, 130, -2} if sig == signal.SIGINT else {0, -9})
            problem = []
            if "Traceback" in err:
                counts.tracebacks += 1
                problem.append("traceback")
            if rc not in ok:
                counts.bad_exits += 1
                problem.append(f"exit {rc}")
            if problem:
                tag = f"{name}-{counts.kills:03d}-{len(counts.notes)}"
                keep = out.parent / "problems" / f"{tag}.txt"
                keep.parent.mkdir(exist_ok=True)
                keep.write_text(f"signal {sig} at {delay:.1f} s, exit {rc}\n{err}")
                last = err.strip().splitlines()[-1:] or ["(no message)"]
                counts.notes.append(f"{name}: {', '.join(problem)} ({keep.name}): {last[0]}")
        records, partial = finished_records(out)
        counts.partial_lines_seen += partial
        lost = seen - set(records)
        counts.lost += len(lost)
        dup = sum(n - 1 for n in records.values() if n > 1)
        counts.duplicated += dup
        stretch = stretch * 1.5 if not finished and not set(records) - seen else 1.0
        seen |= set(records)
        what = "finished" if finished else f"{signal.Signals(sig).name} at {delay:5.1f} s"
        log(
            f"  {name:8s} stage {stage + 1}/{len(plan)} {what:22s} records {len(records):4d} "
            f"lost {len(lost)} duplicated {dup} cut-short lines {partial}"
        )
        if finished:
            counts.missed += int(kill)
            if any(rc != 0 for rc, _ in results):  # failed on its own: counted above
                break
            stage += 1
    table = numbers(out)
    if table is None or not table.equals(ref):
        counts.mismatches += 1
        counts.notes.append(f"{name}: results.csv differs from the uninterrupted run")
    if table is not None and "run_id" in table:
        counts.duplicated += int(table["run_id"].duplicated().sum())
    stray = stray_files(out)
    counts.stray_files += len(stray)
    if stray:
        counts.notes.append(f"{name}: stray files {stray}")


def campaign(args) -> int:
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    log_lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        log_lines.append(line)

    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for n in names:
        if n not in SCENARIOS:
            print(f"--scenarios: unknown scenario {n!r}; known: {SCENARIOS}", file=sys.stderr)
            return 2
    specs = {"table4": TINY_TABLE4 if args.tiny else TABLE4}
    for name in SCENARIOS:
        (root / f"{name}.toml").write_text(specs.get(name, MLP))
    refs, walls = {}, {}
    for key in sorted({REFERENCE[n] for n in names}):  # the uninterrupted runs, timed
        out = root / f"{key}-reference"
        shutil.rmtree(out, ignore_errors=True)
        single = stages(key, root / f"{key}.toml", out)[:1]
        threads = None
        if key == "jobs":  # one process, the machine's budget, the threads of one of 2 shards
            single = [[single[0][0][: single[0][0].index("--jobs")]]]
            threads = max(1, (os.cpu_count() or 1) // 2)
        wall, problems = run_clean(single, root, threads)
        if problems:
            print(f"{key}: the uninterrupted run failed: {problems}", file=sys.stderr)
            return 1
        refs[key], walls[key] = numbers(out), wall
        log(f"reference {key}: {len(refs[key])} rows in {wall:.1f} s")
    per = {n: Counts() for n in names}
    t0 = time.perf_counter()
    i = 0
    while sum(c.kills for c in per.values()) < args.kills:
        name = names[i % len(names)]
        i += 1
        run_round(
            name,
            root / f"{name}.toml",
            root / f"{name}-killed",
            refs[REFERENCE[name]],
            walls[REFERENCE[name]],
            rng,
            per[name],
            args.max_kills_per_round,
            log,
        )
        if time.perf_counter() - t0 > args.max_seconds:
            log(f"stopped after {time.perf_counter() - t0:.0f} s (--max-seconds)")
            break
    import torch

    total = Counts()
    for c in per.values():
        for k, v in asdict(c).items():
            if k != "notes":
                setattr(total, k, getattr(total, k) + v)
        total.notes += c.notes
    summary = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "seed": args.seed,
        "campaign_s": round(time.perf_counter() - t0, 1),
        "reference_wall_s": {n: round(w, 1) for n, w in walls.items()},
        "total": asdict(total),
        "scenarios": {n: asdict(c) for n, c in per.items()},
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (root / "kills.log").write_text("\n".join(log_lines) + "\n")
    bad = ("lost", "duplicated", "mismatches", "tracebacks", "bad_exits", "stray_files", "hangs")
    log(
        f"{total.kills} kills ({total.sigkill} SIGKILL, {total.sigint} SIGINT) in "
        f"{total.rounds} rounds, {total.missed} finished before their kill: "
        + ", ".join(f"{k} {getattr(total, k)}" for k in bad)
    )
    for note in total.notes:
        log(f"  {note}")
    return 0 if all(getattr(total, k) == 0 for k in bad) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=40, help="stop after this many kills")
    p.add_argument("--seed", type=int, default=0, help="seed of kill times and signals")
    p.add_argument("--out", default="runs/kill-campaign", help="working directory")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated of {SCENARIOS}"
    )
    p.add_argument("--max-kills-per-round", type=int, default=6)
    p.add_argument("--max-seconds", type=float, default=540.0, help="stop starting rounds")
    p.add_argument(
        "--tiny", action="store_true", help="a 15-run table4 grid (the test suite's smoke run)"
    )
    return campaign(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
