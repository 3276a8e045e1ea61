"""One devhost run: settings, Cosmos, the indexed app, the log, pumps, entity workers, report.

Everything runs on one asyncio loop (partition pumps, the webhook server, the
entity scheduler); entity batches run on a small thread pool because the entity
does blocking Cosmos I/O. Only the loop thread touches SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devhost import metrics
from devhost.db import DB_FILE, DevDB
from devhost.durable import protocol
from devhost.durable.client import OrchestrationClientTransport
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.entities import EntityRunner, EntityScheduler
from devhost.eventhubs.local_hub import (
    BatchOptions,
    EventLog,
    PartitionPump,
    PumpStats,
    invoke_with_retry,
    now_ms,
)
from devhost.eventhubs.producers import JsonlSource, Source, SourceError, SyntheticConfig, SyntheticSource
from devhost.functions_host import bindings
from devhost.functions_host.bindings import HubEvent
from devhost.functions_host.indexing import AppIndex, FunctionSpec, UnsupportedBinding, index_app
from devhost.functions_host.settings import (
    HOST_JSON,
    LOCAL_SETTINGS,
    HostOptions,
    SettingsError,
    applied,
    default_settings,
    emulator_key,
    load_host_options,
    load_local_settings,
)
from devhost.functions_host.worker import RetryContext
from devhost.servers.node import STARTUP_LIMIT_S, Azurite, CosmosServer, wait_ready
from devhost.storage.queues import QueueListener, QueueStats
from devhost.storage.timers import StatusStore, TimerListener, TimerStats
from devhost.webserver import INPROC_BASE_URL, InProcTransport, WebhookServer
from shared.config import CosmosSettings, is_local_endpoint

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 1.0
SETTLE_S = 30.0  # --summary: how long to wait for outboxes to empty before the players read them
STORAGE_SETTINGS = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__accountName",
)


class RunError(RuntimeError):
    """The run cannot start; the message says why and what to do."""


@dataclass
class RunConfig:
    source: str = "synthetic"
    players: int = 200
    duration_s: float = 86_400.0
    seed: int = 7
    bad_share: float = 0.0
    redeliver_share: float = 0.0
    start_ms: int | None = None
    rate: float = 0.0
    file: Path | None = None
    transport: str = "inproc"
    partitions: int = 32
    state_dir: Path = Path(".devhost")
    fresh: bool = False
    report_dir: Path | None = Path("reports")
    settings_path: Path | None = None  # None: ./local.settings.json when it exists
    use_local_settings: bool = True
    entity_workers: int = 4
    max_lag: int = 4096
    progress: bool = True
    serve: bool = False
    # Scales the host's retry waits (tests: a parked batch in milliseconds instead of minutes).
    retry_delay_scale: float = 1.0
    # After the events are processed, wait up to this long for queued outbox reminders (0: don't).
    drain_reminders_s: float = 0.0
    host_json: Path = HOST_JSON
    # After the run (and the synthetic players' responses), run the daily summary of this UTC day
    # (None: the last full day of the window) and report it.
    summary: bool = False
    summary_day: str | None = None
    # How long start-up waits for its servers (listening, Cosmos containers) before a clear error.
    startup_limit_s: float = STARTUP_LIMIT_S


@dataclass
class RunResult:
    summary: dict[str, Any]
    report_json: Path | None = None
    report_png: Path | None = None
    samples: list[tuple[float, metrics.Snapshot]] = field(default_factory=list)
    # Per sample: events appended but not yet checkpointed, and entity operations queued.
    backlog: list[tuple[int, int]] = field(default_factory=list)
    deadletters_file: Path | None = None
    started_monotonic: float = 0.0  # when the pipeline started (time.monotonic): the samples' zero
    daily_summary: dict[str, Any] | None = None  # GET /api/summaries/{day}'s body, with --summary
    summary_png: Path | None = None


def _run_identity(cfg: RunConfig) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    ident: dict[str, Any] = {"source": cfg.source, "partitions": cfg.partitions}
    if cfg.source == "synthetic":
        ident.update(players=cfg.players, duration_s=cfg.duration_s, seed=cfg.seed, bad_share=cfg.bad_share)
    elif cfg.source == "jsonl":
        ident.update(file=str(cfg.file.resolve()) if cfg.file else None)
    return ident


def _open_state(cfg: RunConfig) -> tuple[DevDB, int]:
    """Open (or reset) the state dir; returns the DB and the journey window start."""
    if cfg.fresh:
        shutil.rmtree(cfg.state_dir / "azurite", ignore_errors=True)  # parked batches of the old run
        for suffix in ("", "-wal", "-shm"):
            (cfg.state_dir / (DB_FILE + suffix)).unlink(missing_ok=True)
    db = DevDB(cfg.state_dir)
    ident = _run_identity(cfg)
    stored = db.get_meta("run")
    if stored is None:
        start = cfg.start_ms
        if start is None:  # the window ends now: every event time is in the past
            start = now_ms() - int(cfg.duration_s * 1000) - 1000
        db.set_meta("run", {**ident, "start_ms": start})
        return db, start
    if {k: stored.get(k) for k in ident} != ident:
        db.close()
        raise RunError(
            f"{cfg.state_dir} holds a different run ({ {k: stored.get(k) for k in ident} }); "
            "resume it with the same options, or start over with --fresh"
        )
    if cfg.start_ms is not None and cfg.start_ms != stored["start_ms"]:
        db.close()
        raise RunError(
            f"{cfg.state_dir} was started with --start-ms {stored['start_ms']}; use --fresh to change it"
        )
    return db, int(stored["start_ms"])


def _settings(cfg: RunConfig, cosmos: CosmosServer, azurite: Azurite) -> tuple[dict[str, str], bool]:
    """local.settings.json Values over devhost defaults.

    Starts a cosmosdb-server unless COSMOS_ENDPOINT names a server that answers, and Azurite
    (the host storage account, where parked batches go) unless storage is configured and
    answers. A local endpoint that nothing listens on (the sample settings' emulators, not
    started) is replaced by the devhost's own server, with a warning.
    """
    path = cfg.settings_path or (
        LOCAL_SETTINGS if cfg.use_local_settings and LOCAL_SETTINGS.exists() else None
    )
    values = load_local_settings(path) if path else {}
    endpoint = values.get("COSMOS_ENDPOINT", "")
    started = not endpoint or (is_local_endpoint(endpoint) and not listening(endpoint))
    if started:
        if endpoint:
            log.warning(
                "nothing listens on COSMOS_ENDPOINT %s: the devhost starts its own Cosmos server", endpoint
            )
        values = {k: v for k, v in values.items() if k not in ("COSMOS_ENDPOINT", "COSMOS_KEY")}
    if started:
        settings = default_settings(cosmos.start(cfg.startup_limit_s), emulator_key())
    else:
        settings = default_settings(endpoint, values.get("COSMOS_KEY", ""))
    settings.update(values)  # without COSMOS_* when the devhost started its own server
    storage = settings.get("AzureWebJobsStorage", "")
    dev_storage = storage.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true"
    if dev_storage and not listening("http://127.0.0.1:10000"):
        log.warning(
            "AzureWebJobsStorage: UseDevelopmentStorage=true but no Azurite runs; the devhost starts its own"
        )
        storage = ""
    if not storage and not any(settings.get(k) for k in STORAGE_SETTINGS[1:]):
        settings["AzureWebJobsStorage"] = azurite.start_connection_string(cfg.startup_limit_s)
    return settings, started


def listening(endpoint: str) -> bool:
    """Does something accept TCP connections at the endpoint's host and port?"""
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 443), timeout=0.5):
            return True
    except OSError:
        return False


