"""Features from a player's trailing buffer, as of one event time, by name.

The same function feeds training (scripts/train_model.py) and serving (the
entity), so the model sees in production exactly what it was trained on.
``compute`` fills a ``Features`` struct field by field; the ONNX input vector is
built from it *by name*, in the order the model card lists (``shared.model``),
so the order of the fields here never decides which column a value lands in.
Adding a feature: one field in ``Features`` and its line in ``compute``, then
retrain (README "How to add a feature").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from shared.eventtypes import EventType

if TYPE_CHECKING:
    from shared.entity.model import Entry

# Plain ints (comparing with an IntEnum member costs a little more, in the hottest loop).
SESSION_STARTED, SESSION_ENDED, ROUND = int(EventType.SESSION_STARTED), int(EventType.SESSION_ENDED), 2
DEPOSIT, DEPOSIT_FAILED = int(EventType.DEPOSIT), int(EventType.DEPOSIT_FAILED)
WITHDRAWAL_REVERSED, BONUS = int(EventType.WITHDRAWAL_REVERSED), int(EventType.BONUS)
assert ROUND == EventType.ROUND


class Features(msgspec.Struct, gc=False):
    """The model's inputs, by name (see shared/models/MODEL_CARD.md for what each means)."""

    events_in_buffer: float
    rounds_last_30m: float
    minutes_since_prev_event: float
    session_minutes: float
    rounds_per_minute: float
    stake_mean: float
    stake_cv: float
    stake_trend: float
    loss_streak: float
    net_loss: float
    net_loss_per_deposit: float
    deposits_last_60m: float
    deposit_failures: float
    withdrawal_reversals: float
    bonus_claims: float
    minutes_since_last_action: float
    dismissed_ratio: float
    lifetime_sessions: float
    lifetime_events: float
    avg_session_minutes: float
    last_session_vs_avg: float
    minutes_since_prev_session: float
    hour_sin: float
    hour_cos: float


FEATURES: tuple[str, ...] = Features.__struct_fields__
N_FEATURES = len(FEATURES)
_MINUTE = 60_000.0
_NO_ACTION_MINUTES = 24 * 60.0


class AggregatesLike(Protocol):
    sessions: int
    events: int
    session_minutes_sum: float
    session_count_closed: int
    accepted: int
    dismissed: int
    last_end_ms: int
    prev_end_ms: int
    session_open_ms: int


def session_start(buf: Sequence[Entry], t: int, agg: AggregatesLike | None = None) -> int | None:
    """Time of the latest session start at or before ``t`` with no end between.

    When the start has left the buffer (a long session), the aggregates still
    know when the newest session opened.
    """
    for e in reversed(buf):
        if e.t > t:
            continue
        if e.kind == SESSION_STARTED:
            return e.t
        if e.kind == SESSION_ENDED and e.t < t:
            return None
    if agg is not None and 0 < agg.session_open_ms <= t and agg.session_open_ms > agg.prev_end_ms:
        if agg.last_end_ms < agg.session_open_ms or agg.last_end_ms >= t:
            return int(agg.session_open_ms)
    return None


def loss_streak(buf: Sequence[Entry]) -> int:
    """Consecutive losing rounds at the end of the buffer."""
    streak = 0
    for e in reversed(buf):
        if e.kind != ROUND:
            continue
        if e.b < e.a:
            streak += 1
        else:
            break
    return streak


