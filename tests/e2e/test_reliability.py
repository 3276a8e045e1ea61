"""``make reliability`` at the small size: every scenario passes, and nothing is lost or doubled.

The full size (``make reliability``) runs the same scenarios with more players, more kills, a
longer outage and 10,000 fuzz cases; its report is described in docs/reliability.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import reliability

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(900)]


def test_every_reliability_scenario_passes_at_the_quick_size(tmp_path: Path) -> None:
    assert reliability.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "reliability.json").read_text())
    assert report["lost"] == 0 and report["duplicated"] == 0
    names = {s["name"] for s in report["scenarios"]}
    assert len(names) == len(reliability.SCENARIOS) and all(s["passed"] for s in report["scenarios"])
    assert report["crashes"] >= 1 and report["replays"] >= 1 and report["fuzz_cases"] >= 400
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
