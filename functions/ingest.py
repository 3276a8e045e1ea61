"""Event Hubs trigger: validate, drop, dead-letter, and signal one entity per player.

Delivery policy (docs/parking.md): bad input never raises (it is dead-lettered
per event), so a failed invocation means an outage of Cosmos DB or the Durable
backend. The host retries the batch with exponential backoff; once a batch has
failed ``INGEST_PARK_AFTER_RETRIES`` retries it is *parked* in Blob Storage and
the partition moves on. If parking fails too, the invocation fails and the host
retries again: an outage never turns into loss.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from datetime import UTC
from typing import List  # noqa: UP035 - the worker refuses list[...] on Python 3.11 (docs/platform.md)

import azure.durable_functions as df
import azure.functions as func

from shared import parking, runtime, signals, telemetry
from shared.routing import DeadLetter, Message, RoutedBatch, route
from shared.signals import Signal, SignalEvent
from shared.store import ActionStore, PermanentWriteFailure, get_store
from shared.tracing import IngestSpans

log = logging.getLogger(__name__)
bp = df.Blueprint()

ENTITY_NAME = "Player"
# The orchestration that delivers one trigger batch's signals (SIGNAL_PATH=orchestration).
DELIVERY_ORCHESTRATOR = "deliver_signals"
# Largest orchestration input (characters of the signal list): Azure Storage moves inputs over
# 45 KB to blobs on its own; the Durable Task Scheduler refuses payloads near 1 MiB. A larger
# batch is split into several orchestrations, deterministically.
DELIVERY_MAX_INPUT_CHARS = 256 * 1024
SIGNAL_CONCURRENCY = 32
# Dead-letter writes in flight per invocation (blocking Cosmos calls, each on a worker thread).
DEADLETTER_CONCURRENCY = 8


def batch_partition(events: List[func.EventHubEvent]) -> str | None:  # noqa: UP006
    """The partition of a trigger batch (one per invocation), read once.

    ``EventHubEvent.metadata`` decodes the whole batch's trigger metadata on every
    access, so reading it per event would be quadratic in the batch size.
    """
    if not events:
        return None
    ctx = (events[0].metadata or {}).get("PartitionContext")
    if isinstance(ctx, dict) and ctx.get("PartitionId") is not None:
        return str(ctx["PartitionId"])
    log.warning("trigger batch without PartitionContext: dedupe falls back to event ids")
    return None


def to_message(event: func.EventHubEvent, partition: str | None, properties: object = None) -> Message:
    """Lift the body and the sequence/enqueued-time metadata off a trigger event.

    A re-injected parked event carries where it was first read (``properties``, its application
    properties): that position is the one the entities dedupe by."""
    first = parking.origin(properties)
    if first is not None:
        return Message(body=event.get_body(), partition=first[0], sequence=first[1], enqueued_ms=first[2])
    return Message(
        body=event.get_body(),
        partition=partition,
        sequence=event.sequence_number,
        enqueued_ms=enqueued_ms(event),
    )


def batch_properties(events: List[func.EventHubEvent]) -> list[object]:  # noqa: UP006
    """Each event's application properties (``PropertiesArray``), read once per batch."""
    if not events:
        return []
    props = (events[0].metadata or {}).get("PropertiesArray")
    if isinstance(props, list) and len(props) == len(events):
        return props
    return [None] * len(events)


def enqueued_ms(event: func.EventHubEvent) -> int | None:
    """The enqueued time in epoch ms. The host sends EnqueuedTimeUtc without a zone, and the
    library parses it into a naive datetime that means UTC: read it as UTC, never as local time."""
    enqueued = event.enqueued_time
    if enqueued is None:
        return None
    if enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)
    return int(enqueued.timestamp() * 1000)


async def _signal_all(client: df.DurableOrchestrationClient, batch: RoutedBatch, spans: IngestSpans) -> None:
    if runtime.settings().signal_path == "client":
        await _signal_each(client, batch, spans)
    else:
        await _signal_by_orchestration(client, batch, spans)


async def _signal_each(client: df.DurableOrchestrationClient, batch: RoutedBatch, spans: IngestSpans) -> None:
    """One client signal per player: one HTTP request to the extension's webhook each."""
    gate = asyncio.Semaphore(SIGNAL_CONCURRENCY)
    ranges = batch.ranges()

    async def one(player_id: str, events: list[SignalEvent]) -> None:
        async with gate:
            with spans.signal(player_id, events) as traced:
                payload = signals.encode(Signal(traced, ranges))
                await client.signal_entity(df.EntityId(ENTITY_NAME, player_id), "events", payload)

    # A TaskGroup cancels the other signals when one fails; the batch is then retried whole.
    try:
        async with asyncio.TaskGroup() as group:
            for pid, events in batch.signals.items():
                group.create_task(one(pid, events))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from failed