def compute(
    buf: Sequence[Entry],
    agg: AggregatesLike,
    last_action_ms: Mapping[str, int],
    t: int,
) -> Features:
    """The features as of ``t``, from the buffered events at or before it."""
    events = buf if not buf or buf[-1].t <= t else [e for e in buf if e.t <= t]
    stakes: list[float] = []
    net = 0.0
    streak = 0
    rounds_30 = deposits_60 = failures = reversals = bonuses = 0
    deposit_sum = 0.0
    prev_event_t: int | None = None
    last_session_minutes: float | None = None
    open_start: int | None = None
    since_30, since_60 = t - 30 * _MINUTE, t - 60 * _MINUTE
    add_stake = stakes.append
    for e in events:
        code, et = e.kind, e.t
        if et < t:
            prev_event_t = et
        if code == ROUND:
            stake, payout = e.a, e.b
            add_stake(stake)
            net += stake - payout
            streak = streak + 1 if payout < stake else 0
            if et >= since_30:
                rounds_30 += 1
        elif code == DEPOSIT:
            deposit_sum += e.a
            if et >= since_60:
                deposits_60 += 1
        elif code == DEPOSIT_FAILED:
            failures += 1
        elif code == WITHDRAWAL_REVERSED:
            reversals += 1
        elif code == BONUS:
            bonuses += 1
        elif code == SESSION_STARTED:
            open_start = et
        elif code == SESSION_ENDED:
            if open_start is not None:
                last_session_minutes = (et - open_start) / _MINUTE
            open_start = None

    start = session_start(events, t, agg)
    session_minutes = (t - start) / _MINUTE if start is not None else 0.0
    if start is None and last_session_minutes is not None and events and events[-1].kind == SESSION_ENDED:
        session_minutes = last_session_minutes
    n_stakes = len(stakes)
    mean = sum(stakes) / n_stakes if n_stakes else 0.0
    var = sum([(s - mean) * (s - mean) for s in stakes]) / n_stakes if n_stakes else 0.0
    cv = math.sqrt(var) / mean if mean > 0 else 0.0
    if n_stakes >= 4:
        half = n_stakes // 2
        first = sum(stakes[:half]) / half
        second = sum(stakes[half:]) / (n_stakes - half)
        trend = (second - first) / first if first > 0 else 0.0
    else:
        trend = 0.0
    last_action = max(last_action_ms.values(), default=None)
    since_action = (t - last_action) / _MINUTE if last_action is not None else _NO_ACTION_MINUTES
    responses = agg.accepted + agg.dismissed
    avg_session = agg.session_minutes_sum / agg.session_count_closed if agg.session_count_closed else 0.0
    vs_avg = (
        (last_session_minutes / avg_session)
        if (last_session_minutes is not None and avg_session > 0)
        else 1.0
    )
    prev_end = agg.last_end_ms if 0 < agg.last_end_ms < t else agg.prev_end_ms
    hour = (t / 3_600_000.0) % 24.0
    return Features(
        events_in_buffer=float(len(events)),
        rounds_last_30m=float(rounds_30),
        minutes_since_prev_event=(t - prev_event_t) / _MINUTE if prev_event_t is not None else 0.0,
        session_minutes=session_minutes,
        rounds_per_minute=rounds_30 / 30.0,
        stake_mean=mean,
        stake_cv=cv,
        stake_trend=max(-5.0, min(5.0, trend)),
        loss_streak=float(streak),
        net_loss=net,
        net_loss_per_deposit=net / deposit_sum if deposit_sum > 0 else 0.0,
        deposits_last_60m=float(deposits_60),
        deposit_failures=float(failures),
        withdrawal_reversals=float(reversals),
        bonus_claims=float(bonuses),
        minutes_since_last_action=min(since_action, _NO_ACTION_MINUTES),
        dismissed_ratio=agg.dismissed / responses if responses else 0.0,
        lifetime_sessions=float(agg.sessions),
        lifetime_events=float(agg.events),
        avg_session_minutes=avg_session,
        last_session_vs_avg=min(vs_avg, 10.0),
        minutes_since_prev_session=min((t - prev_end) / _MINUTE, 7 * 24 * 60.0) if 0 < prev_end < t else 0.0,
        hour_sin=math.sin(2 * math.pi * hour / 24.0),
        hour_cos=math.cos(2 * math.pi * hour / 24.0),
    )
