"""Shared fixtures: real local servers started once per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Any base64 string: cosmosdb-server does not check signatures.
LOCAL_KEY = "bG9jYWwtZW11bGF0b3Ita2V5"


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    """A real @vercel/cosmosdb-server on a free loopback port, started as the devhost starts it."""
    from devhost.servers.node import CosmosServer, ServerError

    server = CosmosServer()
    try:
        yield server.start()
    except ServerError as exc:
        pytest.fail(str(exc))
    finally:
        server.stop()


@pytest.fixture
def cosmos_settings(cosmos_endpoint: str):
    """Fresh database per test, containers created as Bicep would."""
    from shared.config import CosmosSettings
    from shared.store import ensure_containers, make_client

    settings = CosmosSettings(
        endpoint=cosmos_endpoint,
        database=f"t{uuid.uuid4().hex[:12]}",
        key=LOCAL_KEY,
    )
    client = make_client(settings)
    ensure_containers(client, settings)
    yield settings
    client.delete_database(settings.database)


@pytest.fixture
def store(cosmos_settings):
    from shared.store import ActionStore

    return ActionStore(cosmos_settings)


@pytest.fixture
def app_env(cosmos_settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment as local.settings.json would give it, pointing at the test Cosmos."""
    from shared import runtime

    env = {
        "COSMOS_ENDPOINT": cosmos_settings.endpoint,
        "COSMOS_KEY": cosmos_settings.key or "",
        "COSMOS_DATABASE": cosmos_settings.database,
        "EVENTHUB_NAME": "player-events",
        "EVENTHUB_CONSUMER_GROUP": "$Default",
        "DURABLE_TASK_HUB": "testhub",
        "OUTBOX_REMINDER_QUEUE": "outbox-reminders",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    runtime.reset()
    yield env
    runtime.reset()


os.environ.setdefault("TELEMETRY_HASH_PLAYER_ID", "true")


@pytest.fixture(scope="session")
def _tracer_provider():
    """One SDK TracerProvider for the session (OpenTelemetry allows setting it once)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.fail("another TracerProvider was installed before the tests' one")
    return exporter


@pytest.fixture
def spans(_tracer_provider):
    """Finished spans recorded during the test."""
    _tracer_provider.clear()
    yield _tracer_provider
    _tracer_provider.clear()
