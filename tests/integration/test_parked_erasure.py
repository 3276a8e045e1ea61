"""An erasure reaches parked trigger batches: real Azurite blob storage.

Real: Azurite's blob service (started with its bounded, reported readiness wait), the app's
ParkingLot, the ETag-conditional rewrite, and (last test) the Player entity's sweep operation
through the hosting path against the real Cosmos DB server. Nothing is mocked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import parking, runtime
from shared.parking import ParkedBatch, ParkedEvent, ParkingLot, container_from_settings
from tests.apphost import call_entity
from tests.helpers import NOW_MS, body, cloud_event

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def storage(azurite_module: str) -> str:
    return azurite_module


@pytest.fixture
def lot(storage: str, request: pytest.FixtureRequest) -> ParkingLot:
    container = "parked" + str(abs(hash(request.node.name)) % 10**10)
    return ParkingLot(
        container_from_settings({"AzureWebJobsStorage": storage, "PARKING_CONTAINER": container})
    )


def event(
    seq: int, player: str, key: str | None = None, enqueued_ms: int | None = NOW_MS - 900
) -> ParkedEvent:
    raw = body(
        cloud_event("deposit.made", player, event_id=f"e{seq}", at_ms=NOW_MS - 1000, data={"amount": 5})
    )
    return ParkedEvent(seq, str(seq * 100), enqueued_ms, key, raw)


def batch(first: int, events: list[ParkedEvent], error: str = "ServiceUnavailable") -> ParkedBatch:
    return ParkedBatch(
        "player-events", "$Default", "2", first, first + len(events) - 1, 13, error, NOW_MS, events
    )


def test_the_erased_players_events_leave_every_parked_blob_and_nothing_else_does(lot: ParkingLot) -> None:
    malformed = ParkedEvent(4, "400", NOW_MS - 900, None, b'{"subject": "eve", "oops": ')
    mixed = batch(
        1,
        [
            event(1, "eve"),
            event(2, "bob"),
            event(3, "carol", key="eve"),  # the erased id as its partition key
            malformed,  # not parseable, but carries the id
            event(5, "eve-other"),  # a longer id that contains "eve": another player
            event(6, "eve", enqueued_ms=NOW_MS + 1),  # after the erasure: eve's new history, kept
            event(7, "eve", enqueued_ms=None),  # no enqueued time: taken, as the tombstone drops it
        ],
        error="CosmosHttpResponseError: conflict for eve",
    )
    only_eve = batch(10, [event(10, "eve"), event(11, "eve")])
    others = batch(20, [event(20, "bob")])
    names = [lot.park(b) for b in (mixed, only_eve, others)]
    untouched_etag = lot._container.get_blob_client(names[2]).get_blob_properties().etag  # type: ignore[attr-defined]

    report = parking.erase_player("eve", NOW_MS, lot)

    assert (report.events, report.blobs_rewritten, report.blobs_deleted, report.blobs_scanned) == (6, 1, 1, 3)
    assert sorted(lot.names()) == sorted([names[0], names[2]])
    rest = lot.load(names[0])
    assert [e.sequence for e in rest.events] == [2, 5, 6] and rest.erased == 4
    assert all(b'"eve"' not in e.body for e in rest.events[:2])
    assert rest.error == "CosmosHttpResponseError: conflict for [erased]"
    # Everything else about the batch is kept: where it came from, so it can still be re-injected.
    assert (rest.first_sequence, rest.last_sequence, rest.partition, rest.attempts) == (1, 7, "2", 13)
    assert lot._container.get_blob_client(names[2]).get_blob_properties().etag == untouched_etag  # type: ignore[attr-defined]
    # A second sweep finds nothing left to take.
    again = parking.erase_player("eve", NOW_MS, lot)
    assert (again.events, again.blobs_rewritten, again.blobs_deleted) == (0, 0, 0)


class _ReParkedOnce:
    """The container client, except that the first download of a blob is followed by the ingest
    parking that batch again (a redelivered batch parked by another instance) before the rewrite."""

    def __init__(self, lot: ParkingLot, again: ParkedBatch) -> None:
        self._inner: Any = lot._container
        self._lot, self._again, self.raced = lot, again, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def download_blob(self, name: str) -> Any:
        downloader = self._inner.download_blob(name)
        if not self.raced:
            self.raced += 1
            self._inner.upload_blob(name, parking.encode(self._again), overwrite=True)
        return downloader


def test_a_blob_parked_again_between_read_and_rewrite_is_read_again_not_overwritten(lot: ParkingLot) -> None:
    first = batch(1, [event(1, "eve"), event(2, "bob")])
    name = lot.park(first)
    # The same range parked again meanwhile, with another attempt count and error.
    again = ParkedBatch(
        **{**{f: getattr(first, f) for f in first.__struct_fields__}, "attempts": 14, "error": "later"}
    )
    racing = _ReParkedOnce(lot, again)
    lot._container = racing

    report = lot.erase(parking.concerns_player("eve", NOW_MS), redact="eve")

    assert racing.raced == 1 and report.events == 1
    kept = lot.load(name)
    assert [e.sequence for e in kept.events] == [2] and (kept.attempts, kept.error) == (14, "later")


@pytest.mark.cosmos
def test_the_erasure_sweep_of_the_player_entity_reaches_parked_blobs(
    app_env: dict[str, str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = "parked-sweep"
    monkeypatch.setenv("AzureWebJobsStorage", storage)
    monkeypatch.setenv("PARKING_CONTAINER", container)
    runtime.reset()
    lot = ParkingLot(
        container_from_settings({"AzureWebJobsStorage": storage, "PARKING_CONTAINER": container})
    )
    name = lot.park(batch(1, [event(1, "zoe"), event(2, "bob"), event(3, "zoe")]))

    with runtime.clock(lambda: NOW_MS + 5_000):  # the erasure's time: after the events were enqueued
        erased = call_entity("zoe", None, [("erase", {"requested": True})])
        swept = call_entity("zoe", erased.state, [("sweep", {"reason": "reminder"})])

    assert json.loads(swept.results[0]["result"]) == {"swept": 0, "parkedEvents": 2}
    assert [e.sequence for e in lot.load(name).events] == [2]
