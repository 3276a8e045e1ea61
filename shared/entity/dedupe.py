"""Is an incoming event new? Event ids, per-partition sequence ranges, enqueued times.

Delivery is at-least-once and signals may be reordered. Each signal carries the
Event Hubs sequence ranges of the trigger batch it came from, and holds all of
this player's events of those ranges; so the entity keeps, per partition, the
few sequence ranges it has fully seen (merged, at most ``SEEN_RANGES``; older
ones fold into a floor). An incoming event is a duplicate when
- its id is buffered or in the ring of recently evicted ids (a producer that
  sent the same CloudEvent twice: same id, same event time), or
- its sequence number lies in a seen range of its partition, or at or below the
  partition's floor (a redelivered batch, or a replayed signal),
unless it was enqueued after anything seen on its partition (a redelivery never is).

Every check is O(log n) or O(ranges): the buffer is sorted by (time, id hash), and a
duplicate by id has the same event time, so one bisect finds it. Ids are kept as
32-bit hashes (``id_hash``): a distinct event is taken for a duplicate only if it
has the same millisecond as a buffered one *and* the same hash (odds ~2⁻³² per
such pair), or, at the buffer's oldest instant, matches one of the 32 evicted
hashes (~2⁻²⁷).
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from operator import attrgetter

from shared.entity.model import SEEN_RANGES, SEEN_RANGES_TOTAL, PlayerState
from shared.signals import SignalEvent

_T = attrgetter("t")


def _in_ranges(state: PlayerState, part: str, seq: int) -> bool:
    if seq <= state.floor.get(part, -1):
        return True
    for lo, hi in state.seen.get(part, ()):
        if lo <= seq <= hi:
            return True
    return False


def id_hash(event_id: str) -> int:
    """A stable 32-bit hash of an event id: CRC-32 (Python's hash() is salted per process). Not a
    defence against a producer crafting collisions, which could only drop its own player's events."""
    return zlib.crc32(event_id.encode())


def is_duplicate(state: PlayerState, ev: SignalEvent, h: int) -> bool:
    """``h``: ``id_hash(ev.id)``."""
    if _id_seen(state, ev.t, h):
        return True
    part, seq = ev.p, ev.s
    if part is None or seq is None:
        return False
    if ev.q is not None and ev.q > state.qhi.get(part, -1):
        return False  # enqueued after anything seen on this partition: cannot be a redelivery
    return _in_ranges(state, part, seq)


def _id_seen(state: PlayerState, t: int, h: int) -> bool:
    buf = state.buf
    if buf and t >= buf[0].t:
        i = bisect_left(buf, t, key=_T)
        while i < len(buf) and buf[i].t == t:
            if buf[i].h == h:
                return True
            i += 1
        if t > buf[0].t:
            return False  # evicted events are never newer than the oldest buffered one
    return h in state.evicted


def note_position(state: PlayerState, ev: SignalEvent) -> None:
    """Track the newest enqueued time; forget a partition's marks when its sequence restarted."""
    part, q = ev.p, ev.q
    if part is None or q is None or q <= state.qhi.get(part, -1):
        return
    if ev.s is not None and _in_ranges(state, part, ev.s):
        # Newer than everything yet inside what was seen: a new hub or a failover.
        state.seen.pop(part, None)
        state.floor.pop(part, None)
    state.qhi[part] = q


def mark_seen(state: PlayerState, part: str, lo: int, hi: int) -> None:
    """Record that every event of this player in [lo, hi] of ``part`` has been delivered."""
    if part in state.floor and hi <= state.floor[part]:
        return
    runs = state.seen.get(part)
    if runs and runs[-1][0] <= lo <= runs[-1][1] + 1:
        # The common case: the batch after the newest seen one (or overlapping it) extends it.
        if hi > runs[-1][1]:
            runs[-1][1] = hi
        return
    ranges = sorted([*state.seen.get(part, []), [lo, hi]])
    merged: list[list[int]] = []
    for r_lo, r_hi in ranges:
        if merged and r_lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], r_hi)
        else:
            merged.append([r_lo, r_hi])
    while len(merged) > SEEN_RANGES:
        _, dropped_hi = merged.pop(0)
        state.floor[part] = max(state.floor.get(part, -1), dropped_hi)
    state.seen[part] = merged
    while sum(len(r) for r in state.seen.values()) > SEEN_RANGES_TOTAL:
        busiest = max(state.seen, key=lambda p: len(state.seen[p]))
        _, dropped_hi = state.seen[busiest].pop(0)
        state.floor[busiest] = max(state.floor.get(busiest, -1), dropped_hi)
        if not state.seen[busiest]:
            del state.seen[busiest]


def covered_ranges(
    ranges: list[tuple[str, int, int]], events: list[SignalEvent]
) -> list[tuple[str, int, int]]:
    """The batch ranges a signal names; without them, the span of its own events per partition."""
    if ranges:
        return ranges
    spans: dict[str, list[int]] = {}
    for ev in events:
        if ev.p is not None and ev.s is not None:
            lo_hi = spans.setdefault(ev.p, [ev.s, ev.s])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], ev.s), max(lo_hi[1], ev.s)
    return [(p, lo, hi) for p, (lo, hi) in spans.items()]
