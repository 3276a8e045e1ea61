"""Observability through the devhost: connected traces and metrics that match the facts.

A real SDK TracerProvider with an in-memory exporter (tests/conftest.py) and
the devhost's own MeterProvider; the workload is seeded, with malformed
messages mixed in, and ~5% of its events carry a W3C traceparent.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from devhost.db import DevDB
from shared.config import CosmosSettings
from shared.events import Dropped, PlayerEvent, Rejected, parse
from shared.store import ActionStore
from tests.e2e.test_devhost_e2e import oracle, run_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(120)]


def test_each_action_is_one_trace_from_ingest_to_the_cosmos_write(
    tmp_path: Path, cosmos_settings: CosmosSettings, app_env: dict[str, str], spans
) -> None:
    run_devhost(tmp_path, cosmos_settings, "traced", players=40)
    rows = list(
        ActionStore(cosmos_settings).actions.query_items(
            "SELECT * FROM c WHERE c.status != 'suppressed'", enable_cross_partition_query=True
        )
    )
    traced = [r for r in rows if r.get("traceparent")]
    assert traced, "the seeded workload should give at least one action whose trigger carried a traceparent"
    finished = spans.get_finished_spans()
    for action in traced:
        _, trace_hex, producer_span, _ = action["traceparent"].split("-")
        in_trace = [s for s in finished if f"{s.context.trace_id:032x}" == trace_hex]
        ids = {s.context.span_id: s for s in in_trace}
        writes = [
            s
            for s in in_trace
            if s.name == "cosmos.create action" and s.attributes["pi.action.id"] == action["id"]
        ]
        assert len(writes) == 1, f"one write span for {action['id']}"
        span, hops = writes[0], ["cosmos.create action"]
        while span.parent is not None and span.parent.span_id in ids:
            span = ids[span.parent.span_id]
            hops.append(span.name)
        # Connected all the way: write <- entity.event [<- signal] <- ingest.event <- the producer's span.
        assert hops[1] == "entity.event" and hops[-1] == "ingest.event", hops
        assert f"{span.parent.span_id:016x}" == producer_span
        assert span.attributes["cloudevents.event_id"] == action["triggerEventId"]
        entity = next(s for s in in_trace if s.name == "entity.event")
        assert entity.attributes["pi.policy.outcome"] == action["type"]
        assert any(s.name == "model.score" and s.parent.span_id == entity.context.span_id for s in in_trace)

    # What `python -m devhost run --show-trace` prints: one of these traces as a tree.
    from devhost import traces

    text = traces.render(traces.action_trace(finished))
    lines = [line.strip().split()[0] for line in text.splitlines()[2:]]
    assert lines[0] == "ingest.event" and "entity.event" in lines and lines[-1] == "cosmos.create"


def test_metrics_after_a_seeded_run_equal_the_counts_of_what_happened(
    tmp_path: Path, cosmos_settings: CosmosSettings, app_env: dict[str, str]
) -> None:
    result = run_devhost(tmp_path, cosmos_settings, "counted", players=30, bad_share=0.004)
    pipeline = result.summary["pipeline"]  # read from the OpenTelemetry instruments

    db = DevDB(tmp_path / "counted")
    try:
        logged = db.all_events()
    finally:
        db.close()
    now = int(time.time() * 1000)
    dropped: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    players = set()
    for e in logged:
        verdict = parse(e.body, now_ms=now, partition=e.partition, sequence=e.seq)
        if isinstance(verdict, Dropped):
            dropped[verdict.type] += 1
        elif isinstance(verdict, Rejected):
            rejected[verdict.reason] += 1
        elif isinstance(verdict, PlayerEvent):
            players.add(verdict.player_id)
    store = ActionStore(cosmos_settings)
    dead = Counter(
        r["reason"]
        for r in store.deadletters.query_items("SELECT c.reason FROM c", enable_cross_partition_query=True)
    )
    actions = Counter(
        r["type"]
        for r in store.actions.query_items(
            "SELECT c.type FROM c WHERE c.status IN ('pending', 'accepted', 'dismissed')",
            enable_cross_partition_query=True,
        )
    )

    assert pipeline["events_in"] == len(logged)
    assert pipeline["dropped"] == dict(dropped) and sum(dropped.values()) > 0
    assert pipeline["dead_lettered"] == dict(rejected) == dict(dead) and len(rejected) >= 4
    sent = [a for a in oracle(tmp_path / "counted") if a[4] == "pending"]
    assert pipeline["actions"] == dict(actions) and sum(actions.values()) == len(sent)
    assert pipeline["signals"] == pipeline["entity_operations"] >= len(players)
    assert pipeline["duplicates"] == 0 and pipeline["write_failures"] == 0
    assert pipeline["latency_ms"]["count"] == sum(actions.values())
