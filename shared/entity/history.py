"""The trailing buffer and the lifetime aggregates.

The buffer is sorted by (event time, id), bounded by count and age; an event
arriving in order (the common case) is appended, a late one is inserted by
bisection. Opt-out and opt-in apply by event time, so a late opt-in cannot undo
a newer opt-out.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import attrgetter

from shared import features as feat
from shared.entity.model import EVICTED_ID_RING, MAX_BUFFER_AGE_MS, MAX_BUFFER_EVENTS, Entry, PlayerState
from shared.eventtypes import EventType
from shared.signals import SignalEvent

_KEY = attrgetter("t", "h")


def _compact(x: float) -> float:
    """An integral amount as an int: 1 byte stored instead of 9 (read back as the same float)."""
    return int(x) if isinstance(x, float) and x.is_integer() and -(2**53) < x < 2**53 else x


def entry_of(ev: SignalEvent, h: int) -> Entry:
    return Entry(ev.t, ev.kind, _compact(ev.a), _compact(ev.b), h)


def insert(state: PlayerState, entry: Entry) -> None:
    buf = state.buf
    if not buf or (buf[-1].t, buf[-1].h) <= (entry.t, entry.h):
        buf.append(entry)
    else:
        buf.insert(bisect_right(buf, (entry.t, entry.h), key=_KEY), entry)


def evict(state: PlayerState) -> None:
    buf = state.buf
    horizon = state.newest_ms - MAX_BUFFER_AGE_MS
    if len(buf) <= MAX_BUFFER_EVENTS and (not buf or buf[0].t >= horizon):
        return
    drop = max(0, len(buf) - MAX_BUFFER_EVENTS)
    while drop < len(buf) and buf[drop].t < horizon:
        drop += 1
    if drop:
        evicted = state.evicted
        evicted.extend(e.h for e in buf[:drop])
        del evicted[:-EVICTED_ID_RING]
        del buf[:drop]


def update_aggregates(state: PlayerState, entry: Entry) -> None:
    agg, kind, t = state.agg, entry.kind, entry.t
    agg.events += 1
    agg.first_ms = t if agg.first_ms == 0 else min(agg.first_ms, t)
    if kind == EventType.ROUND:
        return
    if kind == EventType.SESSION_STARTED:
        agg.sessions += 1
        agg.session_open_ms = max(agg.session_open_ms, t)
    elif kind == EventType.SESSION_ENDED:
        start = feat.session_start(state.buf, t, agg)
        if start is not None:
            agg.session_minutes_sum += (t - start) / 60000.0
            agg.session_count_closed += 1
        if t > agg.last_end_ms:
            agg.prev_end_ms, agg.last_end_ms = agg.last_end_ms, t
        elif t > agg.prev_end_ms:
            agg.prev_end_ms = t
    elif kind == EventType.DEPOSIT:
        agg.deposits += 1
    elif kind == EventType.DEPOSIT_FAILED:
        agg.deposit_failures += 1
    elif kind == EventType.RESPONDED:
        if entry.a >= 1.0:
            agg.accepted += 1
        else:
            agg.dismissed += 1
    elif kind in (EventType.OPT_OUT, EventType.OPT_IN):
        out = kind == EventType.OPT_OUT
        if (t, out) >= (state.opt_ms, state.opted_out):
            # By event time; at the same millisecond, opting out wins.
            state.opted_out, state.opt_ms = out, t
