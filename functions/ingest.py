"""Event Hubs trigger: validate, drop, dead-letter, and signal one entity per player."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared import runtime, telemetry
from shared.routing import Message, RoutedBatch, route
from shared.store import PermanentWriteFailure, get_store
from shared.tracing import IngestSpans

log = logging.getLogger(__name__)
bp = df.Blueprint()

ENTITY_NAME = "Player"
SIGNAL_CONCURRENCY = 32


def batch_partition(events: list[func.EventHubEvent]) -> str | None:
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


def to_message(event: func.EventHubEvent, partition: str | None) -> Message:
    """Lift the body and the sequence/enqueued-time metadata off a trigger event."""
    enqueued = event.enqueued_time
    return Message(
        body=event.get_body(),
        partition=partition,
        sequence=event.sequence_number,
        enqueued_ms=int(enqueued.timestamp() * 1000) if enqueued else None,
    )


async def _signal_all(
    client: df.DurableOrchestrationClient, inputs: dict[str, dict[str, Any]], spans: IngestSpans
) -> None:
    gate = asyncio.Semaphore(SIGNAL_CONCURRENCY)

    async def one(player_id: str, payload: dict[str, Any]) -> None:
        async with gate:
            with spans.signal(player_id, payload["events"]):
                await client.signal_entity(df.EntityId(ENTITY_NAME, player_id), "events", payload)

    # A TaskGroup cancels the other signals when one fails; the batch is then retried whole.
    try:
        async with asyncio.TaskGroup() as group:
            for pid, payload in inputs.items():
                group.create_task(one(pid, payload))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from failed


def _dead_letter(batch: RoutedBatch) -> int:
    """Write the batch's dead letters; returns how many Cosmos refused for good.

    A transient failure raises, so the batch is retried; a permanent refusal
    (400/403/413) cannot be cured by retrying and must not stall the partition:
    it is logged (position and reason, not the payload) and counted instead.
    """
    store = get_store(runtime.settings().cosmos)
    refused = 0
    for dl in batch.dead_letters:
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
        except PermanentWriteFailure as exc:
            refused += 1
            log.error(
                "dead letter refused by Cosmos DB: %s",
                exc,
                extra={
                    "reason": dl.rejected.reason,
                    "partition": dl.message.partition,
                    "sequence": dl.message.sequence,
                },
            )
    return refused


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


@bp.function_name("ingest")
# Retry a failed batch until it succeeds (-1): bad input never raises (it is
# dead-lettered), so a failure means Durable or Cosmos is unavailable, and moving
# on would lose the batch. Replays are harmless: the entities dedupe.
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:01",
    maximum_interval="00:05:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%EVENTHUB_NAME%",
    connection="EventHubConnection",
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
    cardinality="many",
)
@bp.durable_client_input(client_name="client")
async def ingest(events: list[func.EventHubEvent], client: df.DurableOrchestrationClient) -> None:
    """One invocation per batch. A failure re-runs the batch (retry policy); entities dedupe."""
    settings = runtime.settings()
    started_ns = time.time_ns()
    partition = batch_partition(events)
    batch = route(
        [to_message(e, partition) for e in events],
        now_ms=runtime.now_ms(),
        max_bytes=settings.max_event_bytes,
        max_future_skew_ms=int(settings.max_future_skew_seconds * 1000),
    )
    # Valid events first: a Cosmos outage must not hold them back behind the dead letters.
    spans = IngestSpans(batch.signals, started_ns, settings.hash_player_ids_in_telemetry)
    try:
        await _signal_all(client, batch.signal_inputs(), spans)
    finally:
        spans.end()
    refused = await asyncio.to_thread(_dead_letter, batch) if batch.dead_letters else 0
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
