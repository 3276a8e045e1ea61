"""Run one entity operation: pure logic, then its effects, then one new state.

This is the only place where the entity's side effects happen, in the order
DESIGN.md requires: decide (pure) -> write actions (outbox, bounded retries in
the SDK) -> acknowledge -> return the state to set once. A failed write leaves
the action in the outbox, retried on the next operation until it expires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from shared import state as st
from shared.policy import Rules

log = logging.getLogger(__name__)


class Store(Protocol):
    def upsert_actions(self, docs: Any) -> tuple[set[str], dict[str, str]]: ...

    def delete_player_actions(self, player_id: str) -> int: ...


@dataclass
class Outcome:
    state: dict[str, Any] | None  # None: the entity is deleted
    result: Any
    effects: st.Effects
    written: int = 0
    write_failures: int = 0


def run_operation(
    player_id: str,
    op: str,
    raw_state: Any,
    payload: Any,
    *,
    now_ms: int,
    scorer: st.Scorer,
    model_version: str,
    rules: Rules,
    store: Store,
) -> Outcome:
    state = st.load_state(raw_state)
    effects = st.apply(state, player_id, op, payload, now_ms, scorer, rules, model_version)
    if effects.erase:
        deleted = store.delete_player_actions(player_id)
        return Outcome(None, {"erased": player_id, "actionsDeleted": deleted}, effects)
    written: set[str] = set()
    failures = 0
    if state.outbox:
        written, failed = store.upsert_actions(st.pending_outbox(state))
        failures = len(failed)
        effects.outbox_expired = st.acknowledge(state, written, now_ms)
        if effects.outbox_expired:
            log.error("outbox actions expired unwritten", extra={"expired": effects.outbox_expired})
    return Outcome(st.dump_state(state), effects.result, effects, len(written), failures)
