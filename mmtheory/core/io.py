"""Atomic file writes: a table or a text is either wholly written or not at all.

A write goes through ``NAME.HOST-PID.tmp`` and an atomic rename. A process killed between
the two (SIGKILL, a node failure) leaves that file behind; :func:`prepare_output_dir`
removes such leftovers of dead processes of this machine, and never touches those of
another machine (a shard on another node may be writing them on a shared file system).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import socket
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "owner_tag",
    "prepare_output_dir",
    "remove_stale_temporaries",
    "temporary_path",
    "csv_text",
    "write_csv_atomic",
    "write_text_atomic",
]

log = logging.getLogger("mmtheory")

_PROBE = ".mmtheory-write-test."


def owner_tag() -> str:
    """``HOST-PID`` of this process (the host name with anything but letters, digits and
    underscores replaced), which names its temporary files."""
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file of this process for an atomic write of ``path``; the host and
    process id keep shards that write the same table from sharing one."""
    path = Path(path)
    return path.with_name(f"{path.name}.{owner_tag()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``directory`` (atomic-write leftovers ``*.HOST-PID.tmp``
    and write probes) whose process, on this machine, is gone; return them. Files of live
    processes and of other machines are kept."""
    here = owner_tag().rpartition("-")[0]
    removed = []
    for path in Path(directory).iterdir():
        name = path.name
        if name.endswith(".tmp"):
            owner = name[: -len(".tmp")].rpartition(".")[2]
        elif name.startswith(_PROBE):
            owner = name[len(_PROBE) :]
        else:
            continue
        host, _, pid = owner.rpartition("-")
        if host != here or not pid.isdigit() or _alive(int(pid)) or not path.is_file():
            continue
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    if removed:
        log.info(
            "removed %d temporary file(s) in %s left by killed processes (%s)",
            len(removed),
            directory,
            ", ".join(p.name for p in removed[:3]),
        )
    return removed


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a CSV through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        text = csv_text(df)
        if text is None:
            df.to_csv(tmp, index=False)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def csv_text(df: pd.DataFrame) -> str | None:
    """``df.to_csv(index=False)``, byte for byte, in less than half its time on a sweep's
    results table; None for a frame it does not cover (the caller then uses pandas).

    Covered: two or more columns with string names, each of float64, integers, bools,
    or strings with missing values (written empty, as pandas does). pandas writes a
    float64 as numpy's shortest round-trip text, which is ``float.__repr__``; here each
    distinct value of a column (by bit pattern, so -0.0 and NaN stay apart) is formatted
    once, since a results table repeats its world's, subset's and size's values. Rows are
    joined directly unless a string holds a comma, a quote or a line break; then they go
    through the ``csv`` writer pandas itself uses, which quotes them."""
    names = list(df.columns)
    if isinstance(df.columns, pd.MultiIndex) or len(names) < 2 or len(set(names)) < len(names):
        return None
    if not all(type(c) is str for c in names):
        return None
    columns, plain = [], True
    for name in names:
        texts = _column_texts(df[name])
        if texts is None:
            return None
        columns.append(texts)
        plain = plain and not _needs_quotes(name)
        if plain and df[name].dtype.kind not in "fiub":
            plain = not _needs_quotes("".join(set(texts)))  # one pass over the distinct
    if plain:
        rows = "\n".join(map(",".join, zip(*columns, strict=True)))
        return ",".join(names) + "\n" + rows + "\n" if rows else ",".join(names) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*columns, strict=True))
    return buf.getvalue()


_QUOTED = frozenset(',"\r\n\0')


def _needs_quotes(text: str) -> bool:
    return not _QUOTED.isdisjoint(text)


def _column_texts(col: pd.Series) -> list[str] | None:
    """A column's CSV field texts, as pandas writes them (None: not covered)."""
    dtype = col.dtype
    numpy = isinstance(dtype, np.dtype)
    if numpy and (dtype.kind == "b" or (dtype.kind in "fiu" and dtype.itemsize == 8)):
        values = col.to_numpy()
        if dtype.kind == "f":
            values = values.astype(np.float64, copy=False)  # native byte order
            keys = values.view(np.int64)  # bit patterns: -0.0 and NaN apart from 0.0
            inverse, distinct = pd.factorize(keys)  # hashed: 3x np.unique's sort
            floats = np.asarray(distinct).view(np.float64)
            texts = np.array([float.__repr__(v) for v in floats.tolist()], dtype=object)
            texts[np.isnan(floats)] = ""
        else:
            inverse, distinct = pd.factorize(
                values.astype(values.dtype.newbyteorder("="), copy=False)
            )
            texts = np.array([str(v) for v in np.asarray(distinct).tolist()], dtype=object)
        return texts[inverse].tolist()
    if isinstance(dtype, pd.StringDtype) or (numpy and dtype.kind == "O"):
        values = col.to_numpy(dtype=object).tolist()
        if set(map(type, values)) == {str}:
            return values
        missing = col.isna().to_numpy()
        for i in np.flatnonzero(missing).tolist():
            values[i] = ""
        if set(map(type, values)) != {str}:
            return None  # the csv writer's own rules for other objects: let pandas write
        return values
    return None


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents) and prove it writable, before
    any work: a ValueError naming ``what``, the rule and the path otherwise (an empty path,
    an existing file, a directory that cannot be created or written)."""
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError(f"{what} must name a directory, got {text!r}")
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{what} must be a directory, but {str(out)!r} is an existing file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"{what}: cannot create directory {str(out)!r} ({err.strerror or err})"
        ) from None
    probe = out / f"{_PROBE}{owner_tag()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except OSError as err:
        raise ValueError(
            f"{what}: directory {str(out)!r} is not writable ({err.strerror or err})"
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    remove_stale_temporaries(out)
    return out
