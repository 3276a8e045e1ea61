"""The player entity's logic, as pure functions over a typed state.

``apply(state, player_id, op, payload, now_ms, scorer, rules, model_version)``
folds one operation into the state (in place) and returns its ``Effects``. It
does no I/O and reads no clock: the entity shell (shared.player) passes
``now_ms`` and a scorer, carries out the effects (the outbox), then sets the
state once. By concern:

- ``model``: the structs (state, buffer entries, outbox records);
- ``codec``: the stored form (one compact string) and old-state upgrades;
- ``dedupe``: ids, sequence ranges, enqueued times;
- ``history``: the buffer and the aggregates;
- ``decide``: triggers, scoring, the policy, the holdout, action and suppressed records;
- ``outbox``: suppressed decisions counted into hourly aggregates; acknowledging, refusing and
  expiring writes;
- ``watch``: outcome windows of the decisions, met by later events;
- ``shadow``: the challenger model's would-be decisions, counted per hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.entity import codec
from shared.entity import watch as watches
from shared.entity.decide import (
    Challenger,
    Scored,
    Scorer,
    TriggerHook,
    TriggerSpan,
    action_id,
    is_trigger,
    score_and_decide,
)
from shared.entity.dedupe import covered_ranges, id_hash, is_duplicate, mark_seen, note_position
from shared.entity.history import entry_of, evict, insert, update_aggregates
from shared.entity.model import (
    HOUR_MS,
    MAX_BUFFER_AGE_MS,
    MAX_BUFFER_EVENTS,
    MAX_WATCHES,
    OUTBOX_TTL_MS,
    OUTCOME_GRACE_MS,
    SEEN_RANGES,
    SEEN_RANGES_TOTAL,
    SUPPRESSED_EXAMPLES,
    SUPPRESSED_EXAMPLES_HELD,
    ActionRecord,
    Aggregates,
    Entry,
    OutboxItem,
    OutcomeMet,
    OutcomeRecord,
    PlayerState,
    RefusedAction,
    ShadowAggregate,
    SuppressedAggregate,
    SuppressedExample,
    Watch,
)
from shared.entity.outbox import (
    acknowledge,
    add_suppressed,
    bound_suppressed,
    latency_start_ms,
    record_refused,
    suppressed_count,
    suppressed_id,
)
from shared.entity.shadow import shadow_id
from shared.eventtypes import BY_CODE, EventType
from shared.policy import ACTION_TYPES, Rules
from shared.signals import MALFORMED, Signal, SignalError, SignalEvent
from shared.signals import decode as decode_signal


@dataclass
class Effects:
    """What an operation did and what the shell must still do."""

    accepted: int = 0
    duplicates: int = 0
    triggers: int = 0
    scored: int = 0
    actions: list[ActionRecord] = field(default_factory=list)  # sent (status "pending")
    holdouts: list[ActionRecord] = field(default_factory=list)  # withheld by the holdout
    suppressed: list[ActionRecord] = field(default_factory=list)
    # Suppressed decisions dropped unwritten to bound the state (see MAX_SUPPRESSED_PENDING).
    suppressed_dropped: int = 0
    outcomes: int = 0
    # Outcome watches that ended, by how (met / expired / dropped), as (action type, how).
    watches_ended: list[tuple[str, str]] = field(default_factory=list)
    # Triggers the challenger scored, and of those, decided as the champion did.
    shadow: int = 0
    shadow_agree: int = 0
    # Challenger aggregates dropped unwritten to bound the state.
    shadow_dropped: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    outbox_expired: int = 0
    erase: bool = False
    result: Any = None

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + n


def apply_events(
    state: PlayerState,
    player_id: str,
    signal: Signal,
    now_ms: int,
    scorer: Scorer,
    rules: Rules,
    model_version: str,
    hook: TriggerHook | None = None,
    challenger: Challenger | None = None,
) -> Effects:
    """Fold a signal's events into the state (in place) and decide actions."""
    effects = Effects()
    for ev in signal.events:
        if ev.kind not in BY_CODE or ev.kind == MALFORMED:
            effects.reject("malformed_signal_event")
            continue
        if state.erased_ms and (ev.q is None or ev.q <= state.erased_ms):
            effects.reject("erased")
            continue
        h = id_hash(ev.id, ev.src or "")
        if is_duplicate(state, ev, h):
            effects.duplicates += 1
            continue
        note_position(state, ev)
        entry = entry_of(ev, h)
        is_newest = entry.t >= state.newest_ms
        insert(state, entry)
        if is_newest:
            state.newest_ms = entry.t
        update_aggregates(state, entry)
        effects.accepted += 1
        if ev.kind == EventType.RESPONDED and ev.ref:
            state.outbox.append(
                OutboxItem(OutcomeRecord(ev.ref, "accepted" if ev.a >= 1.0 else "dismissed", ev.t), now_ms)
            )
            effects.outcomes += 1
        if state.watch:
            for w in watches.meet(state, ev, now_ms):
                effects.watches_ended.append((watches.type_of(w), "met"))
        if is_newest and is_trigger(state, entry):
            effects.triggers += 1
            effects.scored += 1
            if hook is None:
                decided = score_and_decide(
                    state, player_id, ev, now_ms, scorer, rules, model_version, None, challenger
                )
            else:
                with hook(ev) as span:
                    decided = score_and_decide(
                        state, player_id, ev, now_ms, scorer, rules, model_version, span, challenger
                    )
            for rule, n in decided.rejections.items():
                effects.reject(rule, n)
            if decided.action is not None:
                (effects.actions if decided.action.status == "pending" else effects.holdouts).append(
                    decided.action
                )
            for w, how in decided.watches_ended:
                effects.watches_ended.append((watches.type_of(w), how))
            if decided.agree is not None:
                effects.shadow += 1
                effects.shadow_agree += int(decided.agree)
            effects.suppressed.extend(decided.suppressed)
        evict(state)
    for part, lo, hi in covered_ranges(signal.ranges, signal.events):
        mark_seen(state, part, lo, hi)
    return effects


