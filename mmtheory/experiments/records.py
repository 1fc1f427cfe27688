"""Run records: one JSON line per finished run, appended and fsynced as runs finish.

``records.jsonl`` in the output directory is the source of truth; ``results.csv`` is
rebuilt from it. A line that is not a usable record (cut short by a crash, not UTF-8, not
JSON, or JSON with a missing field or a field of the wrong type) is reported with its path,
line number and reason, moved to ``records.corrupt.jsonl`` and never merged; its run is
redone. A write is all or nothing: when it fails (a full disk) the file is cut back to the
records before it and :class:`RecordWriteError` says so. One writer per record file: an
exclusive lock (``.records.jsonl.lock``) refuses a second process on the same ``--out``
without ``--shard`` (:class:`StoreLockedError`).

Sharding: a store opened with ``shard=(i, n)`` appends to its own file
``records.shard-i-of-n.jsonl``, so n processes (or machines sharing a file system) never
write to the same file; every store reads all record files of the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import operator
import os
from itertools import repeat
from json.encoder import encode_basestring_ascii as _quote  # json's own (C) string encoder
from pathlib import Path

from mmtheory.core.io import temporary_path

__all__ = [
    "RecordStore",
    "RecordWriteError",
    "StoreLockedError",
    "record_lines",
    "record_problem",
]

log = logging.getLogger("mmtheory")


class RecordWriteError(OSError):
    """A record could not be written (a full disk, an I/O error); nothing was lost."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "record write failed"


class StoreLockedError(ValueError):
    """Another process holds the writer lock of this record file."""


class RecordStore:
    """Append-only record file keyed by ``run_id``."""

    def __init__(self, out_dir: str | os.PathLike, shard: tuple[int, int] | None = None) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = "records.jsonl" if shard is None else f"records.shard-{shard[0]}-of-{shard[1]}.jsonl"
        self.path = self.dir / name
        self._lock_fd: int | None = None
        self._lock()
        self._records: dict[str, dict] = {}
        self._by_world: dict[object, dict[str, dict]] = {}  # world_identity -> run_id -> record
        for path in sorted(self.dir.glob("records*.jsonl")):
            if path.name != "records.corrupt.jsonl":
                self._load(path)

    def _lock(self) -> None:
        """One writer per record file: an exclusive lock held while the store is open (the
        operating system releases it when the process dies, so a killed run never leaves a
        stale lock)."""
        lock = self.dir / f".{self.path.name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreLockedError(
                f"{self.path} is being written by another process (lock {lock}); wait for "
                "it to finish, or give each process its own --shard i/n"
            ) from None
        self._lock_fd = fd

    def _load(self, path: Path) -> None:
        good, bad = [], []
        with open(path, "rb") as fh:
            raw_lines = fh.readlines()
        for lineno, raw in enumerate(raw_lines, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
                rec = json.loads(line)
                problem = record_problem(rec)
                if problem is None and not line.endswith("\n"):
                    problem = "cut short (no line end)"
            except UnicodeDecodeError:
                problem = "not UTF-8 text"
            except ValueError:
                problem = "not valid JSON"
            if problem is not None:
                bad.append((lineno, raw, problem))
                continue
            good.append(raw)
            self._keep(rec)
        if bad:
            corrupt = self.dir / "records.corrupt.jsonl"
            with open(corrupt, "ab") as fh:
                for _, raw, _ in bad:
                    fh.write(raw if raw.endswith(b"\n") else raw + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp = temporary_path(path)
            try:
                with open(tmp, "wb") as fh:
                    fh.writelines(good)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            lines = ", ".join(f"{n} ({why})" for n, _, why in bad[:5])
            msg = (
                f"{path}: skipped {len(bad)} unreadable record line(s) (line {lines}); "
                f"moved to {corrupt}; those runs will be redone"
            )
            log.warning(msg)

    def _keep(self, rec: dict) -> None:
        self._records[rec["run_id"]] = rec
        self._by_world.setdefault(rec.get("world_identity"), {})[rec["run_id"]] = rec

    def records(self) -> list[dict]:
        """Every finished run's record."""
        return list(self._records.values())

    def records_of(self, identity: str) -> list[dict]:
        """The finished records of the world whose identity is ``identity`` (an index kept
        as records are read and written, so a series of worlds never rescans the file)."""
        return list(self._by_world.get(identity, {}).values())

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, run_id: str) -> dict | None:
        return self._records.get(run_id)

    def append(self, records: list[dict]) -> None:
        """Write ``records`` (one line each) and fsync before returning.

        All or nothing: when the write or the fsync fails (a full disk), the file is cut
        back to its length before the call, so every record written before stays intact,
        and a :class:`RecordWriteError` says how many finished records are safe."""
        if not records:
            return
        data = record_lines(records).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[_write(fd, view) :]
                os.fsync(fd)
            except OSError as err:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise RecordWriteError(
                    f"could not write {len(records)} record(s) to {self.path} "
                    f"({err.strerror or err}); the {len(self._records)} finished run(s) "
                    "recorded before are safe; free space and rerun to redo the others"
                ) from None
        finally:
            os.close(fd)
        for r in records:
            self._keep(r)

    def close(self) -> None:
        """Release the directory's writer lock (a later store may then write here)."""
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)
            self._lock_fd = None

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _write(fd: int, data: memoryview) -> int:
    """One ``os.write`` (a seam for fault-injection tests)."""
    return os.write(fd, data)


