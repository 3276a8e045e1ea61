"""HTTP API: read a player's entity state, erase a player, health."""

from __future__ import annotations

import json
import logging

import azure.durable_functions as df
import azure.functions as func

from shared import runtime
from shared.entity import load_state
from shared.events import is_valid_player_id
from shared.timeutil import utc_day

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
