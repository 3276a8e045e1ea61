"""Queue trigger: a reminder came due; signal the player's entity (flush its outbox, or retry or
sweep an erasure)."""

from __future__ import annotations

import json
import logging

import azure.durable_functions as df
import azure.functions as func

from shared.events import is_valid_player_id
from shared.reminders import OPERATIONS

log = logging.getLogger(__name__)
bp = df.Blueprint()


@bp.function_name("outbox_reminder")
@bp.queue_trigger(arg_name="msg", queue_name="%OUTBOX_REMINDER_QUEUE%", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def outbox_reminder(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """A malformed message is logged and dropped (retrying cannot fix it); a failed signal raises,
    so the host makes the message visible again and retries it (then the poison queue)."""
    try:
        body = json.loads(msg.get_body())
        player_id, op = body["playerId"], body.get("op", "flush")
        if op not in OPERATIONS:
            raise ValueError(op)
    except (ValueError, KeyError, TypeError):
        log.error("outbox reminder dropped: not a reminder message", extra={"message_id": msg.id})
        return
    if not is_valid_player_id(player_id):
        log.error("outbox reminder dropped: invalid player id", extra={"message_id": msg.id})
        return
    await client.signal_entity(df.EntityId("Player", player_id), op, {"reason": "reminder"})
