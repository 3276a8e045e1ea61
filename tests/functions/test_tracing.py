"""One connected trace per event, from the CloudEvent's traceparent to the Cosmos write.

Real SDK TracerProvider with an in-memory exporter; the functions are the real
ones (ingest through the real DurableOrchestrationClient, the entity through
the SDK's batch protocol). Only the extension's webhook is captured in-process.
"""

from __future__ import annotations

import json

import pytest

from shared.store import ActionStore
from tests.apphost import Capture, call_entity, hub_events, run_ingest, sent_signal
from tests.helpers import NOW_MS, body, cloud_event

pytestmark = pytest.mark.cosmos
PRODUCER_SPAN = "00f067aa0ba902b7"


def trace_id(i: int) -> str:
    return f"{0xABC000 + i:032x}"


def tilting_raws(player: str, start: int) -> list[bytes]:
    def ev(kind: str, i: int, at: int, data: dict) -> bytes:
        tp = f"00-{trace_id(i)}-{PRODUCER_SPAN}-01"
        return body(cloud_event(kind, player, event_id=f"e{i}", at_ms=at, data=data, traceparent=tp))

    raws = [ev("session.started", 0, start, {})]
    for i in range(1, 41):
        at = start + i * 15_000
        raws.append(
            ev("round.completed", i, at, {"stake": 5.0 * (1 + i / 4), "payout": 0.0, "game": "slots"})
        )
        if i % 6 == 0:
            raws.append(ev("deposit.made", 100 + i, at + 500, {"amount": 50.0}))
    return raws


def test_event_to_action_is_one_trace(app_env, store: ActionStore, spans) -> None:
    now = NOW_MS
    raws = tilting_raws("tracy", now - 3600_000)
    capture = Capture()
    run_ingest(hub_events(raws, seq0=10), capture, partition="3")
    [(_, data)] = capture.signals()
    out = call_entity("tracy", None, [("events", json.loads(data))])  # the encoded signal as sent
    assert not out.results[0]["isError"]

    actions = [a for a in store.player_actions("tracy") if a["status"] != "suppressed"]
    assert actions, "a forty-round tilting session should produce an action"
    finished = spans.get_finished_spans()
    for action in actions:
        tid = action["traceparent"].split("-")[1]
        in_trace = [s for s in finished if f"{s.context.trace_id:032x}" == tid]
        ids = {s.context.span_id: s for s in in_trace}
        by_name = {s.name: s for s in in_trace}
        assert set(by_name) >= {"ingest.event", "entity.event", "model.score", "cosmos.create action"}

        ingest = by_name["ingest.event"]
        assert f"{ingest.parent.span_id:016x}" == PRODUCER_SPAN
        assert ingest.attributes["messaging.destination.partition.id"] == "3"
        assert ingest.attributes["cloudevents.event_id"] == action["triggerEventId"]
        assert ingest.attributes["pi.player"] != "tracy"  # hashed by default
        entity = by_name["entity.event"]
        assert entity.attributes["pi.policy.outcome"] == action["type"]
        assert entity.attributes["pi.model.version"] == action["modelVersion"]
        assert by_name["model.score"].parent.span_id == entity.context.span_id
        write = by_name["cosmos.create action"]
        assert write.parent.span_id == entity.context.span_id
        assert write.attributes["pi.action.id"] == action["id"]

        # Walk up from the write: each hop's parent is in this trace, up to the producer's span.
        span, hops = write, [write.name]
        while span.parent is not None and span.parent.span_id in ids:
            span = ids[span.parent.span_id]
            hops.append(span.name)
        assert hops[-1] == "ingest.event" and f"{span.parent.span_id:016x}" == PRODUCER_SPAN
        assert hops[:2] == ["cosmos.create action", "entity.event"]


def test_events_without_traceparent_cost_no_span_and_no_extra_bytes(app_env, spans) -> None:
    now = NOW_MS
    capture = Capture()
    run_ingest(
        hub_events([body(cloud_event(player="nobody", at_ms=now - 1000))], seq0=1), capture, partition="0"
    )
    assert spans.get_finished_spans() == ()
    [(_, data)] = capture.signals()
    assert sent_signal(data).events[0].tc is None
