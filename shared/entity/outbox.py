"""The outbox: decisions and outcomes waiting to be written to Cosmos DB, in order.

Items leave the outbox when written, when Cosmos refuses them for good (kept,
bounded, in ``refused``), or when they expire (``OUTBOX_TTL_MS``, counted).

Suppressed decisions are not one item each: each goes into the aggregate of its (UTC hour of
event time, action type, rule), which sits in the outbox while it holds a count not yet written
and in ``state.sup`` once written, so the next decision of the same kind goes on counting from
there. Only the newest event can trigger, so trigger times never go back: once a later hour
triggered, the aggregates of earlier hours can no longer change and leave the state when written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from shared.entity.model import (
    HOUR_MS,
    MAX_REFUSED,
    MAX_SHADOW_PENDING,
    MAX_SUPPRESSED_PENDING,
    OUTBOX_TTL_MS,
    SUPPRESSED_EXAMPLES,
    SUPPRESSED_EXAMPLES_HELD,
    ActionRecord,
    OutboxItem,
    OutcomeMet,
    OutcomeRecord,
    PlayerState,
    RefusedAction,
    ShadowAggregate,
    SuppressedAggregate,
    SuppressedExample,
)

# Aggregates written whole and kept for their open hour (suppressed decisions, the challenger's).
Aggregate = SuppressedAggregate | ShadowAggregate


def suppressed_id(player_id: str, hour_ms: int, action_type: str, rule: str) -> str:
    """Deterministic: every write of the same (player, hour, type, rule) replaces one document."""
    key = f"{player_id}\x1f{hour_ms}\x1f{action_type}\x1f{rule}"
    return "sup-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _examples_held(state: PlayerState) -> int:
    held = sum(len(a.examples) for a in state.sup)
    return held + sum(len(i.rec.examples) for i in state.outbox if isinstance(i.rec, SuppressedAggregate))


def add_suppressed(
    state: PlayerState,
    player_id: str,
    rec: ActionRecord,
    now_ms: int,
    enqueued_ms: int | None = None,
    trace: str | None = None,
) -> SuppressedAggregate:
    """Count one suppressed decision into its hour's aggregate, which (re)enters the outbox."""
    rule = rec.rejected_by or ""
    hour = rec.t - rec.t % HOUR_MS
    agg_id = suppressed_id(player_id, hour, rec.type, rule)
    agg: SuppressedAggregate | None = None
    for item in state.outbox:
        if item.id == agg_id and isinstance(item.rec, SuppressedAggregate):
            agg = item.rec
            break
    else:
        for k, held in enumerate(state.sup):
            if held.id == agg_id:
                agg = state.sup.pop(k)
                break
        if agg is None:
            agg = SuppressedAggregate(
                agg_id, rec.type, rule, hour, 0, rec.t, rec.t, rec.model, now_ms, examples=[]
            )
        state.outbox.append(OutboxItem(agg, since_ms=now_ms, enqueued_ms=enqueued_ms, trace=trace))
    agg.count += 1
    agg.first_ms = min(agg.first_ms, rec.t)
    agg.last_ms = max(agg.last_ms, rec.t)
    agg.model, agg.decided_ms = rec.model, now_ms
    if len(agg.examples) < SUPPRESSED_EXAMPLES and _examples_held(state) < SUPPRESSED_EXAMPLES_HELD:
        agg.examples.append(SuppressedExample(rec.trigger, rec.t, rec.score, rec.features))
    return agg


def acknowledge(
    state: PlayerState, written_ids: set[str], now_ms: int, tried_ids: set[str] | None = None
) -> int:
    """Drop written items; expire the stale ones. Returns how many expired.

    A written aggregate of the newest hour is kept in ``state.sup`` (it may count more); those of
    earlier hours are dropped. ``tried_ids``: the items a write was attempted for (default: all);
    only they count an attempt.
    """
    kept: list[OutboxItem] = []
    expired = 0
    open_hour = state.newest_ms - state.newest_ms % HOUR_MS
    state.sup = [a for a in state.sup if a.hour_ms >= open_hour]
    if state.shd is not None and state.shd.hour_ms < open_hour:
        state.shd = None
    for item in state.outbox:
        if item.id in written_ids:
            rec = item.rec
            if isinstance(rec, SuppressedAggregate) and rec.hour_ms >= open_hour:
                state.sup.append(rec)
            elif isinstance(rec, ShadowAggregate) and rec.hour_ms >= open_hour:
                state.shd = rec
            continue
        open_aggregate = isinstance(item.rec, Aggregate) and item.rec.hour_ms >= open_hour
        if now_ms - item.since_ms > OUTBOX_TTL_MS and not open_aggregate:
            # (an open hour's aggregate waits: dropped, a later write would replace its count)
            expired += 1
            continue
        if tried_ids is None or item.id in tried_ids:
            item.attempts += 1
        kept.append(item)
    state.outbox = kept
    return expired


def record_refused(
    state: PlayerState, items: list[OutboxItem], statuses: Mapping[str, int], now_ms: int
) -> None:
    """Move items refused for good out of the outbox into the bounded ``refused`` record."""
    gone = set(statuses)
    state.outbox = [i for i in state.outbox if i.id not in gone]
    for item in items:
        if item.id in gone:
            rec = item.rec
            if isinstance(rec, OutcomeRecord | OutcomeMet):
                rtype = "outcome"
            elif isinstance(rec, ShadowAggregate):
                rtype = "shadow"
            else:
                rtype = rec.type
            state.refused.append(RefusedAction(item.id, rtype, statuses[item.id], now_ms))
    del state.refused[:-MAX_REFUSED]


def latency_start_ms(item: OutboxItem) -> int:
    """Enqueued time of the trigger when known, else its event time."""
    if item.enqueued_ms is not None:
        return item.enqueued_ms
    rec = item.rec
    return rec.last_ms if isinstance(rec, Aggregate) else rec.t


def _is_suppressed(item: OutboxItem) -> bool:
    """Suppressed decisions and the challenger's aggregates: counts that may be dropped unwritten."""
    rec = item.rec
    return isinstance(rec, Aggregate) or (isinstance(rec, ActionRecord) and rec.status == "suppressed")


def bound_suppressed(state: PlayerState) -> list[OutboxItem]:
    """After a flush that could not write everything: keep at most MAX_SUPPRESSED_PENDING suppressed
    items and MAX_SHADOW_PENDING challenger aggregates of closed hours waiting (the newest; an
    aggregate of the open hour is never dropped, so a later write cannot replace its document with a
    smaller count); returns those dropped, for the shell to count."""
    open_hour = state.newest_ms - state.newest_ms % HOUR_MS
    closed = [
        i
        for i in state.outbox
        if _is_suppressed(i) and not (isinstance(i.rec, Aggregate) and i.rec.hour_ms >= open_hour)
    ]
    shadow = [i for i in closed if isinstance(i.rec, ShadowAggregate)]
    suppressed = [i for i in closed if not isinstance(i.rec, ShadowAggregate)]
    old = suppressed[: max(0, len(suppressed) - MAX_SUPPRESSED_PENDING)]
    old += shadow[: max(0, len(shadow) - MAX_SHADOW_PENDING)]
    if not old:
        return []
    drop = {id(i) for i in old}
    state.outbox = [i for i in state.outbox if id(i) not in drop]
    return old


def suppressed_count(item: OutboxItem) -> int:
    """How many suppressed decisions an item carries (an aggregate's count, 1 for a legacy record)."""
    rec = item.rec
    if isinstance(rec, SuppressedAggregate):
        return rec.count
    return 1 if isinstance(rec, ActionRecord) and rec.status == "suppressed" else 0
