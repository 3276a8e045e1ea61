"""The devhost's Event Hubs source against a real blob checkpoint store (Azurite).

What is real: Azurite's blob service (started below from node_modules), the
``BlobCheckpointStore`` from azure-eventhub-checkpointstoreblob-aio, container
creation with azure-storage-blob, and the azure-eventhub ``EventData`` and
``PartitionContext`` objects the receive callback gets.

What cannot run here: no Event Hubs broker (nor the emulator) is reachable, so
the live receive path of ``EventHubConsumerClient`` is not exercised. In its
place a stand-in consumer calls the source's ``on_event_batch`` the way
``receive_batch`` does, with ``EventData`` carrying the annotations the service
sets (sequence number, offset, enqueued time, partition key). Everything after
that callback (conversion, queueing, the checkpoint callable, the blobs it
writes) is the production code against real storage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import PartitionContext
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from devhost.eventhubs.live_hub import (
    AZURITE_ACCOUNT_KEY,
    DEFAULT_CONTAINER,
    EventHubSource,
    ReceivedEvent,
    resolve_storage_connection,
)
from devhost.servers.node import Azurite

pytestmark = pytest.mark.azurite

FQNS = "localhost"
HUB = "player-events"
GROUP = "$Default"
EMULATOR = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=eA==;UseDevelopmentEmulator=true"
T0_MS = int(datetime(2026, 11, 21, 10, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on a free loopback port, as the devhost starts it: its connection string."""
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield server.start_connection_string()
    finally:
        server.stop()


def container_name() -> str:
    return f"ckpt-{uuid.uuid4().hex[:12]}"


def received(partition_key: str, seq: int, offset: int, body: bytes | None = None) -> EventData:
    """An EventData as the service delivers it: the broker's annotations on the AMQP message."""
    event = EventData(body if body is not None else f'{{"seq": {seq}}}'.encode())
    event.content_type = "application/cloudevents+json; charset=utf-8"
    event.properties = {b"origin": b"test"}
    annotations = event.raw_amqp_message.annotations
    annotations[b"x-opt-sequence-number"] = seq
    annotations[b"x-opt-offset"] = str(offset).encode()
    annotations[b"x-opt-enqueued-time"] = T0_MS + seq * 1000
    annotations[b"x-opt-partition-key"] = partition_key.encode()
    return event


class BrokerStandIn:
    """Replaces only the network receive: calls the callback as ``receive_batch`` does, then idles."""

    def __init__(
        self, deliveries: list[tuple[PartitionContext, list[EventData]]], error: Exception | None = None
    ):
        self.deliveries, self.error = deliveries, error
        self.kwargs: dict[str, Any] = {}
        self.closed = asyncio.Event()

    async def receive_batch(self, on_event_batch: Callable[..., Awaitable[None]], **kwargs: Any) -> None:
        self.kwargs = kwargs
        for context, events in self.deliveries:
            await on_event_batch(context, events)
        if self.error is not None:
            raise self.error
        await self.closed.wait()

    async def close(self) -> None:
        self.closed.set()


async def checkpoints(store: BlobCheckpointStore, group: str = GROUP) -> dict[str, tuple[str, int]]:
    return {
        c["partition_id"]: (c["offset"], c["sequence_number"])
        for c in await store.list_checkpoints(FQNS, HUB, group)
    }


def context(store: BlobCheckpointStore | None, partition: str) -> PartitionContext:
    return PartitionContext(FQNS, HUB, GROUP, partition, store)


async def fresh_source(azurite: str) -> EventHubSource:
    """A source whose checkpoint store is a new, empty container on Azurite."""
    source = EventHubSource(
        connection=EMULATOR, eventhub=HUB, checkpoint_conn=azurite, container=container_name()
    )
    await source.ensure_container()
    return source


def test_checkpoint_store_round_trip_per_partition(azurite: str) -> None:
    async def scenario() -> None:
        source = await fresh_source(azurite)
        store = source.checkpoint_store
        try:
            assert await checkpoints(store) == {}
            for p in range(4):
                await store.update_checkpoint(
                    {"fully_qualified_namespace": FQNS, "eventhub_name": HUB, "consumer_group": GROUP,
                     "partition_id": str(p), "offset": str(100 * p), "sequence_number": p}
                )  # fmt: skip
            await store.update_checkpoint(
                {"fully_qualified_namespace": FQNS, "eventhub_name": HUB, "consumer_group": GROUP,
                 "partition_id": "2", "offset": "4096", "sequence_number": 41}
            )  # fmt: skip
            assert await checkpoints(store) == {
                "0": ("0", 0),
                "1": ("100", 1),
                "2": ("4096", 41),
                "3": ("300", 3),
            }
            assert await checkpoints(store, "other-group") == {}
        finally:
            await source.close()

    asyncio.run(scenario())


