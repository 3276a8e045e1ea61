"""An Event Hubs stand-in: a partitioned log, and one pump per partition that runs the trigger.

Like the service, a partition key maps to one partition through a stable hash,
so one player's events stay in order in one partition; each event gets the
partition's next sequence number, an offset (bytes before it in the partition)
and an enqueued time. Like the Functions host, each partition is read in
batches of at most ``maxEventBatchSize`` (waiting up to ``maxWaitTime`` for
``minEventBatchSize``), the trigger is invoked with ``list[EventHubEvent]``,
a failed invocation is retried per the function's retry policy, and the
partition is checkpointed only after the function has returned. The trigger
input is built as the host builds it (``devhost.functions_host.bindings``) and decoded by the
azure.functions converter, as in the worker.

When a bounded retry policy runs out the host moves on (it checkpoints and
reads the next batch), and so does the devhost; it records the batch in
``failed_batches`` and counts it in the summary, so the loss is visible, never
silent. An unlimited policy (-1) is retried for ever, as by the host.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devhost.db import DevDB, LogEvent, now_ms
from devhost.functions_host.bindings import HubEvent
from devhost.functions_host.indexing import RetryPolicy
from devhost.functions_host.worker import RetryContext

log = logging.getLogger(__name__)

# One invocation of the trigger for a batch, with the host's retry context of that attempt.
Invoke = Callable[[str, Sequence[HubEvent], RetryContext], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


def partition_for(partition_key: str, partition_count: int) -> str:
    """A stable hash of the partition key (not the service's hash, but as stable)."""
    digest = hashlib.blake2b(partition_key.encode("utf-8"), digest_size=8).digest()
    return str(int.from_bytes(digest, "big") % partition_count)


class EventLog:
    """The partitioned log on top of DevDB; wakes the partition pumps on append."""

    def __init__(self, db: DevDB, partition_ids: Sequence[str]) -> None:
        self.db = db
        self.partition_ids = list(partition_ids)
        self.tails = {p: (0, 0) for p in self.partition_ids}
        self.tails.update(db.log_tails())
        self._wake = {p: asyncio.Event() for p in self.partition_ids}
        self.closed = asyncio.Event()  # the source will append nothing more

    @property
    def total(self) -> int:
        return sum(seq for seq, _ in self.tails.values())

    def append(
        self,
        items: Sequence[tuple[str | None, bytes]] | Sequence[tuple[str | None, bytes, dict[str, Any] | None]],
        meta: dict[str, object] | None = None,
        at_ms: int | None = None,
    ) -> None:
        """Append (partition key, body[, application properties]) items; keyless events are spread
        by a hash of the body."""
        stamp = now_ms() if at_ms is None else at_ms
        batch: list[LogEvent] = []
        tails = dict(self.tails)
        n = len(self.partition_ids)
        for item in items:
            pkey, body = item[0], item[1]
            props = item[2] if len(item) > 2 else None
            part = self.partition_ids[int(partition_for(pkey if pkey is not None else body.hex(), n))]
            seq, offset = tails[part]
            batch.append(LogEvent(part, seq, offset, stamp, pkey, body, props))
            tails[part] = (seq + 1, offset + len(body))
        self.db.append_events(batch, meta)
        self.tails = tails
        for e in batch:
            self._wake[e.partition].set()

    def close(self) -> None:
        self.closed.set()
        for ev in self._wake.values():
            ev.set()

    async def wait(self, partition: str, timeout: float) -> None:
        ev = self._wake[partition]
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass
        ev.clear()


def hub_events(batch: Sequence[LogEvent]) -> list[HubEvent]:
    """The log's events as the host's trigger listener receives them."""
    return [HubEvent(e.body, e.seq, str(e.offset), e.enqueued_ms, e.pkey, e.props) for e in batch]


@dataclass
class PumpStats:
    batches: int = 0
    events: int = 0
    retries: int = 0
    failed_batches: int = 0
    redelivered: int = 0


@dataclass(frozen=True)
class BatchOptions:
    max_batch: int
    min_batch: int = 1
    max_wait_s: float = 1.0


class PartitionPump:
    """Reads one partition after its checkpoint, invokes the trigger, checkpoints after it returns."""

    def __init__(
        self,
        log_: EventLog,
        partition: str,
        invoke: Invoke,
        options: BatchOptions,
        *,
        hub: str,
        consumer_group: str,
        retry: RetryPolicy | None,
        stats: PumpStats,
        sleep: Sleep = asyncio.sleep,
        redeliver_share: float = 0.0,
    ) -> None:
        self.log = log_
        # At-least-once on purpose: re-invoke a tail of some batches before the
        # checkpoint, cut differently, as a host restarting from a lost checkpoint would.
        self.redeliver_share = redeliver_share
        self._rng = random.Random(f"redeliver:{partition}")
        self.partition = partition
        self.invoke = invoke
        self.options = options
        self.hub, self.consumer_group = hub, consumer_group
        self.retry = retry
        self.stats = stats
        self.sleep = sleep
        self.checkpoint = log_.db.checkpoints().get(partition, -1)

    def caught_up(self) -> bool:
        return self.checkpoint + 1 >= self.log.tails[self.partition][0]

    async def run(self) -> None:
        """Until the source is closed and everything appended has been checkpointed."""
        first_seen: float | None = None
        while True:
            # What the log holds after the checkpoint, from its tail: the log is read only for a batch
            # that leaves now, not again on every wake-up while a batch fills.
            available = self.log.tails[self.partition][0] - (self.checkpoint + 1)
            if available <= 0:
                if self.log.closed.is_set() and self.caught_up():
                    return
                first_seen = None
                await self.log.wait(self.partition, 0.5)
                continue
            if available < self.options.min_batch and not self.log.closed.is_set():
                first_seen = first_seen or time.monotonic()
                left = self.options.max_wait_s - (time.monotonic() - first_seen)
                if left > 0:
                    await self.log.wait(self.partition, left)
                    continue
            first_seen = None
            batch = self.log.db.read_events(self.partition, self.checkpoint, self.options.max_batch)
            if not batch:  # the tail and the log disagree (never expected): read again after a wait
                await self.log.wait(self.partition, 0.5)
                continue
            await self.process(batch)

    async def process(self, batch: Sequence[LogEvent]) -> None:
        error, attempts = await invoke_with_retry(
            self.invoke,
            self.partition,
            hub_events(batch),
            self.retry,
            self.stats,
            self.sleep,
        )
        if error is not None:
            log.error(
                "batch failed after retries; moving on like the host (partition %s, seq %d-%d): %s",
                self.partition,
                batch[0].seq,
                batch[-1].seq,
                error,
            )
            self.log.db.record_failed_batch(
                self.partition, batch[0].seq, batch[-1].seq, attempts, error, now_ms()
            )
        if error is None and self.redeliver_share > 0 and self._rng.random() < self.redeliver_share:
            tail = batch[self._rng.randrange(len(batch)) :]
            await invoke_with_retry(
                self.invoke,
                self.partition,
                hub_events(tail),
                self.retry,
                self.stats,
                self.sleep,
            )
            self.stats.redelivered += len(tail)
        last = batch[-1]
        self.log.db.checkpoint(self.partition, last.seq, last.offset, now_ms())
        self.checkpoint = last.seq
        self.stats.batches += 1
        self.stats.events += len(batch)


async def invoke_with_retry(
    invoke: Invoke,
    partition: str,
    events: Sequence[HubEvent],
    retry: RetryPolicy | None,
    stats: PumpStats,
    sleep: Sleep = asyncio.sleep,
) -> tuple[str | None, int]:
    """Run the trigger, retrying per the function's policy as the host does.

    Each attempt carries the host's retry context (``retry_count`` 0 on the first
    attempt, ``max_retry_count`` -1 for an unlimited policy). An unlimited policy
    retries for ever, like the host: it is the function's job to give up (ingest
    parks the batch). Returns (the last error when a bounded policy ran out, else
    None; the number of attempts).
    """
    delays = retry.delays() if retry else iter(())
    max_count = retry.max_retry_count if retry else 0
    attempt = 0
    while True:
        try:
            await invoke(partition, events, RetryContext(attempt, max_count))
            return None, attempt + 1
        except Exception as exc:  # the host retries any failure of the invocation
            delay = next(delays, None)
            if delay is None:
                stats.failed_batches += 1
                return repr(exc), attempt + 1
            stats.retries += 1
            log.warning("invocation failed (attempt %d), retrying in %.1fs: %s", attempt + 1, delay, exc)
            await sleep(delay)
            attempt += 1
