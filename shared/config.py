"""One place that reads the environment.

Every setting the app reads is named here, once. The same names are used in
Azure app settings (set by ``bicep/``), in ``local.settings.json`` and by the
devhost. ``AZURE_SETTINGS`` lists what a deployment must provide; the IaC tests
cross-check it against the templates so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

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
    "ERASURE_HASH_KEY",
    "TELEMETRY_HASH_KEY",
)

# The pseudonymisation keys (Key Vault references in Azure; docs/privacy.md): ERASURE_HASH_KEY
# keys the player-id hash of erasure records, TELEMETRY_HASH_KEY the one telemetry shows.
HASH_KEYS = ("ERASURE_HASH_KEY", "TELEMETRY_HASH_KEY")
# What App Service leaves in a setting whose Key Vault reference it could not resolve.
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


# How the Functions host itself tells it runs in Azure (azure-functions-host,
# src/WebJobs.Script/Environment/EnvironmentExtensions.cs): IsAppService is WEBSITE_INSTANCE_ID
# set (dedicated and Premium plans); Flex Consumption (this app's plan, where WEBSITE_INSTANCE_ID
# is *not* set) is WEBSITE_SKU "FlexConsumption", or LEGION_SERVICE_HOST with CONTAINER_NAME or
# WEBSITE_POD_NAME; Linux Consumption is CONTAINER_NAME. CONTAINER_NAME alone is too common a
# name (container runtimes and CI set it), so it counts only with WEBSITE_SITE_NAME, which App
# Service sets on every plan.
class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


class HashKeyError(ConfigError):
    """In Azure, a pseudonymisation key is empty or an unresolved Key Vault reference.

    ``problems`` maps each such setting to what is wrong with it ("empty", "unresolved Key Vault
    reference"): what the health endpoint may show, since it names no value."""

    def __init__(self, problems: dict[str, str], marker: str) -> None:
        self.problems = problems
        listed = "; ".join(f"{name} is {what}" for name, what in problems.items())
        super().__init__(
            f"{listed} (running in Azure: {marker} is set). The app processes nothing until "
            "the key resolves: check that the Key Vault secret exists and that the app's identity "
            "(keyVaultReferenceIdentity) has Key Vault Secrets User on the vault (docs/privacy.md)"
        )


def hosted_in_azure(env: Mapping[str, str] | None = None) -> str | None:
    """The setting that says the app runs in Azure (as the Functions host tells it), or None."""
    env = os.environ if env is None else env
    if env.get("WEBSITE_INSTANCE_ID"):
        return "WEBSITE_INSTANCE_ID"
    if (env.get("WEBSITE_SKU") or "").lower() == "flexconsumption":
        return "WEBSITE_SKU"
    if env.get("LEGION_SERVICE_HOST") and (env.get("CONTAINER_NAME") or env.get("WEBSITE_POD_NAME")):
        return "LEGION_SERVICE_HOST"
    if env.get("CONTAINER_NAME") and env.get("WEBSITE_SITE_NAME"):
        return "WEBSITE_SITE_NAME"
    return None


_told: set[str] = set()
_told_lock = threading.Lock()


def local_hash_key(name: str) -> str:
    """The key used locally when ``name`` is not set: derived from its name, the same in every
    process (the devhost's workers must agree on erasure records). Not secret, so never in Azure."""
    return "local-" + hashlib.sha256(b"player-interventions local key:" + name.encode()).hexdigest()


def _key_problem(raw: str) -> str | None:
    if not raw:
        return "empty"
    if raw.startswith(KEY_VAULT_REFERENCE):
        return "an unresolved Key Vault reference"
    return None


def hash_key(name: str, env: Mapping[str, str] | None = None) -> str:
    """The pseudonymisation key ``name`` (one of HASH_KEYS).

    In Azure (``hosted_in_azure``) an empty key, or an unresolved Key Vault reference (App
    Service leaves the ``@Microsoft.KeyVault(...)`` text in the setting when it cannot resolve
    it), raises HashKeyError: a plain or publicly known key would make ids like ``player-00042``
    recoverable by enumeration, and a key that changes later stops erasure records matching.
    Locally it returns ``local_hash_key(name)`` and says so once per process.
    """
    env = os.environ if env is None else env
    raw = (env.get(name) or "").strip()
    problem = _key_problem(raw)
    if problem is None:
        return raw
    marker = hosted_in_azure(env)
    if marker:
        raise HashKeyError({name: problem}, marker)
    with _told_lock:
        if name not in _told:
            _told.add(name)
            log.warning(
                "setting %s is %s: using a key generated from its name (local development only, "
                "not secret; in Azure the app refuses to run without it)",
                name,
                problem,
            )
    return local_hash_key(name)


def check_hash_keys(env: Mapping[str, str] | None = None) -> None:
    """Raise one HashKeyError naming every unusable key (in Azure); locally, say so once each."""
    env = os.environ if env is None else env
    marker = hosted_in_azure(env)
    problems = {n: p for n in HASH_KEYS if (p := _key_problem((env.get(n) or "").strip()))}
    if problems and marker:
        raise HashKeyError(problems, marker)
    for name in HASH_KEYS:
        hash_key(name, env)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name} must be an integer, got {raw!r}") from exc


