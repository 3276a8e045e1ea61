"""Logging and OpenTelemetry: set up once per process, instruments defined once.

Every count the pipeline reports is an OpenTelemetry instrument defined here.
The functions record into them; Application Insights receives them through
azure-monitor-opentelemetry when it is configured; the devhost summary and the
benchmarks read the very same instruments through an in-memory reader, so
there is one set of numbers, not three.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace

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


_instruments: Instruments | None = None


def instruments() -> Instruments:
    global _instruments
    if _instruments is None:
        _instruments = Instruments(metrics.get_meter(METER_NAME))
    return _instruments


def rebind() -> Instruments:
    """Rebuild the instruments on the current global MeterProvider (devhost, tests)."""
    global _instruments
    _instruments = Instruments(metrics.get_meter(METER_NAME))
    return _instruments


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


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


def add_counts(counter: Any, counts: Mapping[str, int], key: str) -> None:
    for value, n in counts.items():
        if n:
            counter.add(n, {key: value})


def configure(env: Mapping[str, str] | None = None) -> str:
    """Quiet the SDK loggers and pick where telemetry goes; returns the choice.

    - ``azure-monitor``: APPLICATIONINSIGHTS_CONNECTION_STRING is set. With Entra
      authentication (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, as the Bicep sets
      it) the exporter signs in with the app's managed identity.
    - ``console``: TELEMETRY_CONSOLE=true, spans and metrics printed (local debugging).
    - ``none``: the OpenTelemetry API's no-op providers (the devhost and tests
      install their own SDK providers).
    """
    global _configured
    env = os.environ if env is None else env
    set_hash_key(env.get("TELEMETRY_HASH_KEY"))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if _configured:
        return "configured"
    _configured = True
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor

        kwargs: dict[str, Any] = {"logger_name": "shared"}
        if "Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""):
            from azure.identity import ManagedIdentityCredential

            kwargs["credential"] = ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None)
        # The pipeline's own spans cover its Cosmos writes (of traced events only);
        # the SDK's per-request spans would be a root trace per untraced write.
        kwargs["instrumentation_options"] = {"azure_sdk": {"enabled": False}}
        configure_azure_monitor(**kwargs)
        rebind()
        return "azure-monitor"
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