def _load_app(settings: dict[str, str]) -> AppIndex:
    from shared import runtime

    runtime.reset()
    module = importlib.import_module("function_app")
    return index_app(module.app, settings)


def ensure_cosmos(cs: CosmosSettings, limit_s: float = STARTUP_LIMIT_S) -> None:
    """Create the database and containers on a local Cosmos server, waiting for it to answer
    (a bounded, logged retry: a loaded machine's server can take longer than one read timeout)."""
    from shared.store import ensure_containers, make_client

    if is_local_endpoint(cs.endpoint):
        wait_ready(
            f"Cosmos DB at {cs.endpoint} (database and containers)",
            lambda: ensure_containers(make_client(cs), cs),
            limit_s=limit_s,
        )


def _only(index: AppIndex, trigger: str) -> FunctionSpec:
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
def _transport(kind: str, scheduler: EntityScheduler, engine: OrchestrationEngine | None) -> Iterator[None]:
    if kind == "inproc":
        t = InProcTransport(scheduler)
        post, get = t.post, t.get
        if engine is not None:  # orchestration URLs to the engine, entity URLs to the scheduler
            o = OrchestrationClientTransport(engine, t.post, t.get)
            post, get = o.post, o.get
        with protocol.client_transport(post, get):
            yield
    else:
        yield


