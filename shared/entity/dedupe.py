"""Is an incoming event new? Event keys, per-partition sequence ranges, enqueued times.

Delivery is at-least-once and signals may be reordered. Each signal carries the
Event Hubs sequence ranges of the trigger batch it came from, and holds all of
this player's events of those ranges; so the entity keeps, per partition, the
few sequence ranges it has fully seen (merged, at most ``SEEN_RANGES``; older
ones fold into a floor). An incoming event is a duplicate when
- its key, a 64-bit hash of its CloudEvents ``source`` and ``id`` (``id_hash``),
  is that of a buffered event or in the ring of recently evicted keys: the same
  event sent again, whatever its ``time`` (CloudEvents: ``source`` + ``id``
  identify an event; a producer that rebuilds an event on retry re-stamps its
  time, and must not have it applied twice), or
- its sequence number lies in a seen range of its partition, or at or below the
  partition's floor (a redelivered batch, or a replayed signal),
unless it was enqueued after anything seen on its partition (a redelivery never is).

The key check scans the buffer (at most ``MAX_BUFFER_EVENTS``) and the ring
(``EVICTED_ID_RING``): a distinct event is taken for a duplicate only if its
key equals one of those at most 128 keys, odds of 128 in 2⁶⁴ (~7·10⁻¹⁸) per
event; docs/contracts.md states what that means at the reference load.

States written before (version 2) kept 32-bit CRC-32 hashes of the id alone,
and matched them only at the same event time. Their entries stay as they are
(a version 3 key is never below 2³², so the two cannot be confused) and are
matched by the old rule until the buffer has turned over (``v2_keys`` says
whether any is left, so a version 3 state pays nothing for the old rule).
"""

from __future__ import annotations

import hashlib
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


# Keys below this are the 32-bit CRC-32s of a version 2 state (``legacy_hash``).
LEGACY_LIMIT = 1 << 32


def id_hash(event_id: str, source: str = "") -> int:
    """The event's dedupe key: a stable 64-bit hash (BLAKE2b, 8 bytes) of its ``source`` and ``id``.

    Length-prefixed, so no (source, id) pair can read as another; never below ``LEGACY_LIMIT``
    (the 2⁻³² of keys that would be are moved up), so it is never mistaken for a version 2 hash.
    Python's hash() is salted per process, hence BLAKE2b. Not a defence against a producer
    crafting collisions, which could only drop its own player's events."""
    src = source.encode()
    digest = hashlib.blake2b(len(src).to_bytes(4, "little") + src + event_id.encode(), digest_size=8).digest()
    h = int.from_bytes(digest, "little")
    return h if h >= LEGACY_LIMIT else h | LEGACY_LIMIT


def legacy_hash(event_id: str) -> int:
    """The 32-bit hash of an event id a version 2 state kept (CRC-32, no source)."""
    return zlib.crc32(event_id.encode())


def is_duplicate(state: PlayerState, ev: SignalEvent, h: int) -> bool:
    """``h``: ``id_hash(ev.id, ev.src or "")``."""
    if _id_seen(state, ev, h):
        return True
    part, seq = ev.p, ev.s
    if part is None or seq is None:
        return False
    if ev.q is not None and ev.q > state.qhi.get(part, -1):
        return False  # enqueued after anything seen on this partition: cannot be a redelivery
    return _in_ranges(state, part, seq)


def _id_seen(state: PlayerState, ev: SignalEvent, h: int) -> bool:
    if h in state.evicted or h in [e.h for e in state.buf]:
        return True
    if not state.v2_keys:
        return False
    if not has_legacy_keys(state):
        state.v2_keys = False  # the version 2 entries have all been evicted
        return False
    return _legacy_seen(state, ev)


def has_legacy_keys(state: PlayerState) -> bool:
    """Does the state still hold a version 2 key (a CRC-32, below ``LEGACY_LIMIT``)?"""
    return min((e.h for e in state.buf), default=LEGACY_LIMIT) < LEGACY_LIMIT or (
        min(state.evicted, default=LEGACY_LIMIT) < LEGACY_LIMIT
    )


def _legacy_seen(state: PlayerState, ev: SignalEvent) -> bool:
    """The version 2 rule, for entries a version 2 state left: same event time, same CRC-32."""
    buf, t = state.buf, ev.t
    old: int | None = None
    if buf and t >= buf[0].t:
        i = bisect_left(buf, t, key=_T)
        while i < len(buf) and buf[i].t == t:
            if buf[i].h < LEGACY_LIMIT:
                old = legacy_hash(ev.id) if old is None else old
                if buf[i].h == old:
                    return True
            i += 1
        if t > buf[0].t:
            return False  # evicted events are never newer than the oldest buffered one
    if any(x < LEGACY_LIMIT for x in state.evicted):
        return (legacy_hash(ev.id) if old is None else old) in state.evicted
    return False


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