# A day's summary is final once its last decision's longest outcome window (72 h) and the entity's
# grace have passed: day + 1 d + 72 h + 10 min, re-summarised by the 00:30 timer of its fourth day
# after. Its documents must still be there then, with a day of margin for a missed timer run.
MIN_ACTION_TTL_SECONDS = 5 * 24 * 3600


def _action_ttl(env: Mapping[str, str]) -> int:
    """ACTION_TTL_SECONDS: at least 5 days (a shorter TTL lets actions expire before their day's
    summary is final, and under a day none could be summarised at all; -1, Cosmos DB's "never
    expire", is refused too: the actions hold personal data and are kept for a bounded time)."""
    value = _int(env, "ACTION_TTL_SECONDS", 7 * 24 * 3600)
    if value < MIN_ACTION_TTL_SECONDS:
        raise ConfigError(
            f"setting ACTION_TTL_SECONDS must be at least {MIN_ACTION_TTL_SECONDS} (5 days: a day's summary "
            f"becomes final 4 days after it, once every outcome window has closed), got {value}"
        )
    return value


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


# Holdout (docs/workflows.md): withholding a player-protection action from an at-risk player is
# the operator's decision, so only the marketing action is held out unless HOLDOUT_SHARE says more.
DEFAULT_HOLDOUT_SHARE: Mapping[str, float] = {"break_suggestion": 0.0, "help_offer": 0.0, "bonus_offer": 0.1}
DEFAULT_HOLDOUT_SALT = "pi-holdout-1"


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
    # Share of would-be actions held out per action type (shared.holdout; docs/workflows.md).
    holdout_share: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_HOLDOUT_SHARE))
    # Key of the holdout assignment hash: changing it re-draws every group.
    holdout_salt: str = DEFAULT_HOLDOUT_SALT
    # Path of a challenger ONNX model scored in shadow (with its model card), or None: off.
    challenger_model: str | None = None


SIGNAL_PATHS = ("orchestration", "client")

HOLDOUT_SALT_MAX_BYTES = 64  # BLAKE2b's key length limit


def parse_holdout_share(raw: str | None) -> dict[str, float]:
    """``HOLDOUT_SHARE``: ``type=share,...`` with each share in [0, 1]. Empty: the default. A set
    value is the whole table: a type it does not name is not held out. Raises ConfigError."""
    from shared.policy import ACTION_TYPES

    if raw is None or not raw.strip():
        return dict(DEFAULT_HOLDOUT_SHARE)
    shares = dict.fromkeys(ACTION_TYPES, 0.0)
    named: set[str] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"setting HOLDOUT_SHARE: expected type=share, got {part!r}")
        if name not in shares:
            raise ConfigError(
                f"setting HOLDOUT_SHARE names unknown action type {name!r}; known: {', '.join(ACTION_TYPES)}"
            )
        if name in named:
            raise ConfigError(f"setting HOLDOUT_SHARE names {name} twice")
        try:
            share = float(value)
        except ValueError as exc:
            raise ConfigError(
                f"setting HOLDOUT_SHARE: the share of {name} must be a number, got {value!r}"
            ) from exc
        if not 0.0 <= share <= 1.0:  # (also refuses nan)
            raise ConfigError(f"setting HOLDOUT_SHARE: the share of {name} must be in [0, 1], got {value!r}")
        named.add(name)
        shares[name] = share
    if not named:  # "," or " , ": a value that names nothing is a mistake, not "hold nothing out"
        raise ConfigError(f"setting HOLDOUT_SHARE names no action type: {raw!r}")
    return shares


# A relative CHALLENGER_MODEL is taken from the app's root (where function_app.py is), whatever the
# working directory.
APP_ROOT = Path(__file__).resolve().parents[1]


def challenger_path(raw: str | None) -> str | None:
    """``CHALLENGER_MODEL``: an ONNX file with its model_card.json beside it, or empty (off)."""
    value = (raw or "").strip()
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = APP_ROOT / path
    if not path.is_file():
        raise ConfigError(f"setting CHALLENGER_MODEL: no model file at {path}")
    if not (path.parent / "model_card.json").is_file():
        raise ConfigError(f"setting CHALLENGER_MODEL: no model_card.json beside {path}")
    return str(path)


def parse_holdout_salt(raw: str | None) -> str:
    if raw is None or raw == "":
        return DEFAULT_HOLDOUT_SALT
    if not raw.strip():
        raise ConfigError("setting HOLDOUT_SALT must not be blank")
    if len(raw.encode()) > HOLDOUT_SALT_MAX_BYTES:
        raise ConfigError(f"setting HOLDOUT_SALT must be at most {HOLDOUT_SALT_MAX_BYTES} bytes")
    return raw


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
        action_ttl_seconds=_action_ttl(env),
    )
    from shared.policy import ACTION_TYPES

    disabled = _csv(env, "DISABLED_ACTION_TYPES")
    if disabled - set(ACTION_TYPES):
        raise ConfigError(
            f"DISABLED_ACTION_TYPES names unknown action types {sorted(disabled - set(ACTION_TYPES))}; "
            f"known: {', '.join(ACTION_TYPES)}"
        )
    check_hash_keys(env)  # in Azure, no handler runs on a missing or unresolved key
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
        holdout_share=parse_holdout_share(env.get("HOLDOUT_SHARE")),
        holdout_salt=parse_holdout_salt(env.get("HOLDOUT_SALT")),
        challenger_model=challenger_path(env.get("CHALLENGER_MODEL")),
    )
