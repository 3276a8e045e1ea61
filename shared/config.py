"""One place that reads the environment.

Every setting the app reads is named here, once. The same names are used in
Azure app settings (set by ``bicep/``), in ``local.settings.json`` and by the
devhost. ``AZURE_SETTINGS`` lists what a deployment must provide; the IaC tests
cross-check it against the templates so the two cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# Settings referenced by binding expressions (%NAME%) in functions/.
EVENTHUB_NAME = "EVENTHUB_NAME"
EVENTHUB_CONSUMER_GROUP = "EVENTHUB_CONSUMER_GROUP"
EVENTHUB_CONNECTION = "EventHubConnection"  # prefix; Azure: EventHubConnection__fullyQualifiedNamespace

# Settings every Azure deployment must set (identity-based only, no secrets).
AZURE_SETTINGS: tuple[str, ...] = (
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "EventHubConnection__fullyQualifiedNamespace",
    "EventHubConnection__credential",
    "EventHubConnection__clientId",
    EVENTHUB_NAME,
    EVENTHUB_CONSUMER_GROUP,
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "AZURE_CLIENT_ID",
    "DURABLE_TASK_HUB",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_THREADPOOL_THREAD_COUNT",
    "OUTBOX_REMINDER_QUEUE",
)


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name} must be an integer, got {raw!r}") from exc


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError(f"setting {name} must be 0 or more, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name} must be a number, got {raw!r}") from exc


def _csv(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(p.strip() for p in env.get(name, "").split(",") if p.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"setting {name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class CosmosSettings:
    endpoint: str
    database: str = "interventions"
    actions_container: str = "actions"
    deadletters_container: str = "deadletters"
    summaries_container: str = "summaries"
    erasures_container: str = "erasures"
    # Accepted only for local emulators (cosmosdb-server, the official emulator).
    key: str | None = None
    managed_identity_client_id: str | None = None
    action_ttl_seconds: int = 7 * 24 * 3600
    deadletter_ttl_seconds: int = 14 * 24 * 3600


@dataclass(frozen=True)
class Settings:
    cosmos: CosmosSettings
    eventhub_name: str = "player-events"
    eventhub_consumer_group: str = "$Default"
    disabled_action_types: frozenset[str] = field(default_factory=frozenset)
    daily_action_cap: int = 3
    hash_player_ids_in_telemetry: bool = True
    max_event_bytes: int = 16 * 1024
    max_future_skew_seconds: float = 300.0
    stale_after_seconds: float = 900.0
    # Failed attempts of one trigger batch before it is parked (docs/parking.md).
    park_after_retries: int = 12
    # First delay of an outbox reminder (then doubling to 5 min): see shared/player.py.
    outbox_reminder_seconds: int = 10
    # How ingest gets a batch's signals to the entities (docs/performance.md, "Signals").
    signal_path: str = "orchestration"


SIGNAL_PATHS = ("orchestration", "client")


def is_local_endpoint(endpoint: str) -> bool:
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]", "::1")


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise ConfigError naming the culprit."""
    env = os.environ if env is None else env
    endpoint = env.get("COSMOS_ENDPOINT", "").strip()
    if not endpoint:
        raise ConfigError(
            "setting COSMOS_ENDPOINT is required (https://<account>.documents.azure.com:443/ "
            "in Azure, the emulator's URL locally)"
        )
    key = env.get("COSMOS_KEY") or None
    if not key and is_local_endpoint(endpoint):
        raise ConfigError(
            f"COSMOS_KEY is required with the local emulator endpoint {endpoint} (identity sign-in needs "
            "https and a real account; the emulators take their documented key)"
        )
    if key and not is_local_endpoint(endpoint):
        raise ConfigError(
            "COSMOS_KEY is accepted only for a local emulator endpoint; "
            "in Azure the app authenticates with its managed identity"
        )
    cosmos = CosmosSettings(
        endpoint=endpoint,
        database=env.get("COSMOS_DATABASE") or "interventions",
        actions_container=env.get("COSMOS_ACTIONS_CONTAINER") or "actions",
        deadletters_container=env.get("COSMOS_DEADLETTERS_CONTAINER") or "deadletters",
        summaries_container=env.get("COSMOS_SUMMARIES_CONTAINER") or "summaries",
        erasures_container=env.get("COSMOS_ERASURES_CONTAINER") or "erasures",
        key=key,
        managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None,
        action_ttl_seconds=_int(env, "ACTION_TTL_SECONDS", 7 * 24 * 3600),
    )
    from shared.policy import ACTION_TYPES

    disabled = _csv(env, "DISABLED_ACTION_TYPES")
    if disabled - set(ACTION_TYPES):
        raise ConfigError(
            f"DISABLED_ACTION_TYPES names unknown action types {sorted(disabled - set(ACTION_TYPES))}; "
            f"known: {', '.join(ACTION_TYPES)}"
        )
    signal_path = (env.get("SIGNAL_PATH") or "orchestration").strip().lower()
    if signal_path not in SIGNAL_PATHS:
        raise ConfigError(f"SIGNAL_PATH must be one of {', '.join(SIGNAL_PATHS)}, got {signal_path!r}")
    return Settings(
        cosmos=cosmos,
        eventhub_name=env.get(EVENTHUB_NAME) or "player-events",
        eventhub_consumer_group=env.get(EVENTHUB_CONSUMER_GROUP) or "$Default",
        disabled_action_types=disabled,
        daily_action_cap=_int(env, "DAILY_ACTION_CAP", 3),
        hash_player_ids_in_telemetry=_bool(env, "TELEMETRY_HASH_PLAYER_ID", True),
        max_event_bytes=_int(env, "MAX_EVENT_BYTES", 16 * 1024),
        max_future_skew_seconds=_float(env, "MAX_FUTURE_SKEW_SECONDS", 300.0),
        stale_after_seconds=_float(env, "STALE_AFTER_SECONDS", 900.0),
        park_after_retries=_positive(env, "INGEST_PARK_AFTER_RETRIES", 12),
        outbox_reminder_seconds=max(1, _positive(env, "OUTBOX_REMINDER_SECONDS", 10)),
        signal_path=signal_path,
    )
