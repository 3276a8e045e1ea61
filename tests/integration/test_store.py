"""The Cosmos action store against a real @vercel/cosmosdb-server on loopback."""

from __future__ import annotations

import time

import pytest

from devhost.servers.faultproxy import behind_proxy
from shared.config import CosmosSettings
from shared.entity import action_id
from shared.store import ActionStore

pytestmark = pytest.mark.cosmos


def action(player: str, trigger: str, atype: str = "break_suggestion") -> dict:
    return {
        "id": action_id(player, trigger, atype),
        "playerId": player,
        "type": atype,
        "score": 0.9,
        "modelVersion": "m",
        "triggerEventId": trigger,
        "eventTime": "2026-11-21T10:00:00.000Z",
        "decidedAt": "2026-11-21T10:00:01.000Z",
        "reasons": ["rule:cooldown"],
        "status": "pending",
    }


def test_an_action_is_written_once_and_a_replay_never_resets_it(store: ActionStore) -> None:
    doc = action("p1", "e1")
    assert store.create_action(doc) is True
    # The delivery service handles it...
    delivered = dict(store.player_actions("p1")[0], status="delivered")
    store.actions.replace_item(delivered["id"], delivered)
    # ...then a replayed decision (new decidedAt) arrives: the action stays as delivered.
    assert store.create_action(dict(doc, decidedAt="2026-11-21T11:00:00.000Z")) is False
    report = store.create_actions([dict(doc, decidedAt="2026-11-21T12:00:00.000Z")])
    assert report.written == {doc["id"]} and report.failed == {} and report.refused == {}
    rows = store.player_actions("p1")
    assert len(rows) == 1 and rows[0]["status"] == "delivered"
    assert rows[0]["decidedAt"] == doc["decidedAt"] and rows[0]["ttl"] == store.settings.action_ttl_seconds


def test_create_actions_reports_written_ids(store: ActionStore) -> None:
    docs = [action("p1", f"e{i}") for i in range(5)]
    report = store.create_actions(docs)
    assert report.written == {d["id"] for d in docs} and report.failed == {}
    assert {r["id"] for r in store.player_actions("p1")} == report.written


def test_erase_deletes_only_that_players_actions_and_dead_letters(store: ActionStore) -> None:
    store.create_actions([action("p1", "a"), action("p1", "b"), action("p2", "c")])
    for seq, player in ((1, "p1"), (2, "p2")):
        store.write_deadletter(
            reason="future_time", detail="x", raw=b"{}", partition="0", sequence=seq, player_id=player
        )
    assert store.delete_player_data("p1") == 3
    assert store.player_actions("p1") == []
    assert [r["triggerEventId"] for r in store.player_actions("p2")] == ["c"]
    left = store.deadletters.query_items("SELECT c.playerId FROM c", enable_cross_partition_query=True)
    assert [r["playerId"] for r in left] == ["p2"]
    assert store.delete_player_data("p1") == 0


