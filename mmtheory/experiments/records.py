"""Run records: one JSON line per finished run, appended as runs finish.

``records.jsonl`` in the output directory is the source of truth; ``results.csv`` is
rebuilt from it. A line that is not a usable record (cut short by a crash, not UTF-8, not
JSON, or JSON with a missing field or a field of the wrong type) is reported with its path,
line number and reason, moved to ``records.corrupt.jsonl`` and never merged; its run is
redone. A write is all or nothing: when it fails (a full disk) the file is cut back to the
records before it and :class:`RecordWriteError` says so.

Durability: every batch is written (``write``) before the next starts, so a killed
process loses no finished record. ``fsync`` runs with the first append that comes
``sync_seconds`` (half a second) or more after the last one, and on :meth:`~RecordStore.sync`
(a sweep calls it when it ends) and when the store closes: a sweep of many small batches
(100,000 closed-form runs: 1,000 batches) paid 1.7% of its wall time for one ``fsync`` per
batch. The records waiting for an fsync are those of batches that started and finished
within half a second of the last one, so a crash of the machine itself loses at most about
half a second of finished work; those runs are redone by the next run, like any missing
record. One writer per record file: an
exclusive lock (``.records.jsonl.lock``) refuses a second process on the same ``--out``
without ``--shard`` (:class:`StoreLockedError`).

Sharding: a store opened with ``shard=(i, n)`` appends to its own file
``records.shard-i-of-n.jsonl``, so n processes (or machines sharing a file system) never
write to the same file; every store reads all record files of the directory.

In memory a batch of records may be held as columns (:class:`RecordBatch`: the values
every record shares once, the others one list per field), as the closed form produces
them; the file holds the same lines either way, and a record is made a dict only when
someone asks for it (:meth:`RecordStore.get`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import operator
import os
import time
from itertools import accumulate, repeat
from json.encoder import encode_basestring_ascii as _quote  # json's own (C) string encoder
from pathlib import Path

from mmtheory.core.io import temporary_path

__all__ = [
    "RecordBatch",
    "RecordStore",
    "RecordWriteError",
    "StoreLockedError",
    "record_lines",
    "record_problem",
]

log = logging.getLogger("mmtheory")

#: A store fsyncs its file at most this often, in seconds, and when it closes.
SYNC_SECONDS = 0.5


class RecordWriteError(OSError):
    """A record could not be written (a full disk, an I/O error); nothing was lost."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "record write failed"


class StoreLockedError(ValueError):
    """Another process holds the writer lock of this record file."""


class RecordBatch:
    """Records of one batch as columns: ``shared`` holds the fields that are the same
    object in every record, ``columns`` one list per other field (``run_id`` among them).

    ``batch.record(i)`` is record i as a dict; ``record_lines(batch)`` and
    ``RecordStore.append(batch)`` write the lines ``batch.records()`` would."""

    __slots__ = ("_rows", "columns", "n", "shared")

    def __init__(self, shared: dict, columns: dict[str, list]) -> None:
        # lists: the writer tells recurring objects by identity, which an array's
        # elements (made afresh on each access) do not keep
        columns = {k: v if type(v) is list else list(v) for k, v in columns.items()}
        lengths = {len(v) for v in columns.values()}
        if "run_id" not in columns:
            raise ValueError(f"a RecordBatch needs a run_id column, got {sorted(columns)}")
        if len(lengths) != 1:
            each = {k: len(v) for k, v in columns.items()}
            raise ValueError(f"a RecordBatch's columns must have one length, got {each}")
        both = shared.keys() & columns.keys()
        if both:
            raise ValueError(f"fields both shared and per record: {sorted(both)}")
        self.shared, self.columns = shared, columns
        self.n = lengths.pop()
        self._rows: dict[str, int] | None = None

    def row(self, run_id: str) -> int:
        """The position of ``run_id``'s record (an index made on first use)."""
        if self._rows is None:
            self._rows = dict(zip(self.columns["run_id"], range(self.n)))
        return self._rows[run_id]

    def __len__(self) -> int:
        return self.n

    def keys(self) -> set[str]:
        """The field names of every record of the batch."""
        return self.shared.keys() | self.columns.keys()

    def record(self, i: int) -> dict:
        """Record ``i`` as a dict (the shared values are shared objects, as in a runner's
        records; records are read, never modified in place)."""
        rec = dict(self.shared)
        for name, values in self.columns.items():
            rec[name] = values[i]
        return rec

    def records(self) -> list[dict]:
        return [self.record(i) for i in range(self.n)]


