"""Atomic file writes: a table or a text is either wholly written or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["prepare_output_dir", "write_csv_atomic", "write_text_atomic"]


def _temporary(path: Path) -> Path:
    # the process id keeps shards that write the same table from sharing a temporary file
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a CSV through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = _temporary(path)
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
    probe = out / f".mmtheory-write-test.{os.getpid()}"
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
    return out
