"""Settings and host.json, read the way the Functions host reads them.

Settings come from ``local.settings.json`` ``Values`` when the file exists (as
with ``func start``); otherwise the devhost generates a settings dict pointing
at the Cosmos DB server it starts itself. Nothing generated is written to disk.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SETTINGS = ROOT / "local.settings.json"
HOST_JSON = ROOT / "host.json"

_EXPRESSION = re.compile(r"%([^%]+)%")


class SettingsError(RuntimeError):
    """A settings file or binding expression the devhost cannot use; the message says why."""


def load_local_settings(path: Path) -> dict[str, str]:
    """``Values`` of a local.settings.json file (all values as strings)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f'{path} has no "Values" object')
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def default_settings(cosmos_endpoint: str, cosmos_key: str) -> dict[str, str]:
    """What the devhost runs with when no local.settings.json is given."""
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "EVENTHUB_NAME": "player-events",
        "EVENTHUB_CONSUMER_GROUP": "$Default",
        "DURABLE_TASK_HUB": "devhost",
        "COSMOS_ENDPOINT": cosmos_endpoint,
        "COSMOS_KEY": cosmos_key,
        "COSMOS_DATABASE": "interventions",
        "OUTBOX_REMINDER_QUEUE": "outbox-reminders",
    }


def emulator_key() -> str:
    """A throwaway key for cosmosdb-server (it checks no signatures); generated, never stored."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def resolve(value: Any, settings: Mapping[str, str], where: str) -> Any:
    """Resolve ``%Setting%`` binding expressions like the host; unknown settings are an error."""
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings or settings[name] == "":
            raise SettingsError(
                f"{where}: binding expression %{name}% does not resolve: setting {name} is not set"
            )
        return settings[name]

    return _EXPRESSION.sub(sub, value)


@contextmanager
def applied(settings: Mapping[str, str]) -> Iterator[None]:
    """Put settings into os.environ for the duration of a run, restoring what was there."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _timespan_seconds(raw: str) -> float:
    """``HH:MM:SS[.fff]`` (a .NET TimeSpan as host.json writes it) -> seconds."""
    parts = raw.split(":")
    if len(parts) != 3:
        raise SettingsError(f"not a timespan (HH:MM:SS): {raw!r}")
    h, m, s = parts
    return int(h) * 3600 + int(m) * 60 + float(s)


@dataclass(frozen=True)
class HostOptions:
    """The host.json options the devhost honours."""

    max_event_batch_size: int = 100  # host defaults (Event Hubs extension 5.x)
    min_event_batch_size: int = 1
    max_wait_seconds: float = 60.0
    max_entity_batch: int = 50
    hub_name: str = "devhost"
    # durableTask concurrency on one instance (the extension's defaults on Consumption: 5 and 10 x cores).
    max_orchestrator_functions: int = 5
    max_activity_functions: int = 10
    store_inputs_in_history: bool = False  # durableTask.storeInputsInOrchestrationHistory
    queues: QueueOptions = field(default_factory=lambda: QueueOptions())


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues``, with the Storage Queues extension's documented defaults."""

    batch_size: int = 16
    max_polling_interval_s: float = 60.0
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


def load_host_options(path: Path, settings: Mapping[str, str]) -> HostOptions:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    ext = data.get("extensions", {})
    eh = ext.get("eventHubs", {})
    dt = ext.get("durableTask", {})
    defaults = HostOptions()
    max_batch = int(eh.get("maxEventBatchSize", defaults.max_event_batch_size))
    min_batch = int(eh.get("minEventBatchSize", defaults.min_event_batch_size))
    if not 1 <= min_batch <= max_batch:
        raise SettingsError(f"{path}: need 1 <= minEventBatchSize <= maxEventBatchSize")
    wait = eh.get("maxWaitTime")
    q = ext.get("queues", {})
    qd = QueueOptions()
    queues = QueueOptions(
        batch_size=int(q.get("batchSize", qd.batch_size)),
        max_polling_interval_s=_timespan_seconds(q["maxPollingInterval"])
        if "maxPollingInterval" in q
        else qd.max_polling_interval_s,
        visibility_timeout_s=_timespan_seconds(q["visibilityTimeout"])
        if "visibilityTimeout" in q
        else qd.visibility_timeout_s,
        max_dequeue_count=int(q.get("maxDequeueCount", qd.max_dequeue_count)),
        message_encoding=str(q.get("messageEncoding", qd.message_encoding)).lower(),
    )
    return HostOptions(
        queues=queues,
        max_event_batch_size=max_batch,
        min_event_batch_size=min_batch,
        max_wait_seconds=_timespan_seconds(wait) if wait else defaults.max_wait_seconds,
        max_entity_batch=max(1, int(dt.get("maxEntityOperationBatchSize", defaults.max_entity_batch))),
        max_orchestrator_functions=max(
            1, int(dt.get("maxConcurrentOrchestratorFunctions", defaults.max_orchestrator_functions))
        ),
        max_activity_functions=max(
            1, int(dt.get("maxConcurrentActivityFunctions", defaults.max_activity_functions))
        ),
        store_inputs_in_history=bool(dt.get("storeInputsInOrchestrationHistory", False)),
        hub_name=str(resolve(dt.get("hubName", defaults.hub_name), settings, f"{path} durableTask.hubName")),
    )