class RecordStore:
    """Append-only record file keyed by ``run_id``."""

    def __init__(self, out_dir: str | os.PathLike, shard: tuple[int, int] | None = None) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = "records.jsonl" if shard is None else f"records.shard-{shard[0]}-of-{shard[1]}.jsonl"
        self.path = self.dir / name
        self._lock_fd: int | None = None
        self._lock()
        # run_id -> its record, or the RecordBatch that holds it
        self._records: dict[str, dict | RecordBatch] = {}
        self._by_world: dict[object, dict[str, None]] = {}  # world_identity -> its run ids
        for path in sorted(self.dir.glob("records*.jsonl")):
            if path.name != "records.corrupt.jsonl":
                self._load(path)
        self.sync_seconds = SYNC_SECONDS
        self._synced_at = time.monotonic()
        self._synced_size = self.path.stat().st_size if self.path.exists() else 0
        # (run id, what held it before) for each record written since the last fsync
        self._unsynced: list[tuple[str, dict | RecordBatch | None]] = []

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
        self._index(rec["run_id"], rec)

    def _keep_batch(self, batch: RecordBatch) -> None:
        ids = batch.columns["run_id"]
        self._records.update(dict.fromkeys(ids, batch))
        if "world_identity" in batch.shared:
            index = self._by_world.setdefault(batch.shared["world_identity"], {})
            index.update(dict.fromkeys(ids))
        else:
            for rid, identity in zip(ids, batch.columns.get("world_identity", repeat(None))):
                self._by_world.setdefault(identity, {})[rid] = None

    def records(self, having: str | None = None) -> list[dict]:
        """Every finished run's record (with ``having``: only those whose field ``having``
        is present and true, made dicts only then)."""
        out = []
        for run_id, held in self._records.items():
            if type(held) is RecordBatch:
                if having is not None and having not in held.shared and having not in held.columns:
                    continue  # no record of the batch has it: no row index needed
                i = held.row(run_id)
                if having is None or _field(held, having, i):
                    out.append(held.record(i))
            elif having is None or held.get(having):
                out.append(held)
        return out

    def run_ids_of(self, identity: str) -> list[str]:
        """The run ids of the finished records of the world whose identity is
        ``identity`` (an index kept as records are read and written, so a series of
        worlds never rescans the file)."""
        return list(self._by_world.get(identity, {}))

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, run_id: str) -> dict | None:
        return self._record(run_id) if run_id in self._records else None

    def _record(self, run_id: str) -> dict:
        held = self._records[run_id]
        if type(held) is RecordBatch:
            return held.record(held.row(run_id))
        return held

    def batch_of(self, run_ids: list[str]) -> RecordBatch | None:
        """The records of ``run_ids``, in that order, as one :class:`RecordBatch`, when
        every one of them is held in batches with the same fields (the records of a
        fresh sweep); else None (then take them one at a time, :meth:`get`)."""
        held = list(map(self._records.get, run_ids))
        if set(map(type, held)) != {RecordBatch}:
            return None
        parts = list(dict.fromkeys(held))  # the batches, by identity, in order
        names = parts[0].keys()
        if any(b.keys() != names for b in parts[1:]):
            return None
        position: dict[str, int] = {}  # run id -> its row in the parts, one after another
        start = 0
        for b in parts:
            position.update(zip(b.columns["run_id"], range(start, start + b.n)))
            start += b.n
        if len(position) == start:  # no id in two batches (a redone run): one lookup each
            rows = list(map(position.__getitem__, run_ids))
        else:  # the row in the batch that holds each id now
            offset = dict(zip(map(id, parts), accumulate([0] + [b.n for b in parts])))
            rows = [offset[id(b)] + b.row(i) for b, i in zip(held, run_ids, strict=True)]
        shared, columns = {}, {}
        for name in sorted(names):
            if all(name in b.shared for b in parts):
                first = parts[0].shared[name]
                if all(b.shared[name] is first for b in parts):
                    shared[name] = first
                    continue
            values: list = []
            for b in parts:
                col = b.columns.get(name)
                values.extend(col if col is not None else [b.shared[name]] * b.n)
            columns[name] = list(map(values.__getitem__, rows))
        return RecordBatch(shared, columns)

    def append(self, records: list[dict] | RecordBatch) -> None:
        """Write ``records`` (one line each); fsync if the last fsync is ``sync_seconds``
        old (module docstring).

        All or nothing: when the write fails (a full disk), the file is cut back to its
        length before it, the records before it are fsynced, and a
        :class:`RecordWriteError` says how many finished records are safe; when an fsync
        fails, the file is cut back to the records fsynced before, which are the safe
        ones (a run written again since keeps its earlier record)."""
        if not records:
            return
        data = record_lines(records).encode("utf-8")
        batch = records if isinstance(records, RecordBatch) else None
        ids = batch.columns["run_id"] if batch is not None else [r["run_id"] for r in records]
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[_write(fd, view) :]
            except OSError as err:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                cut = self._sync(fd)  # the records before are safe once fsynced
                raise self._write_error(len(ids) + (cut[0] if cut else 0), err) from None
            self._unsynced.extend(zip(ids, map(self._records.get, ids)))
            if batch is not None:
                self._keep_batch(batch)
            else:
                for r in records:
                    self._keep(r)
            if time.monotonic() - self._synced_at >= self.sync_seconds:
                cut = self._sync(fd)
                if cut:
                    raise self._write_error(*cut) from None
        finally:
            os.close(fd)

    def sync(self) -> None:
        """fsync the records written since the last fsync (a RecordWriteError, with the
        file cut back to the records before them, when it fails)."""
        if not self._unsynced:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            cut = self._sync(fd)
        finally:
            os.close(fd)
        if cut:
            raise self._write_error(*cut) from None

    def _sync(self, fd: int) -> tuple[int, OSError] | None:
        """fsync; when it fails, cut the file back to the records fsynced before, forget
        the records written since (a run written again keeps its earlier record), and
        return how many were cut and why."""
        if not self._unsynced:
            return None
        try:
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._synced_size)
            cut = self._unsynced
            self._unsynced = []
            for run_id, before in reversed(cut):  # the earliest holder is the one on disk
                self._forget(run_id)
                if before is not None:
                    self._records[run_id] = before
                    self._index(run_id, before)
            return len(cut), err
        self._synced_at = time.monotonic()
        self._synced_size = os.fstat(fd).st_size
        self._unsynced = []
        return None

    def _forget(self, run_id: str) -> None:
        held = self._records.pop(run_id, None)
        if held is not None:
            self._by_world.get(_identity(held, run_id), {}).pop(run_id, None)

    def _index(self, run_id: str, held: dict | RecordBatch) -> None:
        self._by_world.setdefault(_identity(held, run_id), {})[run_id] = None

    def _write_error(self, n: int, err: OSError) -> RecordWriteError:
        return RecordWriteError(
            f"could not write {n} record(s) to {self.path} "
            f"({err.strerror or err}); the {len(self._records)} finished run(s) "
            "recorded before are safe; free space and rerun to redo the others"
        )

    def close(self) -> None:
        """fsync what is not yet synced and release the directory's writer lock (a later
        store may then write here); a RecordWriteError when that fsync fails."""
        fd = getattr(self, "_lock_fd", None)
        if fd is None:
            return
        try:
            self.sync()
        finally:
            os.close(fd)
            self._lock_fd = None

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
            return
        try:  # another error is on its way out: say this one, do not replace it
            self.close()
        except RecordWriteError as err:
            log.warning("%s", err)

    def __del__(self) -> None:
        try:  # at interpreter exit the modules it needs may be gone
            self.close()
        except Exception:
            pass


