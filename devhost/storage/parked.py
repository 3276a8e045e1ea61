"""``python -m devhost parked list|reinject``: the devhost's parked batches (Azurite in the state dir).

Re-injecting appends each parked event, byte for byte and with its partition
key, to the devhost's Event Hubs log, as ``scripts/parked.py reinject`` sends
them back to a real Event Hub, with application properties that say where it
was first read (shared.parking.origin_properties): ingest takes its original
partition, sequence number and enqueued time from them, so the entities
recognise events they had already applied. The next ``python -m devhost run``
with the run's options processes them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from devhost.db import DevDB
from devhost.eventhubs.local_hub import EventLog
from devhost.servers.node import Azurite
from shared.parking import ParkingLot, container_from_settings, origin_properties


@dataclass(frozen=True)
class Reinjected:
    batches: int
    events: int


def _lot(state_dir: Path, azurite: Azurite) -> ParkingLot:
    conn = azurite.start_connection_string()
    return ParkingLot(container_from_settings({"AzureWebJobsStorage": conn}))


def list_parked(state_dir: Path) -> list[str]:
    """One line per parked batch: blob name, events, attempts, error."""
    azurite = Azurite(state_dir / "azurite")
    try:
        lot = _lot(state_dir, azurite)
        lines = []
        for name in lot.names():
            batch = lot.load(name)
            lines.append(f"{name}  events={len(batch.events)} attempts={batch.attempts}  {batch.error[:120]}")
        return lines
    finally:
        azurite.stop()


def reinject(state_dir: Path) -> Reinjected:
    """Append every parked batch to the log, then delete its blob (a crash in between re-injects
    it again: at-least-once, and the entities dedupe)."""
    db = DevDB(state_dir)
    run = db.get_meta("run") or {}
    partitions = int(run.get("partitions", 32))
    azurite = Azurite(state_dir / "azurite")
    batches = events = 0
    try:
        lot = _lot(state_dir, azurite)

        async def go() -> None:
            nonlocal batches, events
            log = EventLog(db, [str(p) for p in range(partitions)])
            for name in list(lot.names()):
                batch = lot.load(name)
                log.append([(e.partition_key, e.body, origin_properties(batch, e)) for e in batch.events])
                lot.remove(name)
                batches += 1
                events += len(batch.events)

        asyncio.run(go())
    finally:
        azurite.stop()
        db.close()
    return Reinjected(batches, events)
