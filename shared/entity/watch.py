"""Outcome watches: is the outcome of a decision (sent or held out) met by a later event?

Each action and holdout decision opens a watch on its type's outcome (shared.outcomes): an
accepted, non-duplicate event of the outcome's event type with ``t0 < t <= t0 + window`` (event
time) meets it, and an outbox record (``OutcomeMet``) writes ``outcome.metAt`` / ``outcome.eventId``
onto the decision's document. A watch leaves when met, or once the wall clock is past its
decision time plus the window plus ``OUTCOME_GRACE_MS`` (an event may arrive that late). At most
``MAX_WATCHES`` are open: a new one first makes room by letting go the spent ones (the player's newest
event is past their window's end plus the grace: a replay or a run on compressed time, where event time
runs ahead of the wall clock), then the oldest. Spent watches are not let go otherwise: an event that
is late in event time (a response or an outcome appended after a devhost run) still meets them.
Replays cannot meet twice: a redelivered event is a duplicate, a met watch is gone, and the document
write is conditional (the first ``metAt`` stands).
"""

from __future__ import annotations

from shared.entity.model import (
    MAX_WATCHES,
    OUTCOME_GRACE_MS,
    ActionRecord,
    OutboxItem,
    OutcomeMet,
    PlayerState,
    Watch,
)
from shared.eventtypes import BY_NAME
from shared.outcomes import OUTCOMES
from shared.policy import ACTION_TYPES
from shared.signals import SignalEvent

TYPE_INDEX = {a: i for i, a in enumerate(ACTION_TYPES)}
_EVENT_CODE = tuple(int(BY_NAME[OUTCOMES[a].event].code) for a in ACTION_TYPES)
_WINDOW_MS = tuple(OUTCOMES[a].window_ms for a in ACTION_TYPES)
MEETING_CODES = frozenset(_EVENT_CODE)


def type_of(w: Watch) -> str:
    return ACTION_TYPES[w.type] if 0 <= w.type < len(ACTION_TYPES) else "unknown"


def open_watch(state: PlayerState, rec: ActionRecord) -> list[tuple[Watch, str]]:
    """Watch the outcome of a decision; returns the watches that had to leave to stay within
    MAX_WATCHES: first those past their window (``expired``), then the oldest (``dropped``)."""
    i = TYPE_INDEX[rec.type]
    ended: list[tuple[Watch, str]] = []
    if len(state.watch) >= MAX_WATCHES:
        ended = [(w, "expired") for w in expire(state, rec.decided_ms, spent=True)]
    state.watch.append(Watch(rec.id, i, rec.t, rec.t + _WINDOW_MS[i], rec.decided_ms))
    over = len(state.watch) - MAX_WATCHES
    if over > 0:
        ended += [(w, "dropped") for w in state.watch[:over]]
        del state.watch[:over]
    return ended


def meet(state: PlayerState, ev: SignalEvent, now_ms: int) -> list[Watch]:
    """The watches ``ev`` (accepted, not a duplicate) meets: each leaves, and its write is queued."""
    if ev.kind not in MEETING_CODES or not state.watch:
        return []
    t = ev.t
    met = [
        w
        for w in state.watch
        if 0 <= w.type < len(_EVENT_CODE) and _EVENT_CODE[w.type] == ev.kind and w.t0 < t <= w.end
    ]
    if met:
        gone = {id(w) for w in met}
        state.watch = [w for w in state.watch if id(w) not in gone]
        for w in met:
            state.outbox.append(OutboxItem(OutcomeMet(w.action_id, t, ev.id), since_ms=now_ms))
    return met


def expire(state: PlayerState, now_ms: int, spent: bool = False) -> list[Watch]:
    """Watches that can no longer be met leave, unmet: the wall clock is past the decision plus the
    window plus the grace. With ``spent`` (a new watch needs the room) also those whose window ended
    more than the grace before the player's newest event."""
    if not state.watch:
        return []
    newest = state.newest_ms
    keep: list[Watch] = []
    gone: list[Watch] = []
    for w in state.watch:
        over = now_ms > w.decided_ms + (w.end - w.t0) + OUTCOME_GRACE_MS or (
            spent and newest > w.end + OUTCOME_GRACE_MS
        )
        (gone if over else keep).append(w)
    if gone:
        state.watch = keep
    return gone
