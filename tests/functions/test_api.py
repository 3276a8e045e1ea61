"""The HTTP API functions, invoked as the host and worker invoke them (tests/apphost.py).

The Durable client is the real one, built from a binding JSON; the extension's
webhook (which needs the Functions host) is answered in-process.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devhost.durable import protocol
from devhost.durable.client import as_sent
from devhost.functions_host.bindings import HttpReply
from tests.apphost import BASE, Capture, call_http

pytestmark = pytest.mark.cosmos


class StateServer(Capture):
    def __init__(self, states: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.states = states
        self.gets: list[str] = []

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        self.gets.append(as_sent(url))
        req = protocol.parse_entity_url(as_sent(url))
        if req is None or req.key not in self.states:
            return [404, ""]
        return [200, self.states[req.key]]


def call(name: str, method: str, player: str, server: StateServer) -> HttpReply:
    return call_http(name, method, f"/api/players/{player}", {"playerId": player}, server)


def test_get_player_reads_entity_state_through_the_client(app_env) -> None:
    state = {
        "buf": [[1, 2, 1.0, 0.0, "e1", "0", 1]],
        "agg": {"events": 7, "sessions": 2},
        "opted_out": True,
        "day": "2026-11-21",
        "day_count": 1,
        "last_action_ms": {"break_suggestion": 5},
    }
    server = StateServer({"p-1": state})
    resp = call("get_player", "GET", "p-1", server)
    assert resp.status == 200
    body = json.loads(resp.body)
    assert body["bufferedEvents"] == 1 and body["optedOut"] is True and body["lifetime"]["events"] == 7
    assert server.gets == [BASE + protocol.WEBHOOK_PATH + "entities/Player/p-1"]


def test_get_unknown_player_is_404(app_env) -> None:
    assert call("get_player", "GET", "nobody", StateServer({})).status == 404


@pytest.mark.parametrize("name,method", [("get_player", "GET"), ("erase_player", "DELETE")])
def test_bad_player_id_is_400_and_never_reaches_the_durable_api(app_env, name: str, method: str) -> None:
    server = StateServer({})
    resp = call(name, method, "a/../b", server)
    assert resp.status == 400 and server.gets == [] and server.posts == []


def test_erase_signals_the_entity_and_answers_202(app_env) -> None:
    server = StateServer({})
    resp = call("erase_player", "DELETE", "p-2", server)
    assert resp.status == 202
    [(url, data)] = server.posts
    assert url == BASE + protocol.WEBHOOK_PATH + "entities/Player/p-2?op=erase"
    assert json.loads(data) == {"requested": True}  # a non-empty dict: the client sends None for falsy input


def test_health_reports_the_model_version(app_env) -> None:
    from shared.model import get_model

    resp = call_http("health", "GET", "/api/health", {})
    assert resp.status == 200
    assert json.loads(resp.body) == {"status": "ok", "modelVersion": get_model().version}


def test_health_is_503_naming_only_the_failing_part(app_env, monkeypatch, caplog) -> None:
    from shared import runtime

    monkeypatch.setenv("COSMOS_ENDPOINT", "https://prod.documents.azure.com:443/")  # with a key: refused
    runtime.reset()
    resp = call_http("health", "GET", "/api/health", {})
    assert resp.status == 503
    assert json.loads(resp.body) == {"status": "unhealthy", "failing": "configuration"}
    assert "COSMOS_KEY is accepted only for a local emulator" in caplog.text  # details go to the log only
