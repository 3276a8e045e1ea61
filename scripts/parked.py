"""List and re-inject the trigger batches the ingest function parked (docs/parking.md).

    python -m scripts.parked list     --account ACCOUNT [--container parked-batches]
    python -m scripts.parked reinject --account ACCOUNT --namespace NS.servicebus.windows.net

Reads the host storage account's ``parked-batches`` container with your Azure
identity (``DefaultAzureCredential``: ``az login``; you need *Storage Blob Data
Contributor* on the account, and *Azure Event Hubs Data Sender* on the hub to
re-inject), or a connection string in ``AZURE_STORAGE_CONNECTION_STRING`` /
``EVENTHUB_CONNECTION_STRING`` for the emulators. Each parked batch is sent back
to its Event Hub with the events' original partition keys and bodies, and
application properties that tell ingest where each event was first read (so the
entities dedupe it by its original sequence number); its blob is deleted only
after the send succeeded (at-least-once).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from shared.parking import (
    DEFAULT_CONTAINER,
    ParkedBatch,
    ParkingLot,
    container_from_settings,
    origin_properties,
)


def _lot(args: argparse.Namespace) -> ParkingLot:
    env = {"PARKING_CONTAINER": args.container}
    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    if conn:
        env["AzureWebJobsStorage"] = conn
    elif args.account:
        env["AzureWebJobsStorage__accountName"] = args.account
    else:
        raise SystemExit("scripts.parked: give --account (or set AZURE_STORAGE_CONNECTION_STRING)")
    return ParkingLot(container_from_settings(env))


def send(batch: ParkedBatch, args: argparse.Namespace) -> None:
    """Send one parked batch back to its hub, grouped by partition key so the keys keep their order."""
    from azure.eventhub import EventData, EventHubProducerClient

    conn = os.environ.get("EVENTHUB_CONNECTION_STRING", "")
    if conn:
        producer = EventHubProducerClient.from_connection_string(conn, eventhub_name=batch.event_hub)
    elif args.namespace:
        from azure.identity import DefaultAzureCredential

        producer = EventHubProducerClient(args.namespace, batch.event_hub, DefaultAzureCredential())
    else:
        raise SystemExit("scripts.parked: give --namespace (or set EVENTHUB_CONNECTION_STRING)")
    with producer:
        keys: dict[str | None, list[EventData]] = {}
        for e in batch.events:
            event = EventData(e.body)
            event.properties = origin_properties(batch, e)  # ingest reads its first position from them
            keys.setdefault(e.partition_key, []).append(event)
        for key, events in keys.items():
            data = producer.create_batch(partition_key=key) if key else producer.create_batch()
            for event in events:
                try:
                    data.add(event)
                except ValueError:  # batch full: send it and start another
                    producer.send_batch(data)
                    data = producer.create_batch(partition_key=key) if key else producer.create_batch()
                    data.add(event)
            producer.send_batch(data)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.parked", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("list", "reinject"))
    p.add_argument("--account", help="host storage account name")
    p.add_argument("--container", default=DEFAULT_CONTAINER)
    p.add_argument("--namespace", help="Event Hubs namespace (reinject), e.g. ns.servicebus.windows.net")
    args = p.parse_args(argv)
    lot = _lot(args)
    names = list(lot.names())
    if args.action == "list":
        for name in names:
            batch = lot.load(name)
            print(f"{name}  events={len(batch.events)} attempts={batch.attempts}  {batch.error[:120]}")
        print(f"{len(names)} parked batch(es)")
        return 0
    sent = 0
    for name in names:
        batch = lot.load(name)
        send(batch, args)
        lot.remove(name)
        sent += len(batch.events)
        print(f"re-injected {name} ({len(batch.events)} events)")
    print(f"re-injected {len(names)} batch(es), {sent} event(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
