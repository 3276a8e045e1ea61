"""HTTP API: read a player's entity state and decisions, erase a player, health."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared import runtime
from shared.entity import load_state
from shared.entity.model import OUTCOME_GRACE_MS
from shared.events import is_valid_player_id
from shared.timeutil import iso_ms, parse_iso_ms, utc_day

log = logging.getLogger(__name__)
bp = df.Blueprint()


def _json(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _bad_player(player_id: str) -> func.HttpResponse:
    return _json(
        {"error": "playerId must be 1-128 characters of [A-Za-z0-9_.:-] with a letter or digit"}, 400
    )


@bp.route(route="players/{playerId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def get_player(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    player_id = req.route_params.get("playerId", "")
    if not is_valid_player_id(player_id):
        return _bad_player(player_id)
    response = await client.read_entity_state(df.EntityId("Player", player_id))
    if not response.entity_exists:
        return _json({"error": f"no state for player {player_id}"}, 404)
    state = load_state(response.entity_state)
    if state.erased_ms and not state.buf:
        return _json({"error": f"player {player_id} was erased", "erasedMs": state.erased_ms}, 404)
    return _json(
        {
            "playerId": player_id,
            "bufferedEvents": len(state.buf),
            "newestEventMs": state.newest_ms,
            "optedOut": state.opted_out,
            "actionsToday": state.day_count,
            "day": utc_day(state.day_ms) if state.day_ms else "",
            "lastActionMs": state.last_action_ms,
            "outbox": [item.id for item in state.outbox],
            "erasing": state.erasing,
            "lifetime": {
                "events": state.agg.events,
                "sessions": state.agg.sessions,
                "deposits": state.agg.deposits,
            },
        }
    )


# Documents read per player at most (one single-partition query): an inspector, not an export.
MAX_PLAYER_DOCUMENTS = 1000
SENT = ("pending", "accepted", "dismissed")
# What a decision's entry shows (the document without the feature row, the scores per type kept).
DECISION_FIELDS = (
    "id", "type", "status", "group", "score", "scores", "eventTime", "decidedAt", "reasons",
    "modelVersion", "triggerEventId", "respondedAt", "responseLatencyMs", "outcome",
)  # fmt: skip


def outcome_state(doc: Mapping[str, Any], now_ms: int) -> str:
    """``met`` (``outcome.metAt``), ``open`` (its window, plus the grace the entity gives late
    events, has not ended: the daily summary counts the same), ``not_met``, or ``untracked`` (a
    decision from before outcomes were tracked: no ``outcome``)."""
    outcome = doc.get("outcome")
    if not isinstance(outcome, dict):
        return "untracked"
    if outcome.get("metAt"):
        return "met"
    try:
        closes = parse_iso_ms(str(outcome.get("windowEnd"))) + OUTCOME_GRACE_MS
        return "open" if closes > now_ms else "not_met"
    except (TypeError, ValueError):
        return "untracked"


def player_decisions(player_id: str, docs: Iterable[Mapping[str, Any]], now_ms: int) -> dict[str, Any]:
    """A player's documents told apart: actions sent (with responses and outcomes), holdout decisions
    (withheld, with outcomes), suppressed decisions (counted per rule and type from the hourly
    aggregates), the challenger's shadow aggregates; newest first."""
    sent: list[dict[str, Any]] = []
    holdout: list[dict[str, Any]] = []
    hours: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    by_rule: dict[str, int] = {}
    by_type: dict[str, dict[str, int]] = {}
    outcomes = {g: {"met": 0, "open": 0, "not_met": 0, "untracked": 0} for g in ("treated", "holdout")}
    for doc in docs:
        status = doc.get("status")
        if doc.get("kind") == "shadow" or status == "shadow":
            shadow.append({k: v for k, v in doc.items() if not k.startswith("_") and k != "ttl"})
        elif status == "suppressed":
            n = doc.get("count", 1)
            n = n if isinstance(n, int) and n > 0 else 1  # a per-decision document from before: one
            rule, atype = str(doc.get("rejectedBy") or "other"), str(doc.get("type"))
            by_rule[rule] = by_rule.get(rule, 0) + n
            by_type.setdefault(atype, {})[rule] = by_type.get(atype, {}).get(rule, 0) + n
            hours.append(
                {k: doc.get(k) for k in ("id", "type", "rejectedBy", "day", "hour", "firstEventTime",
                                         "lastEventTime", "modelVersion", "examples")} | {"count": n}
            )  # fmt: skip
        elif status in SENT or status == "holdout":
            entry = {k: doc[k] for k in DECISION_FIELDS if k in doc}
            entry["outcomeState"] = state = outcome_state(doc, now_ms)
            group = "holdout" if status == "holdout" else "treated"
            outcomes[group][state] += 1
            (holdout if status == "holdout" else sent).append(entry)
    for rows, key in (
        (sent, "eventTime"),
        (holdout, "eventTime"),
        (hours, "lastEventTime"),
        (shadow, "lastEventTime"),
    ):
        rows.sort(key=lambda d: str(d.get(key) or ""), reverse=True)
    return {
        "playerId": player_id,
        "asOf": iso_ms(now_ms),
        "sent": sent,
        "holdout": holdout,
        "suppressed": {"total": sum(by_rule.values()), "byRule": by_rule, "byType": by_type, "hours": hours},
        "shadow": shadow,
        "outcomes": outcomes,
    }


