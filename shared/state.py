"""The player entity's logic as a pure function over a plain state object.

``apply(state, op, input, now_ms, scorer, rules)`` returns the new state and the
effects to carry out. It does no I/O and reads no clock: the entity wrapper
passes ``now_ms`` and a scorer, carries out the effects, then sets the state
once. Everything is decided on event time, so replaying the same events gives
the same decisions whatever the batching, the redeliveries or the wall clock.

Delivery is at-least-once and signals may be reordered. Each signal carries
the Event Hubs sequence range of the trigger batch it came from, and a signal
holds all of this player's events of that range; so the entity keeps, per
partition, the few sequence ranges it has fully seen (merged, at most
``SEEN_RANGES``; older ones fold into a floor). An incoming event is a duplicate
when
- its id is in the buffer or in the ring of recently evicted ids (a producer
  that sent the same CloudEvent twice), or
- its sequence number lies in a seen range of its partition, or at or below the
  partition's floor (a redelivered batch, or a replayed signal).
Anything else is new, even when it arrives after newer events (a reordered
signal): it is inserted by event time; only an event that is the newest the
entity has seen is checked for a trigger (a late event changes history, it does
not start an intervention about the past). Opt-out and opt-in apply by event
time too, so a late opt-in cannot undo a newer opt-out.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from shared import features as feat
from shared.policy import ACTION_TYPES, PolicyContext, Rules, decide
from shared.timeutil import iso_ms, parse_iso_ms, utc_day

STATE_VERSION = 1
MAX_BUFFER_EVENTS = 96
MAX_BUFFER_AGE_MS = 6 * 3600 * 1000
EVICTED_ID_RING = 32
SEEN_RANGES = 16  # per partition: a signal reordered behind 16 later ones is taken as a replay
SEEN_RANGES_TOTAL = 24  # across partitions, so a player spread over many partitions stays small
OUTBOX_TTL_MS = 3600 * 1000
ROUNDS_PER_SCORE = 10
LOSS_STREAK_TRIGGER = 5

TYPE_CODES: dict[str, int] = {
    "session.started": 0,
    "session.ended": 1,
    "round.completed": 2,
    "deposit.made": 3,
    "deposit.failed": 4,
    "withdrawal.requested": 5,
    "withdrawal.reversed": 6,
    "bonus.claimed": 7,
    "action.responded": 8,
    "player.optout": 9,
    "player.optin": 10,
}
ALWAYS_TRIGGER = frozenset(
    {TYPE_CODES[t] for t in ("session.ended", "deposit.made", "deposit.failed", "withdrawal.reversed")}
)

# Buffer entry layout (a list, to keep the JSON state small).
T, CODE, A, B, ID, PART, SEQ = range(7)


class Aggregates(msgspec.Struct, omit_defaults=True):
    """Lifetime counters. The counts are commutative (reordering cannot skew them);
    the session lengths are not: a session end that arrives before its start is
    not measured."""

    first_ms: int = 0
    events: int = 0
    sessions: int = 0
    session_minutes_sum: float = 0.0
    session_count_closed: int = 0
    deposits: int = 0
    deposit_failures: int = 0
    accepted: int = 0
    dismissed: int = 0
    last_end_ms: int = 0
    prev_end_ms: int = 0
    # Start of the newest session; survives the start event's eviction from the buffer.
    session_open_ms: int = 0


class OutboxItem(msgspec.Struct, omit_defaults=True):
    doc: dict[str, Any]
    since_ms: int
    attempts: int = 0
    # When the trigger event reached Event Hubs: the start of the action's latency.
    enqueued_ms: int | None = None
    # W3C traceparent of the decision's span: the Cosmos write continues that trace.
    trace: str | None = None


class RefusedAction(msgspec.Struct, omit_defaults=True):
    """An action Cosmos DB refused for good (400, 413): kept, bounded, with the reason."""

    id: str
    type: str
    status: int
    at_ms: int


MAX_REFUSED = 20


class PlayerState(msgspec.Struct, omit_defaults=True):
    v: int = STATE_VERSION
    buf: list[list[Any]] = msgspec.field(default_factory=list)
    seen: dict[str, list[list[int]]] = msgspec.field(default_factory=dict)
    floor: dict[str, int] = msgspec.field(default_factory=dict)
    # Newest enqueued time seen per partition: a redelivery is never newer, so an
    # event that is newer yet falls in a seen range means the sequence restarted.
    qhi: dict[str, int] = msgspec.field(default_factory=dict)
    evicted: list[str] = msgspec.field(default_factory=list)
    agg: Aggregates = msgspec.field(default_factory=Aggregates)
    newest_ms: int = 0
    rounds_since_score: int = 0
    opted_out: bool = False
    opt_ms: int = 0
    last_action_ms: dict[str, int] = msgspec.field(default_factory=dict)
    day: str = ""
    day_count: int = 0
    outbox: list[OutboxItem] = msgspec.field(default_factory=list)
    # When the outbox reminder the entity asked for is due (wall clock ms); 0: none pending.
    remind_ms: int = 0
    # Reminders asked in a row for an erasure or sweep that keeps failing: their back-off.
    retries: int = 0
    refused: list[RefusedAction] = msgspec.field(default_factory=list)
    # An erasure whose Cosmos deletes have not succeeded yet: only dedupe marks are kept.
    erasing: bool = False
    # When the player was erased (wall clock): events enqueued before it are
    # replays of the erased history and are dropped.
    erased_ms: int = 0


# A scorer maps a feature vector to per-action probabilities and the names of
# the features that drove them (for the action's reasons).
Scorer = Callable[[list[float]], tuple[Mapping[str, float], list[str]]]


class TriggerSpan(Protocol):
    """What a tracing hook hands back around one trigger (see shared.tracing)."""

    traceparent: str | None

    def outcome(self, action_type: str | None, rejections: Mapping[str, int]) -> None: ...


# Called around each trigger with the signal event; None means no tracing.
TriggerHook = Callable[[Mapping[str, Any]], AbstractContextManager[TriggerSpan]]


@dataclass
class Effects:
    """What an operation did and what the wrapper must still do."""

    accepted: int = 0
    duplicates: int = 0
    triggers: int = 0
    scored: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    outbox_expired: int = 0
    erase: bool = False
    result: Any = None


def load_state(raw: Any) -> PlayerState:
    """Rebuild the state from what the Durable runtime stored (dict, JSON or None)."""
    if raw is None or raw == "":
        return PlayerState()
    if isinstance(raw, (str, bytes)):
        return msgspec.json.decode(raw, type=PlayerState)
    return msgspec.convert(raw, type=PlayerState)


def dump_state(state: PlayerState) -> dict[str, Any]:
    return msgspec.to_builtins(state)


def action_id(player_id: str, trigger_event_id: str, action_type: str) -> str:
    """Deterministic: a replay of the same trigger creates the same document, once."""
    digest = hashlib.sha256(f"{player_id}\x1f{trigger_event_id}\x1f{action_type}".encode()).hexdigest()
    return f"act-{digest[:32]}"


def _entry(ev: Mapping[str, Any]) -> list[Any]:
    code = TYPE_CODES[ev["type"]]
    d = ev.get("d") or {}
    a = b = 0.0
    if code == 2:
        a, b = float(d.get("stake", 0.0)), float(d.get("payout", 0.0))
    elif code in (3, 4, 5, 6):
        a = float(d.get("amount", 0.0))
    elif code == 8:
        a = 1.0 if d.get("response") == "accepted" else 0.0
    return [int(ev["t"]), code, a, b, str(ev["id"]), ev.get("p"), ev.get("s")]


def _is_duplicate(state: PlayerState, ev: Mapping[str, Any]) -> bool:
    eid = str(ev["id"])
    if eid in state.evicted or any(e[ID] == eid for e in state.buf):
        return True
    part, seq = ev.get("p"), ev.get("s")
    if part is None or seq is None:
        return False
    part, seq = str(part), int(seq)
    if ev.get("q") is not None and int(ev["q"]) > state.qhi.get(part, -1):
        return False  # enqueued after anything seen on this partition: cannot be a redelivery
    if seq <= state.floor.get(part, -1):
        return True
    return any(lo <= seq <= hi for lo, hi in state.seen.get(part, ()))


def _note_position(state: PlayerState, ev: Mapping[str, Any]) -> None:
    """Track the newest enqueued time; forget a partition's marks when its sequence restarted."""
    part, seq, q = ev.get("p"), ev.get("s"), ev.get("q")
    if part is None or q is None:
        return
    part = str(part)
    if int(q) > state.qhi.get(part, -1):
        if seq is not None and (
            int(seq) <= state.floor.get(part, -1)
            or any(lo <= int(seq) <= hi for lo, hi in state.seen.get(part, ()))
        ):
            # Newer than everything yet inside what was seen: a new hub or a failover.
            state.seen.pop(part, None)
            state.floor.pop(part, None)
        state.qhi[part] = int(q)


