"""Shared fixtures.

``seed``: seeded statistical tests must pass for any seed, not a lucky one. The
default is fixed; ``MMTHEORY_TEST_SEEDS=0-19`` (or ``3,7``) runs each such test
over many seeds (sklearn's ``random_seed`` fixture does the same).
"""

from __future__ import annotations

import os

import pytest


def _seeds() -> list[int]:
    spec = os.environ.get("MMTHEORY_TEST_SEEDS", "0")
    if "-" in spec:
        lo, hi = spec.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in spec.split(",")]


@pytest.fixture(params=_seeds())
def seed(request) -> int:
    return request.param
