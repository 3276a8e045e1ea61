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


# -- GET /api/players/{playerId}/actions: decisions told apart (issue 18, item 6) -----------------


def _decision(
    player: str, trigger: str, atype: str, status: str, t_ms: int, score: float = 0.8
) -> dict[str, Any]:
    from shared.entity import ActionRecord, action_id
    from shared.store import action_document

    rec = ActionRecord(
        id=action_id(player, trigger, atype), type=atype, status=status, score=score,
        scores=[score, 0.1, 0.1], features=[0.0], model="m1", trigger=trigger, t=t_ms,
        decided_ms=t_ms + 5, reasons=["rule:cooldown"],
    )  # fmt: skip
    return action_document(player, rec)


def _suppressed(player: str, atype: str, rule: str, hour_ms: int, count: int) -> dict[str, Any]:
    from shared.entity import SuppressedAggregate, suppressed_id
    from shared.store import suppressed_document

    agg = SuppressedAggregate(
        suppressed_id(player, hour_ms, atype, rule),
        atype,
        rule,
        hour_ms,
        count,
        hour_ms,
        hour_ms + 60_000,
        "m1",
        hour_ms,
    )
    return suppressed_document(player, agg)


def test_player_actions_tells_sent_holdout_suppressed_and_shadow_apart(app_env, store) -> None:
    from shared.timeutil import iso_ms
    from tests.helpers import NOW_MS

    p, hour = "p-7", NOW_MS - NOW_MS % 3_600_000 - 3_600_000
    met = _decision(p, "e1", "break_suggestion", "pending", NOW_MS - 3_600_000)
    met["outcome"]["metAt"], met["outcome"]["eventId"] = iso_ms(NOW_MS - 3_000_000), "e9"
    accepted = _decision(p, "e2", "help_offer", "accepted", NOW_MS - 7_200_000)
    accepted["respondedAt"] = iso_ms(NOW_MS - 7_100_000)
    not_met = _decision(p, "e3", "break_suggestion", "pending", NOW_MS - 10_800_000)
    legacy = {k: v for k, v in _decision(p, "e4", "help_offer", "pending", NOW_MS - 20_000_000).items()
              if k not in ("group", "outcome")}  # fmt: skip
    held_open = _decision(p, "e5", "bonus_offer", "holdout", NOW_MS - 60_000)
    held_met = _decision(p, "e6", "bonus_offer", "holdout", NOW_MS - 86_400_000)
    held_met["outcome"]["metAt"] = iso_ms(NOW_MS - 80_000_000)
    old_suppressed = {
        **_decision(p, "e7", "bonus_offer", "suppressed", NOW_MS - 9_000_000),
        "rejectedBy": "harm_guard",
    }
    shadow = {"id": "shd-1", "playerId": p, "kind": "shadow", "status": "shadow", "count": 4, "agree": 3,
              "lastEventTime": iso_ms(hour), "decidedAt": iso_ms(hour + 60_000)}  # fmt: skip
    docs = [met, accepted, not_met, legacy, held_open, held_met, old_suppressed, shadow,
            _suppressed(p, "break_suggestion", "cooldown", hour, 3),
            _suppressed(p, "help_offer", "daily_cap", hour, 2),
            _suppressed(p, "break_suggestion", "daily_cap", hour - 3_600_000, 1),
            _decision("someone-else", "e1", "help_offer", "pending", NOW_MS)]  # fmt: skip
    for d in docs:
        store.actions.create_item(d)

    resp = call_http("get_player_actions", "GET", f"/api/players/{p}/actions", {"playerId": p})
    assert resp.status == 200
    body = json.loads(resp.body)
    assert body["playerId"] == p and body["truncated"] is False and body["asOf"] == iso_ms(NOW_MS)
    # Sent actions only, newest first, each with its response and outcome
    assert [d["id"] for d in body["sent"]] == [met["id"], accepted["id"], not_met["id"], legacy["id"]]
    assert [d["outcomeState"] for d in body["sent"]] == ["met", "not_met", "not_met", "untracked"]
    assert body["sent"][0]["outcome"]["metAt"] == met["outcome"]["metAt"]
    assert body["sent"][1]["status"] == "accepted" and "respondedAt" in body["sent"][1]
    assert "features" not in body["sent"][0]
    # Holdout decisions apart, with their outcomes
    assert [(d["id"], d["outcomeState"]) for d in body["holdout"]] == [
        (held_open["id"], "open"),
        (held_met["id"], "met"),
    ]
    assert body["outcomes"] == {
        "treated": {"met": 1, "open": 0, "not_met": 2, "untracked": 1},
        "holdout": {"met": 1, "open": 1, "not_met": 0, "untracked": 0},
    }
    # Suppressed decisions counted per rule (an old per-decision document counts one)
    sup = body["suppressed"]
    assert sup["byRule"] == {"cooldown": 3, "daily_cap": 3, "harm_guard": 1} and sup["total"] == 7
    assert sup["byType"] == {
        "break_suggestion": {"cooldown": 3, "daily_cap": 1},
        "help_offer": {"daily_cap": 2},
        "bonus_offer": {"harm_guard": 1},
    }
    assert len(sup["hours"]) == 4
    assert [s["id"] for s in body["shadow"]] == ["shd-1"]