def mark_seen(state: PlayerState, part: str, lo: int, hi: int) -> None:
    """Record that every event of this player in [lo, hi] of ``part`` has been delivered."""
    if part in state.floor and hi <= state.floor[part]:
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


def _insert(state: PlayerState, entry: list[Any]) -> None:
    keys = [(e[T], e[ID]) for e in state.buf]
    state.buf.insert(bisect.bisect_right(keys, (entry[T], entry[ID])), entry)


def _evict(state: PlayerState) -> None:
    horizon = state.newest_ms - MAX_BUFFER_AGE_MS
    drop = 0
    while drop < len(state.buf) and (
        len(state.buf) - drop > MAX_BUFFER_EVENTS or state.buf[drop][T] < horizon
    ):
        drop += 1
    if drop:
        state.evicted.extend(e[ID] for e in state.buf[:drop])
        del state.evicted[:-EVICTED_ID_RING]
        del state.buf[:drop]


def _update_aggregates(state: PlayerState, entry: list[Any]) -> None:
    agg, code = state.agg, entry[CODE]
    agg.events += 1
    agg.first_ms = entry[T] if agg.first_ms == 0 else min(agg.first_ms, entry[T])
    if code == 0:
        agg.sessions += 1
        agg.session_open_ms = max(agg.session_open_ms, entry[T])
    elif code == 1:
        start = feat.session_start(state.buf, entry[T], agg)
        if start is not None:
            agg.session_minutes_sum += (entry[T] - start) / 60000.0
            agg.session_count_closed += 1
        if entry[T] > agg.last_end_ms:
            agg.prev_end_ms, agg.last_end_ms = agg.last_end_ms, entry[T]
        elif entry[T] > agg.prev_end_ms:
            agg.prev_end_ms = entry[T]
    elif code == 3:
        agg.deposits += 1
    elif code == 4:
        agg.deposit_failures += 1
    elif code == 8:
        if entry[A] >= 1.0:
            agg.accepted += 1
        else:
            agg.dismissed += 1
    elif code in (9, 10) and (entry[T], code == 9) >= (state.opt_ms, state.opted_out):
        # By event time; at the same millisecond, opting out wins.
        state.opted_out, state.opt_ms = code == 9, entry[T]


