"""Logging and OpenTelemetry: set up once per process, instruments defined once.

Every count the pipeline reports is an OpenTelemetry instrument defined here.
The functions record into them; Application Insights receives them through
azure-monitor-opentelemetry when it is configured; the devhost summary and the
benchmarks read the very same instruments through an in-memory reader, so
there is one set of numbers, not three.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace

from shared import config
from shared.config import ConfigError

METER_NAME = "player_interventions"
TRACER_NAME = "player_interventions"

QUIET_LOGGERS = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.cosmos",
    "azure.identity",
    "azure.eventhub",
    "azure.monitor.opentelemetry",
    "urllib3",
)

# Metric names: the workbook in bicep/ queries exactly these (a test checks it).
EVENTS_IN = "pi.events.in"
EVENTS_DROPPED = "pi.events.dropped"
EVENTS_DEADLETTERED = "pi.events.deadlettered"
DEADLETTER_WRITE_FAILURES = "pi.deadletters.write_failures"
SIGNALS = "pi.signals"
ENTITY_OPERATIONS = "pi.entity.operations"
EVENTS_DUPLICATE = "pi.events.duplicate"
SCORES = "pi.scores"
ACTIONS = "pi.actions"
REJECTIONS = "pi.rejections"
ACTION_WRITE_FAILURES = "pi.actions.write_failures"
OUTBOX_EXPIRED = "pi.outbox.expired"
OUTBOX_SIZE = "pi.outbox.size"
ACTION_LATENCY = "pi.action.latency"
BATCHES_PARKED = "pi.batches.parked"
ACTIONS_REFUSED = "pi.actions.refused"
REMINDERS = "pi.outbox.reminders"
DEADLETTERS_ERASED = "pi.deadletters.erased"
ACTIONS_SUPPRESSED = "pi.actions.suppressed"
OUTCOMES = "pi.outcomes"
ACTIONS_HOLDOUT = "pi.actions.holdout"
OUTCOME_WATCHES = "pi.outcome.watches"
OUTCOME_WRITES = "pi.outcome.writes"
SHADOW_DECISIONS = "pi.shadow.decisions"

METRIC_NAMES: tuple[str, ...] = (
    EVENTS_IN,
    EVENTS_DROPPED,
    EVENTS_DEADLETTERED,
    DEADLETTER_WRITE_FAILURES,
    SIGNALS,
    ENTITY_OPERATIONS,
    EVENTS_DUPLICATE,
    SCORES,
    ACTIONS,
    REJECTIONS,
    ACTION_WRITE_FAILURES,
    OUTBOX_EXPIRED,
    OUTBOX_SIZE,
    ACTION_LATENCY,
    BATCHES_PARKED,
    ACTIONS_REFUSED,
    REMINDERS,
    DEADLETTERS_ERASED,
    ACTIONS_SUPPRESSED,
    OUTCOMES,
    ACTIONS_HOLDOUT,
    OUTCOME_WATCHES,
    OUTCOME_WRITES,
    SHADOW_DECISIONS,
)

_configured = False


class Instruments:
    """The pipeline's instruments, bound to whatever MeterProvider is global when built."""

    def __init__(self, meter: metrics.Meter) -> None:
        c = meter.create_counter
        self.events_in = c(EVENTS_IN, unit="{event}", description="Event Hubs messages received")
        self.events_dropped = c(
            EVENTS_DROPPED, unit="{event}", description="Events of unused types (funnel step 1)"
        )
        self.events_deadlettered = c(
            EVENTS_DEADLETTERED, unit="{event}", description="Invalid messages, by reason"
        )
        self.deadletter_write_failures = c(
            DEADLETTER_WRITE_FAILURES, unit="{event}", description="Dead letters Cosmos refused for good"
        )
        self.signals = c(
            SIGNALS, unit="{signal}", description="Entity signals sent (one per player per batch)"
        )
        self.entity_operations = c(ENTITY_OPERATIONS, unit="{operation}", description="Entity operations run")
        self.events_duplicate = c(EVENTS_DUPLICATE, unit="{event}", description="Redelivered events ignored")
        self.scores = c(SCORES, unit="{score}", description="Model scorings (funnel step 2 passed)")
        self.actions = c(ACTIONS, unit="{action}", description="Actions decided, by type")
        self.rejections = c(REJECTIONS, unit="{candidate}", description="Candidate actions stopped, by rule")
        self.action_write_failures = c(
            ACTION_WRITE_FAILURES, unit="{write}", description="Action writes left in the outbox"
        )
        self.outbox_expired = c(
            OUTBOX_EXPIRED, unit="{action}", description="Actions dropped unwritten after the outbox TTL"
        )
        self.outbox_size = meter.create_histogram(
            OUTBOX_SIZE, unit="{action}", description="Outbox length after an operation"
        )
        self.action_latency = meter.create_histogram(
            ACTION_LATENCY, unit="ms", description="Event time of the trigger to the action's write"
        )
        self.actions_refused = c(
            ACTIONS_REFUSED, unit="{action}", description="Actions Cosmos DB refused for good, by status"
        )
        self.actions_suppressed = c(
            ACTIONS_SUPPRESSED,
            unit="{decision}",
            description="Candidate actions a guardrail stopped (recorded as suppressed), by type and rule",
        )
        self.outcomes = c(
            OUTCOMES,
            unit="{response}",
            description="Player responses to actions, by result: recorded, already (a repeat), unknown",
        )
        self.actions_holdout = c(
            ACTIONS_HOLDOUT,
            unit="{decision}",
            description="Would-be actions the randomized holdout withheld (recorded, never sent), by type",
        )
        self.outcome_watches = c(
            OUTCOME_WATCHES,
            unit="{watch}",
            description="Outcome windows of actions and holdout decisions that ended, by type and "
            "result: met, expired (not met), dropped (over the state's bound)",
        )
        self.outcome_writes = c(
            OUTCOME_WRITES,
            unit="{write}",
            description="Outcomes met written onto their decision, by result: recorded, already, "
            "unknown, refused",
        )
        self.shadow_decisions = c(
            SHADOW_DECISIONS,
            unit="{trigger}",
            description="Triggers the challenger model scored in shadow, by result: agree, differ",
        )
        self.reminders = c(REMINDERS, unit="{reminder}", description="Outbox reminders asked for, by outcome")
        self.deadletters_erased = c(
            DEADLETTERS_ERASED, unit="{event}", description="Dead letters not written: an erased player's"
        )
        self.batches_parked = c(
            BATCHES_PARKED,
            unit="{batch}",
            description="Trigger batches parked after every bounded retry failed",
        )


