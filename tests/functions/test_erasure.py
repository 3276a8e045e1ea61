"""Erasure reaches every copy, and no replay brings an erased player's data back.

The real app through the hosting path (ingest, the Player entity's erase and sweep operations)
against the real Cosmos DB server; only the Durable webhook is answered in-process."""

from __future__ import annotations

import json

import pytest

from shared.store import ActionStore
from tests.apphost import Capture, call_entity, hub_events, run_ingest
from tests.functions.test_app import tilting_events
from tests.helpers import NOW_MS, body, cloud_event

pytestmark = pytest.mark.cosmos


def _dead_letters(store: ActionStore) -> list[dict]:
    return list(store.deadletters.query_items("SELECT * FROM c", enable_cross_partition_query=True))


def bad_batch(player: str) -> list[bytes]:
    return [
        body(
            cloud_event("deposit.made", player, event_id="x1", at_ms=NOW_MS - 1000, data={"amount": -1})
        ),  # own pk
        b'{"subject": "'
        + player.encode()
        + b'", "oops": ',  # malformed: an unknown-NN bucket, id in the bytes
        body({**cloud_event(player=player, event_id="x2", at_ms=NOW_MS - 1000), "specversion": "0.3"}),
        b'{"subject": "' + player.encode() + b'-other", "x": ',  # another player's id (a longer token)
    ]


def test_erasure_deletes_every_copy_and_replays_write_nothing_back(
    app_env: dict[str, str], store: ActionStore
) -> None:
    events = tilting_events(40, NOW_MS - 3600_000)
    out = call_entity("eve", None, [("events", {"v": 1, "events": events})])
    assert store.player_actions("eve")
    run_ingest(hub_events(bad_batch("eve"), seq0=500), Capture(), partition="3")
    before = _dead_letters(store)
    assert len(before) == 4 and sum(r["playerId"] == "eve" for r in before) == 1

    erased = call_entity("eve", out.state, [("erase", {"requested": True})])
    result = json.loads(erased.results[0]["result"])
    assert result["erased"] == "eve"
    assert store.player_actions("eve") == []
    left = _dead_letters(store)
    assert [r["rawPreview"] for r in left] == [
        before_row["rawPreview"] for before_row in before if b"eve-other" in before_row["rawPreview"].encode()
    ]

    # A replay of the same batch (the trigger is at-least-once) writes none of eve's dead letters back.
    run_ingest(hub_events(bad_batch("eve"), seq0=500), Capture(), partition="3")
    assert len(_dead_letters(store)) == 1
    # The erasure record holds a hash, never the id.
    records = list(store.erasures.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert len(records) == 1 and "eve" not in json.dumps(records).replace("erasedAt", "")


def test_the_sweep_deletes_dead_letters_written_before_an_instance_learned_of_the_erasure(
    app_env: dict[str, str], store: ActionStore
) -> None:
    out = call_entity("sam", None, [("erase", {"requested": True})])
    # Another instance, whose erasure cache is not yet refreshed, writes a dead letter of sam's.
    store.write_deadletter(
        reason="malformed_json", detail="x", raw=b'{"subject": "sam", ', partition="9", sequence=1
    )
    assert len(_dead_letters(store)) == 1
    swept = call_entity("sam", out.state, [("sweep", {"reason": "reminder"})])
    assert json.loads(swept.results[0]["result"]) == {
        "swept": 1,
        "parkedEvents": 0,
    }  # no storage: none parked
    assert _dead_letters(store) == []
