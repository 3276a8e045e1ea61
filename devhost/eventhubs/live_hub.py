"""The devhost's ``eventhub`` source: a real Event Hub read with blob checkpoints.

The devhost normally feeds the trigger from synthetic journeys or a JSONL file;
this source lets it read a real Event Hub (or the Event Hubs emulator) instead,
with the same delivery contract the Functions host gives the app:

- Batches come per partition, in partition order, from ``EventHubConsumerClient``
  (aio) with a ``BlobCheckpointStore`` (azure-eventhub-checkpointstoreblob-aio), so
  several devhosts (or a devhost next to ``func start``) share the partitions
  through the same ownership blobs and resume from the same checkpoints.
- Each batch carries a ``checkpoint`` callable. The host calls it only after the
  function returned, so a crash between receive and checkpoint redelivers the
  batch (at-least-once, like the Functions host); nothing is checkpointed that
  was not processed. Checkpoints never move backwards, even if the host finishes
  batches of one partition out of order.
- The default container is the Functions host's ``azure-webjobs-eventhub`` and
  the blob layout is the SDK's (``<namespace>/<hub>/<group>/checkpoint/<partition>``),
  the layout the Event Hubs extension v5 uses as well.
- Storage may be a connection string, ``UseDevelopmentStorage=true`` (Azurite on
  its default port) or a blob service URL (``AzureWebJobsStorage__blobServiceUri``)
  used with a token credential; the hub may be a connection string (emulator)
  or a namespace used with ``DefaultAzureCredential``, as in Azure.

The receive callback hands batches to the iterator through a bounded queue, so
a slow host applies back-pressure to the receiver instead of buffering the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import ResourceExistsError
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, PartitionContext
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

from devhost.servers.node import AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY, azurite_connection_string

__all__ = ["AZURITE_ACCOUNT_KEY", "azurite_connection_string"]

log = logging.getLogger("devhost.eventhubs.live_hub")

DEFAULT_CONTAINER = "azure-webjobs-eventhub"
# The Storage REST version BlobCheckpointStore speaks; container creation uses it too, so whatever
# serves the checkpoints (an older Azurite included) also accepts the create call.
STORE_API_VERSION = "2019-07-07"


def resolve_storage_connection(conn: str) -> str:
    """Expand ``UseDevelopmentStorage=true`` the way the Functions host does (Azurite on 127.0.0.1:10000).

    The checkpoint store's vendored storage client does not understand the
    shorthand, and ``AzureWebJobsStorage`` in local.settings.json is usually it.
    """
    pairs = (part.split("=", 1) for part in conn.strip().rstrip(";").split(";") if "=" in part)
    settings = {k.strip().lower(): v.strip() for k, v in pairs}
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        proxy = settings.get("developmentstorageproxyuri")
        base = (proxy.rstrip("/") if proxy else "http://127.0.0.1") + ":10000"
        return azurite_connection_string(f"{base}/{AZURITE_ACCOUNT}")
    return conn


def _is_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One received event with what the trigger's ``func.EventHubEvent`` carries."""

    body: bytes
    partition_id: str
    sequence_number: int
    offset: str
    enqueued_time: datetime
    partition_key: str | None = None
    content_type: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def enqueued_ms(self) -> int:
        return int(self.enqueued_time.timestamp() * 1000)

    @classmethod
    def from_event_data(cls, event: EventData, partition_id: str) -> ReceivedEvent:
        """Copy what the trigger needs out of the SDK object (which holds the whole AMQP message)."""
        if event.sequence_number is None or event.offset is None:
            raise ValueError("event has no sequence number/offset: it was not received from a hub")
        enqueued = event.enqueued_time or datetime.now(UTC)
        key = event.partition_key
        return cls(
            body=_body_bytes(event),
            partition_id=partition_id,
            sequence_number=int(event.sequence_number),
            offset=str(event.offset),
            enqueued_time=enqueued if enqueued.tzinfo else enqueued.replace(tzinfo=UTC),
            partition_key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
            content_type=event.content_type,
            properties={_text(k): _text(v) for k, v in (event.properties or {}).items()},
        )


def _body_bytes(event: EventData) -> bytes:
    """The raw bytes of a data body; other AMQP body kinds (from non-SDK producers) as JSON."""
    if event.body_type == AmqpMessageBodyType.DATA:
        raw = event.body
        return raw if isinstance(raw, bytes) else b"".join(raw)  # type: ignore[arg-type]
    return json.dumps(event.body, default=_text).encode("utf-8")


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


Checkpoint = Callable[[], Awaitable[None]]
SourceBatch = tuple[str, list[ReceivedEvent], Checkpoint]


class ConsumerClient(Protocol):
    """What the source uses of ``EventHubConsumerClient`` (aio)."""

    @property
    def receive_batch(self) -> Callable[..., Coroutine[Any, Any, None]]: ...

    async def close(self) -> None: ...