def delivery_chunks(items: list[list[str]], limit: int = DELIVERY_MAX_INPUT_CHARS) -> list[list[list[str]]]:
    """The batch's [player, signal] pairs cut into orchestration inputs of at most ``limit``
    characters each (one pair over the limit travels alone), in order: the same batch always
    gives the same chunks, so a redelivery starts the same instances."""
    chunks: list[list[list[str]]] = []
    size = limit + 1
    for item in items:
        n = len(item[0]) + len(item[1]) + 8
        if size + n > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += n
    return chunks


def delivery_instance_id(ranges: list[tuple[str, int, int]], chunk: int) -> str:
    """The delivery orchestration of one chunk of one trigger batch. Deterministic: the same
    events (hub, consumer group, partition and sequence ranges) give the same id, so a batch the
    host delivers again starts the same instance, never a second set of signals alongside."""
    settings = runtime.settings()
    key = json.dumps([settings.eventhub_name, settings.eventhub_consumer_group, ranges, chunk])
    return "signals-" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def _signal_by_orchestration(
    client: df.DurableOrchestrationClient, batch: RoutedBatch, spans: IngestSpans
) -> None:
    """One orchestration per batch (per chunk) that signals each player's entity: one HTTP
    request for the whole batch, and the signals become the orchestrator's fire-and-forget
    actions (docs/performance.md, "Signals")."""
    if not batch.signals:
        return
    ranges = batch.ranges()
    items: list[list[str]] = []
    for pid, events in batch.signals.items():
        with spans.signal(pid, events) as traced:
            items.append([pid, signals.encode(Signal(traced, ranges))])
    for n, chunk in enumerate(delivery_chunks(items)):
        await _start_delivery(client, delivery_instance_id(ranges, n), chunk)


class DeliveryRefused(RuntimeError):
    """The Durable backend did not take a batch's delivery orchestration: the batch is retried."""

    def __init__(self, instance_id: str, cause: BaseException) -> None:
        super().__init__(f"delivery orchestration {instance_id} not started: {cause!r}")


# An instance in one of these states already holds this batch's signals (same id, same input).
_UNDERWAY = frozenset(
    {
        df.OrchestrationRuntimeStatus.Running,
        df.OrchestrationRuntimeStatus.Pending,
        df.OrchestrationRuntimeStatus.ContinuedAsNew,
    }
)


async def _start_delivery(
    client: df.DurableOrchestrationClient, instance_id: str, chunk: list[list[str]]
) -> None:
    try:
        await client.start_new(DELIVERY_ORCHESTRATOR, instance_id, chunk)
        return
    except Exception as exc:
        refused = exc
    # Starting an id that is Running or Pending is refused (500). The same id carries the same
    # events, so an instance under way delivers them: the batch is done. Anything else (the
    # backend is down, the status cannot be read) fails the batch: retried, then parked.
    try:
        status = await client.get_status(instance_id)
    except Exception as exc:
        raise DeliveryRefused(instance_id, refused) from exc
    if status is not None and status.runtime_status in _UNDERWAY:
        log.info("delivery %s already under way: this batch was delivered again", instance_id)
        return
    raise DeliveryRefused(instance_id, refused) from refused


@bp.orchestration_trigger(context_name="context", orchestration=DELIVERY_ORCHESTRATOR)
def deliver_signals(context: df.DurableOrchestrationContext) -> int:
    """Signal each player of one trigger batch: fire-and-forget actions, one episode, no replay
    of anything (it awaits nothing). Entities dedupe a signal delivered twice."""
    pairs = context.get_input() or []
    for player_id, payload in pairs:
        context.signal_entity(df.EntityId(ENTITY_NAME, player_id), "events", payload)
    return len(pairs)


def _write_dead_letter(store: ActionStore, dl: DeadLetter) -> bool:
    """Write one dead letter (unless it concerns an erased player); True when Cosmos refused it.

    An erased player's dead letter is never written again by a replay: its id, or an id-like
    token in its raw bytes, is checked against the erasure records (shared.erasure).

    A transient failure raises, so the batch is retried; a permanent refusal
    (400/413) cannot be cured by retrying and must not stall the partition:
    it is logged (position and reason, not the payload) and counted instead.
    """
    if store.erased.concerns_erased(dl.rejected.player_id, dl.message.body):
        telemetry.instruments().deadletters_erased.add(1, {"reason": dl.rejected.reason})
        return False
    try:
        store.write_deadletter(
            reason=dl.rejected.reason,
            detail=dl.rejected.detail,
            raw=dl.message.body,
            partition=dl.message.partition,
            sequence=dl.message.sequence,
            player_id=dl.rejected.player_id,
            event_id=dl.rejected.event_id,
        )
        return False
    except PermanentWriteFailure as exc:
        log.error(
            "dead letter refused by Cosmos DB: %s",
            exc,
            extra={
                "reason": dl.rejected.reason,
                "partition": dl.message.partition,
                "sequence": dl.message.sequence,
            },
        )
        return True


