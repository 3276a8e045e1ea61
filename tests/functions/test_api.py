"""The HTTP API functions, invoked as the worker would with real HttpRequest objects.

The Durable client is the real one, built from a binding JSON; the extension's
webhook (which needs the Functions host) is answered in-process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func
import pytest

from devhost import protocol
from tests.functions.test_app import BASE, Capture, functions_by_name

pytestmark = pytest.mark.cosmos


def request(method: str, player: str) -> func.HttpRequest:
    return func.HttpRequest(
        method=method, url=f"{BASE}/api/players/{player}", body=b"", route_params={"playerId": player}
    )


class StateServer(Capture):
    def __init__(self, states: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.states = states
        self.gets: list[str] = []

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        self.gets.append(url)
        req = protocol.parse_entity_url(url)
        if req is None or req.key not in self.states:
            return [404, ""]
        return [200, self.states[req.key]]


def call(name: str, req: func.HttpRequest, server: StateServer) -> func.HttpResponse:
    fn = functions_by_name()[name].get_user_function()
    with protocol.client_transport(server.post, server.get):
        return asyncio.run(fn(req=req, client=protocol.client_binding_json(BASE, "testhub")))


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
    resp = call("get_player", request("GET", "p-1"), server)
    assert resp.status_code == 200
    body = json.loads(resp.get_body())
    assert body["bufferedEvents"] == 1 and body["optedOut"] is True and body["lifetime"]["events"] == 7
    assert server.gets == [BASE + protocol.WEBHOOK_PATH + "entities/Player/p-1"]


def test_get_unknown_player_is_404(app_env) -> None:
    assert call("get_player", request("GET", "nobody"), StateServer({})).status_code == 404


@pytest.mark.parametrize("name,method", [("get_player", "GET"), ("erase_player", "DELETE")])
def test_bad_player_id_is_400_and_never_reaches_the_durable_api(app_env, name: str, method: str) -> None:
    server = StateServer({})
    resp = call(name, request(method, "a/../b"), server)
    assert resp.status_code == 400 and server.gets == [] and server.posts == []


def test_erase_signals_the_entity_and_answers_202(app_env) -> None:
    server = StateServer({})
    resp = call("erase_player", request("DELETE", "p-2"), server)
    assert resp.status_code == 202
    [(url, data)] = server.posts
    assert url == BASE + protocol.WEBHOOK_PATH + "entities/Player/p-2?op=erase"
    assert json.loads(data) == {"requested": True}  # a non-empty dict: the client sends None for falsy input


def test_health_reports_the_model_version(app_env) -> None:
    from shared.model import get_model

    fn = functions_by_name()["health"].get_user_function()
    resp = fn(func.HttpRequest(method="GET", url=f"{BASE}/api/health", body=b""))
    assert resp.status_code == 200
    assert json.loads(resp.get_body()) == {"status": "ok", "modelVersion": get_model().version}


def test_health_is_503_naming_only_the_failing_part(app_env, monkeypatch, caplog) -> None:
    from shared import runtime

    monkeypatch.setenv("COSMOS_ENDPOINT", "https://prod.documents.azure.com:443/")  # with a key: refused
    runtime.reset()
    resp = functions_by_name()["health"].get_user_function()(
        func.HttpRequest(method="GET", url=f"{BASE}/api/health", body=b"")
    )
    assert resp.status_code == 503
    assert json.loads(resp.get_body()) == {"status": "unhealthy", "failing": "configuration"}
    assert "COSMOS_KEY is accepted only for a local emulator" in caplog.text  # details go to the log only
