"""The real function app, hosted as the platform hosts it (tests/apphost.py).

Nothing here is mocked except the Durable extension's HTTP endpoint, which
cannot run without the Functions host: the real DurableOrchestrationClient is
built from a binding JSON and its module-level request function is swapped
for an in-process capture (devhost.durable.protocol.client_transport). Every time is
relative to the injected clock (the ``app_env`` fixture), never today's date.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest

import function_app
from devhost.durable import protocol
from functions import ingest
from shared import runtime, signals
from shared.entity import id_hash
from shared.store import ActionStore
from tests.apphost import (
    APP_FUNCTIONS,
    BASE,
    Capture,
    call_entity,
    hub_events,
    run_ingest,
    sent_signal,
    stored,
)
from tests.helpers import NOW_MS, body, cloud_event

pytestmark = pytest.mark.cosmos


@functools.cache
def functions_by_name() -> dict[str, Any]:
    """Index once, as the worker does (a second get_functions() call re-validates and fails)."""
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings(name: str) -> list[dict[str, Any]]:
    return json.loads(functions_by_name()[name].get_function_json())["bindings"]


def test_app_indexes_the_expected_functions() -> None:
    assert set(functions_by_name()) == APP_FUNCTIONS


def test_ingest_bindings_use_settings_and_identity_prefix() -> None:
    trig = next(b for b in bindings("ingest") if b["type"] == "eventHubTrigger")
    assert trig["cardinality"] == "MANY"
    assert trig["eventHubName"] == "%EVENTHUB_NAME%"
    assert trig["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    assert trig["connection"] == "EventHubConnection"  # + __fullyQualifiedNamespace in Azure
    assert any(b["type"] == "durableClient" for b in bindings("ingest"))
    assert trig["dataType"] == "BINARY"  # bodies byte-exact; the host parses nothing (docs/platform.md)
    retry = functions_by_name()["ingest"].get_settings_dict("retry_policy")
    # The host retries for ever; the function parks the batch after INGEST_PARK_AFTER_RETRIES.
    assert retry["strategy"] == "exponential_backoff" and retry["max_retry_count"] == "-1"


def test_entity_and_http_bindings() -> None:
    assert bindings("player") == [
        {"direction": "IN", "type": "entityTrigger", "name": "context", "entityName": "Player"}
    ]
    get = next(b for b in bindings("get_player") if b["type"] == "httpTrigger")
    assert (
        get["route"] == "players/{playerId}" and get["methods"] == ["GET"] and get["authLevel"] == "FUNCTION"
    )
    erase = next(b for b in bindings("erase_player") if b["type"] == "httpTrigger")
    assert erase["methods"] == ["DELETE"] and erase["authLevel"] == "FUNCTION"
    health = next(b for b in bindings("health") if b["type"] == "httpTrigger")
    assert health["authLevel"] == "ANONYMOUS"


def test_ingest_signals_one_entity_per_player_and_dead_letters_bad_input(
    app_env: dict[str, str], store: ActionStore
) -> None:
    now = NOW_MS
    good = [
        cloud_event(player="alice", event_id="a1", at_ms=now - 3000),
        cloud_event(player="bob", event_id="b1", at_ms=now - 2500),
        cloud_event(player="alice", event_id="a2", at_ms=now - 2000),
    ]
    bad_id = cloud_event(player="eve/../admin", event_id="x1", at_ms=now)
    future = cloud_event(player="carol", event_id="f1", at_ms=now + 3600_000)
    raws = [
        body(good[0]),
        b"{not json",
        body(good[1]),
        body(cloud_event("heartbeat", data={}, at_ms=now)),
        body(bad_id),
        b"\xff\xfe",
        body(good[2]),
        body(future),
    ]
    capture = Capture()
    run_ingest(hub_events(raws, seq0=100), capture, partition="7")

    urls = sorted(url for url, _ in capture.signals())
    rpc = BASE + protocol.WEBHOOK_PATH
    assert urls == [rpc + "entities/Player/alice?op=events", rpc + "entities/Player/bob?op=events"]
    payloads = {protocol.parse_entity_url(url).key: json.loads(data) for url, data in capture.signals()}
    assert all(p.startswith("s2:") for p in payloads.values())  # a versioned, pre-encoded signal
    alice = signals.decode(payloads["alice"])
    assert [e.id for e in alice.events] == ["a1", "a2"]
    assert (alice.events[0].p, alice.events[0].s) == ("7", 100)
    assert alice.ranges == [("7", 100, 107)]

    rows = list(store.deadletters.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    reasons = sorted((r["reason"], r["sequenceNumber"]) for r in rows)
    assert reasons == [
        ("future_time", 107),
        ("invalid_player_id", 104),
        ("malformed_json", 101),
        ("not_utf8", 105),
    ]
    future_row = next(r for r in rows if r["reason"] == "future_time")
    assert future_row["playerId"] == "carol" and future_row["eventId"] == "f1"


def test_ingest_replay_writes_the_same_dead_letters_once(app_env: dict[str, str], store: ActionStore) -> None:
    events = hub_events([b"oops"], seq0=5)
    run_ingest(events, Capture(), partition="1")
    run_ingest(events, Capture(), partition="1")
    rows = list(store.deadletters.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert len(rows) == 1


# How a refused signal shows: the client's own error, or the delivery orchestration's.
REFUSED = "unexpected status code 500|delivery orchestration .* not started"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("client", "unexpected status code 500"),
        ("orchestration", "delivery orchestration signals-.* not started"),
    ],
)
def test_ingest_raises_when_the_signal_is_refused_so_the_batch_is_retried(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, path: str, message: str
) -> None:
    monkeypatch.setenv("SIGNAL_PATH", path)
    runtime.reset()
    with pytest.raises(Exception, match=message):
        run_ingest(hub_events([body(cloud_event(at_ms=NOW_MS - 1000))], seq0=1), Capture(500), partition="0")


@pytest.mark.parametrize("status", ["Running", "Pending"])
def test_a_redelivered_batch_whose_delivery_is_under_way_is_done(
    app_env: dict[str, str], status: str
) -> None:
    """Starting an instance id that is Running or Pending answers 500 (platform.md); the same id
    means the same events, so the delivery under way carries them and the batch succeeds."""
    capture = Capture(500, instance_status=status)
    run_ingest(hub_events([body(cloud_event(at_ms=NOW_MS - 1000))], seq0=1), capture, partition="0")
    [(name, instance_id, _)] = capture.starts()
    assert name == "deliver_signals" and capture.gets and instance_id in capture.gets[0]


def test_a_refused_start_whose_instance_is_not_under_way_fails_the_batch(app_env: dict[str, str]) -> None:
    with pytest.raises(Exception, match="not started"):
        run_ingest(
            hub_events([body(cloud_event(at_ms=NOW_MS - 1000))], seq0=1),
            Capture(500, instance_status="Failed"),
            partition="0",
        )


def test_the_delivery_instance_is_the_batch_so_a_redelivery_starts_the_same_one(
    app_env: dict[str, str],
) -> None:
    raws = [
        body(cloud_event(player=p, event_id=f"{p}{i}", at_ms=NOW_MS - 1000)) for i, p in enumerate("abcab")
    ]
    first, again, later = Capture(), Capture(), Capture()
    run_ingest(hub_events(raws, seq0=40), first, partition="3")
    run_ingest(hub_events(raws, seq0=40), again, partition="3")
    run_ingest(hub_events(raws, seq0=45), later, partition="3")
    assert [i for _, i, _ in first.starts()] == [i for _, i, _ in again.starts()]
    assert [i for _, i, _ in first.starts()] != [i for _, i, _ in later.starts()]
    assert sorted(protocol.parse_entity_url(u).key for u, _ in first.signals()) == ["a", "b", "c"]


def test_a_large_batch_is_split_into_deliveries_under_the_payload_cap() -> None:
    items = [[f"p{i}", "s2:" + "x" * 3000] for i in range(200)]
    chunks = ingest.delivery_chunks(items, limit=64 * 1024)
    assert [pair for c in chunks for pair in c] == items  # all of them, in order
    assert len(chunks) > 1 and all(len(json.dumps(c)) <= 64 * 1024 for c in chunks)
    assert ingest.delivery_chunks([["p", "s2:" + "y" * 100_000]], limit=1000) == [
        [["p", "s2:" + "y" * 100_000]]
    ]


def v2(events: list[dict[str, Any]]) -> str:
    """Events written in the compact v1 form, as ingest signals them now (an encoded signal)."""
    return signals.encode(signals.Signal([signals.from_v1(e) for e in events]))


def tilting_events(n: int, start_ms: int, seq0: int = 0) -> list[dict[str, Any]]:
    evs = [{"id": "ts", "type": "session.started", "t": start_ms, "d": {}, "p": "0", "s": seq0}]
    for i in range(n):
        evs.append(
            {
                "id": f"tr{i}",
                "type": "round.completed",
                "t": start_ms + (i + 1) * 15_000,
                "d": {"stake": 5.0 * (1 + i / 4), "payout": 0.0, "game": "slots"},
                "p": "0",
            }
        )
        if i % 6 == 5:
            evs.append(
                {
                    "id": f"td{i}",
                    "type": "deposit.made",
                    "t": start_ms + (i + 1) * 15_000 + 500,
                    "d": {"amount": 50.0},
                    "p": "0",
                }
            )
    for k, ev in enumerate(evs):  # sequence numbers follow arrival order, as in a partition
        ev["s"] = seq0 + k
    return evs


def test_entity_runs_through_the_sdk_batch_protocol(app_env: dict[str, str], store: ActionStore) -> None:
    now = NOW_MS
    events = tilting_events(40, now - 3600_000)
    out = call_entity("tilty", None, [("events", v2(events[:20])), ("events", v2(events[20:]))])
    assert out.exists and [r["isError"] for r in out.results] == [False, False]
    assert json.loads(out.state).startswith("p2:")  # one compact string through the protocol
    state = stored(out.state)
    assert len(state["buf"]) == len(events)
    assert state.get("outbox", []) == []  # every decision was written
    docs = store.player_actions("tilty")
    actions = [a for a in docs if a["status"] != "suppressed"]
    assert actions, "a forty-round tilting session should produce at least one action"
    assert all(a["playerId"] == "tilty" and a["status"] == "pending" for a in actions)
    assert all(len(a["features"]) == 24 and a["day"] and 0 <= a["hour"] < 24 for a in actions)
    assert len({(a["triggerEventId"], a["type"]) for a in actions}) == len(actions)
    # Suppressed candidates: one aggregate per (hour, type, rule), counted, with examples.
    suppressed = [a for a in docs if a["status"] == "suppressed"]
    assert suppressed and all(a["rejectedBy"] and a["count"] >= 1 for a in suppressed)
    assert all(len(e["features"]) == 24 for a in suppressed for e in a["examples"])
    assert len({(a["day"], a["hour"], a["type"], a["rejectedBy"]) for a in suppressed}) == len(suppressed)
    counts = {a["id"]: a["count"] for a in suppressed}
    # The extension re-runs a batch that failed as a whole from the state before it: the aggregates
    # are rewritten with the same counts, not incremented again.
    rerun = call_entity("tilty", None, [("events", v2(events[:20])), ("events", v2(events[20:]))])
    assert [r["isError"] for r in rerun.results] == [False, False]
    after = store.player_actions("tilty")
    assert {a["id"]: a["count"] for a in after if a["status"] == "suppressed"} == counts
    # Replaying the same operations on the stored state writes nothing new.
    again = call_entity("tilty", out.state, [("events", v2(events))])
    assert json.loads(again.results[0]["result"]) == {"accepted": 0, "duplicates": len(events)}
    assert sorted(a["id"] for a in store.player_actions("tilty")) == sorted(a["id"] for a in docs)
    assert stored(again.state)["buf"] == state["buf"]


def test_a_version_1_state_and_signal_from_an_older_deployment_are_read(
    app_env: dict[str, str], store: ActionStore
) -> None:
    """A state stored as a JSON object (version 1: buffer entries ``[t, kind, a, b, id, partition,
    sequence]``, the day as text) and signals as JSON objects still apply after an upgrade; the
    buffered ids still catch a producer's duplicates."""
    events = tilting_events(40, NOW_MS - 3600_000)
    kinds = {"session.started": 0, "round.completed": 2, "deposit.made": 3}
    v1_buf = [
        [e["t"], kinds[e["type"]], e["d"].get("stake", e["d"].get("amount", 0.0)), 0.0, e["id"], "0", e["s"]]
        for e in events[:20]
    ]
    v1_state = {"v": 1, "buf": v1_buf, "agg": {"events": 20, "sessions": 1}, "day": "2026-11-21"}
    resent = [{k: v for k, v in e.items() if k not in ("p", "s")} for e in events[:20]]  # no position
    out = call_entity(
        "old", json.dumps(v1_state), [("events", {"v": 1, "events": resent}), ("events", v2(events[20:]))]
    )
    results = [json.loads(r["result"]) for r in out.results]
    rest = len(events) - 20
    assert results == [{"accepted": 0, "duplicates": 20}, {"accepted": rest, "duplicates": 0}]
    after = stored(out.state)
    assert json.loads(out.state).startswith("p2:") and len(after["buf"]) == len(events)
    assert after["agg"]["events"] == len(events) and after["day_ms"] > 0


