"""The grid of a sweep: runs, their ids, and shards.

A run is one (learner, subset, sample size, seed) cell of one world. Its id hashes
everything that determines its numbers: the world's identity, the learner's settings, the
subset, m, the seed, the estimation sizes and the mmtheory version (a new version
recomputes). Shard i of n holds the runs whose id is i - 1 modulo n.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from itertools import repeat
from json.encoder import encode_basestring_ascii as _quote  # json's own (C) string encoder
from typing import NamedTuple

from mmtheory import _version
from mmtheory.core.subsets import Subset
from mmtheory.core.validation import check_int, check_int_list
from mmtheory.models.learner import Learner

__all__ = [
    "Run",
    "check_seeds",
    "check_shard",
    "check_sizes",
    "in_shard",
    "unit_in_shard",
    "parse_shard",
    "plan_runs",
    "run_id",
]


class Run(NamedTuple):
    """One cell of a sweep's grid (a named tuple: a sweep plans one per run, and a frozen
    dataclass took four times as long to make)."""

    learner: Learner
    subset: Subset
    m: int
    seed: int
    run_id: str


def run_id(identity: str, learner: Learner, subset: Subset, m: int, seed: int, extra: dict) -> str:
    """16 hex digits of sha1 over everything that determines the run's numbers."""
    return _run_id(identity, learner.settings(), str(subset), m, seed, extra)


def _run_id(identity: str, settings: dict, subset: str, m: int, seed: int, extra: dict) -> str:
    """:func:`run_id` from the learner's settings, computed once per learner by callers
    that hash many runs (``Learner.settings`` costs more than the hash)."""
    text = _key_text(identity, settings, subset, m, seed, extra)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _key_text(identity: str, settings: dict, subset, m, seed, extra: dict) -> str:
    """The JSON text a run id hashes (the version read at call time)."""
    key = {
        "world": identity,
        "learner": settings,
        "subset": subset,
        "m": m,
        "seed": seed,
        "code": _version.__version__,
        **extra,
    }
    return json.dumps(key, sort_keys=True, default=str)


def plan_runs(identity: str, learners, subsets, sizes, seeds, extra: dict) -> list[Run]:
    """Every run of the grid, learners outermost, seeds innermost."""
    labels = [str(sub) for sub in subsets]
    runs = []
    for lrn in learners:
        ids = _RunIds(identity, lrn.settings(), extra)
        for sub, label in zip(subsets, labels):
            for m in sizes:
                run_ids = ids.many(label, m, seeds)
                runs.extend(map(Run, repeat(lrn), repeat(sub), repeat(m), seeds, run_ids))
    return runs


class _RunIds:
    """:func:`_run_id` of one world, learner and ``extra``, for many (subset, m, seed):
    the key's JSON text is formed once with placeholders, and each run fills in its
    three values as ``json.dumps`` writes them (a string, two ints), so the text, and the
    id, are the same; anything unusual (a placeholder that occurs twice, ``extra``
    setting one of the three, a value that is not a plain int or str, another version)
    goes through :func:`_run_id` itself."""

    _SLOTS = ("subset", "m", "seed")

    def __init__(self, identity: str, settings: dict, extra: dict) -> None:
        self.args = (identity, settings, extra)
        marks = {k: f"@mmtheory-run-id:{k}@" for k in self._SLOTS}
        text = _key_text(identity, settings, marks["subset"], marks["m"], marks["seed"], extra)
        parts = re.split('"@mmtheory-run-id:(subset|m|seed)@"', text)
        ok = sorted(parts[1::2]) == sorted(self._SLOTS) and not set(self._SLOTS) & set(extra)
        self.parts = parts if ok else None
        self.version = _version.__version__

    def __call__(self, subset: str, m: int, seed: int) -> str:
        return self.many(subset, m, [seed])[0]

    def many(self, subset: str, m: int, seeds: list[int]) -> list[str]:
        """``[self(subset, m, seed) for seed in seeds]``: the text before the seed is
        hashed once, and each seed's hash goes on from a copy of that state."""
        plain = type(subset) is str and type(m) is int and all(type(s) is int for s in seeds)
        if self.parts is None or not plain or self.version != _version.__version__:
            identity, settings, extra = self.args
            return [_run_id(identity, settings, subset, m, seed, extra) for seed in seeds]
        values = {"subset": _quote(subset), "m": int.__repr__(m), "seed": "\0"}
        parts = self.parts
        text = parts[0] + "".join(values[k] + rest for k, rest in zip(parts[1::2], parts[2::2]))
        head, _, tail = text.partition("\0")  # "\0" never occurs: json escapes it
        start, end = hashlib.sha1(head.encode()), tail.encode()
        out = []
        for seed in seeds:
            h = start.copy()
            h.update(int.__repr__(seed).encode() + end)
            out.append(h.hexdigest()[:16])
        return out


def check_sizes(m: int | Sequence[int], max_train: int | None) -> list[int]:
    """Sample sizes as a sorted list of distinct integers >= 2 (<= ``max_train``)."""
    values = check_int_list(m, "m", low=2)
    for v in values:
        if max_train is not None and v > max_train:
            raise ValueError(f"m={v} exceeds the {max_train} training rows available")
    return sorted(set(values))


def check_seeds(seeds: int | Iterable[int]) -> list[int]:
    """Seeds from a count (``5`` -> 0..4) or a list of non-negative integers."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(check_int(seeds, "seeds", low=1)))
    return sorted(set(check_int_list(seeds, "seeds", low=0)))


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 1 <= i <= n, or a ValueError naming the flag."""
    parts = str(text).split("/")
    try:
        i, n = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--shard must be i/n with integers 1 <= i <= n, got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard must be i/n with integers 1 <= i <= n, got {text!r}")
    return i, n


def check_shard(shard, out) -> tuple[int, int] | None:
    """``shard`` as (i, n) with 1 <= i <= n (it needs an output directory), or None."""
    if shard is None:
        return None
    ok = (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        and shard[1] >= 1
        and 1 <= shard[0] <= shard[1]
    )
    if not ok:
        raise ValueError(f"shard must be (i, n) with 1 <= i <= n, got {shard!r}")
    if out is None:
        raise ValueError("shard needs out=DIR: the shards share one record store")
    return int(shard[0]), int(shard[1])


def unit_in_shard(unit: str, shard: tuple[int, int]) -> bool:
    """True when the unit of work named ``unit`` belongs to shard i of n (a stable hash of
    its name modulo n: the same in every process and on every machine)."""
    digest = hashlib.sha256(unit.encode("utf-8")).hexdigest()
    return int(digest[:16], 16) % shard[1] == shard[0] - 1


def in_shard(run: Run, shard: tuple[int, int]) -> bool:
    """True when ``run``'s id modulo n is i - 1 (a per-run split; sweeps split by unit of
    work instead, :func:`unit_in_shard`, so that batches match one process)."""
    return int(run.run_id, 16) % shard[1] == shard[0] - 1
