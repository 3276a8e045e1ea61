"""Devhost start-up waits for its servers with a bounded, reported retry (issue 19, item 8).

A real cosmosdb-server behind the fault proxy (devhost/servers/faultproxy.py) that holds every request
unanswered for a while stands in for a server on a loaded machine: start-up must wait and then
succeed. A proxy that never answers must end in one clear error within the bound.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from devhost.host import ensure_cosmos
from devhost.servers.faultproxy import behind_proxy
from devhost.servers.node import ServerError, wait_ready
from shared.config import CosmosSettings
from shared.store import make_client
from tests.conftest import LOCAL_KEY

SLOW_S = 7.0  # longer than the Cosmos client's 5 s read timeout: one attempt alone would fail


def _settings(endpoint: str) -> CosmosSettings:
    return CosmosSettings(endpoint=endpoint, database=f"t{uuid.uuid4().hex[:12]}", key=LOCAL_KEY)


def test_startup_waits_for_a_slow_cosmos_and_succeeds(
    cosmos_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(cosmos_endpoint)
    with behind_proxy(settings, status=0, failures=0) as (proxy, slow):
        proxy.hold_writes.set()  # creating the database waits until released
        began = time.monotonic()

        def release() -> None:  # a sleep, not threading.Timer: timed waits break under libfaketime
            while time.monotonic() - began < SLOW_S and proxy.hold_writes.is_set():
                time.sleep(0.05)
            proxy.hold_writes.clear()

        releaser = threading.Thread(target=release, daemon=True)
        releaser.start()
        caplog.set_level(logging.INFO, logger="devhost.servers.node")
        try:
            ensure_cosmos(slow, limit_s=120)
        finally:
            proxy.hold_writes.clear()
        took = time.monotonic() - began
    assert took >= SLOW_S - 0.5, took  # it did wait for the server
    names = {c["id"] for c in make_client(settings).get_database_client(settings.database).list_containers()}
    assert {settings.actions_container, settings.deadletters_container} <= names
    retries = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert retries, "each retry is logged"
    assert "attempt 1, limit 120s" in retries[0] and "s elapsed" in retries[0], retries[0]
    make_client(settings).delete_database(settings.database)


def test_a_server_that_never_answers_gives_a_clear_error_within_the_bound(cosmos_endpoint: str) -> None:
    settings = _settings(cosmos_endpoint)
    with behind_proxy(settings, status=0, failures=0) as (proxy, dead):
        proxy.blackhole.set()
        began = time.monotonic()
        with pytest.raises(ServerError) as err:
            ensure_cosmos(dead, limit_s=3)
        took = time.monotonic() - began
    assert took < 3 + 1.0, took  # the bound holds even while an attempt hangs
    message = str(err.value)
    assert f"Cosmos DB at {dead.endpoint}" in message and "did not answer within 3s" in message, message
    assert "\n" not in message


def test_a_refused_port_is_retried_then_named(caplog: pytest.LogCaptureFixture) -> None:
    from devhost.servers.node import _connect, free_port

    port = free_port()  # nothing listens there
    caplog.set_level(logging.INFO, logger="devhost.servers.node")
    with pytest.raises(ServerError, match=rf"port {port} did not answer within 1s \(\d+ attempts; last: "):
        wait_ready(f"port {port}", lambda: _connect(port), limit_s=1)
    attempts = [r for r in caplog.records if "not ready" in r.getMessage()]
    assert len(attempts) >= 2  # retried, with back-off, each reported


def test_a_final_error_is_not_retried() -> None:
    calls: list[int] = []

    def exited() -> None:
        calls.append(1)
        raise ServerError("cosmosdb-server exited early with 1")

    with pytest.raises(ServerError, match="exited early"):
        wait_ready("cosmosdb-server", exited, limit_s=30)
    assert calls == [1]
