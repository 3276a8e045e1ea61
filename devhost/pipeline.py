"""One devhost run's wired parts and the run from start to summary.

The partition log and its pumps (or a live hub), the entity scheduler, the orchestration engine,
the queue and timer listeners, the webhook server, the sampler: started together on one asyncio
loop, fed by the source, drained, then summarised into a ``RunResult``. Entity batches run on a
small thread pool because the entity does blocking Cosmos I/O; only the loop thread touches
SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from devhost import metrics
from devhost.db import DevDB, now_ms
from devhost.durable import protocol
from devhost.durable.client import INPROC_BASE_URL, InProcTransport, OrchestrationClientTransport
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.entities import EntityRunner, EntityScheduler
from devhost.eventhubs.local_hub import BatchOptions, EventLog, PartitionPump, PumpStats, invoke_with_retry
from devhost.eventhubs.producers import Source, SourceError, SyntheticConfig, SyntheticSource
from devhost.functions_host import bindings
from devhost.functions_host.bindings import HubEvent
from devhost.functions_host.indexing import AppIndex, FunctionSpec, UnsupportedBinding
from devhost.functions_host.processes import WorkerPool
from devhost.functions_host.settings import (
    HostOptions,
    SettingsError,
)
from devhost.functions_host.worker import RetryContext
from devhost.run_config import PLAIN_PROGRESS_S, RunConfig, RunError, RunResult
from devhost.storage.queues import QueueListener, QueueStats
from devhost.storage.timers import StatusStore, TimerListener, TimerStats
from devhost.webserver import WebhookServer

if TYPE_CHECKING:
    from devhost.host import Host

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 1.0
SETTLE_S = 30.0  # --summary: how long to wait for outboxes to empty before the players read them


def only_function(index: AppIndex, trigger: str) -> FunctionSpec:
    specs = index.by_trigger(trigger)
    if len(specs) != 1:
        raise UnsupportedBinding(f"the devhost runs exactly one {trigger} function; the app has {len(specs)}")
    return specs[0]


async def _reset_sdk_session() -> None:
    """The Durable SDK keeps one aiohttp session per process, bound to the loop that made it."""
    mod: Any = sys.modules.get("azure.durable_functions.models.utils.http_utils")
    if mod is not None:
        await mod._close_session()
        mod._session_lock = asyncio.Lock()


@contextlib.contextmanager
def _transport(
    kind: str, scheduler: EntityScheduler, engine: OrchestrationEngine | None, pool: WorkerPool | None = None
) -> Iterator[None]:
    """The Durable client's requests answered in process (``inproc``): the SDK's clients in this
    process, and those in the worker processes through their pipes, reach the same transport."""
    if kind == "inproc":
        t = InProcTransport(scheduler)
        post, get = t.post, t.get
        if engine is not None:  # orchestration URLs to the engine, entity URLs to the scheduler
            o = OrchestrationClientTransport(engine, t.post, t.get)
            post, get = o.post, o.get
        if pool is not None:
            pool.client = (post, get)
        with protocol.client_transport(post, get):
            yield
    else:
        yield


class Pipeline:
    """One run's wired parts: the partition log and its pumps (or a live hub), the entity
    scheduler, the webhook server, the sampler; and the run from start to summary."""

    def __init__(
        self,
        cfg: RunConfig,
        db: DevDB,
        index: AppIndex,
        options: HostOptions,
        meter: metrics.Metrics,
        source: Source,
        hub_source: Any,
        start_ms: int,
        settings: dict[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.pool = pool  # the app's worker processes (None: the app runs in this process)
        self.cfg, self.db, self.index, self.options, self.meter = cfg, db, index, options, meter
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep or asyncio.sleep
        self.settings = settings or {}
        self.queue_stats = QueueStats()
        self.listeners: list[QueueListener] = []
        self.source, self.hub_source, self.start_ms = source, hub_source, start_ms
        self.ingest = only_function(index, "eventHubTrigger")
        self.hub = str(self.ingest.trigger.get("eventHubName", ""))
        self.group = str(self.ingest.trigger.get("consumerGroup") or "$Default")
        entity = only_function(index, "entityTrigger")
        self.scheduler = EntityScheduler(
            db,
            {str(entity.trigger.get("entityName", entity.name)): entity_runner(entity)},
            max_batch=options.max_entity_batch,
            workers=cfg.entity_workers,
        )
        self.partition_ids = [str(p) for p in range(cfg.partitions)] if hub_source is None else []
        if source.total is not None:
            db.set_meta("source_total", source.total)
        self.event_log = EventLog(db, self.partition_ids)
        self.stats = PumpStats()
        self.hub_events = 0  # events taken from a live hub
        self.server: WebhookServer | None = None
        self.clients: dict[str, str] = {}
        self.engine: OrchestrationEngine | None = None
        if index.by_trigger("orchestrationTrigger") or index.by_trigger("activityTrigger"):
            self.engine = OrchestrationEngine(
                db.conn,
                index,
                hub=options.hub_name,
                clock=self.clock,
                sleep=self.sleep,
                max_orchestrations=options.max_orchestrator_functions,
                max_activities=options.max_activity_functions,
                entity_signal=self.scheduler.signal,
                entity_signals=self.scheduler.signal_many,
                store_inputs_in_history=options.store_inputs_in_history,
            )
        self.timer_stats = TimerStats()
        self.timers: list[TimerListener] = []
        batch_opts = BatchOptions(
            options.max_event_batch_size, options.min_event_batch_size, options.max_wait_seconds
        )
        self.pumps = [
            PartitionPump(
                self.event_log,
                p,
                self.invoke,
                batch_opts,
                hub=self.hub,
                consumer_group=self.group,
                retry=self.ingest.retry,
                stats=self.stats,
                sleep=self.retry_sleep,
                redeliver_share=cfg.redeliver_share,
            )
            for p in self.partition_ids
        ]
        self.baseline = meter.snapshot()
        self.samples: list[tuple[float, metrics.Snapshot]] = [(0.0, metrics.Snapshot())]
        self.backlog: list[tuple[int, int]] = [(0, 0)]
        self.already = self.checkpointed()
        self.started = time.monotonic()
        self.bar = _progress(cfg.progress, source.total, self.already, every_s=cfg.progress_every_s)

    # -- what the host does per batch ----------------------------------------------------------
    async def invoke(self, partition: str, events: Sequence[HubEvent], retry: RetryContext) -> None:
        inv = bindings.eventhub_invocation(
            self.ingest.trigger,
            events,
            partition=partition,
            hub=self.hub,
            consumer_group=self.group,
            client_args=self.clients,
            retry=retry,
        )
        await self.ingest.invoke(inv)

    def retry_sleep(self, seconds: float) -> Any:
        return asyncio.sleep(seconds * self.cfg.retry_delay_scale)

    def checkpointed(self) -> int:
        return sum(p.checkpoint + 1 for p in self.pumps) + self.hub_events

    def backlog_now(self) -> tuple[int, int]:
        """Events appended but not checkpointed, and entity operations queued."""
        return max(0, self.event_log.total - self.checkpointed()), self.scheduler.pending

    async def gate(self) -> None:
        """Backpressure: a producer never runs more than max_lag events ahead of the checkpoints."""
        while (
            self.event_log.total - self.checkpointed() > self.cfg.max_lag
            or self.scheduler.pending > self.cfg.max_lag
        ):
            await asyncio.sleep(0.02)

    async def consume_hub(self) -> None:
        """A real Event Hub: blob checkpoints, each taken after the function returned."""
        hub_source = self.hub_source
        assert hub_source is not None
        async with hub_source:
            try:
                async with asyncio.timeout(self.cfg.duration_s):
                    async for pid, received, commit in hub_source.batches(self.options.max_event_batch_size):
                        events = [_hub_event(e) for e in received]
                        error, attempts = await invoke_with_retry(
                            self.invoke, str(pid), events, self.ingest.retry, self.stats, self.retry_sleep
                        )
                        if error is not None:
                            self.db.record_failed_batch(
                                pid,
                                received[0].sequence_number,
                                received[-1].sequence_number,
                                attempts,
                                error,
                                now_ms(),
                            )
                        await commit()
                        self.stats.batches += 1
                        self.hub_events += len(received)
            except TimeoutError:
                pass

    # -- figures --------------------------------------------------------------------------------
    async def sample(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(SAMPLE_SECONDS / 4)
            ticks += 1
            if self.bar is not None:
                self.bar.n = self.checkpointed()
                failures = self.scheduler.stats.batch_failures
                extra = {"entity_batch_failures": failures} if failures else {}
                self.bar.set_postfix(
                    queued=self.scheduler.pending, ops=self.scheduler.stats.operations, refresh=False, **extra
                )
                self.bar.refresh()
            if ticks % 4 == 0:
                await self.refresh_metrics()
                self.samples.append(
                    (time.monotonic() - self.started, self.meter.snapshot().minus(self.baseline))
                )
                self.backlog.append(self.backlog_now())

    async def refresh_metrics(self) -> None:
        """With worker processes, fetch their instruments' snapshots (the summary reads them)."""
        refresh = getattr(self.meter, "refresh", None)
        if refresh is not None:
            await refresh()

    def finish(self, elapsed: float) -> RunResult:
        """The summary (from the app's instruments and the host's counters) and the report."""
        cfg, stats, scheduler = self.cfg, self.stats, self.scheduler
        final = self.meter.snapshot().minus(self.baseline)
        self.samples.append((elapsed, final))
        self.backlog.append(self.backlog_now())
        processed = self.checkpointed() - self.already
        summary = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "window_start_ms": self.start_ms,
            "wall_seconds": round(elapsed, 3),
            "events_processed": processed,
            "events_per_second": round(processed / elapsed, 1) if elapsed > 0 else 0.0,
            "pipeline": dict(metrics.counts_table(final)),
            "host": {
                "partitions": len(self.partition_ids),
                "worker_processes": self.pool.count if self.pool is not None else 0,
                "batches": stats.batches,
                "retries": stats.retries,
                "failed_batches": stats.failed_batches,
                "redelivered_events": stats.redelivered,
                "entity_batches": scheduler.stats.batches,
                "entity_operation_errors": scheduler.stats.operation_errors,
                "entity_batch_failures": scheduler.stats.batch_failures,
                "queued_operations_left": scheduler.pending,
                "queue_invocations": self.queue_stats.invocations,
                "queue_failures": self.queue_stats.failures,
                "queue_poisoned": self.queue_stats.poisoned,
                "max_event_batch_size": self.options.max_event_batch_size,
                "max_entity_batch": self.options.max_entity_batch,
                "timer_invocations": self.timer_stats.invocations,
                "orchestrations_completed": self.engine.stats.completed if self.engine else 0,
                "orchestrations_completed_by_name": dict(self.engine.stats.completed_by_name)
                if self.engine
                else {},
                "orchestrations_failed": self.engine.stats.failed if self.engine else 0,
                "activities": self.engine.stats.activities if self.engine else 0,
            },
        }
        result = RunResult(
            summary=summary, samples=self.samples, backlog=self.backlog, started_monotonic=self.started
        )
        if cfg.report_dir is not None:
            from devhost import report

            result.report_json, result.report_png, result.deadletters_file = report.write(
                cfg.report_dir, summary, self.samples, self.backlog, _deadletters()
            )
            summary["deadletters_file"] = str(result.deadletters_file)
        return result

    def _queue_listeners(self, binding: str) -> list[QueueListener]:
        conn = self.settings.get("AzureWebJobsStorage", "")
        specs = self.index.by_trigger("queueTrigger")
        if specs and not conn:
            log.warning("queue triggers need AzureWebJobsStorage as a connection string here; not run")
            return []
        return [
            QueueListener(
                spec, conn, self.options.queues, {a: binding for a in spec.client_args}, self.queue_stats
            )
            for spec in specs
        ]

    async def _drain_queues(self, timeout_s: float, entity_task: asyncio.Task[Any]) -> None:
        """Wait until no entity holds an unwritten action or an unfinished erasure (their reminders
        have done their work) and the entities are idle, or ``timeout_s`` passed. Reminders still
        queued for an outbox that is already empty are harmless and not waited for."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.scheduler.pending == 0 and not self.unfinished_entities():
                break
            await asyncio.sleep(0.25)
        await _unless_failed(self.quiesce(), entity_task)

    # -- the daily summary (--summary) --------------------------------------------------------------
    async def run_summary(self) -> dict[str, Any]:
        """The players' responses to their actions, then the day's summary orchestration, started and
        read through the app's own HTTP functions (POST/GET /api/summaries/{day})."""
        if self.engine is None:
            raise RunError("--summary needs the app's summary orchestrations (functions/summaries.py)")
        if isinstance(self.source, SyntheticSource):
            await self.settle()  # every action written before the players read them
            await self.respond(self.source.config)
        else:
            await self.settle()
        day = self.cfg.summary_day or summary_day_of_window(self.start_ms, self.cfg.duration_s)
        status, body = await self.call_http("POST", "summaries/{day}", {"day": day})
        if status != 202:
            raise RunError(f"POST /api/summaries/{day} answered {status}: {body}")
        await self.engine.wait_for(str(body["instanceId"]))
        status, body = await self.call_http("GET", "summaries/{day}", {"day": day})
        if status != 200:
            raise RunError(f"GET /api/summaries/{day} answered {status}: {body}")
        return dict(body)

    async def respond(self, config: SyntheticConfig) -> None:
        """Append the synthetic players' responses to their pending actions (once per run: the log
        and the marker are written together), then process them like any other events."""
        from devhost import responder

        if self.db.get_meta(responder.MARKER) is None:
            responses = await asyncio.to_thread(responder.plan_from_cosmos, config)
            self.event_log.append(responder.log_items(responses), {responder.MARKER: len(responses)})
            log.info("appended %d responses to %s actions", len(responses), "pending")
        await asyncio.gather(*(p.run() for p in self.pumps))
        await self.settle()

    async def quiesce(self) -> None:
        """Wait until the entities and the orchestrations are idle at the same time: a trigger
        batch's delivery orchestration signals entities after ingest returned, so neither being
        idle alone means the events have reached the entities."""
        while True:
            if self.engine is not None:
                await self.engine.drained()
            await self.scheduler.drained()
            if self.engine is None or self.engine.pending() == 0:
                return

    async def settle(self, timeout_s: float = SETTLE_S) -> None:
        """Wait until the entities are idle and no outbox holds an unwritten action (their reminders
        write them), so that what the summary reads is everything the run decided and recorded."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.quiesce()
            if not self.unfinished_entities():
                return
            if time.monotonic() > deadline:
                log.warning(
                    "entities still hold unwritten actions after %.0fs; summarising anyway", timeout_s
                )
                return
            await asyncio.sleep(0.25)

    async def call_http(self, method: str, route: str, params: dict[str, str]) -> tuple[int, Any]:
        """Invoke one of the app's HTTP functions through the worker path, as the host would."""
        for spec in self.index.by_trigger("httpTrigger"):
            methods = [m.upper() for m in spec.trigger.get("methods") or ["GET", "POST"]]
            if str(spec.trigger.get("route")) == route and method in methods:
                break
        else:
            raise RunError(f"the app has no HTTP function for {method} /api/{route}")
        path = route
        for k, v in params.items():
            path = path.replace("{" + k + "}", v)
        inv = bindings.http_invocation(
            spec.trigger,
            method=method,
            url=f"{INPROC_BASE_URL}/api/{path}",
            headers={},
            query={},
            route_params=params,
            body=b"",
            client_args={arg: self.binding for arg in spec.client_args},
        )
        reply = bindings.http_reply(await spec.invoke(inv))
        return reply.status, json.loads(reply.body) if reply.body else None

    def summary_png(self, daily: dict[str, Any]) -> Path | None:
        if self.cfg.report_dir is None or not daily.get("index"):
            return None
        from devhost import summary_report

        day = str(daily["day"])
        self.cfg.report_dir.mkdir(parents=True, exist_ok=True)
        (self.cfg.report_dir / f"summary-{day}.json").write_text(
            json.dumps(daily, indent=2), encoding="utf-8"
        )
        return summary_report.write_png(daily["index"], self.cfg.report_dir / f"summary-{day}.png")

    def unfinished_entities(self) -> list[str]:
        """Entities whose state still holds an outbox or an unfinished erasure."""
        out = []
        from shared.entity import load_state  # the app's own reading of its state

        for key, raw in self.db.entity_states("player").items():
            state = load_state(json.loads(raw))
            if state.outbox or state.erasing:
                out.append(key)
        return out

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.n = self.checkpointed()
            self.bar.close()
            self.bar = None

    # -- the run ----------------------------------------------------------------------------------
    async def execute(self, host: Host) -> RunResult:
        cfg, scheduler = self.cfg, self.scheduler
        base_url = INPROC_BASE_URL
        if cfg.transport == "http" or cfg.serve:
            self.server = WebhookServer(
                scheduler, self.index.by_trigger("httpTrigger"), self.options.hub_name, self.engine
            )
            url = await self.server.start()
            if cfg.transport == "http":
                base_url = url
            log.info("webhooks and HTTP functions on %s", url)
            from devhost import dashboard

            dashboard.attach(self.server, self, host)  # prints "dashboard http://127.0.0.1:PORT/dashboard/"
        binding = protocol.client_binding_json(base_url, self.options.hub_name)
        self.clients = {arg: binding for arg in self.ingest.client_args}
        self.listeners = self._queue_listeners(binding)
        self.binding = binding
        statuses = StatusStore(self.db.get_meta, self.db.set_meta)
        self.timers = [
            TimerListener(
                spec,
                statuses,
                client_args={a: binding for a in spec.client_args},
                clock=self.clock,
                sleep=self.sleep,
                stats=self.timer_stats,
            )
            for spec in self.index.by_trigger("timerTrigger")
        ]
        result: RunResult | None = None
        with _transport(cfg.transport, scheduler, self.engine, self.pool):
            entity_task = asyncio.create_task(scheduler.run())
            sampler = asyncio.create_task(self.sample())
            background = [asyncio.create_task(q.run()) for q in self.listeners]
            if self.engine is not None:
                self.engine.client_binding = binding
                background.append(asyncio.create_task(self.engine.run(), name="orchestrations"))
            background += [asyncio.create_task(t.run(), name=f"timer {t.name}") for t in self.timers]
            try:
                if self.hub_source is not None:
                    await _unless_failed(self.consume_hub(), entity_task)
                else:
                    work = asyncio.gather(
                        self.source.run(self.event_log, self.gate), *(p.run() for p in self.pumps)
                    )
                    await _unless_failed(work, entity_task)
                await _unless_failed(self.quiesce(), entity_task)
                if cfg.drain_reminders_s > 0:
                    await self._drain_queues(cfg.drain_reminders_s, entity_task)
                daily: dict[str, Any] | None = None
                if cfg.summary:
                    self._close_bar()
                    daily = await _unless_failed(self.run_summary(), entity_task)
                if self.engine is not None:
                    await _unless_failed(self.engine.drained(), entity_task)
                self._close_bar()
                await self.refresh_metrics()
                result = self.finish(time.monotonic() - self.started)
                if daily is not None:
                    result.daily_summary = daily
                    result.summary_png = self.summary_png(daily)
                if cfg.serve and self.server is not None:
                    # The run is complete: its summary and report are out before serving starts.
                    host.finished = result
                    if host.on_finished is not None:
                        host.on_finished(result)
                    base = self.server.base_url
                    print(f"dashboard {base}/dashboard/", flush=True)  # again, after the summary
                    print(f"serving {base}/api/ (Ctrl-C to stop)", flush=True)
                    await asyncio.Event().wait()
            finally:
                for t in (sampler, entity_task, *background):
                    t.cancel()
                await asyncio.gather(sampler, entity_task, *background, return_exceptions=True)
                if self.server is not None:
                    await self.server.stop()
                await _reset_sdk_session()
                self._close_bar()
        assert result is not None
        return result