class EventHubSource:
    """Batches from a real Event Hub, each with a checkpoint callable for after the function ran.

    Usage::

        async with EventHubSource(connection=..., eventhub="player-events",
                                  checkpoint_conn="UseDevelopmentStorage=true") as source:
            async for partition_id, events, checkpoint in source.batches(max_batch=100):
                await run_trigger(events)   # the real function
                await checkpoint()          # only after it returned
    """

    def __init__(
        self,
        *,
        connection: str | None = None,
        namespace: str | None = None,
        eventhub: str,
        consumer_group: str = "$Default",
        checkpoint_conn: str,
        container: str = DEFAULT_CONTAINER,
        credential: AsyncTokenCredential | None = None,
        starting_position: str | int | datetime = "-1",
        max_wait_time: float | None = 1.0,
        queued_batches: int = 4,
        client: ConsumerClient | None = None,
    ) -> None:
        """``starting_position`` applies only to partitions without a checkpoint ("-1": the beginning).

        ``client`` replaces the consumer (tests); by default a real one is made on first use.
        """
        if client is None and bool(connection) == bool(namespace):
            raise ValueError("give exactly one of connection (emulator) or namespace (credential)")
        self.connection, self.namespace = connection, namespace
        self.eventhub, self.consumer_group, self.container = eventhub, consumer_group, container
        self.starting_position, self.max_wait_time = starting_position, max_wait_time
        self._credential = credential
        self._owns_credential = False
        self._client = client
        self._storage = (
            checkpoint_conn if _is_url(checkpoint_conn) else resolve_storage_connection(checkpoint_conn)
        )
        self.checkpoint_store = self._make_store()
        self._queue: asyncio.Queue[SourceBatch] = asyncio.Queue(maxsize=max(1, queued_batches))
        self._committed: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._container_ready = False
        self._running = False

    # -- wiring ---------------------------------------------------------------
    def _token_credential(self) -> AsyncTokenCredential:
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
            self._owns_credential = True
        return self._credential

    def _make_store(self) -> BlobCheckpointStore:
        if _is_url(self._storage):
            return BlobCheckpointStore(
                self._storage,
                self.container,
                credential=self._token_credential(),
                api_version=STORE_API_VERSION,
            )
        return BlobCheckpointStore.from_connection_string(
            self._storage, self.container, api_version=STORE_API_VERSION
        )

    def make_client(self) -> EventHubConsumerClient:
        """The real consumer, sharing our checkpoint store for load balancing and start positions."""
        if self.connection:
            return EventHubConsumerClient.from_connection_string(
                self.connection,
                consumer_group=self.consumer_group,
                eventhub_name=self.eventhub,
                checkpoint_store=self.checkpoint_store,
            )
        if not self.namespace:
            raise ValueError("no connection string or namespace to build the consumer from")
        namespace = self.namespace if "." in self.namespace else f"{self.namespace}.servicebus.windows.net"
        return EventHubConsumerClient(
            fully_qualified_namespace=namespace,
            eventhub_name=self.eventhub,
            consumer_group=self.consumer_group,
            credential=self._token_credential(),
            checkpoint_store=self.checkpoint_store,
        )

    async def ensure_container(self) -> None:
        """Create the checkpoint container once: Azurite starts empty, and the store does not create it."""
        if self._container_ready:
            return
        from azure.storage.blob.aio import ContainerClient

        if _is_url(self._storage):
            container = ContainerClient(
                self._storage,
                self.container,
                credential=self._token_credential(),
                api_version=STORE_API_VERSION,
            )
        else:
            container = ContainerClient.from_connection_string(
                self._storage, self.container, api_version=STORE_API_VERSION
            )
        async with container:
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
        self._container_ready = True

    # -- receiving --------------------------------------------------------------
    async def on_event_batch(self, context: PartitionContext, events: list[EventData]) -> None:
        """The receive callback: convert, attach a checkpoint callable, queue (waits when the host lags)."""
        if not events:
            return  # max_wait_time elapsed with nothing new
        received = [ReceivedEvent.from_event_data(e, context.partition_id) for e in events]
        await self._queue.put((context.partition_id, received, self._checkpointer(context, received[-1])))

    async def _on_error(self, context: PartitionContext | None, error: Exception) -> None:
        # The client recovers by itself (reconnects, rebalances); the devhost only needs to see it.
        where = f"partition {context.partition_id}" if context is not None else "load balancing"
        log.warning("event hub receive error (%s): %r", where, error)

    def _checkpointer(self, context: PartitionContext, last: ReceivedEvent) -> Checkpoint:
        partition = context.partition_id
        checkpoint = {
            # The namespace/hub/group as the consumer client itself names them, so it finds them on restart.
            "fully_qualified_namespace": context.fully_qualified_namespace,
            "eventhub_name": context.eventhub_name,
            "consumer_group": context.consumer_group,
            "partition_id": partition,
            "offset": last.offset,
            "sequence_number": last.sequence_number,
        }

        async def commit() -> None:
            async with self._locks.setdefault(partition, asyncio.Lock()):
                if self._committed.get(partition, -1) >= last.sequence_number:
                    return  # a later batch of this partition was already checkpointed
                await self.checkpoint_store.update_checkpoint(checkpoint)
                self._committed[partition] = last.sequence_number

        return commit

    async def batches(self, max_batch: int) -> AsyncIterator[SourceBatch]:
        """Yield ``(partition_id, events, checkpoint)`` until closed; an error ending receipt is raised."""
        if self._running:
            raise RuntimeError("batches() is already being iterated")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._running = True
        await self.ensure_container()
        client: ConsumerClient = self._client or self.make_client()
        self._client = client
        receiving: asyncio.Task[None] = asyncio.create_task(
            client.receive_batch(
                on_event_batch=self.on_event_batch,
                on_error=self._on_error,
                max_batch_size=max_batch,
                max_wait_time=self.max_wait_time,
                starting_position=self.starting_position,
            ),
            name=f"eventhub-receive-{self.eventhub}",
        )
        getter: asyncio.Future[SourceBatch] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({getter, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                error = receiving.exception()
                if error is not None:
                    raise error
                return
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiving
            self._running = False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        await self.checkpoint_store.close()
        if self._owns_credential and self._credential is not None:
            await self._credential.close()

    async def __aenter__(self) -> EventHubSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
