"""The Durable side: per-entity FIFO queues in SQLite and a pool of entity workers.

A signal is committed to its entity's queue before it is acknowledged (202).
A worker takes up to ``maxEntityOperationBatchSize`` queued operations of one
entity in FIFO order, runs the real entity function through the worker path
and the SDK's JSON batch protocol (sync entity functions in a thread, as the
worker runs them: the entity does blocking Cosmos I/O), then saves the
returned state and deletes the processed rows in one transaction. One entity
is never run by two workers at once. A crash between the entity's Cosmos
writes and that commit re-runs the batch; the entity dedupes its events and
creates the same deterministic action ids once.

A batch that fails as a whole (the function raised past the SDK, the worker
died) is not committed and is delivered again, with no retry cap, as the
Durable extension does (``TaskEntityShim``): nothing is parked on the side.
Each failure is counted (``batch_failures``) and logged, so a batch that keeps
failing is visible in the progress line and the summary. An operation that
raises inside the SDK is that operation's error result, not a batch failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from devhost.db import DevDB, QueuedOp, now_ms
from devhost.durable import protocol

log = logging.getLogger(__name__)

# Back-off between deliveries of a failed batch: doubling from 50 ms, at most 5 s.
REDELIVERY_BASE_S = 0.05
REDELIVERY_MAX_S = 5.0

# Runs one batch: the extension's batch JSON in, the entity function's result JSON out.
EntityRunner = Callable[[str, Executor | None], Awaitable[str]]


@dataclass
class EntityStats:
    batches: int = 0
    operations: int = 0
    operation_errors: int = 0
    batch_failures: int = 0  # whole-batch failures, each followed by a redelivery


class EntityScheduler:
    def __init__(
        self,
        db: DevDB,
        handlers: dict[str, EntityRunner],
        *,
        max_batch: int,
        workers: int,
    ) -> None:
        self.db = db
        self.handlers = {name.lower(): h for name, h in handlers.items()}
        self.max_batch = max_batch
        self.workers = workers
        self.stats = EntityStats()
        self.pending = db.queue_depth()
        self._ready: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._scheduled: set[tuple[str, str]] = set()
        self._busy = 0
        self._failures: dict[tuple[str, str], int] = {}
        self._idle = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="entity")
        for name, key in db.queued_entities():
            self._schedule(name, key)
        self._update_idle()

    # -- the webhook's side ----------------------------------------------------------
    def signal(self, name: str, key: str, op: str, data: str | None) -> None:
        """Durably enqueue one operation (before the caller is told 202)."""
        if name.lower() not in self.handlers:
            raise KeyError(f"no entity function named {name!r}")
        self.db.enqueue(name.lower(), key, op, data, now_ms())
        self.pending += 1
        self._schedule(name.lower(), key)
        self._update_idle()

    def signal_many(
        self, signals: list[tuple[str, str, str, str | None]], also: Callable[[], None] | None = None
    ) -> None:
        """Durably enqueue several operations in order, with ``also`` (the sender deleting what it
        delivered) in the same transaction. An operation for an unknown entity is dropped, logged."""
        known: list[tuple[str, str, str, str | None]] = []
        for name, key, op, data in signals:
            if name.lower() not in self.handlers:
                log.error("entity signal dropped: no entity function named %r", name)
                continue
            known.append((name.lower(), key, op, data))
        self.db.enqueue_many(known, now_ms(), also)
        self.pending += len(known)
        for name, key, _, _ in known:
            self._schedule(name, key)
        self._update_idle()

    def read_state(self, name: str, key: str) -> Any:
        """The entity's state as JSON, or None when it does not exist."""
        raw = self.db.entity_state(name.lower(), key)
        return None if raw is None else json.loads(raw)

    # -- workers -------------------------------------------------------------------
    def _schedule(self, name: str, key: str) -> None:
        if (name, key) not in self._scheduled:
            self._scheduled.add((name, key))
            self._ready.put_nowait((name, key))

    def _update_idle(self) -> None:
        if self._busy == 0 and not self._scheduled:
            self._idle.set()
        else:
            self._idle.clear()

    async def drained(self) -> None:
        """Wait until no operation is queued or running."""
        while True:
            await self._idle.wait()
            if self._busy == 0 and not self._scheduled:
                return

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        while True:
            name, key = await self._ready.get()
            self._busy += 1
            retry_in: float | None = None
            try:
                ops = self.db.next_ops(name, key, self.max_batch)
                if ops:
                    retry_in = await self._run_batch(name, key, ops)
            finally:
                self._busy -= 1
                if retry_in is not None:
                    # Like the extension, the failed work item is abandoned and the worker moves on;
                    # the entity comes back after a back-off, with any operations queued meanwhile.
                    asyncio.get_running_loop().call_later(retry_in, self._ready.put_nowait, (name, key))
                elif self.db.has_ops(name, key):
                    self._ready.put_nowait((name, key))  # to the back: fair between entities
                else:
                    self._scheduled.discard((name, key))
                self._update_idle()

    async def _run_batch(self, name: str, key: str, ops: list[QueuedOp]) -> float | None:
        """Run one batch and commit it; on a failure of the whole batch, the seconds to wait before
        delivering it again (nothing is committed, nothing is parked)."""
        state = self.db.entity_state(name, key)
        request = protocol.entity_batch_json(name, key, state, [(o.op, o.input) for o in ops])
        runner = self.handlers[name]
        try:
            raw = await runner(request, self._executor)
            result = protocol.parse_entity_response(raw)
        except Exception as exc:  # the whole batch failed: not committed, delivered again
            failures = self._failures.get((name, key), 0) + 1
            self._failures[(name, key)] = failures
            self.stats.batch_failures += 1
            delay = min(REDELIVERY_MAX_S, REDELIVERY_BASE_S * 2 ** min(failures - 1, 10))
            log.warning(
                "entity %s batch failed (delivery %d), redelivered in %.2fs: %s", name, failures, delay, exc
            )
            return delay
        self._failures.pop((name, key), None)
        self.db.finish_entity_batch(name, key, result.state, [o.id for o in ops], now_ms())
        self.pending -= len(ops)
        self.stats.batches += 1
        self.stats.operations += len(ops)
        errors = [r for r in result.results if r.get("isError")]
        if errors:
            self.stats.operation_errors += len(errors)
            log.error("entity %s: %d operation(s) raised: %s", name, len(errors), errors[0].get("result"))
        return None
