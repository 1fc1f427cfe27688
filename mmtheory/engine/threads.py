"""Thread pools of torch and of numpy's BLAS: pinned to the same count, or kept from fighting.

numpy's BLAS (OpenBLAS here) keeps its own thread pool beside torch's; left to their
defaults the two fight over the cores (the issue behind this module measured 153.7 s of CPU
for a sweep that needs 16.6 s). :func:`pin_threads` sets torch's intra-op threads and the
BLAS pool to the same count, through ``threadpoolctl`` when it is installed, else by
calling OpenBLAS's own ``*openblas_set_num_threads*`` in every OpenBLAS library the process
has loaded (the same thing threadpoolctl does). It returns how the BLAS was pinned, which
the benchmark records.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["blas_threads", "numpy_blas_threads", "pin_threads", "set_blas_threads"]

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_")
_GETTERS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_")


def _openblas_libs() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries mapped into this process (from ``/proc/self/maps``)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted(
        {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()} - {"[heap]"}
    )
    libs = []
    for p in paths:
        if ".so" in p:
            try:
                libs.append(ctypes.CDLL(p))
            except OSError:
                continue
    return libs


def _call(lib: ctypes.CDLL, names: tuple[str, ...], *args):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn(*args)
    return None


def blas_threads() -> int | None:
    """The thread count of numpy's OpenBLAS (the first one loaded), or None if unknown."""
    import numpy  # noqa: F401  (loads the BLAS)

    for lib in _openblas_libs():
        n = _call(lib, _GETTERS)
        if n is not None:
            return int(n)
    return None


def set_blas_threads(n: int) -> str:
    """Give numpy's BLAS ``n`` threads; returns how (``"threadpoolctl"``, ``"openblas"``,
    or ``"unpinned"`` where neither was possible)."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    import numpy  # noqa: F401  (loads the BLAS)

    try:
        from threadpoolctl import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
            threadpool_limits,
        )
    except ImportError:
        pinned = False
        for lib in _openblas_libs():
            for name in _SETTERS:
                setter = getattr(lib, name, None)
                if setter is not None:
                    setter(ctypes.c_int(n))
                    pinned = True
                    break
        return "openblas" if pinned else "unpinned"
    threadpool_limits(limits=n, user_api="blas")
    return "threadpoolctl"


def pin_threads(n: int) -> str:
    """Give torch and numpy's BLAS ``n`` threads each; returns how the BLAS was pinned
    (see :func:`set_blas_threads`)."""
    how = set_blas_threads(n)
    torch.set_num_threads(n)
    return how


@contextmanager
def numpy_blas_threads(n: int) -> Iterator[None]:
    """Run the block with numpy's BLAS at ``n`` threads, then restore its count.

    A sweep's arithmetic runs in torch; numpy only draws samples and evaluates oracles.
    Left at its default, OpenBLAS's threads spin between calls and take the cores from
    torch's (the issue behind this module: 153.7 s of CPU for 16.6 s of work)."""
    before = blas_threads()
    set_blas_threads(n)
    try:
        yield
    finally:
        if before is not None:
            set_blas_threads(before)
