"""Conformance: the Durable client, entity protocol and entity scheduling, as the SDK and extension do.

Sources: azure-functions-durable 1.7.0 (DurableOrchestrationClient.signal_entity, models/utils/http_utils
aiohttp session, entity batch protocol in durable_functions/entity.py), aiohttp/yarl URL normalisation,
and the Durable extension (TaskEntityShim: a failed batch is not committed and is delivered again).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.db import DevDB
from devhost.durable import protocol
from devhost.durable.client import INPROC_BASE_URL, InProcTransport
from devhost.durable.entities import EntityScheduler
from devhost.functions_host.indexing import index_app
from devhost.pipeline import entity_runner
from devhost.webserver import WebhookServer
from tests.apphost import BASE, Capture, call_http


def _scheduler(tmp: Path, runner: Any) -> EntityScheduler:
    return EntityScheduler(DevDB(tmp), {"Player": runner}, max_batch=50, workers=1)


async def _noop(batch: str, executor: Any) -> str:  # pragma: no cover - never run here
    return ""


@pytest.mark.parametrize("transport", ["inproc", "http"])
def test_dot_keys_reach_the_host_normalised_the_same_way_on_both_transports(
    tmp_path: Path, transport: str
) -> None:
    """The SDK builds entities/{name}/{key} unescaped and its aiohttp client removes dot segments:
    '..' loses the entity name (the host answers 400), '.' becomes an empty key."""

    async def go() -> tuple[str, list[tuple[str, str]]]:
        scheduler = _scheduler(tmp_path / transport, _noop)
        server = None
        base = INPROC_BASE_URL
        if transport == "http":
            server = WebhookServer(scheduler, [], "hub")
            base = await server.start()
        t = InProcTransport(scheduler)
        try:
            with protocol.client_transport(t.post, t.get) if transport == "inproc" else _nothing():
                # The client copies the module's request functions when it is built.
                client = df.DurableOrchestrationClient(protocol.client_binding_json(base, "hub"))
                with pytest.raises(Exception, match="400"):
                    await client.signal_entity(df.EntityId("Player", ".."), "events", {"x": 1})
                await client.signal_entity(df.EntityId("Player", "."), "events", {"x": 1})
        finally:
            if server is not None:
                await server.stop()
            mod: Any = __import__("sys").modules["azure.durable_functions.models.utils.http_utils"]
            await mod._close_session()
            mod._session_lock = asyncio.Lock()
        return transport, scheduler.db.queued_entities()

    _, queued = asyncio.run(go())
    assert queued == [("player", "")]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_api_refuses_dot_ids_before_they_reach_the_durable_client(app_env: dict[str, str]) -> None:
    """The app's player-id rule (a letter or digit required) keeps '.'/'..' away from entity URLs."""
    server = Capture()
    server.get = server.post  # type: ignore[method-assign]
    for key in (".", "..", "_"):
        reply = call_http("get_player", "GET", f"/api/players/{key}", {"playerId": key}, server)
        assert reply.status == 400
    assert server.posts == []


def test_a_falsy_signal_input_is_sent_as_none() -> None:
    """DurableOrchestrationClient.signal_entity posts json.dumps(input) only for a truthy input: an
    empty list or dict arrives as None, so the app always sends a non-empty dict."""
    capture = Capture()

    async def go() -> None:
        client = df.DurableOrchestrationClient(protocol.client_binding_json(BASE, "hub"))
        await client.signal_entity(df.EntityId("Player", "p1"), "events", [])
        await client.signal_entity(df.EntityId("Player", "p1"), "events", {"v": 1})

    with protocol.client_transport(capture.post):
        asyncio.run(go())
    assert [d for _, d in capture.posts] == [None, json.dumps({"v": 1})]


def test_an_operation_that_raises_is_an_error_result_and_its_state_is_not_rolled_back() -> None:
    """durable_functions/entity.py: the raise becomes isError for that operation; state set before
    it stays (no rollback), which is why the app sets its state once, after its side effects."""
    app = df.DFApp()

    @app.entity_trigger(context_name="context", entity_name="Counter")
    def counter(context: df.DurableEntityContext) -> None:
        context.set_state((context.get_state(lambda: 0) or 0) + 1)
        if context.operation_name == "boom":
            raise RuntimeError("boom")

    spec = index_app(app, {}).entity("Counter")
    raw = protocol.entity_batch_json("Counter", "c1", None, [("add", json.dumps({"a": 1})), ("boom", None)])
    out = protocol.parse_entity_response(asyncio.run(entity_runner(spec)(raw, None)))
    assert [r["isError"] for r in out.results] == [False, True]
    assert json.loads(out.state or "null") == 2


def test_a_failed_entity_batch_is_delivered_again_without_a_cap(tmp_path: Path) -> None:
    """TaskEntityShim: a batch that fails as a whole is not committed and is delivered again; the
    devhost does the same (nothing parked on the side), and counts each failure."""
    calls: list[int] = []

    async def flaky(batch: str, executor: Any) -> str:
        calls.append(1)
        if len(calls) <= 4:
            raise RuntimeError("worker died")
        return json.dumps({"entityExists": True, "entityState": "1", "results": [], "signals": []})

    async def go() -> EntityScheduler:
        scheduler = _scheduler(tmp_path, flaky)
        scheduler.signal("Player", "p1", "events", json.dumps({"v": 1}))
        task = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(scheduler.drained(), 30)
        task.cancel()
        return scheduler

    scheduler = asyncio.run(go())
    assert len(calls) == 5 and scheduler.stats.batch_failures == 4 and scheduler.stats.operations == 1
    assert scheduler.db.entity_state("player", "p1") == "1" and scheduler.pending == 0


def test_the_devhost_server_answers_only_requests_addressed_to_loopback(tmp_path: Path) -> None:
    """Not a platform fact but the devhost's own safety: a DNS-rebinding page must not reach the
    erase API or the entity webhooks through a browser."""
    import aiohttp

    async def go() -> tuple[int, int]:
        server = WebhookServer(_scheduler(tmp_path, _noop), [], "hub")
        base = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                url = base + protocol.WEBHOOK_PATH + "entities/Player/p1"
                async with session.get(url, headers={"Host": "evil.example:80"}) as bad:
                    async with session.get(url) as good:
                        return bad.status, good.status
        finally:
            await server.stop()

    assert asyncio.run(go()) == (421, 404)