def _identity(held: dict | RecordBatch, run_id: str):
    """The world identity of ``run_id``'s record, held as a dict or in a batch."""
    if type(held) is dict:
        return held.get("world_identity")
    return _field(held, "world_identity", held.row(run_id))


def _field(batch: RecordBatch, name: str, i: int):
    """Field ``name`` of record ``i`` of ``batch`` (None when the records lack it)."""
    if name in batch.shared:
        return batch.shared[name]
    values = batch.columns.get(name)
    return None if values is None else values[i]


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


def record_lines(records: list[dict] | RecordBatch) -> str:
    """The records as JSON lines: byte for byte
    ``"".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\\n" for r in records)``
    (for a :class:`RecordBatch`, of ``batch.records()``), in a fraction of its time on a
    sweep's batches.

    The records of a batch share their keys and most of their values (the world, the
    learner's settings, the versions: the same objects). So the text is built a column at
    a time: a value that is the same object in every record is encoded once; a column of
    floats, ints or strings is encoded by the functions ``json`` itself applies to them
    (``float.__repr__`` with its NaN and infinity spellings, ``int.__repr__``, its C string
    encoder); anything else goes through ``json.dumps`` value by value, which renders a
    nested value exactly as it renders it inside its record. A value shared by records
    is encoded once: an object whose text changes from call to call (a stateful
    ``default``) is written the same in each of them."""
    if isinstance(records, RecordBatch):
        return _batch_lines(records)
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
    fields = ((name, list(map(operator.itemgetter(name), group))) for name in names)
    return _lines(len(group), fields)