_instruments: Instruments | None = None


def instruments() -> Instruments:
    global _instruments
    if _instruments is None:
        _instruments = Instruments(metrics.get_meter(METER_NAME))
    return _instruments


def rebind() -> Instruments:
    """Rebuild the instruments on the current global MeterProvider (devhost, tests)."""
    global _instruments
    tally.flush()  # counts made on the old instruments go to them
    flush_at_exit()  # after the new provider's own exit handler, so the flush runs before it
    _instruments = Instruments(metrics.get_meter(METER_NAME))
    return _instruments


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The project's tracer, built once: before a TracerProvider is installed it is the API's proxy,
    which follows the global provider once set (get_tracer itself costs microseconds per call)."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer


_hash_key: bytes | None = None


def set_hash_key(key: str | None) -> None:
    """Key the player-id hash (TELEMETRY_HASH_KEY): without a key, ids like
    ``player-00042`` can be recovered from their hash by enumeration."""
    global _hash_key
    _hash_key = key.encode() if key else None


def player_ref(player_id: str, hashed: bool = True) -> str:
    """The player as telemetry shows it: a stable (keyed, when configured) hash by default."""
    if not hashed:
        return player_id
    if _hash_key is not None:
        return hmac.new(_hash_key, player_id.encode(), hashlib.sha256).hexdigest()[:16]
    return hashlib.sha256(player_id.encode()).hexdigest()[:16]


