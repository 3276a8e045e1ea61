"""One devhost run, started as the Functions host starts: the state dir, the settings
(local.settings.json over defaults), the local servers it needs (Cosmos, Azurite), the app
indexed through the worker's load checks, then the wired pipeline (``devhost.pipeline``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from devhost import metrics
from devhost.db import DB_FILE, DevDB, now_ms
from devhost.eventhubs.producers import JsonlSource, Source, SyntheticConfig, SyntheticSource
from devhost.functions_host.indexing import AppIndex, index_app
from devhost.functions_host.processes import (
    MAX_PROCESS_COUNT,
    PooledMetrics,
    WorkerPool,
    worker_process_count,
)
from devhost.functions_host.processes import SETTING as PROCESS_COUNT_SETTING
from devhost.functions_host.settings import (
    LOCAL_SETTINGS,
    HostOptions,
    SettingsError,
    applied,
    default_settings,
    emulator_key,
    load_host_options,
    load_local_settings,
)
from devhost.pipeline import Pipeline, hub_source_from_settings, only_function
from devhost.run_config import RunConfig, RunError, RunResult
from devhost.servers.node import STARTUP_LIMIT_S, Azurite, CosmosServer, wait_ready
from shared.config import CosmosSettings, is_local_endpoint

log = logging.getLogger(__name__)

STORAGE_SETTINGS = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__accountName",
)


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
    if cfg.holdout_share is not None:  # the run's holdout share, unless the settings name one
        settings.setdefault("HOLDOUT_SHARE", cfg.holdout_share)
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


# The app settings that shape decisions (shared.runtime.rules() and the challenger), recorded per run.
DECISION_SETTINGS = (
    "HOLDOUT_SHARE",
    "HOLDOUT_SALT",
    "CHALLENGER_MODEL",
    "DAILY_ACTION_CAP",
    "DISABLED_ACTION_TYPES",
    "STALE_AFTER_SECONDS",
)
DECISION_SETTINGS_KEY = "decision_settings"


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
            # What decided this run, for `devhost whatif --state-dir` to replay it with the same rules
            db.set_meta(DECISION_SETTINGS_KEY, {k: settings[k] for k in DECISION_SETTINGS if k in settings})
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
            ingest = only_function(index, "eventHubTrigger")
            hub_source = hub_source_from_settings(
                settings,
                str(ingest.trigger.get("eventHubName", "")),
                str(ingest.trigger.get("consumerGroup") or "$Default"),
            )
        source = self._source(start_ms) if hub_source is None else Source()
        await source.prepare()
        count = worker_count(cfg, settings)
        pool: WorkerPool | None = None
        reader: Any = meter
        if count is not None:
            # The app in worker processes (FUNCTIONS_WORKER_PROCESS_COUNT), each loading it itself; the
            # host's parts (log, pumps, queues, Durable task hub) stay here and dispatch to them.
            pool = WorkerPool(count, env=dict(os.environ))
            await pool.start(cfg.startup_limit_s)
            index.dispatch_to(pool.invoke)
            reader = PooledMetrics(meter, pool)
        try:
            pipeline = Pipeline(
                cfg,
                db,
                index,
                options,
                reader,
                source,
                hub_source,
                start_ms,
                settings,
                self.clock,
                self.sleep,
                pool=pool,
            )
            return await pipeline.execute(self)
        finally:
            if pool is not None:
                index.dispatch_to(None)
                await pool.stop()


def worker_count(cfg: RunConfig, settings: dict[str, str]) -> int | None:
    """The run's worker processes: ``RunConfig.worker_processes``, else the setting as the host reads it
    (local.settings.json Values, then the environment); None: the embedded mode (no worker process)."""
    if cfg.worker_processes is not None:
        if not 1 <= cfg.worker_processes <= MAX_PROCESS_COUNT:
            raise RunError(f"worker processes must be 1-{MAX_PROCESS_COUNT}, not {cfg.worker_processes}")
        return cfg.worker_processes
    raw = settings.get(PROCESS_COUNT_SETTING, os.environ.get(PROCESS_COUNT_SETTING))
    try:
        return worker_process_count(raw)
    except SettingsError as exc:
        raise RunError(str(exc)) from None