def _batch_lines(batch: RecordBatch) -> str:
    names = list(batch.keys())
    if not batch.n:
        return ""
    if not names or not all(type(k) is str for k in names):
        return record_lines(batch.records())
    shared, columns = batch.shared, batch.columns
    names.sort()
    fields = ((n, columns[n] if n in columns else _Same(shared[n])) for n in names)
    return _lines(batch.n, fields, keep=True)


class _Same:
    """A field whose value is the same object in every record of a batch."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def _lines(n: int, fields, keep: bool = False) -> str:
    """The JSON lines of ``n`` records from their ``(name, values)`` fields in sorted name
    order (``values``: one per record, or a :class:`_Same`). The text every record shares
    (names, separators, the values that are the same object in every record) is a ``%``
    template with one slot per other field, formed once per shape (:func:`_template`)."""
    names, same, texts = [], [], []
    for name, values in fields:
        names.append(name)
        if type(values) is _Same:
            same.append(values.value)
            continue
        first = values[0]
        if all(map(operator.is_, values, repeat(first))):
            if not keep:  # kept templates bake only the batch's shared values
                same.append(first)
                continue
            texts.append([_value_text(first)] * n)
        else:
            texts.append(_column_texts(values))
        same.append(_PER_RECORD)
    template = _template(names, same, keep)
    if not texts:
        return (template % ()) * n
    return "".join(map(template.__mod__, zip(*texts)))


#: Marks a field with a text per record in :func:`_template`'s arguments.
_PER_RECORD = object()
#: Templates by shape: (names, ids of the shared values) -> (template, the shared values).
_TEMPLATES: dict[tuple, tuple[str, list]] = {}


def _template(names: list[str], same: list, keep: bool) -> str:
    """The ``%`` template of records with fields ``names`` whose values are ``same`` (an
    object shared by every record, or :data:`_PER_RECORD`). With ``keep`` (a
    :class:`RecordBatch`: a runner's batches share their shape and their shared objects,
    the settings, the versions, the world, and records are never modified in place) the
    template is kept for the next batch of that shape, with its objects (so that their
    ids are not reused while it is kept); per-record fields stay slots even where one
    batch has the same value throughout (its seed), so that the next batch matches."""
    key = (tuple(names), tuple(map(id, same)))
    held = _TEMPLATES.get(key) if keep else None
    if held is not None:
        return held[0]
    fixed, pending, sep = [], "", "{"
    for name, value in zip(names, same, strict=True):
        pending += sep + _quote(name) + ": "
        sep = ", "
        if value is _PER_RECORD:
            fixed.append(pending)
            pending = ""
        else:
            pending += _value_text(value)
    fixed.append(pending + "}\n")
    template = "%s".join(part.replace("%", "%%") for part in fixed)
    if keep:
        if len(_TEMPLATES) >= 64:
            _TEMPLATES.clear()
        _TEMPLATES[key] = (template, same)
    return template


def _column_texts(values: list) -> list[str]:
    """json's text of each value. A column of exact floats, ints or strings goes through
    json's own functions for them, each distinct value once (a subset's or a size's
    values recur); a subclass of float or int, numpy's float64 among them, goes through
    ``json.dumps``, each distinct object once."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return _float_texts(values)
    if kinds == {int} or kinds == {str}:
        encode = int.__repr__ if kinds == {int} else _quote
        seen = set(values)
        if 2 * len(seen) <= len(values):
            memo = dict(zip(seen, map(encode, seen)))
            return list(map(memo.__getitem__, values))
        return list(map(encode, values))
    ids = list(map(id, values))
    distinct = dict(zip(ids, values, strict=True))
    if 2 * len(distinct) <= len(values):
        memo = dict(zip(distinct, map(_value_text, distinct.values()), strict=True))
        return list(map(memo.__getitem__, ids))
    return list(map(_value_text, values))


def _float_texts(values: list[float]) -> list[str]:
    """json's text of each float. A value that recurs (equal, not only the same object:
    an exact estimate's zero standard errors) is formatted once; zeros apart, since 0.0
    equals -0.0 and their texts differ."""
    seen = set(values)
    if 2 * len(seen) <= len(values):
        if 0.0 not in seen:  # NaN is safe: each NaN object is its own key
            memo = {v: _NON_FINITE.get(t, t) for v in seen for t in (float.__repr__(v),)}
            return list(map(memo.__getitem__, values))
        if len(seen) == 1 and -1.0 not in map(math.copysign, repeat(1.0), values):
            return ["0.0"] * len(values)
    texts = list(map(float.__repr__, values))
    if not _NON_FINITE.keys().isdisjoint(texts):
        texts = [_NON_FINITE.get(t, t) for t in texts]
    return texts


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