class Tally:
    """Per-operation counts summed in process and handed to OpenTelemetry at most once a second.

    An OpenTelemetry SDK ``Counter.add`` costs ~5 us (attribute set, view match, lock); an entity
    operation adds 2-6 counts, which was ~10% of its CPU. ``add`` here is a dict update under a
    lock. A daemon thread flushes every ``interval`` seconds, ``flush()`` on demand (the devhost
    before it reads its metrics) and at exit: a count reaches the exporter at most ``interval``
    later than it would have, never lost while the process lives."""

    def __init__(self, interval: float = 1.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._counts: dict[tuple[Any, tuple[tuple[str, str], ...]], int] = {}
        self._thread: threading.Thread | None = None

    def add(self, counter: Any, n: int, attrs: tuple[tuple[str, str], ...] = ()) -> None:
        if not n:
            return
        key = (counter, attrs)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pi-tally", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        for (counter, attrs), n in counts.items():
            counter.add(n, dict(attrs) if attrs else None)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            self.flush()


tally = Tally()


def flush_at_exit() -> None:
    """(Re-)register the tally's flush at exit. ``atexit`` runs handlers last-in first-out, so this
    is called after a MeterProvider is installed (``configure``): the counts are flushed before the
    provider's own exit handler shuts it down."""
    atexit.unregister(tally.flush)
    atexit.register(tally.flush)


flush_at_exit()


def add_counts(counter: Any, counts: Mapping[str, int], key: str) -> None:
    for value, n in counts.items():
        if n:
            counter.add(n, {key: value})


# --- Azure Monitor distro options -------------------------------------------------------------
# Verified against azure-monitor-opentelemetry 1.8.11 (requirements.txt); file names below are
# inside the installed package azure/monitor/opentelemetry/.

# Settings (app settings in Azure, local.settings.json locally).
SAMPLING_RATIO_SETTING = "TELEMETRY_SAMPLING_RATIO"
TRACES_PER_SECOND_SETTING = "TELEMETRY_TRACES_PER_SECOND"
DEFAULT_SAMPLING_RATIO = 1.0

# Every instrumentation the distro turns on by default: _constants.py
# _FULLY_SUPPORTED_INSTRUMENTED_LIBRARIES (+ the empty opt-in _PREVIEW_INSTRUMENTED_LIBRARIES), each
# enabled unless instrumentation_options or OTEL_PYTHON_DISABLED_INSTRUMENTATIONS says otherwise
# (_utils/configurations.py _default_instrumentation_options; the keyword wins over the variable).
# The app needs none of them: its spans are its own (shared/tracing.py), started only for events
# that arrive with a traceparent. The Cosmos SDK sends over azure-core's RequestsTransport, so
# "requests" (and urllib3 under it) would add a span per Cosmos HTTP request, most of them root
# traces; "azure_sdk" would add azure-core's spans on top (_configure.py _setup_tracing sets
# azure.core's tracing_implementation only when it is enabled). The HTTP functions are served by
# the Functions host, so the web-framework ones have nothing to instrument either.
DISTRO_INSTRUMENTATIONS: tuple[str, ...] = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)

# The logger tree the distro exports (see _log_export below).
APP_LOGGER = "shared"


def _distro_instrumentations() -> tuple[str, ...]:
    """DISTRO_INSTRUMENTATIONS plus any the installed distro adds (a newer version's list)."""
    try:
        from azure.monitor.opentelemetry._constants import _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES
    except ImportError:  # the private list moved: the explicit one above still applies
        return DISTRO_INSTRUMENTATIONS
    extra = tuple(n for n in _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES if n not in DISTRO_INSTRUMENTATIONS)
    return DISTRO_INSTRUMENTATIONS + extra


def instrumentation_options() -> dict[str, dict[str, bool]]:
    """The distro's ``instrumentation_options``: every library instrumentation off."""
    return {name: {"enabled": False} for name in _distro_instrumentations()}


def _number(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise ConfigError(f"setting {name} must be a finite number, got {raw!r}")
    return value


def sampler_options(env: Mapping[str, str]) -> dict[str, float]:
    """The distro's sampler keyword, chosen from the app's settings; ConfigError names a bad one.

    How the distro picks its sampler (_utils/configurations.py _default_sampling_ratio and
    _configure.py _setup_tracing): OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG, when set, override
    both keywords; otherwise ``sampling_ratio`` gives ApplicationInsightsSampler (a fixed share,
    decided on the trace id) and wins over ``traces_per_second`` (RateLimitedSampler), whose default
    of 5.0 traces/s applies when neither keyword is given. host.json samplingSettings is not read:
    it samples only the Functions host's own telemetry.

    - TELEMETRY_SAMPLING_RATIO (0..1, default 1.0): keep that share of traces. The default keeps
      all: only events that arrive with a traceparent are traced, so the producer already bounds
      the volume. The decision is a hash of the trace id, so every hop of one trace (ingest,
      entity, Cosmos write; possibly on different instances) makes the same one.
    - TELEMETRY_TRACES_PER_SECOND (> 0): rate-limited instead, per process. Our spans continue
      remote parents (the event's traceparent), which the rate limiter does not follow
      (exporter export/trace/_utils.py parent_context_sampling honours local parents only), so
      hops whose sampling percentages differ can break a trace apart.
    """
    if env.get("OTEL_TRACES_SAMPLER", "").strip():
        raise ConfigError(
            f"setting OTEL_TRACES_SAMPLER would override {SAMPLING_RATIO_SETTING} and "
            f"{TRACES_PER_SECOND_SETTING} inside azure-monitor-opentelemetry; remove it and use those"
        )
    ratio = _number(env, SAMPLING_RATIO_SETTING)
    per_second = _number(env, TRACES_PER_SECOND_SETTING)
    if ratio is not None and per_second is not None:
        raise ConfigError(f"set only one of {SAMPLING_RATIO_SETTING} and {TRACES_PER_SECOND_SETTING}")
    if per_second is not None:
        if per_second <= 0:
            raise ConfigError(f"setting {TRACES_PER_SECOND_SETTING} must be above 0, got {per_second}")
        return {"traces_per_second": per_second}
    ratio = DEFAULT_SAMPLING_RATIO if ratio is None else ratio
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"setting {SAMPLING_RATIO_SETTING} must be between 0 and 1, got {ratio}")
    return {"sampling_ratio": ratio}


