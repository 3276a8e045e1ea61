"""The Durable Entity "Player": one per player id, a thin shell over shared.player."""

from __future__ import annotations

import azure.durable_functions as df

from shared import runtime
from shared.model import get_model
from shared.player import run_operation
from shared.store import get_store

bp = df.Blueprint()


@bp.entity_trigger(context_name="context", entity_name="Player")
def player(context: df.DurableEntityContext) -> None:
    """State is set once, after the effects; erase destructs the entity."""
    model = get_model()
    outcome = run_operation(
        context.entity_key,
        context.operation_name or "",
        context.get_state(lambda: None),
        context.get_input(),
        now_ms=runtime.now_ms(),
        scorer=model.score,
        model_version=model.version,
        rules=runtime.rules(),
        store=get_store(runtime.settings().cosmos),
    )
    if outcome.state is None:
        context.destruct_on_exit()
    else:
        context.set_state(outcome.state)
    context.set_result(outcome.result)
