"""The workbook charts exactly the metrics the code emits: names cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from shared import telemetry

WORKBOOK = Path(__file__).resolve().parents[2] / "bicep" / "modules" / "monitoring.bicep"
METRIC_RE = re.compile(r'"(pi\.[a-z_.]+)"')


def queried_metrics(source: str) -> set[str]:
    return set(METRIC_RE.findall(source))


def test_every_queried_metric_is_emitted() -> None:
    unknown = queried_metrics(WORKBOOK.read_text()) - set(telemetry.METRIC_NAMES)
    assert unknown == set()


def test_every_emitted_metric_is_charted() -> None:
    missing = set(telemetry.METRIC_NAMES) - queried_metrics(WORKBOOK.read_text())
    assert missing == set()


def test_checker_catches_a_typo() -> None:
    bad = """query: 'customMetrics | where name == "pi.actionz" | render timechart'"""
    assert queried_metrics(bad) - set(telemetry.METRIC_NAMES) == {"pi.actionz"}