def test_deadletter_keeps_reason_and_truncated_raw_bytes(store: ActionStore) -> None:
    raw = b"\xff" + b"x" * 5000
    doc = store.write_deadletter(reason="not_utf8", detail="bad byte", raw=raw, partition="3", sequence=42)
    again = store.write_deadletter(reason="not_utf8", detail="bad byte", raw=raw, partition="3", sequence=42)
    assert doc["id"] == again["id"]  # a redelivered message does not add a second record
    rows = list(store.deadletters.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert len(rows) == 1
    row = rows[0]
    assert row["reason"] == "not_utf8" and row["playerId"].startswith("unknown-")
    assert row["rawBytes"] == 5001 and row["rawPreview"].startswith("\\xff")
    assert len(row["rawPreview"]) <= 2048 + 3


@pytest.mark.parametrize("status", [429, 503])
def test_sdk_retries_throttling_and_unavailability(cosmos_settings: CosmosSettings, status: int) -> None:
    with behind_proxy(cosmos_settings, status=status, failures=3, retry_after_ms=100) as (proxy, settings):
        store = ActionStore(settings)
        started = time.monotonic()
        store.create_action(action("p9", "e9"))
        elapsed = time.monotonic() - started
    assert proxy.faults_served == 3 and proxy.writes_seen == 4
    assert elapsed >= 0.3  # three waits of the service's retry-after (100 ms)
    assert [r["id"] for r in ActionStore(cosmos_settings).player_actions("p9")] == [
        action_id("p9", "e9", "break_suggestion")
    ]


def test_write_gives_up_after_bounded_retries(cosmos_settings: CosmosSettings) -> None:
    with behind_proxy(cosmos_settings, status=429, failures=1000, retry_after_ms=10) as (proxy, settings):
        report = ActionStore(settings).create_actions([action("p8", "e8")])
    assert report.written == set() and list(report.failed) == [action_id("p8", "e8", "break_suggestion")]


def test_a_failed_write_stops_the_rest(cosmos_settings: CosmosSettings) -> None:
    with behind_proxy(cosmos_settings, status=503, failures=1000, retry_after_ms=1) as (proxy, settings):
        docs = [action("p7", f"e{i}") for i in range(3)]
        report = ActionStore(settings).create_actions(docs)
    assert report.written == set() and set(report.failed) == {d["id"] for d in docs}
    assert proxy.writes_seen <= 5  # the first document's bounded retries only
    assert 2 <= proxy.faults_served <= 20


def test_the_breaker_fails_fast_then_lets_one_probe_through(cosmos_settings: CosmosSettings) -> None:
    """Half-open: after a failure, calls fail fast only until a short wait has passed; then one
    probe goes through, and its success closes the breaker (no 30 s of refusals after one error)."""
    with behind_proxy(cosmos_settings, status=503, failures=4, retry_after_ms=1) as (proxy, settings):
        store = ActionStore(settings)
        report = store.create_actions([action("p6", "e1")])
        assert report.failed and proxy.writes_seen == 4  # tenacity's bounded attempts, then the breaker opens
        started = time.monotonic()
        report = store.create_actions([action("p6", "e2")])
        assert report.failed and proxy.writes_seen == 4 and time.monotonic() - started < 0.1  # not even tried
        assert store.breaker.open_kinds == ["unavailable"]
        time.sleep(1.1)  # the first wait of the "unavailable" kind
        report = store.create_actions([action("p6", "e3")])
    assert report.failed == {} and report.written == {action_id("p6", "e3", "break_suggestion")}
    assert store.breaker.open_kinds == []


def test_a_dropped_connection_on_a_create_is_retried_and_counts_once(cosmos_settings: CosmosSettings) -> None:
    """With endpoint discovery off the SDK does not retry writes on connection errors; the store does
    (the id is deterministic: a create that had reached the service ends in 409, read as written)."""
    with behind_proxy(cosmos_settings, status=0, failures=2, retry_after_ms=1) as (proxy, settings):
        store = ActionStore(settings)
        report = store.create_actions([action("p5", "e1")])
    assert proxy.faults_served == 2 and report.written == {action_id("p5", "e1", "break_suggestion")}
    assert len(ActionStore(cosmos_settings).player_actions("p5")) == 1


@pytest.mark.parametrize("status", [400, 413])
def test_a_document_refused_for_good_is_reported_and_the_next_one_is_written(
    cosmos_settings: CosmosSettings, status: int
) -> None:
    with behind_proxy(cosmos_settings, status=status, failures=1, retry_after_ms=1) as (proxy, settings):
        store = ActionStore(settings)
        report = store.create_actions([action("p4", "bad"), action("p4", "good")])
    assert report.refused == {action_id("p4", "bad", "break_suggestion"): status}
    assert report.written == {action_id("p4", "good", "break_suggestion")} and report.failed == {}
    assert store.breaker.open_kinds == []  # one bad document says nothing about the service


def test_unknown_player_dead_letters_spread_over_partitions(store: ActionStore) -> None:
    keys = {
        store.write_deadletter(reason="malformed_json", detail="x", raw=b"{", partition="0", sequence=n)[
            "playerId"
        ]
        for n in range(200)
    }
    assert len(keys) > 16 and all(k.startswith("unknown-") for k in keys)


def test_an_outcome_is_recorded_once_and_the_first_response_stands(store: ActionStore) -> None:
    from shared.entity import OutcomeRecord
    from shared.timeutil import parse_iso_ms

    doc = action("p9", "e1")
    store.create_action(doc)
    at = parse_iso_ms(doc["eventTime"]) + 42_000
    assert store.record_outcome("p9", OutcomeRecord(doc["id"], "accepted", at)) == "recorded"
    [row] = store.player_actions("p9")
    assert (row["status"], row["respondedAt"], row["responseLatencyMs"]) == (
        "accepted",
        "2026-11-21T10:00:42.000Z",
        42_000,
    )
    assert row["reasons"] == doc["reasons"] and row["ttl"] == store.settings.action_ttl_seconds
    # A replayed or second response changes nothing; an unknown or another player's action is counted.
    assert store.record_outcome("p9", OutcomeRecord(doc["id"], "dismissed", at + 1)) == "already"
    assert store.player_actions("p9")[0]["status"] == "accepted"
    assert store.record_outcome("p9", OutcomeRecord("act-nope", "accepted", at)) == "unknown"
    assert store.record_outcome("p8", OutcomeRecord(doc["id"], "accepted", at)) == "unknown"
    suppressed = dict(action("p9", "e2"), status="suppressed", rejectedBy="cooldown")
    store.create_action(suppressed)
    assert store.record_outcome("p9", OutcomeRecord(suppressed["id"], "accepted", at)) == "unknown"


def test_a_concurrent_change_between_read_and_replace_is_read_again(store: ActionStore, monkeypatch) -> None:
    """The replace is conditional on the ETag read: a change in between gives 412, then a fresh read."""
    from shared.entity import OutcomeRecord

    doc = action("p7", "e1")
    store.create_action(doc)
    real_replace = store.actions.replace_item
    calls = []

    def meddling_replace(item, body, **kwargs):  # another writer gets in first, once
        if not calls:
            calls.append(1)
            real_replace(item, dict(body, status="pending", note="other writer"))
        return real_replace(item, body, **kwargs)

    monkeypatch.setattr(store.actions, "replace_item", meddling_replace)
    assert store.record_outcome("p7", OutcomeRecord(doc["id"], "dismissed", 1_800_000_000_000)) == "recorded"
    row = store.player_actions("p7")[0]
    assert row["status"] == "dismissed" and row["note"] == "other writer"