def test_a_signal_of_an_unknown_version_is_refused_and_counted_not_applied(app_env: dict[str, str]) -> None:
    out = call_entity("future", None, [("events", "s9:AAAA"), ("events", {"v": 3, "events": []})])
    assert [json.loads(r["result"]) for r in out.results] == [
        {"error": "unsupported_signal_version: signal version 's9'"},
        {"error": "unsupported_signal_version: signal version 3"},
    ]
    assert not out.state or stored(out.state).get("buf", []) == []


def test_erasure_deletes_history_and_actions_and_replays_cannot_rebuild_them(
    app_env: dict[str, str], store: ActionStore
) -> None:
    now = NOW_MS
    events = tilting_events(40, now - 3600_000)
    for e in events:
        e["q"] = now - 1000  # enqueued before the erasure
    out = call_entity("gone", None, [("events", {"v": 1, "events": events})])
    assert store.player_actions("gone")
    erased = call_entity("gone", out.state, [("erase", {"requested": True})])
    tomb = stored(erased.state)
    assert not tomb.get("buf") and not tomb["agg"] and not tomb.get("outbox") and tomb["erased_ms"] >= now
    assert store.player_actions("gone") == []
    # A redelivered (or reordered) signal from before the erasure is dropped, not replayed.
    replay = call_entity("gone", erased.state, [("events", {"v": 1, "events": events})])
    assert not stored(replay.state).get("buf") and store.player_actions("gone") == []
    # Events enqueued after the erasure start a new history.
    fresh = [
        {"id": "new-1", "type": "session.started", "t": now, "d": {}, "p": "0", "s": 5000, "q": now + 60_000}
    ]
    after = call_entity("gone", replay.state, [("events", {"v": 1, "events": fresh})])
    assert [e[4] for e in stored(after.state)["buf"]] == [id_hash("new-1")]


