"""Conformance: Event Hubs trigger input as the Functions host builds it, through the real app.

Sources: Azure/azure-functions-host (GeneralScriptBindingProvider, GrpcMessageConversionExtensions
ToRpcStringArray / ToRpcByteArray, ScriptInvocationContextExtensions), the Event Hubs extension
(EventHubTriggerBindingStrategy, TriggerPartitionContext), azure-webjobs-sdk (PocoTriggerArgumentBinding,
RandomizedExponentialBackoffStrategy) and azure.functions 1.26 (eventhub.py EventHubTriggerConverter).
Every batch here goes through the devhost's hosting path (tests/apphost.py) into the real ingest.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import azure.functions as func
import pytest

from devhost.functions_host import bindings
from devhost.functions_host.bindings import HostBindingError, HubEvent
from devhost.functions_host.indexing import RetryPolicy
from functions.ingest import enqueued_ms
from shared.store import ActionStore
from tests.apphost import Capture, hub_events, index, run_ingest
from tests.helpers import NOW_MS, body, cloud_event

CONVERTER = func.get_binding_registry().get("eventHubTrigger")


def _decode(events: list[HubEvent], data_type: str | None) -> list[func.EventHubEvent]:
    meta = bindings.eventhub_metadata(events, partition="3", hub="h", consumer_group="c", namespace="n")
    return CONVERTER.decode(bindings.eventhub_data(events, data_type), trigger_metadata=meta)


def test_without_data_type_one_non_json_body_fails_the_whole_batch_before_python() -> None:
    """No dataType: the host binds object[] and Json.NET-parses every body (webjobs-sdk
    PocoTriggerArgumentBinding; azure-webjobs-sdk#1830): one bad body fails the invocation."""
    events = hub_events([body(cloud_event()), b"{not json"])
    with pytest.raises(HostBindingError):
        bindings.eventhub_data(events, None)
    ok = _decode(hub_events([b'{"b": 1, "a": 2}']), None)
    assert ok[0].get_body() == b'{"b": 1, "a": 2}'  # re-serialised by the library, not the original bytes


def test_data_type_string_drops_empty_bodies_and_the_library_rejects_the_batch() -> None:
    """host ToRpcStringArray skips empty strings (the Python worker does not ask to keep them);
    azure.functions then raises 'Number of bodies and metadata mismatched'."""
    with pytest.raises(AssertionError, match="Number of bodies and metadata mismatched"):
        _decode(hub_events([b"{}", b""]), "string")


def test_data_type_binary_delivers_every_body_byte_for_byte() -> None:
    """ToRpcByteArray keeps empty arrays: collection_bytes, one element per event."""
    raws = [b"", b"\xff\xfe", body(cloud_event()), b"{not json"]
    assert [e.get_body() for e in _decode(hub_events(raws), "binary")] == raws


def test_the_app_declares_binary_so_bad_bodies_reach_python_and_are_dead_lettered(
    app_env: dict[str, str], store: ActionStore
) -> None:
    """The real trigger binding: dataType BINARY. Empty, non-UTF-8 and non-JSON bodies are the
    app's dead letters; the valid neighbours of the same batch are signalled."""
    assert index().functions["ingest"].trigger["dataType"] == "BINARY"
    good = body(cloud_event(player="alice", event_id="a1", at_ms=NOW_MS - 1000))
    dots = body(cloud_event(player="..", event_id="d1", at_ms=NOW_MS - 1000))
    nested = good[:-1] + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    huge = body(
        cloud_event(
            player="bob",
            event_id="h1",
            at_ms=NOW_MS - 1000,
            data={"game": "x" * 20_000, "stake": 1, "payout": 0},
        )
    )
    capture = Capture()
    run_ingest(hub_events([b"", good, b"\xff", nested, b"nope", dots, huge]), capture)
    assert [p for p, _ in capture.signals()] == [
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/entities/Player/alice?op=events"
    ]
    rows = list(store.deadletters.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    reasons = sorted(r["reason"] for r in rows)
    assert reasons == sorted(
        ["malformed_json", "not_utf8", "unparseable", "malformed_json", "invalid_player_id", "oversized"]
    ), reasons


@pytest.fixture
def tz_east() -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_enqueued_time_utc_has_no_zone_and_the_app_reads_it_as_utc(tz_east: None) -> None:
    """EventHubTriggerBindingStrategy: EnqueuedTimeUtc = EnqueuedTime.DateTime (Kind Unspecified),
    written by Json.NET without a zone; azure.functions meta._parse_datetime makes it naive."""
    at = 1_795_255_200_123
    meta = bindings.eventhub_metadata(
        hub_events([b"x"], enqueued_ms=at), partition="0", hub="h", consumer_group="c", namespace="n"
    )
    raw = json.loads(meta["SystemPropertiesArray"].value)[0]["EnqueuedTimeUtc"]
    assert raw == "2026-11-21T10:00:00.123"
    [event] = _decode(hub_events([b"x"], enqueued_ms=at), "binary")
    assert event.enqueued_time is not None and event.enqueued_time.tzinfo is None
    assert enqueued_ms(event) == at  # east of UTC, a local reading would be 9 hours off


def test_partition_context_is_sent_once_and_handed_to_every_event() -> None:
    """PartitionContext (TriggerPartitionContext) is batch metadata; the library's converter gives
    every event the same trigger metadata."""
    events = _decode(hub_events([b"a", b"b", b"c"]), "binary")
    assert {e.metadata["PartitionContext"]["PartitionId"] for e in events} == {"3"}
    assert [e.sequence_number for e in events] == [100, 101, 102]


def test_the_hosts_exponential_backoff() -> None:
    """webjobs-sdk RandomizedExponentialBackoffStrategy: the first retry waits the minimum, then
    min + U(0.8, 1.2) * 2**(n-2) * min, capped at the maximum; -1 retries for ever."""
    policy = RetryPolicy("exponential_backoff", -1, minimum_s=2.0, maximum_s=60.0)
    delays = policy.delays()
    waits = [next(delays) for _ in range(12)]
    assert waits[0] == 2.0 and 3.6 <= waits[1] <= 4.4 and 5.2 <= waits[2] <= 6.8
    assert waits[-1] == 60.0 and all(w <= 60.0 for w in waits)
    assert next(delays) == 60.0  # never runs out