_DECISIONS = "('pending', 'accepted', 'dismissed', 'holdout')"
_AGGREGATES = "('suppressed', 'shadow')"


def _read_player_documents(player_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The newest MAX_PLAYER_DOCUMENTS decisions and, apart, the newest aggregates, each ordered by
    ``decidedAt`` (an indexed path: Azure refuses ORDER BY on one without a range index), so a busy
    player's hourly aggregates never push its latest decisions out of the answer."""
    from shared.store import get_store

    container = get_store(runtime.settings().cosmos).actions
    rows: list[dict[str, Any]] = []
    truncated = False
    for statuses in (_DECISIONS, _AGGREGATES):
        docs = container.query_items(
            f"SELECT * FROM c WHERE c.playerId = @p AND c.status IN {statuses} ORDER BY c.decidedAt DESC",  # noqa: S608 - constants
            parameters=[{"name": "@p", "value": player_id}],
            partition_key=player_id,
        )
        some = [d for _, d in zip(range(MAX_PLAYER_DOCUMENTS + 1), docs, strict=False)]
        truncated = truncated or len(some) > MAX_PLAYER_DOCUMENTS
        rows += some[:MAX_PLAYER_DOCUMENTS]
    return rows, truncated


@bp.route(route="players/{playerId}/actions", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_player_actions(req: func.HttpRequest) -> func.HttpResponse:
    """A player's decisions from Cosmos, told apart: sent, holdout, suppressed (per rule), shadow."""
    player_id = req.route_params.get("playerId", "")
    if not is_valid_player_id(player_id):
        return _bad_player(player_id)
    try:
        docs, truncated = await asyncio.to_thread(_read_player_documents, player_id)
    except Exception as exc:  # noqa: BLE001 - Cosmos unreachable: say so (details to the log)
        log.error("reading a player's decisions failed: %s", type(exc).__name__)
        return _json({"error": "the actions container cannot be read now"}, 503)
    body = player_decisions(player_id, docs, runtime.now_ms())
    body["truncated"] = truncated
    return _json(body)


@bp.route(route="players/{playerId}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def erase_player(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Erasure runs inside the entity, so it is ordered with the player's event operations."""
    player_id = req.route_params.get("playerId", "")
    if not is_valid_player_id(player_id):
        return _bad_player(player_id)
    await client.signal_entity(df.EntityId("Player", player_id), "erase", {"requested": True})
    return _json({"playerId": player_id, "status": "erasure accepted"}, 202)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Ready when the settings are valid and the model loads; no player data involved.

    Unhealthy names the failing part; the details go to the log. A missing or unresolved
    pseudonymisation key in Azure (Key Vault reference) stops every handler
    (shared.config.hash_key), so for it the answer also names the settings and what is wrong
    with each ("empty", "an unresolved Key Vault reference"), never a value."""
    from shared.config import ConfigError, HashKeyError
    from shared.model import get_model

    try:
        runtime.settings()
    except HashKeyError as exc:
        log.error("health check failed: %s", exc)
        return _json(
            {
                "status": "unhealthy",
                "failing": "configuration",
                "reason": "pseudonymisation key not usable: the app processes nothing until it resolves",
                "settings": exc.problems,
            },
            503,
        )
    except ConfigError as exc:
        log.error("health check failed: %s", exc)
        return _json({"status": "unhealthy", "failing": "configuration"}, 503)
    try:
        model = get_model()
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: ModelError (card and code disagree)
        log.error("health check failed: %s", exc)
        return _json({"status": "unhealthy", "failing": "model"}, 503)
    return _json({"status": "ok", "modelVersion": model.version})