def test_entity_keeps_unwritten_actions_in_the_outbox(app_env: dict[str, str], monkeypatch) -> None:
    """Cosmos unreachable: the action stays in the state's outbox and is written on the next operation."""
    from shared import runtime

    now = NOW_MS
    good_endpoint = app_env["COSMOS_ENDPOINT"]
    monkeypatch.setenv("COSMOS_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    runtime.reset()
    out = call_entity("later", None, [("events", {"v": 1, "events": tilting_events(40, now - 3600_000)})])
    pending = stored(out.state)["outbox"]
    # The documents are written together (the local server runs no batches: concurrently), so each
    # was tried once and failed; they wait for a reminder or the next operation.
    assert len(pending) >= 2 and all(i["attempts"] == 1 for i in pending)

    monkeypatch.setenv("COSMOS_ENDPOINT", good_endpoint)
    runtime.reset()
    more = [{"id": "late-1", "type": "bonus.claimed", "t": now - 1000, "d": {}, "p": "0", "s": 10_000}]
    out2 = call_entity("later", out.state, [("events", {"v": 1, "events": more})])
    assert stored(out2.state).get("outbox", []) == []
    store = ActionStore(runtime.settings().cosmos)
    assert {a["id"] for a in store.player_actions("later")} == {p["rec"]["id"] for p in pending}


def test_an_operation_without_input_is_reported_not_raised(app_env: dict[str, str]) -> None:
    import asyncio

    from devhost.pipeline import entity_runner
    from tests.apphost import index

    raw = protocol.entity_batch_json("Player", "empty", None, [("events", None)])
    out = protocol.parse_entity_response(asyncio.run(entity_runner(index().entity("Player"))(raw, None)))
    assert out.results[0]["isError"] is False
    assert "error" in json.loads(out.results[0]["result"])


def test_an_erasure_that_cannot_reach_cosmos_keeps_only_a_marker_and_is_retried(
    app_env: dict[str, str], store: ActionStore, monkeypatch
) -> None:
    from shared import runtime

    now = NOW_MS
    out = call_entity("forget", None, [("events", {"v": 1, "events": tilting_events(40, now - 3600_000)})])
    assert store.player_actions("forget")
    good_endpoint = app_env["COSMOS_ENDPOINT"]
    monkeypatch.setenv("COSMOS_ENDPOINT", "http://127.0.0.1:9")
    runtime.reset()
    pending = call_entity("forget", out.state, [("erase", {"requested": True})])
    kept = stored(pending.state)
    assert (
        pending.exists and kept["erasing"] is True and not kept.get("buf") and not kept["agg"]
    )  # history gone
    monkeypatch.setenv("COSMOS_ENDPOINT", good_endpoint)
    runtime.reset()
    late = [{"id": "late", "type": "deposit.made", "t": now, "d": {"amount": 5.0}, "p": "0", "s": 99_999}]
    done = call_entity("forget", pending.state, [("events", {"v": 1, "events": late})])
    tomb = stored(done.state)
    assert (
        tomb["erased_ms"] > 0 and not tomb.get("erasing") and not tomb.get("buf")
    )  # the late event was dropped
    assert store.player_actions("forget") == []


def test_a_dead_letter_cosmos_refuses_for_good_does_not_stall_the_partition(
    app_env: dict[str, str], monkeypatch, caplog
) -> None:
    """400/413 (this document) cannot be cured by retrying: logged and counted, the batch completes.
    (A 403 is an account-wide refusal an operator fixes: it fails the batch, which is retried and
    eventually parked, so nothing is dropped.)"""
    from urllib.parse import urlparse

    from devhost.servers.faultproxy import FaultProxy
    from shared import runtime

    upstream = urlparse(app_env["COSMOS_ENDPOINT"]).port
    with FaultProxy(upstream, status=413, failures=1000) as proxy:
        monkeypatch.setenv("COSMOS_ENDPOINT", f"http://127.0.0.1:{proxy.port}")
        runtime.reset()
        now = NOW_MS
        capture = Capture()
        run_ingest(
            hub_events([b"{broken", body(cloud_event(at_ms=now - 1000))], seq0=1), capture, partition="2"
        )
    assert len(capture.signals()) == 1  # the valid event was signalled
    assert proxy.faults_served >= 1 and "dead letter refused by Cosmos DB" in caplog.text


def test_a_dead_letter_write_that_fails_transiently_fails_the_batch_for_a_retry(
    app_env: dict[str, str], monkeypatch
) -> None:
    from urllib.parse import urlparse

    from devhost.servers.faultproxy import FaultProxy
    from shared import runtime

    upstream = urlparse(app_env["COSMOS_ENDPOINT"]).port
    with FaultProxy(upstream, status=503, failures=1000, retry_after_ms=1) as proxy:
        monkeypatch.setenv("COSMOS_ENDPOINT", f"http://127.0.0.1:{proxy.port}")
        runtime.reset()
        with pytest.raises(Exception, match="dead-letter write failed: 503"):
            run_ingest(hub_events([b"{broken"], seq0=1), Capture(), partition="2")


def test_a_batch_still_failing_after_the_bound_is_parked_or_else_retried(
    app_env: dict[str, str], monkeypatch
) -> None:
    """Below the bound the failure propagates (the host retries); at the bound the batch is parked;
    when parking fails too, the invocation fails again, so the host retries and nothing is lost."""
    from devhost.functions_host.worker import RetryContext
    from shared import runtime

    monkeypatch.setenv("INGEST_PARK_AFTER_RETRIES", "3")
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=eA==;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    runtime.reset()
    events = hub_events([body(cloud_event(at_ms=NOW_MS - 1000))], seq0=1)
    with pytest.raises(Exception, match=REFUSED):
        run_ingest(events, Capture(500), partition="0", retry=RetryContext(2, -1))
    # At the bound the app tries to park; the storage account is unreachable, so it raises.
    with pytest.raises(Exception) as failed:
        run_ingest(events, Capture(500), partition="0", retry=RetryContext(3, -1))
    assert not re.search(REFUSED, str(failed.value)), failed.value


def test_a_flood_of_bad_input_is_dead_lettered_concurrently(app_env: dict[str, str], monkeypatch) -> None:
    """Cosmos writes take ~40 ms in Azure: written one at a time, a batch of bad input held its
    partition for seconds. A proxy adds write latency and counts writes in flight."""
    from urllib.parse import urlparse

    from devhost.servers.faultproxy import FaultProxy
    from functions.ingest import DEADLETTER_CONCURRENCY
    from shared import runtime

    upstream = urlparse(app_env["COSMOS_ENDPOINT"]).port
    with FaultProxy(upstream, status=503, failures=0, write_delay_s=0.05) as proxy:
        monkeypatch.setenv("COSMOS_ENDPOINT", f"http://127.0.0.1:{proxy.port}")
        runtime.reset()
        run_ingest(hub_events([b"bad %d" % i for i in range(40)], seq0=1), Capture(), partition="5")
    assert proxy.writes_seen == 40
    assert proxy.max_in_flight >= min(4, DEADLETTER_CONCURRENCY)


def test_a_reinjected_event_is_read_at_its_first_position(app_env: dict[str, str]) -> None:
    """A parked event re-sent to the hub carries its first partition, sequence number and enqueued
    time as application properties; ingest signals it with those, so the entity's sequence-range
    dedupe recognises it however long ago it was applied (the event-id check alone forgets)."""
    from devhost.functions_host.bindings import HubEvent
    from shared.parking import ORIGIN_ENQUEUED_MS, ORIGIN_PARTITION, ORIGIN_SEQUENCE

    first = {ORIGIN_PARTITION: "9", ORIGIN_SEQUENCE: 4242, ORIGIN_ENQUEUED_MS: NOW_MS - 7_200_000}
    raw = body(cloud_event(player="rita", event_id="r1", at_ms=NOW_MS - 7_300_000))
    capture = Capture()
    run_ingest([HubEvent(raw, 77, "7700", NOW_MS - 1000, "rita", first)], capture, partition="2")
    [(_, data)] = capture.signals()
    payload = sent_signal(data)
    [event] = payload.events
    assert (event.p, event.s, event.q) == ("9", 4242, NOW_MS - 7_200_000)
    assert payload.ranges == [("9", 4242, 4242)]  # not the batch's own position in partition 2
