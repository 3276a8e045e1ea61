"""Daily summary aggregation (shared/summary.py): counts, rates, median, calibration, merging, days."""

from __future__ import annotations

import json
import random
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import summary
from shared.policy import ACTION_TYPES, RULES

STATUSES = ("pending", "accepted", "dismissed", "suppressed")


def doc(
    atype: str = "break_suggestion",
    status: str = "pending",
    score: float = 0.7,
    latency_ms: int | None = None,
    rule: str | None = None,
    hour: int = 3,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": atype,
        "status": status,
        "score": score,
        "features": [0.5] * 24,
        "modelVersion": "pi-test",
        "hour": hour,
    }
    if status == "suppressed":
        d["rejectedBy"] = rule or "cooldown"
    if latency_ms is not None:
        d["responseLatencyMs"] = latency_ms
    return d


def random_docs(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        status = rng.choice(STATUSES)
        out.append(
            doc(
                rng.choice(ACTION_TYPES),
                status,
                rng.random(),
                rng.randint(0, 4_000_000) if status in ("accepted", "dismissed") else None,
                rng.choice(RULES) if status == "suppressed" else None,
            )
        )
    return out


def test_counts_rates_and_rejections_per_type() -> None:
    docs = [
        doc(status="accepted", latency_ms=30_000, score=0.91),
        doc(status="accepted", latency_ms=60_000, score=0.95),
        doc(status="dismissed", latency_ms=10_000, score=0.62),
        doc(status="pending", score=0.66),
        doc(status="suppressed", rule="cooldown"),
        doc(status="suppressed", rule="daily_cap"),
        doc(status="suppressed", rule="cooldown"),
        doc("help_offer", "pending", 0.58),
        {"type": "mystery", "status": "pending"},
        doc(status="exploded"),
    ]
    partial = summary.aggregate(docs)
    rep = summary.report(partial)
    brk = rep["types"]["break_suggestion"]
    assert (brk["sent"], brk["accepted"], brk["dismissed"], brk["noResponse"]) == (4, 2, 1, 1)
    assert brk["acceptanceRate"] == 0.5
    assert brk["responseRate"] == 0.75
    assert brk["suppressed"] == 3
    assert brk["rejectionsByRule"] == {"cooldown": 2, "daily_cap": 1}
    assert rep["types"]["help_offer"]["sent"] == 1
    assert rep["types"]["bonus_offer"]["acceptanceRate"] is None
    assert (rep["documents"], rep["ignored"]) == (10, 2)
    # the median of 10 s, 30 s, 60 s is 30 s, known to within its quarter-octave bucket
    assert 30_000 / 2**0.25 <= brk["medianResponseMs"] <= 30_000 * 2**0.25
    cal = {c["decile"]: c for c in brk["calibration"] if c["count"]}
    assert cal[9]["count"] == 2 and cal[9]["acceptanceRate"] == 1.0 and cal[9]["meanScore"] == 0.93
    assert cal[6]["count"] == 2 and cal[6]["acceptanceRate"] == 0.0


def test_suppressed_aggregates_count_every_decision_they_stand_for() -> None:
    """An hourly aggregate counts ``count`` decisions; a per-decision document (written before the
    aggregates) counts one; a count that is not a positive integer counts one, never zero or more."""
    docs = [
        dict(doc(status="suppressed", rule="cooldown"), count=40, examples=[{"score": 0.9}]),
        dict(doc(status="suppressed", rule="daily_cap"), count=3),
        doc(status="suppressed", rule="cooldown"),
        dict(doc(status="suppressed", rule="opt_out"), count=0),
        dict(doc(status="suppressed", rule="opt_out"), count=True),
        dict(doc(status="suppressed", rule="opt_out"), count="7"),
        dict(doc(status="pending"), count=99),  # not suppressed: the count means nothing
    ]
    rep = summary.report(summary.aggregate(docs))["types"]["break_suggestion"]
    assert rep["suppressed"] == 40 + 3 + 1 + 3
    assert rep["rejectionsByRule"] == {"cooldown": 41, "daily_cap": 3, "opt_out": 3}
    assert rep["sent"] == 1
    assert summary.export_row(docs[0]) is None  # the export holds sent actions only
    assert "count" in summary.ACTION_FIELDS  # the hour's query reads it


def test_an_unknown_rule_is_counted_as_other() -> None:
    rep = summary.report(summary.aggregate([doc(status="suppressed", rule="new_rule")]))
    assert rep["types"]["break_suggestion"]["rejectionsByRule"] == {"other": 1}


def test_the_histogram_median_is_within_one_bucket_of_the_exact_median() -> None:
    rng = random.Random(3)
    for _ in range(50):
        latencies = [int(rng.lognormvariate(11, 1.5)) for _ in range(rng.randint(1, 301))]
        partial = summary.aggregate(doc(status="accepted", latency_ms=ms) for ms in latencies)
        approx = summary.report(partial)["types"]["break_suggestion"]["medianResponseMs"]
        exact = sorted(latencies)[(len(latencies) - 1) // 2]  # the lower median: the bucket holding half
        assert approx is not None
        assert max(exact, 1000) / 2**0.5 <= max(approx, 1000) <= max(exact, 1000) * 2**0.5


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 200), st.integers(1, 6))
def test_merging_partials_equals_aggregating_everything_in_any_split(seed: int, n: int, parts: int) -> None:
    rng = random.Random(seed)
    docs = random_docs(rng, n)
    cuts = sorted(rng.randint(0, n) for _ in range(parts - 1))
    pieces = [docs[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    partials = [summary.aggregate(p) for p in pieces]
    rng.shuffle(partials)
    merged = summary.merge_all(partials)
    whole = summary.aggregate(docs)
    assert summary.report(merged) == summary.report(whole)
    assert merged["types"].keys() == whole["types"].keys()


def test_a_partial_has_the_same_size_for_ten_or_ten_thousand_documents() -> None:
    rng = random.Random(1)
    small = json.dumps(summary.aggregate(random_docs(rng, 10)))
    big = json.dumps(summary.aggregate(random_docs(rng, 10_000)))
    # Only the digits of the counters and sums differ.
    assert len(big) < len(small) * 1.5
    assert len(big) < 8_000


def test_latency_buckets() -> None:
    assert summary.latency_bucket(0) == 0
    assert summary.latency_bucket(999) == 0
    assert summary.latency_bucket(1000) == 1
    assert summary.latency_bucket(1_190) == 2  # 2 ** 0.25 s = 1.189 s starts bucket 2
    assert summary.latency_bucket(10**12) == summary.LATENCY_BUCKETS - 1
    for k in range(1, summary.LATENCY_BUCKETS - 1):
        low, high = summary.bucket_bounds_s(k)
        assert summary.latency_bucket(int(low * 1000) + 1) == k
        assert summary.latency_bucket(int(high * 1000) - 1) == k


def test_deciles_are_fixed_score_bins() -> None:
    assert [summary.decile(s) for s in (0.0, 0.099, 0.1, 0.55, 0.999, 1.0)] == [0, 0, 1, 5, 9, 9]


def test_days_ids_and_validation() -> None:
    assert summary.parse_day("2026-11-26", date(2026, 11, 27)) == date(2026, 11, 26)
    assert summary.parse_day("2026-11-27", date(2026, 11, 27)) == date(2026, 11, 27)
    # 2026-W48-4 is ten characters that date.fromisoformat (3.11) reads as an ISO week date
    for bad in ("2026-11-28", "2026-13-01", "26-11-26", "2026-11-26T00", "", "yesterday", "2026-W48-4"):
        with pytest.raises(summary.BadDay):
            summary.parse_day(bad, date(2026, 11, 27))
    # 2026-11-27T00:10Z: yesterday is the 26th whatever the machine's time zone
    now_ms = 1_795_738_200_000
    assert summary.utc_today(now_ms) == date(2026, 11, 27)
    assert summary.yesterday(now_ms) == "2026-11-26"
    assert summary.instance_id("2026-11-26") == "summary-2026-11-26"
    assert summary.part_id("2026-11-26", 7) == "2026-11-26.hour-07"


def test_export_rows_carry_features_action_outcome_and_no_identifiers() -> None:
    full = {**doc(status="accepted", latency_ms=5), "id": "act-1", "playerId": "player-1"}
    row = summary.export_row(full)
    assert row == {
        "action": "break_suggestion",
        "outcome": "accepted",
        "score": 0.7,
        "modelVersion": "pi-test",
        "features": [0.5] * 24,
    }
    assert summary.export_row(doc(status="pending"))["outcome"] == "none"  # type: ignore[index]
    assert summary.export_row(doc(status="suppressed")) is None
    assert summary.export_row({"type": "break_suggestion", "status": "pending"}) is None
