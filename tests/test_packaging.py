"""What the package claims about itself holds: the Python it supports, the files a user
expects, a fast command line."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_requirement_is_what_ci_runs():
    """pyproject claims 3.11+ (the spec reader needs tomllib); CI runs a 3.11+ interpreter,
    so the claim is exercised, and 3.10 is not claimed."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"
    assert sys.version_info >= (3, 11)


def test_license_citation_and_changelog_ship():
    for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert (ROOT / name).is_file(), name
    from mmtheory import __version__

    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text()
    assert f'version: "{__version__}"' in (ROOT / "CITATION.cff").read_text()


def test_help_answers_without_importing_torch():
    code = (
        "import sys, mmtheory.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert time.perf_counter() - t0 < 5  # generous on a loaded machine; about 0.1 s idle
