"""The shipped example file runs as the README says, and the report lists every dead letter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.functions_host.settings import ROOT
from devhost.host import Host, RunConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_the_example_events_file_runs_and_its_dead_letters_are_listed_with_reasons(tmp_path: Path) -> None:
    example = ROOT / "examples" / "events.jsonl"
    lines = example.read_bytes().splitlines()
    cfg = RunConfig(
        source="jsonl",
        file=example,
        partitions=4,
        state_dir=tmp_path / "s",
        fresh=True,
        report_dir=tmp_path / "r",
        use_local_settings=False,
        progress=False,
    )
    result = Host(cfg).run()
    pipeline = result.summary["pipeline"]
    assert pipeline["events_in"] == len(lines)
    assert result.deadletters_file is not None
    rows = [json.loads(line) for line in result.deadletters_file.read_text().splitlines()]
    assert sum(pipeline["dead_lettered"].values()) == len(rows) == 5
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
        assert row["detail"] and row["rawPreview"] and row["sequenceNumber"] is not None
    assert by_reason == pipeline["dead_lettered"]
    report = json.loads(result.report_json.read_text()) if result.report_json else {}
    assert report["deadletters_file"] == str(result.deadletters_file)
    assert {"events_per_s", "deadletters_per_s", "backlog_events", "queued_operations"} <= set(
        report["timeseries"][0]
    )