#: Fields every record must hold, with their types (None allowed where a run diverged).
_REQUIRED: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "world": (str,),
    "learner": (str,),
    "subset": (str,),
    "m": (int,),
    "seed": (int,),
    "train_risk": (float, int, type(None)),
    "test_risk": (float, int, type(None)),
    "eta": (float, int, type(None)),
    "converged": (bool,),
}


def record_problem(rec: object) -> str | None:
    """Why ``rec`` is not a usable run record (a missing field, a wrong type), or None."""
    if not isinstance(rec, dict):
        return f"not a JSON object ({type(rec).__name__})"
    for key, types in _REQUIRED.items():
        if key not in rec:
            return f"missing field {key!r}"
        value = rec[key]
        if isinstance(value, bool) and bool not in types:
            return f"field {key!r} must be {types[0].__name__}, got {value!r}"
        if not isinstance(value, types):
            return f"field {key!r} must be {types[0].__name__}, got {value!r}"
    if not rec["run_id"]:
        return "empty run_id"
    return None


def record_lines(records: list[dict]) -> str:
    """The records as JSON lines: byte for byte
    ``"".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\\n" for r in records)``,
    in a fraction of its time on a sweep's batches.

    The records of a batch share their keys and most of their values (the world, the
    learner's settings, the versions: the same objects). So the text is built a column at
    a time: a value that is the same object in every record is encoded once; a column of
    floats, ints or strings is encoded by the functions ``json`` itself applies to them
    (``float.__repr__`` with its NaN and infinity spellings, ``int.__repr__``, its C string
    encoder); anything else goes through ``json.dumps`` value by value, which renders a
    nested value exactly as it renders it inside its record. A value shared by records
    is encoded once: an object whose text changes from call to call (a stateful
    ``default``) is written the same in each of them."""
    out = []
    start = 0
    while start < len(records):  # runs of records with the same keys
        keys = records[start].keys()
        stop = start + 1
        while stop < len(records) and records[stop].keys() == keys:
            stop += 1
        out.append(_same_keys(records[start:stop]))
        start = stop
    return "".join(out)


def _same_keys(group: list[dict]) -> str:
    names = list(group[0])
    plain = all(type(k) is str for k in names) and all(type(r) is dict for r in group)
    if not names or not plain:  # {}; json's key conversions; dict subclasses
        return "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in group)
    names.sort()
    columns: list = []  # a str: the same text in every record; a list: one text per record
    for name in names:
        prefix = _quote(name) + ": "
        values = list(map(operator.itemgetter(name), group))
        first = values[0]
        if all(map(operator.is_, values, repeat(first))):
            text = prefix + _value_text(first)
            if columns and isinstance(columns[-1], str):  # neighbours joined once
                text = columns.pop() + ", " + text
            columns.append(text)
        else:
            columns.append(list(map(prefix.__add__, _column_texts(values))))
    rows = zip(*(repeat(c, len(group)) if isinstance(c, str) else c for c in columns))
    return "".join("{" + ", ".join(row) + "}\n" for row in rows)


def _column_texts(values: list) -> list[str]:
    """json's text of each value. Objects that recur (a subset's or a size's values, held
    once by the runner) are encoded once each; columns of exact floats, ints or strings go
    through json's own functions for them (a subclass of float or int, numpy's float64
    among them, goes through ``json.dumps``)."""
    ids = list(map(id, values))
    distinct = dict(zip(ids, values, strict=True))
    if 2 * len(distinct) <= len(values):
        memo = dict(zip(distinct, _texts(list(distinct.values())), strict=True))
        return list(map(memo.__getitem__, ids))
    return _texts(values)


def _texts(values: list) -> list[str]:
    types = set(map(type, values))
    if types == {float}:
        texts = list(map(float.__repr__, values))
        for i, text in enumerate(texts):
            if text in _NON_FINITE:
                texts[i] = _NON_FINITE[text]
        return texts
    if types == {int}:
        return list(map(int.__repr__, values))
    if types == {str}:
        return list(map(_quote, values))
    return list(map(_value_text, values))


#: json's spelling of the non-finite floats (``float.__repr__`` gives the keys).
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _value_text(value) -> str:
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is float:
        text = float.__repr__(value)
        return _NON_FINITE.get(text, text)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=_jsonable)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)