def summary_day_of_window(start_ms: int, duration_s: float) -> str:
    """The last full UTC day of the window; without one, the day that holds most of the window."""
    day_ms = 86_400_000
    end_ms = start_ms + int(duration_s * 1000)
    last_full_start = end_ms // day_ms * day_ms - day_ms
    if last_full_start >= start_ms:
        chosen = last_full_start
    else:
        days = range(start_ms // day_ms * day_ms, end_ms, day_ms)
        chosen = max(days, key=lambda d: min(d + day_ms, end_ms) - max(d, start_ms))
    return datetime.fromtimestamp(chosen / 1000, tz=UTC).date().isoformat()


def _deadletters() -> list[dict[str, Any]]:
    """The run's dead letters, read back from Cosmos (the self-started server forgets them)."""
    from shared import runtime
    from shared.store import get_store

    query = (
        "SELECT c.reason, c.detail, c.partition, c.sequenceNumber, c.playerId, c.eventId, "
        "c.rawBytes, c.rawPreview FROM c"
    )
    try:
        container = get_store(runtime.settings().cosmos).deadletters
        rows = list(container.query_items(query, enable_cross_partition_query=True))
    except Exception as exc:  # noqa: BLE001 - the report must not fail the run
        log.warning("could not read the dead letters back for the report: %s", exc)
        return []
    return sorted(rows, key=lambda r: (str(r.get("partition")), r.get("sequenceNumber") or -1))


async def _unless_failed(work: Any, guard: asyncio.Task[Any]) -> Any:
    """Await ``work``, but fail at once if ``guard`` (the entity scheduler) ends first.

    Without this, a scheduler that died on an error would leave the run waiting
    forever for a queue nobody drains.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task, guard}, return_when=asyncio.FIRST_COMPLETED)
    if guard in done and not guard.cancelled() and guard.exception() is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        guard.result()  # the scheduler's error wins even when the work finished in the same wakeup
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    guard.result()  # re-raises the scheduler's error
    raise RunError("the entity scheduler stopped before the run finished")


def hub_source_from_settings(settings: dict[str, str], hub: str, group: str) -> Any:
    """The real-hub source, configured from the same settings ``func start`` reads."""
    from devhost.eventhubs.live_hub import EventHubSource

    conn = settings.get("EventHubConnection", "")
    namespace = settings.get("EventHubConnection__fullyQualifiedNamespace", "")
    storage = settings.get("AzureWebJobsStorage", "") or settings.get(
        "AzureWebJobsStorage__blobServiceUri", ""
    )
    account = settings.get("AzureWebJobsStorage__accountName", "")
    if not storage and account:
        storage = f"https://{account}.blob.core.windows.net"
    if not (conn or namespace):
        raise SourceError(
            "--source eventhub needs EventHubConnection (a connection string: the emulator) or "
            "EventHubConnection__fullyQualifiedNamespace (identity) in local.settings.json"
        )
    if not storage:
        raise SourceError(
            "--source eventhub keeps its checkpoints in blob storage: set AzureWebJobsStorage "
            "(UseDevelopmentStorage=true for Azurite) or AzureWebJobsStorage__blobServiceUri"
        )
    return EventHubSource(
        connection=conn or None,
        namespace=None if conn else namespace,
        eventhub=hub,
        consumer_group=group,
        checkpoint_conn=storage,
    )


def _hub_event(e: Any) -> HubEvent:
    """A received azure-eventhub event as the host's listener hands it on."""
    return HubEvent(e.body, e.sequence_number, str(e.offset), e.enqueued_ms, e.partition_key)


def entity_runner(spec: FunctionSpec) -> EntityRunner:
    """Run one entity batch through the worker path: the batch JSON in, the result JSON out."""

    async def run(batch_json: str, executor: Executor | None) -> str:
        datum = await spec.invoke(bindings.entity_invocation(spec.trigger, batch_json), executor)
        if datum is None or not isinstance(datum.value, str):
            raise RuntimeError(f"entity function {spec.name} returned no batch result")
        return datum.value

    return run


def _progress(
    enabled: bool,
    total: int | None,
    initial: int,
    stream: TextIO | None = None,
    every_s: float = PLAIN_PROGRESS_S,
) -> Any:
    """A tqdm bar on a terminal; elsewhere (a log, a pipe, CI) a plain line every ``every_s``
    seconds, never carriage-return redraws."""
    if not enabled:
        return None
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return PlainProgress(total, initial, out, every_s)
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="ev",
        desc="events",
        dynamic_ncols=True,
        mininterval=0.25,
        file=out,
    )


class PlainProgress:
    """The progress bar's interface (``n``, ``set_postfix``, ``refresh``, ``close``) as one plain
    line every ``every_s`` seconds, and one at the end."""

    def __init__(
        self,
        total: int | None,
        initial: int,
        out: TextIO,
        every_s: float = PLAIN_PROGRESS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.n, self.out, self.every_s, self.clock = total, initial, out, every_s, clock
        self.started = self.last = clock()
        self.postfix: dict[str, Any] = {}

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = values

    def refresh(self) -> None:
        if self.clock() - self.last >= self.every_s:
            self._line()

    def close(self) -> None:
        self._line()

    def _line(self) -> None:
        """``events: 1234/5000 [25%, 12s] queued=3, ops=100``: the bar's figures, in its order
        (``n/total [``, which tools reading the bar's output already parse)."""
        self.last = now = self.clock()
        done = f"{self.n}/{self.total} [{100 * self.n / self.total:.0f}%, " if self.total else f"{self.n} ["
        extra = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        line = f"events: {done}{now - self.started:.0f}s]" + (f" {extra}" if extra else "")
        print(line, file=self.out, flush=True)


__all__ = ["Host", "RunConfig", "RunError", "RunResult", "SettingsError"]