def test_a_busy_players_newest_decisions_are_kept(app_env, store, monkeypatch) -> None:
    """The cut keeps the newest decisions (by decidedAt, an indexed path) and the aggregates apart."""
    import functions.api as api
    from tests.helpers import NOW_MS

    monkeypatch.setattr(api, "MAX_PLAYER_DOCUMENTS", 2)
    p, hour = "p-busy", NOW_MS - NOW_MS % 3_600_000
    decisions = [_decision(p, f"e{i}", "help_offer", "pending", NOW_MS - (5 - i) * 600_000) for i in range(4)]
    aggregates = [_suppressed(p, "help_offer", "cooldown", hour - k * 3_600_000, 1) for k in range(5)]
    for d in [*aggregates, *reversed(decisions)]:
        store.actions.create_item(d)
    resp = call_http("get_player_actions", "GET", f"/api/players/{p}/actions", {"playerId": p})
    body = json.loads(resp.body)
    assert [d["id"] for d in body["sent"]] == [decisions[3]["id"], decisions[2]["id"]]
    assert body["truncated"] is True and body["suppressed"]["total"] == 2


def test_player_actions_of_a_player_without_documents_is_empty_and_a_bad_id_is_400(app_env) -> None:
    resp = call_http("get_player_actions", "GET", "/api/players/nobody/actions", {"playerId": "nobody"})
    body = json.loads(resp.body)
    assert resp.status == 200 and body["sent"] == body["holdout"] == body["shadow"] == []
    assert body["suppressed"]["total"] == 0
    bad = call_http("get_player_actions", "GET", "/api/players/a..b/x/actions", {"playerId": "a/../b"})
    assert bad.status == 400


def test_player_actions_is_503_when_cosmos_cannot_be_read(app_env, monkeypatch) -> None:
    import functions.api

    def down(player_id: str) -> Any:
        raise ConnectionError("refused")

    monkeypatch.setattr(functions.api, "_read_player_documents", down)
    resp = call_http("get_player_actions", "GET", "/api/players/p-1/actions", {"playerId": "p-1"})
    assert resp.status == 503 and json.loads(resp.body) == {
        "error": "the actions container cannot be read now"
    }


def test_an_outcome_stays_open_through_the_grace_the_entity_gives_late_events() -> None:
    from functions.api import outcome_state
    from shared.entity.model import OUTCOME_GRACE_MS
    from shared.timeutil import iso_ms
    from tests.helpers import NOW_MS

    doc = {"outcome": {"name": "session_end_15m", "windowEnd": iso_ms(NOW_MS)}}
    assert outcome_state(doc, NOW_MS + OUTCOME_GRACE_MS - 1) == "open"
    assert outcome_state(doc, NOW_MS + OUTCOME_GRACE_MS) == "not_met"
    assert outcome_state({"outcome": {**doc["outcome"], "metAt": iso_ms(NOW_MS)}}, NOW_MS) == "met"