async def _dead_letter(batch: RoutedBatch) -> int:
    """Write the batch's dead letters, up to DEADLETTER_CONCURRENCY at once (one at a time, a
    flood of bad input slowed its partition 5-7x); returns how many Cosmos refused for good."""
    store = get_store(runtime.settings().cosmos)
    gate = asyncio.Semaphore(DEADLETTER_CONCURRENCY)

    async def one(dl: DeadLetter) -> bool:
        async with gate:
            return await asyncio.to_thread(_write_dead_letter, store, dl)

    refused = await asyncio.gather(*(one(dl) for dl in batch.dead_letters))
    return sum(refused)


def _record(batch: RoutedBatch, refused: int) -> None:
    m = telemetry.instruments()
    if refused:
        m.deadletter_write_failures.add(refused)
    m.events_in.add(batch.events_in)
    telemetry.add_counts(m.events_dropped, batch.dropped, "type")
    reasons: dict[str, int] = {}
    for dl in batch.dead_letters:
        reasons[dl.rejected.reason] = reasons.get(dl.rejected.reason, 0) + 1
    telemetry.add_counts(m.events_deadlettered, reasons, "reason")
    m.signals.add(len(batch.signals))


def _parked_batch(
    events: List[func.EventHubEvent],  # noqa: UP006
    partition: str | None,
    error: BaseException,
    attempts: int,
) -> parking.ParkedBatch:
    settings = runtime.settings()
    seqs = [e.sequence_number for e in events if e.sequence_number is not None]
    return parking.ParkedBatch(
        event_hub=settings.eventhub_name,
        consumer_group=settings.eventhub_consumer_group,
        partition=partition if partition is not None else "unknown",
        first_sequence=min(seqs, default=-1),
        last_sequence=max(seqs, default=-1),
        attempts=attempts,
        error=f"{type(error).__name__}: {error}"[:2000],
        parked_ms=runtime.now_ms(),
        events=[
            parking.ParkedEvent(
                sequence=e.sequence_number if e.sequence_number is not None else -1,
                offset=None if e.offset is None else str(e.offset),
                enqueued_ms=enqueued_ms(e),
                partition_key=e.partition_key,
                body=e.get_body(),
            )
            for e in events
        ],
    )


async def process(
    events: List[func.EventHubEvent],  # noqa: UP006
    client: df.DurableOrchestrationClient,
) -> None:
    """Route one batch: signal each player's entity once, dead-letter the bad events, count."""
    settings = runtime.settings()
    started_ns = time.time_ns()
    partition = batch_partition(events)
    batch = route(
        [to_message(e, partition, p) for e, p in zip(events, batch_properties(events), strict=True)],
        now_ms=runtime.now_ms(),
        max_bytes=settings.max_event_bytes,
        max_future_skew_ms=int(settings.max_future_skew_seconds * 1000),
    )
    # Valid events first: a Cosmos outage must not hold them back behind the dead letters.
    spans = IngestSpans(batch.signals, started_ns, settings.hash_player_ids_in_telemetry)
    try:
        await _signal_all(client, batch, spans)
    finally:
        spans.end()
    refused = await _dead_letter(batch) if batch.dead_letters else 0
    _record(batch, refused)
    log.info(
        "batch routed",
        extra={
            "events_in": batch.events_in,
            "routed": batch.routed,
            "players": len(batch.signals),
            "dropped": sum(batch.dropped.values()),
            "dead_lettered": len(batch.dead_letters),
        },
    )


@bp.function_name("ingest")
# The host retries a failed batch for ever (-1) with exponential backoff (2 s doubling to 60 s);
# the function itself bounds the retries: after INGEST_PARK_AFTER_RETRIES it parks the batch
# (Blob Storage) and returns, so the partition moves on. A bound in the host's policy instead
# would make the host move on even when parking failed, and lose the batch (docs/parking.md).
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:02",
    maximum_interval="00:01:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%EVENTHUB_NAME%",
    connection="EventHubConnection",
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
    cardinality="many",
    # Bodies byte-exact, nothing parsed by the host: without a dataType the host parses every
    # body as JSON and fails the whole batch on one that is not; "string" drops empty bodies.
    data_type=func.DataType.BINARY,
)
@bp.durable_client_input(client_name="client")
async def ingest(
    events: List[func.EventHubEvent],  # noqa: UP006 - see the import
    client: df.DurableOrchestrationClient,
    context: func.Context,
) -> None:
    """One invocation per batch; a failure re-runs it (entities dedupe), and a batch that keeps
    failing is parked instead of stalling its partition."""
    try:
        await process(events, client)
    except Exception as exc:
        retry = context.retry_context
        retries = retry.retry_count if retry is not None else 0
        limit = runtime.settings().park_after_retries
        if retries < limit:
            log.warning("batch failed (retry %d of %d before parking): %s", retries, limit, exc)
            raise
        batch = _parked_batch(events, batch_partition(events), exc, retries + 1)
        # Raises when storage refuses: then the host retries the batch again, nothing is lost.
        name = await asyncio.to_thread(parking.get_parking_lot().park, batch)
        telemetry.instruments().batches_parked.add(1, {"partition": batch.partition})
        log.error(
            "batch parked after %d attempts: %s",
            retries + 1,
            exc,
            extra={"blob": name, "partition": batch.partition, "events": len(events)},
        )
