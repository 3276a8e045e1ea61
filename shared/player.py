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

from azure.core.exceptions import AzureError
from opentelemetry.trace import Status, StatusCode

from shared import state as st
from shared import telemetry, tracing
from shared.policy import Rules

log = logging.getLogger(__name__)


class Store(Protocol):
    def create_actions(self, docs: Any) -> tuple[set[str], dict[str, str]]: ...

    def delete_player_data(self, player_id: str) -> int: ...


@dataclass
class Outcome:
    state: dict[str, Any] | None  # None: the entity is deleted (never, today: erasure keeps a tombstone)
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
    hash_player_ids: bool = True,
) -> Outcome:
    ref = telemetry.player_ref(player_id, hash_player_ids)
    state = st.load_state(raw_state)
    if op == "erase" or state.erasing:
        return _erase(player_id, op, state, store, now_ms)
    effects = st.apply(
        state,
        player_id,
        op,
        payload,
        now_ms,
        tracing.traced_scorer(scorer, model_version),
        rules,
        model_version,
        tracing.trigger_hook(ref, model_version),
    )
    written: set[str] = set()
    failures = 0
    if state.outbox:
        items = list(state.outbox)
        tried: set[str] = set()
        for item in items:
            tried.add(item.doc["id"])
            with tracing.write_span(item.trace, item.doc["id"], ref) as span:
                ok, failed = store.create_actions([item.doc])
                if failed:
                    span.set_status(Status(StatusCode.ERROR, "write failed; kept in outbox"))
            written |= ok
            if failed:  # Cosmos is failing: the rest wait in the outbox for the next operation
                failures += 1
                break
        effects.outbox_expired = st.acknowledge(state, written, now_ms, tried)
        if effects.outbox_expired:
            log.error("outbox actions expired unwritten", extra={"expired": effects.outbox_expired})
        _record(op, effects, state, [i for i in items if i.doc["id"] in written], failures, now_ms)
    else:
        _record(op, effects, state, [], 0, now_ms)
    return Outcome(st.dump_state(state), effects.result, effects, len(written), failures)


def _tombstone(state: st.PlayerState, **fields: Any) -> st.PlayerState:
    """What an erased player keeps: where its stream was, no events or history."""
    return st.PlayerState(seen=state.seen, floor=state.floor, qhi=state.qhi, **fields)


def _erase(player_id: str, op: str, state: st.PlayerState, store: Store, now_ms: int) -> Outcome:
    """Erase the player's actions and dead letters, and its history in the entity.

    The history goes at once. The entity keeps a tombstone (the dedupe marks
    and the erasure time, no events) so that a redelivered or reordered signal
    from before the erasure cannot rebuild what was erased. If Cosmos cannot be
    reached, the tombstone says ``erasing`` and every later operation (a
    repeated DELETE, or the player's next events, which are discarded) retries
    the deletes until they succeed.
    """
    effects = st.Effects(erase=True)
    try:
        deleted = store.delete_player_data(player_id)
    except (AzureError, OSError, RuntimeError) as exc:
        log.warning("erasure incomplete; retried on the next operation: %s", type(exc).__name__)
        effects.rejections["erasing"] = 1
        _record(op, effects, st.PlayerState(), [], 0, now_ms)
        return Outcome(
            st.dump_state(_tombstone(state, erasing=True)), {"erased": False, "retrying": True}, effects
        )
    _record(op, effects, st.PlayerState(), [], 0, now_ms)
    return Outcome(
        st.dump_state(_tombstone(state, erased_ms=now_ms)),
        {"erased": player_id, "documentsDeleted": deleted},
        effects,
    )


def _record(
    op: str,
    effects: st.Effects,
    state: st.PlayerState,
    written: list[st.OutboxItem],
    failures: int,
    now_ms: int,
) -> None:
    """Count the operation into the shared OpenTelemetry instruments."""
    m = telemetry.instruments()
    m.entity_operations.add(1, {"op": op})
    if effects.duplicates:
        m.events_duplicate.add(effects.duplicates)
    if effects.scored:
        m.scores.add(effects.scored)
    for action in effects.actions:
        m.actions.add(1, {"type": action["type"]})
    telemetry.add_counts(m.rejections, effects.rejections, "rule")
    if failures:
        m.action_write_failures.add(failures)
    if effects.outbox_expired:
        m.outbox_expired.add(effects.outbox_expired)
    m.outbox_size.record(len(state.outbox))
    for item in written:
        m.action_latency.record(max(0, now_ms - st.latency_start_ms(item)), {"type": item.doc["type"]})