def _log_export(configure_distro: Any, kwargs: dict[str, Any]) -> None:
    """Run the distro's set-up so that each record of the app's loggers reaches Application Insights once.

    Two ways a record can get there:
    - the distro: _configure.py _setup_logging adds an OpenTelemetry LoggingHandler to
      ``logging.getLogger(logger_name)`` (logger_name defaults to "", the root logger:
      _utils/configurations.py _default_logger_name); the record carries the active span's trace
      and span ids, i.e. it is correlated with the app's own spans (the event's trace);
    - the Functions host: the Python worker puts a handler on the root logger (at INFO) that
      forwards every record that propagates to it; the host exports it as its own telemetry,
      correlated with the host's invocation, not with the event's trace, and subject to the
      host's adaptive sampling (host.json samplingSettings).

    A record of the ``shared`` tree that propagates takes both ways: two copies. Keeping only
    the host's way is not possible through the keywords: ``disable_logging`` is ignored (only
    OTEL_LOGS_EXPORTER=none turns the distro's logs off: _utils/configurations.py
    _default_disable_logging), and without a ``logger_name`` the distro's handler lands on the root
    logger and exports everything the worker forwards too. So: the distro exports the ``shared``
    tree (with the trace correlation, unsampled) and that tree stops propagating to the root
    logger, once the distro has put its handler on it. If it did not (OTEL_LOGS_EXPORTER=none, or
    the logging set-up failed), propagation stays on and the host's copy is the one.
    The ``functions`` package's few trigger-level logs stay with the host (one copy, correlated
    with the invocation they describe).
    """
    app_logger = logging.getLogger(APP_LOGGER)
    before = list(app_logger.handlers)
    configure_distro(**kwargs, logger_name=APP_LOGGER)
    if any(handler not in before for handler in app_logger.handlers):
        app_logger.propagate = False


def configure(env: Mapping[str, str] | None = None) -> str:
    """Quiet the SDK loggers and pick where telemetry goes; returns the choice.

    - ``azure-monitor``: APPLICATIONINSIGHTS_CONNECTION_STRING is set. With Entra
      authentication (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, as the Bicep sets it) the
      exporter signs in with the app's managed identity. Only the app's own spans are exported
      (every library instrumentation off), sampled as TELEMETRY_SAMPLING_RATIO or
      TELEMETRY_TRACES_PER_SECOND say, and the ``shared`` loggers' records once.
    - ``console``: TELEMETRY_CONSOLE=true, spans and metrics printed (local debugging).
    - ``none``: the OpenTelemetry API's no-op providers (the devhost and tests
      install their own SDK providers).
    """
    global _configured
    env = os.environ if env is None else env
    try:
        set_hash_key(config.hash_key("TELEMETRY_HASH_KEY", env))
    except ConfigError as exc:  # in Azure: logged here, every handler refuses, health says why
        logging.getLogger(__name__).error("%s", exc)
        set_hash_key(None)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if _configured:
        return "configured"
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor

        # Validate before marking configured, so a bad setting fails every attempt alike.
        kwargs: dict[str, Any] = {
            "connection_string": env["APPLICATIONINSIGHTS_CONNECTION_STRING"],
            "instrumentation_options": instrumentation_options(),
            **sampler_options(env),
        }
        if "Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""):
            from azure.identity import ManagedIdentityCredential

            kwargs["credential"] = ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None)
        _configured = True
        _log_export(configure_azure_monitor, kwargs)
        rebind()
        return "azure-monitor"
    _configured = True
    if env.get("TELEMETRY_CONSOLE", "").lower() in ("1", "true", "yes"):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        rebind()
        return "console"
    return "none"
