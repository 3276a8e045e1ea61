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


def outcome_index() -> dict:
    """An index with decisions of both groups (closed) and a challenger that disagrees once."""
    from tests.unit.test_summary_uplift import DAY, decision, shadow

    docs = [decision(met=i < 14) for i in range(20)] + [
        decision(group="holdout", met=i < 5) for i in range(20)
    ]
    pairs = [("help_offer", "help_offer"), ("help_offer", "none")]
    docs.append(shadow(pairs, [0.8, 0.7], [0.9, 0.4], {"min_score": 1}))
    partial = summary.aggregate(docs, summary.final_at_ms(DAY))
    return summary.index_document(DAY, partial, [], [], "run-7", "at", summary.final_at_ms(DAY))


def test_the_table_prints_the_uplift_and_the_challenger() -> None:
    doc = outcome_index()
    text = summary_report.render_table(doc)
    o = doc["summary"]["types"]["break_suggestion"]["outcome"]
    line = next(x for x in text.splitlines() if "session_end_15m" in x)
    low, high = o["ci95"]
    assert f"{o['uplift']:+.3f}" in line and f"[{low:+.3f}, {high:+.3f}]" in line
    assert line.split()[2:6] == ["20", "0.700", "20", "0.250"]
    assert "run run-7" in text and "final" in text
    assert "challenger in shadow (m1 vs m2): 2 triggers scored by both, agreement 50.0%" in text
    assert "where they differ, by rule: min_score 1" in text


def test_the_png_has_the_uplift_panel(tmp_path: Path) -> None:
    png = summary_report.write_png(outcome_index(), tmp_path / "u.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
