"""scripts/summary_report.py and `python -m devhost summary`: the table and the PNG of a day's summary."""

from __future__ import annotations

import json
import random
from pathlib import Path

from devhost.cli import main as devhost_main
from scripts import summary_report
from shared import summary
from tests.unit.test_summary import random_docs


def index_doc() -> dict:
    partial = summary.aggregate(random_docs(random.Random(5), 400))
    return summary.index_document("2030-03-14", partial, [], [], "summary-2030-03-14", "2030-03-15T00:30:00")


def test_the_table_has_a_line_per_action_type_with_counts_and_rates() -> None:
    doc = index_doc()
    text = summary_report.render_table(doc)
    rep = doc["summary"]["types"]["break_suggestion"]
    line = next(x for x in text.splitlines() if x.strip().startswith("break_suggestion") and "%" in x)
    assert str(rep["sent"]) in line and f"{100 * rep['acceptanceRate']:.1f}%" in line
    assert "rejections by rule" in text and "calibration" in text


def test_the_devhost_summary_command_prints_the_table_and_writes_the_png(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "summary-2030-03-14.json"
    report.write_text(json.dumps({"day": "2030-03-14", "index": index_doc()}), encoding="utf-8")
    png = tmp_path / "chart.png"
    assert devhost_main(["summary", "--json", str(report), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "daily summary 2030-03-14" in out and str(png) in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