def _is_trigger(state: PlayerState, entry: list[Any]) -> bool:
    code = entry[CODE]
    if code in ALWAYS_TRIGGER:
        return True
    if code == 0:
        return state.agg.sessions >= 2
    if code == 2:
        state.rounds_since_score += 1
        if state.rounds_since_score >= ROUNDS_PER_SCORE:
            return True
        streak = feat.loss_streak(state.buf)
        return streak > 0 and streak % LOSS_STREAK_TRIGGER == 0
    return False


def _decide(
    state: PlayerState,
    player_id: str,
    ev: Mapping[str, Any],
    now_ms: int,
    scorer: Scorer,
    rules: Rules,
    model_version: str,
    effects: Effects,
    span: TriggerSpan | None = None,
) -> None:
    effects.triggers += 1
    state.rounds_since_score = 0
    t = int(ev["t"])
    vector = feat.compute(state.buf, state.agg, state.last_action_ms, t)
    scores, top_features = scorer(vector)
    effects.scored += 1
    day = utc_day(t)
    if day != state.day:
        state.day, state.day_count = day, 0
    ctx = PolicyContext(
        event_time_ms=t,
        day_count=state.day_count,
        last_action_ms=state.last_action_ms,
        opted_out=state.opted_out,
        history_events=len(state.buf),
        features=dict(zip(feat.FEATURES, vector, strict=True)),
        lag_ms=now_ms - int(ev["q"]) if ev.get("q") is not None else None,
    )
    decision = decide(scores, ctx, rules, top_features)
    for rule, n in decision.rejections.items():
        effects.rejections[rule] = effects.rejections.get(rule, 0) + n
    if span is not None:
        span.outcome(decision.action_type, decision.rejections)
    if decision.action_type is None:
        return
    atype = decision.action_type
    doc: dict[str, Any] = {
        "id": action_id(player_id, str(ev["id"]), atype),
        "playerId": player_id,
        "type": atype,
        "score": round(float(scores[atype]), 6),
        "modelVersion": model_version,
        "triggerEventId": str(ev["id"]),
        "eventTime": iso_ms(t),
        "decidedAt": iso_ms(now_ms),
        "reasons": decision.reasons,
        "status": "pending",
    }
    if ev.get("tp"):
        doc["traceparent"] = ev["tp"]
    state.last_action_ms[atype] = t
    state.day_count += 1
    enqueued = ev.get("q")
    state.outbox.append(
        OutboxItem(
            doc=doc,
            since_ms=now_ms,
            enqueued_ms=int(enqueued) if enqueued is not None else None,
            trace=span.traceparent if span is not None else None,
        )
    )
    effects.actions.append(doc)


