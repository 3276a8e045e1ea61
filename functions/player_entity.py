"""The Durable Entity "Player": one per player id, a thin shell over shared.player."""

from __future__ import annotations

import azure.durable_functions as df

from shared import runtime
from shared.model import get_model
from shared.player import run_operation
from shared.reminders import get_reminders
from shared.store import get_store

bp = df.Blueprint()


def _input(context: df.DurableEntityContext) -> object:
    """The operation's input; None when the signal had none (the SDK's get_input raises then)."""
    try:
        return context.get_input(expected_type=dict)
    except (TypeError, ValueError):
        return None


@bp.entity_trigger(context_name="context", entity_name="Player")
def player(context: df.DurableEntityContext) -> None:
    """State is set once, after the effects (erasure keeps a tombstone; the entity is never deleted)."""
    model = get_model()
    outcome = run_operation(
        context.entity_key,
        context.operation_name or "",
        context.get_state(lambda: None, expected_type=dict),
        _input(context),
        now_ms=runtime.now_ms(),
        scorer=model.score,
        model_version=model.version,
        rules=runtime.rules(),
        store=get_store(runtime.settings().cosmos),
        reminders=get_reminders(),
        reminder_first_s=runtime.settings().outbox_reminder_seconds,
        hash_player_ids=runtime.settings().hash_player_ids_in_telemetry,
    )
    context.set_result(outcome.result)  # before destruct: set_result marks the entity as existing
    if outcome.state is None:
        context.destruct_on_exit()
    else:
        context.set_state(outcome.state)
