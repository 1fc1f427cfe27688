"""The kill campaign (benchmarks/kill_campaign.py): its checks can fail (always run), and
its smoke run, 2 kills on a 15-run closed-form grid, counts nothing (about 30 s of CPU, so
only with MMTHEORY_KILL_SMOKE=1; 59 s wall on the loaded 2-core machine). The full
campaign is rerun by hand; its counts are in benchmarks/reliability.md."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _campaign():
    spec = importlib.util.spec_from_file_location(
        "kill_campaign", ROOT / "benchmarks" / "kill_campaign.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_campaign", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("MMTHEORY_KILL_SMOKE") != "1",
    reason="about 30 s of CPU (five start-ups of torch): set MMTHEORY_KILL_SMOKE=1 to run",
)
def test_two_kills_lose_nothing_and_match_the_uninterrupted_run(tmp_path):
    campaign = _campaign()
    argv = ["--scenarios", "table4", "--tiny", "--kills", "2", "--seed", "3"]
    assert campaign.main([*argv, "--out", str(tmp_path)]) == 0
    total = json.loads((tmp_path / "summary.json").read_text())["total"]
    assert total["kills"] + total["missed"] >= 2 and total["rounds"] >= 1
    for key in ("lost", "duplicated", "mismatches", "tracebacks", "bad_exits", "stray_files"):
        assert total[key] == 0, (key, total)


def test_the_campaign_checks_can_fail(tmp_path):
    """Negative controls of the checks: a duplicated record, a cut-short line, a changed
    number and a stray temporary file are each seen; a changed timing is not a mismatch."""
    campaign = _campaign()
    out = tmp_path / "o"
    out.mkdir()
    line = '{"run_id": "a", "x": 1}\n'
    (out / "records.jsonl").write_text(line + line + '{"run_id": "b"')
    counts, partial = campaign.finished_records(out)
    assert counts == {"a": 2} and partial == 1  # a duplicated run, a cut-short line
    (out / "results.csv.host-1.tmp").write_text("x")
    (out / ".mmtheory-write-test.host-2").write_text("x")
    assert campaign.stray_files(out) == [".mmtheory-write-test.host-2", "results.csv.host-1.tmp"]
    pd.DataFrame({"run_id": ["a"], "eta": [0.1], "wall_s": [1.0]}).to_csv(out / "results.csv")
    ref = campaign.numbers(out)
    pd.DataFrame({"run_id": ["a"], "eta": [0.1 + 1e-16], "wall_s": [2.0]}).to_csv(
        out / "results.csv"
    )
    assert not campaign.numbers(out).equals(ref)  # one ulp differs: a mismatch
    pd.DataFrame({"run_id": ["a"], "eta": [0.1], "wall_s": [3.0]}).to_csv(out / "results.csv")
    assert campaign.numbers(out).equals(ref)  # the timing column alone: no mismatch