def apply_events(
    state: PlayerState,
    player_id: str,
    events: list[Mapping[str, Any]],
    now_ms: int,
    scorer: Scorer,
    rules: Rules,
    model_version: str,
    hook: TriggerHook | None = None,
    ranges: list[Any] | None = None,
) -> Effects:
    """Fold a signal's events into the state (in place) and decide actions.

    ``ranges`` are the ``[partition, first, last]`` sequence ranges of the trigger
    batch the signal came from; without them each event's own position is recorded.
    """
    effects = Effects()
    covered: list[tuple[str, int, int]] = []
    for r in ranges or ():
        if isinstance(r, list | tuple) and len(r) == 3 and isinstance(r[1], int) and isinstance(r[2], int):
            covered.append((str(r[0]), r[1], r[2]))
    for ev in events:
        if ev.get("type") not in TYPE_CODES or "id" not in ev or "t" not in ev:
            effects.rejections["malformed_signal_event"] = (
                effects.rejections.get("malformed_signal_event", 0) + 1
            )
            continue
        if state.erased_ms and (ev.get("q") is None or int(ev["q"]) <= state.erased_ms):
            effects.rejections["erased"] = effects.rejections.get("erased", 0) + 1
            continue
        if _is_duplicate(state, ev):
            effects.duplicates += 1
            continue
        _note_position(state, ev)
        entry = _entry(ev)
        is_newest = entry[T] >= state.newest_ms
        _insert(state, entry)
        state.newest_ms = max(state.newest_ms, entry[T])
        _update_aggregates(state, entry)
        effects.accepted += 1
        if is_newest and _is_trigger(state, entry):
            if hook is None:
                _decide(state, player_id, ev, now_ms, scorer, rules, model_version, effects)
            else:
                with hook(ev) as span:
                    _decide(state, player_id, ev, now_ms, scorer, rules, model_version, effects, span)
        _evict(state)
    if not covered:
        # No batch range given: the signal's own events still span a contiguous part of the batch.
        spans: dict[str, list[int]] = {}
        for ev in events:
            ev_part, seq = ev.get("p"), ev.get("s")
            if ev_part is not None and isinstance(seq, int):
                lo_hi = spans.setdefault(str(ev_part), [seq, seq])
                lo_hi[0], lo_hi[1] = min(lo_hi[0], seq), max(lo_hi[1], seq)
        covered = [(p, lo, hi) for p, (lo, hi) in spans.items()]
    for part, lo, hi in covered:
        mark_seen(state, part, lo, hi)
    return effects


def acknowledge(
    state: PlayerState, written_ids: set[str], now_ms: int, tried_ids: set[str] | None = None
) -> int:
    """Drop written actions from the outbox; expire the stale ones. Returns how many expired.

    ``tried_ids``: the actions a write was attempted for (default: all); only they count an attempt.
    """
    kept: list[OutboxItem] = []
    expired = 0
    for item in state.outbox:
        if item.doc["id"] in written_ids:
            continue
        if now_ms - item.since_ms > OUTBOX_TTL_MS:
            expired += 1
            continue
        if tried_ids is None or item.doc["id"] in tried_ids:
            item.attempts += 1
        kept.append(item)
    state.outbox = kept
    return expired


def record_refused(
    state: PlayerState, items: list[OutboxItem], statuses: Mapping[str, int], now_ms: int
) -> None:
    """Move actions refused for good out of the outbox into the bounded ``refused`` record."""
    gone = set(statuses)
    state.outbox = [i for i in state.outbox if i.doc["id"] not in gone]
    for item in items:
        if item.doc["id"] in gone:
            state.refused.append(
                RefusedAction(item.doc["id"], item.doc["type"], statuses[item.doc["id"]], now_ms)
            )
    del state.refused[:-MAX_REFUSED]


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
) -> Effects:
    """Dispatch one entity operation; unknown operations are reported, never raised."""
    if op == "events":
        events = payload.get("events") if isinstance(payload, Mapping) else None
        if not isinstance(events, list):
            return Effects(
                rejections={"malformed_signal": 1}, result={"error": "input must be {'events': [...]}"}
            )
        effects = apply_events(
            state, player_id, events, now_ms, scorer, rules, model_version, hook, payload.get("r")
        )
        effects.result = {"accepted": effects.accepted, "duplicates": effects.duplicates}
        return effects
    if op == "flush":
        return Effects(result={"outbox": len(state.outbox)})
    return Effects(rejections={"unknown_operation": 1}, result={"error": f"unknown operation {op!r}"})


def latency_start_ms(item: OutboxItem) -> int:
    """Enqueued time of the trigger when known, else its event time."""
    return item.enqueued_ms if item.enqueued_ms is not None else parse_iso_ms(item.doc["eventTime"])


__all__ = [
    "ACTION_TYPES",
    "Effects",
    "PlayerState",
    "acknowledge",
    "action_id",
    "apply",
    "dump_state",
    "load_state",
]
