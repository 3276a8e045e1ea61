"""``python -m scripts.parked`` against real blob storage (Azurite).

Real: Azurite's blob service, the app's ParkingLot writing a parked batch, the script listing and
deleting it. Replaced: the send to Event Hubs (no broker can run here), recorded instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.servers.node import Azurite
from scripts import parked as script
from shared.parking import ParkedBatch, ParkedEvent, ParkingLot, container_from_settings

pytestmark = pytest.mark.azurite


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = Azurite(tmp_path / "azurite")
    conn = server.start_connection_string()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    try:
        yield conn
    finally:
        server.stop()


def _batch(first: int) -> ParkedBatch:
    events = [
        ParkedEvent(first + i, str(i * 10), 1_795_255_200_000, f"p{i % 2}", b"\xffraw%d" % i)
        for i in range(3)
    ]
    return ParkedBatch(
        "player-events", "$Default", "4", first, first + 2, 13, "ServiceUnavailable", 1, events
    )


def test_list_and_reinject_parked_batches(storage: str, monkeypatch, capsys) -> None:
    lot = ParkingLot(container_from_settings({"AzureWebJobsStorage": storage}))
    names = [lot.park(_batch(0)), lot.park(_batch(10)), lot.park(_batch(0))]  # the same batch twice: one blob
    assert names[0] == "player-events/$Default/4/00000000000000000000-00000000000000000002.json"
    assert script.main(["list"]) == 0
    assert "2 parked batch(es)" in capsys.readouterr().out

    sent: list[ParkedBatch] = []
    monkeypatch.setattr(script, "send", lambda batch, args: sent.append(batch))
    assert script.main(["reinject"]) == 0
    assert [b.first_sequence for b in sent] == [0, 10]
    assert sent[0].events[0].body == b"\xffraw0" and sent[0].events[1].partition_key == "p1"
    assert list(lot.names()) == []


def test_a_failed_send_keeps_the_blob(storage: str, monkeypatch) -> None:
    lot = ParkingLot(container_from_settings({"AzureWebJobsStorage": storage}))
    lot.park(_batch(0))

    def refuse(batch: ParkedBatch, args: object) -> None:
        raise ConnectionError("hub down")

    monkeypatch.setattr(script, "send", refuse)
    with pytest.raises(ConnectionError):
        script.main(["reinject"])
    assert len(list(lot.names())) == 1
