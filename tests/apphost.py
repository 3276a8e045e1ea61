"""Host the real function app for a test the way the devhost (and so the platform) does.

Every call goes through the devhost's hosting path: the app indexed with the
worker's load-time checks, each trigger's input built as the Functions host
builds it and decoded by the azure.functions converters, the ``context`` and
retry context the worker passes, the return value encoded by the converter.
Only the Durable extension's webhook (it needs the Functions host) is answered
in-process, through the SDK's own request functions (devhost.durable.protocol).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

import function_app
from devhost.durable import history, protocol
from devhost.durable.client import as_sent
from devhost.functions_host import bindings
from devhost.functions_host.bindings import HttpReply, HubEvent
from devhost.functions_host.indexing import AppIndex, index_app
from devhost.functions_host.worker import Datum, Invocation, RetryContext
from devhost.pipeline import entity_runner
from shared import signals
from shared.entity import load_state
from shared.signals import Signal
from tests.helpers import NOW_MS

BASE = "http://127.0.0.1:7071"
# Every function the app registers (function_app.py), by blueprint.
APP_FUNCTIONS = frozenset(
    {
        *("ingest", "deliver_signals"),  # functions/ingest.py
        "player",  # functions/player_entity.py
        *("get_player", "get_player_actions", "erase_player", "health"),  # functions/api.py
        "outbox_reminder",  # functions/reminders.py
        # functions/summaries.py
        *("summary_timer", "daily_summary", "summary_hour", "summary_scan_hour"),
        *("summary_write_part", "summary_write_index", "start_day_summary", "get_day_summary"),
    }
)
HUB = "player-events"


def index() -> AppIndex:
    """The app as the worker loads it, with the environment's settings."""
    return index_app(function_app.app, dict(os.environ))


class Capture:
    """In-process stand-in for the extension's webhook: records what the SDK sent, answers 202.

    URLs are recorded as aiohttp would send them (dot segments removed). ``signals()`` gives the
    entity signals whichever way ingest sent them: client signals as posted, and each delivery
    orchestration started (SIGNAL_PATH=orchestration) run through the real orchestrator function,
    its SignalEntity actions read back as the extension reads them."""

    def __init__(self, status: int = 202, instance_status: str | None = None) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.gets: list[str] = []
        self.status = status
        self.instance_status = instance_status  # what a status query answers (None: 404)

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        self.gets.append(as_sent(url))
        if self.instance_status is None:
            return [404, None]
        instance_id = url.split("/instances/", 1)[1].split("?", 1)[0]
        return [200, {"instanceId": instance_id, "runtimeStatus": self.instance_status, "name": "x"}]

    async def post(self, url: str, data: Any = None, *args: Any, **kwargs: Any) -> list[Any]:
        self.posts.append((as_sent(url), data))
        if self.status == 202 and f"{protocol.WEBHOOK_PATH}orchestrators/" in url:
            instance_id = url.rsplit("/", 1)[1]
            return [202, {"id": instance_id}]
        return [self.status, ""]

    def starts(self) -> list[tuple[str, str, Any]]:
        """(orchestrator, instance id, the posted input) of every orchestration start."""
        out = []
        for url, data in self.posts:
            path = url.split("?", 1)[0]
            marker = f"{protocol.WEBHOOK_PATH}orchestrators/"
            if marker in path:
                name, _, instance_id = path.split(marker, 1)[1].partition("/")
                out.append((name, instance_id, data))
        return out

    def signals(self) -> list[tuple[str, Any]]:
        """Every entity signal as (webhook URL, JSON text of the input), in the order sent."""
        out: list[tuple[str, Any]] = []
        rpc = BASE + protocol.WEBHOOK_PATH
        for url, data in self.posts:
            if protocol.parse_entity_url(url) is not None:
                out.append((url, data))
        for name, instance_id, data in self.starts():
            for entity, key, op, inp in run_first_episode(name, instance_id, data):
                out.append((f"{rpc}entities/{entity.title()}/{key}?op={op}", inp))  # JSON text, as posted
        return out


def run_first_episode(name: str, instance_id: str, posted: Any) -> list[tuple[str, str, str, Any]]:
    """A started orchestration's first episode through the worker path; its signal actions."""
    spec = index().functions[name]
    raw = history.first_episode_json(
        name, instance_id, history.compact(posted), datetime.fromtimestamp(NOW_MS / 1000, UTC)
    )
    out = asyncio.run(spec.invoke(Invocation(inputs={str(spec.trigger["name"]): Datum(raw, "string")})))
    assert out is not None and isinstance(out.value, str), out
    state = json.loads(out.value)
    assert state.get("isDone"), state
    return history.signal_actions(state)


def hub_events(
    raws: Sequence[bytes], *, seq0: int = 100, enqueued_ms: int = NOW_MS - 1000, key: str | None = None
) -> list[HubEvent]:
    return [HubEvent(raw, seq0 + i, str((seq0 + i) * 100), enqueued_ms, key) for i, raw in enumerate(raws)]


def run_ingest(
    events: Sequence[HubEvent],
    capture: Capture,
    *,
    partition: str = "7",
    retry: RetryContext | None = None,
    app: AppIndex | None = None,
) -> None:
    """One trigger invocation for a batch of one partition; raises what the invocation raised."""
    spec = (app or index()).functions["ingest"]
    inv = bindings.eventhub_invocation(
        spec.trigger,
        events,
        partition=partition,
        hub=HUB,
        consumer_group="$Default",
        client_args={arg: protocol.client_binding_json(BASE, "testhub") for arg in spec.client_args},
        retry=retry or RetryContext(0, -1),
    )
    with protocol.client_transport(capture.post, capture.get):
        asyncio.run(spec.invoke(inv))


def stored(state_json: str | None) -> dict[str, Any]:
    """An entity state as the extension stores it (a JSON value), as plain data for assertions."""
    raw = json.loads(state_json) if state_json else None
    return msgspec.to_builtins(load_state(raw))  # type: ignore[no-any-return]


def sent_signal(data: Any) -> Signal:
    """The signal a captured ``signal_entity`` post carried (its JSON body), decoded."""
    return signals.decode(json.loads(data))


def call_entity(key: str, state: str | None, ops: list[tuple[str, Any]]) -> protocol.EntityBatchResult:
    """One entity batch through the worker path and the SDK's batch protocol."""
    spec = index().entity("Player")
    raw = protocol.entity_batch_json("Player", key, state, [(op, json.dumps(inp)) for op, inp in ops])
    return protocol.parse_entity_response(asyncio.run(entity_runner(spec)(raw, None)))


def call_http(
    name: str, method: str, path: str, route_params: dict[str, str], server: Any | None = None
) -> HttpReply:
    """An HTTP function invoked as the host invokes it; ``server`` answers the Durable webhooks."""
    spec = index().functions[name]
    inv = bindings.http_invocation(
        spec.trigger,
        method=method,
        url=BASE + path,
        headers={},
        query={},
        route_params=route_params,
        body=b"",
        client_args={arg: protocol.client_binding_json(BASE, "testhub") for arg in spec.client_args},
    )
    if server is None:
        return bindings.http_reply(asyncio.run(spec.invoke(inv)))
    with protocol.client_transport(server.post, server.get):
        return bindings.http_reply(asyncio.run(spec.invoke(inv)))
