"""The Durable Entity "Player": one per player id, a thin shell over shared.player.

The state crosses the Durable protocol as one compact string (shared.entity.codec)
and is decoded once per entity batch: the SDK hands each operation of a batch the
string the previous one set, which ``_STATES`` recognises by identity.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from shared import parking, runtime
from shared.entity.codec import StateCache
from shared.model import get_challenger, get_model
from shared.player import run_operation
from shared.reminders import get_reminders
from shared.store import get_store

bp = df.Blueprint()
_STATES = StateCache()


def _input(context: df.DurableEntityContext) -> Any:
    """The operation's input; None when the signal had none (the SDK's get_input raises then)."""
    try:
        return context.get_input()
    except (TypeError, ValueError):
        return None


def _erase_from_parked(player_id: str, erased_ms: int) -> int:
    """The erasure sweep's part in parked trigger batches (Blob Storage, docs/privacy.md)."""
    return parking.erase_player(player_id, erased_ms).events


@bp.entity_trigger(context_name="context", entity_name="Player")
def player(context: df.DurableEntityContext) -> None:
    """State is set once, after the effects (erasure keeps a tombstone; the entity is never deleted)."""
    key = context.entity_key
    model = get_model()
    settings = runtime.settings()
    try:
        state = _STATES.load(key, context.get_state(lambda: None))
        outcome = run_operation(
            key,
            context.operation_name or "",
            state,
            _input(context),
            now_ms=runtime.now_ms(),
            scorer=model.score,
            model_version=model.version,
            rules=runtime.rules(),
            store=get_store(settings.cosmos),
            reminders=get_reminders(),
            reminder_first_s=settings.outbox_reminder_seconds,
            hash_player_ids=settings.hash_player_ids_in_telemetry,
            parked=_erase_from_parked,
            challenger=get_challenger(settings.challenger_model),
        )
        encoded = None if outcome.state is None else _STATES.store(key, outcome.state)
    except BaseException:
        # The operation (or its encoding) may have changed the decoded state before it failed; the
        # SDK keeps the state the last operation set, so the next one must decode that, not reuse this.
        _STATES.forget(key)
        raise
    context.set_result(outcome.result)  # before destruct: set_result marks the entity as existing
    if encoded is None:
        _STATES.forget(key)
        context.destruct_on_exit()
    else:
        context.set_state(encoded)