def apply(
    state: PlayerState,
    player_id: str,
    op: str,
    payload: Any,
    now_ms: int,
    scorer: Scorer,
    rules: Rules,
    model_version: str,
    hook: TriggerHook | None = None,
    challenger: Challenger | None = None,
) -> Effects:
    """Dispatch one entity operation; unknown operations and bad inputs are reported, never raised.
    Every operation first lets the outcome watches whose window and grace have passed leave."""
    expired = [(watches.type_of(w), "expired") for w in watches.expire(state, now_ms)]
    if op == "events":
        try:
            signal = payload if isinstance(payload, Signal) else decode_signal(payload)
        except SignalError as exc:
            return Effects(rejections={exc.reason: 1}, result={"error": str(exc)}, watches_ended=expired)
        effects = apply_events(
            state, player_id, signal, now_ms, scorer, rules, model_version, hook, challenger
        )
        effects.watches_ended[:0] = expired
        effects.result = {"accepted": effects.accepted, "duplicates": effects.duplicates}
        return effects
    if op == "flush":
        return Effects(result={"outbox": len(state.outbox)}, watches_ended=expired)
    return Effects(
        rejections={"unknown_operation": 1},
        result={"error": f"unknown operation {op!r}"},
        watches_ended=expired,
    )


load_state = codec.decode

__all__ = [
    "ACTION_TYPES",
    "HOUR_MS",
    "MAX_WATCHES",
    "OUTCOME_GRACE_MS",
    "Challenger",
    "OutcomeMet",
    "ShadowAggregate",
    "Watch",
    "shadow_id",
    "watches",
    "SUPPRESSED_EXAMPLES",
    "SUPPRESSED_EXAMPLES_HELD",
    "MAX_BUFFER_AGE_MS",
    "MAX_BUFFER_EVENTS",
    "SEEN_RANGES",
    "SEEN_RANGES_TOTAL",
    "OUTBOX_TTL_MS",
    "ActionRecord",
    "Aggregates",
    "Effects",
    "Entry",
    "OutboxItem",
    "OutcomeRecord",
    "PlayerState",
    "RefusedAction",
    "Scored",
    "SuppressedAggregate",
    "SuppressedExample",
    "Scorer",
    "SignalEvent",
    "TriggerHook",
    "TriggerSpan",
    "acknowledge",
    "action_id",
    "add_suppressed",
    "apply",
    "apply_events",
    "bound_suppressed",
    "codec",
    "id_hash",
    "latency_start_ms",
    "load_state",
    "mark_seen",
    "record_refused",
    "suppressed_count",
    "suppressed_id",
]