class Host:
    def __init__(
        self,
        cfg: RunConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        if cfg.transport not in ("inproc", "http"):
            raise RunError(f"--transport must be inproc or http, not {cfg.transport!r}")
        if cfg.source not in ("synthetic", "jsonl", "eventhub"):
            raise RunError(f"--source must be synthetic, jsonl or eventhub, not {cfg.source!r}")
        if cfg.source == "jsonl" and cfg.file is None:
            raise RunError("--source jsonl needs --file")
        self.cfg = cfg
        # The clock of timers and orchestrations (tests inject a virtual one); None: the wall clock.
        self.clock, self.sleep = clock, sleep
        # Set when the run is complete (with --serve, before serving starts); a Ctrl-C after
        # that stops the server, it does not interrupt the run.
        self.finished: RunResult | None = None
        self.on_finished: Callable[[RunResult], None] | None = None

    def run(self) -> RunResult:
        cosmos = CosmosServer()
        azurite = Azurite(self.cfg.state_dir / "azurite")
        db, start_ms = _open_state(self.cfg)
        try:
            settings, started = _settings(self.cfg, cosmos, azurite)
            if started and db.get_meta("source_position"):
                log.warning(
                    "resuming %s with a new in-memory cosmosdb-server: actions written before the restart "
                    "are not in it (configure COSMOS_ENDPOINT in local.settings.json to keep them)",
                    self.cfg.state_dir,
                )
            with applied(settings):
                meter = metrics.install()  # before the app records anything
                index = _load_app(settings)
                options = load_host_options(self.cfg.host_json, settings)
                from shared import runtime

                ensure_cosmos(runtime.settings().cosmos, self.cfg.startup_limit_s)
                return asyncio.run(self._run(db, index, options, settings, start_ms, meter))
        finally:
            from shared import runtime

            runtime.reset()  # the cached settings/store point at this run's Cosmos
            db.close()
            cosmos.stop()
            azurite.stop()

    def _source(self, start_ms: int) -> Source:
        cfg = self.cfg
        if cfg.source == "synthetic":
            return SyntheticSource(
                SyntheticConfig(cfg.players, cfg.duration_s, cfg.seed, start_ms, cfg.bad_share), cfg.rate
            )
        assert cfg.file is not None
        return JsonlSource(cfg.file, cfg.rate)

    async def _run(
        self,
        db: DevDB,
        index: AppIndex,
        options: HostOptions,
        settings: dict[str, str],
        start_ms: int,
        meter: metrics.Metrics,
    ) -> RunResult:
        cfg = self.cfg
        hub_source = None
        if cfg.source == "eventhub":
            ingest = _only(index, "eventHubTrigger")
            hub_source = hub_source_from_settings(
                settings,
                str(ingest.trigger.get("eventHubName", "")),
                str(ingest.trigger.get("consumerGroup") or "$Default"),
            )
        source = self._source(start_ms) if hub_source is None else Source()
        await source.prepare()
        pipeline = Pipeline(
            cfg, db, index, options, meter, source, hub_source, start_ms, settings, self.clock, self.sleep
        )
        return await pipeline.execute(self)


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
    ) -> None:
        self.cfg, self.db, self.index, self.options, self.meter = cfg, db, index, options, meter
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep or asyncio.sleep
        self.settings = settings or {}
        self.queue_stats = QueueStats()
        self.listeners: list[QueueListener] = []
        self.source, self.hub_source, self.start_ms = source, hub_source, start_ms
        self.ingest = _only(index, "eventHubTrigger")
        self.hub = str(self.ingest.trigger.get("eventHubName", ""))
        self.group = str(self.ingest.trigger.get("consumerGroup") or "$Default")
        entity = _only(index, "entityTrigger")
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
        self.bar = _progress(cfg.progress, source.total, self.already)

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
                self.samples.append(
                    (time.monotonic() - self.started, self.meter.snapshot().minus(self.baseline))
                )
                self.backlog.append(self.backlog_now())

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
        await _unless_failed(self.scheduler.drained(), entity_task)

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

    async def settle(self, timeout_s: float = SETTLE_S) -> None:
        """Wait until the entities are idle and no outbox holds an unwritten action (their reminders
        write them), so that what the summary reads is everything the run decided and recorded."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.scheduler.drained()
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
        from scripts import summary_report

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
        with _transport(cfg.transport, scheduler, self.engine):
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
                await _unless_failed(scheduler.drained(), entity_task)
                if cfg.drain_reminders_s > 0:
                    await self._drain_queues(cfg.drain_reminders_s, entity_task)
                daily: dict[str, Any] | None = None
                if cfg.summary:
                    self._close_bar()
                    daily = await _unless_failed(self.run_summary(), entity_task)
                if self.engine is not None:
                    await _unless_failed(self.engine.drained(), entity_task)
                self._close_bar()
                result = self.finish(time.monotonic() - self.started)
                if daily is not None:
                    result.daily_summary = daily
                    result.summary_png = self.summary_png(daily)
                if cfg.serve and self.server is not None:
                    # The run is complete: its summary and report are out before serving starts.
                    host.finished = result
                    if host.on_finished is not None:
                        host.on_finished(result)
                    print(f"serving {self.server.base_url}/api/ (Ctrl-C to stop)", flush=True)
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


def _progress(enabled: bool, total: int | None, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="ev", desc="events", dynamic_ncols=True, mininterval=0.25)


__all__ = ["Host", "RunConfig", "RunError", "RunResult", "SettingsError"]
