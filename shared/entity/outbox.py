"""The outbox: decisions and outcomes waiting to be written to Cosmos DB, in order.

Items leave the outbox when written, when Cosmos refuses them for good (kept,
bounded, in ``refused``), or when they expire (``OUTBOX_TTL_MS``, counted).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.entity.model import (
    MAX_REFUSED,
    MAX_SUPPRESSED_PENDING,
    OUTBOX_TTL_MS,
    ActionRecord,
    OutboxItem,
    PlayerState,
    RefusedAction,
)


def acknowledge(
    state: PlayerState, written_ids: set[str], now_ms: int, tried_ids: set[str] | None = None
) -> int:
    """Drop written items; expire the stale ones. Returns how many expired.

    ``tried_ids``: the items a write was attempted for (default: all); only they count an attempt.
    """
    kept: list[OutboxItem] = []
    expired = 0
    for item in state.outbox:
        if item.id in written_ids:
            continue
        if now_ms - item.since_ms > OUTBOX_TTL_MS:
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
            rtype = item.rec.type if isinstance(item.rec, ActionRecord) else "outcome"
            state.refused.append(RefusedAction(item.id, rtype, statuses[item.id], now_ms))
    del state.refused[:-MAX_REFUSED]


def latency_start_ms(item: OutboxItem) -> int:
    """Enqueued time of the trigger when known, else its event time."""
    if item.enqueued_ms is not None:
        return item.enqueued_ms
    return item.rec.t


def bound_suppressed(state: PlayerState) -> list[ActionRecord]:
    """After a flush that could not write everything: keep at most MAX_SUPPRESSED_PENDING suppressed
    records waiting (the newest); returns those dropped, for the shell to count."""
    waiting = [i for i in state.outbox if isinstance(i.rec, ActionRecord) and i.rec.status == "suppressed"]
    if len(waiting) <= MAX_SUPPRESSED_PENDING:
        return []
    old = waiting[:-MAX_SUPPRESSED_PENDING]
    drop = {id(i) for i in old}
    state.outbox = [i for i in state.outbox if id(i) not in drop]
    return [i.rec for i in old if isinstance(i.rec, ActionRecord)]