def test_ownership_claims_use_etags(azurite: str) -> None:
    async def scenario() -> None:
        source = await fresh_source(azurite)
        store = source.checkpoint_store

        def claim(owner: str, partition: str, etag: str | None = None) -> dict[str, Any]:
            return {"fully_qualified_namespace": FQNS, "eventhub_name": HUB, "consumer_group": GROUP,
                    "partition_id": partition, "owner_id": owner, "etag": etag}  # fmt: skip

        try:
            first = list(await store.claim_ownership([claim("host-a", "0"), claim("host-a", "1")]))
            assert sorted(o["partition_id"] for o in first) == ["0", "1"]
            etag0 = next(o["etag"] for o in first if o["partition_id"] == "0")
            assert etag0

            # (A claim without an etag on an existing blob relies on If-None-Match on Set Blob Metadata,
            # which Azurite 3.37 does not enforce, so it is not asserted here; the load balancer always
            # claims existing partitions with the etag it listed, which is what follows.)
            # host-a renews, so host-b's view of the etag is stale and its claim loses.
            renewed = list(await store.claim_ownership([claim("host-a", "0", etag0)]))
            assert len(renewed) == 1 and renewed[0]["etag"] != etag0
            assert list(await store.claim_ownership([claim("host-b", "0", etag0)])) == []
            # With the current etag (as load balancing does after expiry) host-b takes it.
            taken = list(await store.claim_ownership([claim("host-b", "0", renewed[0]["etag"])]))
            assert [o["owner_id"] for o in taken] == ["host-b"]

            owners = {o["partition_id"]: o["owner_id"] for o in await store.list_ownership(FQNS, HUB, GROUP)}
            assert owners == {"0": "host-b", "1": "host-a"}
        finally:
            await source.close()

    asyncio.run(scenario())


def test_batches_checkpoint_the_right_partition_only_when_called(azurite: str) -> None:
    async def scenario() -> None:
        batch_a = [received("player-00001", s, 320 * s) for s in range(3)]
        batch_b = [received("player-00001", s, 320 * s) for s in range(3, 5)]
        batch_c = [received("player-00002", s, 500 * s) for s in range(2)]
        stand_in = BrokerStandIn(
            [(context(None, "0"), batch_a), (context(None, "1"), []), (context(None, "1"), batch_c),
             (context(None, "0"), batch_b)]
        )  # fmt: skip
        source = EventHubSource(
            connection=EMULATOR,
            eventhub=HUB,
            checkpoint_conn=azurite,
            container=container_name(),
            client=stand_in,
        )
        store = source.checkpoint_store
        stream = source.batches(max_batch=3)
        try:
            partition, events, commit_a = await anext(stream)
            assert partition == "0"
            assert [e.sequence_number for e in events] == [0, 1, 2]
            first = events[0]
            assert first == ReceivedEvent(
                body=b'{"seq": 0}',
                partition_id="0",
                sequence_number=0,
                offset="0",
                enqueued_time=datetime.fromtimestamp(T0_MS / 1000, UTC),
                partition_key="player-00001",
                content_type="application/cloudevents+json; charset=utf-8",
                properties={"origin": "test"},
            )
            assert first.enqueued_ms == T0_MS
            assert stand_in.kwargs["max_batch_size"] == 3
            assert stand_in.kwargs["starting_position"] == "-1"

            # Received is not processed: nothing is written until the host calls the checkpoint.
            assert await checkpoints(store) == {}
            await commit_a()
            assert await checkpoints(store) == {"0": ("640", 2)}

            partition, events, commit_c = await anext(stream)  # the empty batch was skipped
            assert (partition, [e.sequence_number for e in events]) == ("1", [0, 1])
            partition, events, commit_b = await anext(stream)
            assert (partition, [e.sequence_number for e in events]) == ("0", [3, 4])
            assert await checkpoints(store) == {"0": ("640", 2)}

            await commit_c()
            assert await checkpoints(store) == {"0": ("640", 2), "1": ("500", 1)}
            await commit_b()
            assert await checkpoints(store) == {"0": ("1280", 4), "1": ("500", 1)}
            # A late checkpoint of an older batch never moves the partition backwards.
            await commit_a()
            assert await checkpoints(store) == {"0": ("1280", 4), "1": ("500", 1)}

            # What a restarted consumer reads is what the host committed (another source, same blobs).
            again = EventHubSource(
                connection=EMULATOR, eventhub=HUB, checkpoint_conn=azurite, container=source.container
            )
            try:
                assert await checkpoints(again.checkpoint_store) == {"0": ("1280", 4), "1": ("500", 1)}
            finally:
                await again.close()
        finally:
            await stream.aclose()
            await source.close()
        assert stand_in.closed.is_set()

    asyncio.run(scenario())


def test_a_receive_error_that_ends_receiving_is_raised(azurite: str) -> None:
    async def scenario() -> None:
        stand_in = BrokerStandIn(
            [(context(None, "0"), [received("p", 0, 0)])], error=RuntimeError("link lost")
        )
        source = EventHubSource(
            connection=EMULATOR,
            eventhub=HUB,
            checkpoint_conn=azurite,
            container=container_name(),
            client=stand_in,
        )
        seen: list[str] = []
        try:
            with pytest.raises(RuntimeError, match="link lost"):
                async for partition, _events, _commit in source.batches(max_batch=10):
                    seen.append(partition)
        finally:
            await source.close()
        assert seen == ["0"]

    asyncio.run(scenario())


def test_event_without_broker_annotations_is_refused() -> None:
    with pytest.raises(ValueError, match="not received from a hub"):
        ReceivedEvent.from_event_data(EventData(b"{}"), "0")


def test_settings_forms() -> None:
    dev = resolve_storage_connection("UseDevelopmentStorage=true")
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;" in dev
    assert f"AccountKey={AZURITE_ACCOUNT_KEY};" in dev
    real = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==;EndpointSuffix=core.windows.net"
    assert resolve_storage_connection(real) == real
    assert DEFAULT_CONTAINER == "azure-webjobs-eventhub"
    with pytest.raises(ValueError, match="exactly one"):
        EventHubSource(eventhub=HUB, checkpoint_conn=dev)
    source = EventHubSource(connection=EMULATOR, eventhub=HUB, checkpoint_conn=dev)
    client = source.make_client()
    assert client.eventhub_name == HUB

    async def close() -> None:
        await client.close()
        await source.close()

    asyncio.run(close())
