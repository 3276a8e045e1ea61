"""Features from a player's trailing buffer, as of one event time.

The same function feeds training (scripts/train_model.py) and serving (the
entity), so the model sees in production exactly what it was trained on. The
order of ``FEATURES`` is the ONNX model's input order; the model card lists it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

# Buffer entry layout: see shared.state (t_ms, code, a, b, id, partition, seq).
_T, _CODE, _A, _B = 0, 1, 2, 3
SESSION_STARTED, SESSION_ENDED, ROUND, DEPOSIT, DEPOSIT_FAILED = 0, 1, 2, 3, 4
WITHDRAWAL, WITHDRAWAL_REVERSED, BONUS, RESPONDED = 5, 6, 7, 8

FEATURES: tuple[str, ...] = (
    "events_in_buffer",
    "rounds_last_30m",
    "minutes_since_prev_event",
    "session_minutes",
    "rounds_per_minute",
    "stake_mean",
    "stake_cv",
    "stake_trend",
    "loss_streak",
    "net_loss",
    "net_loss_per_deposit",
    "deposits_last_60m",
    "deposit_failures",
    "withdrawal_reversals",
    "bonus_claims",
    "minutes_since_last_action",
    "dismissed_ratio",
    "lifetime_sessions",
    "lifetime_events",
    "avg_session_minutes",
    "last_session_vs_avg",
    "minutes_since_prev_session",
    "hour_sin",
    "hour_cos",
)
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


def session_start(buf: Sequence[Sequence[Any]], t: int, agg: AggregatesLike | None = None) -> int | None:
    """Time of the latest session start at or before ``t`` with no end between.

    When the start has left the buffer (a long session), the aggregates still
    know when the newest session opened.
    """
    for e in reversed(buf):
        if e[_T] > t:
            continue
        if e[_CODE] == SESSION_STARTED:
            return int(e[_T])
        if e[_CODE] == SESSION_ENDED and e[_T] < t:
            return None
    if agg is not None and 0 < agg.session_open_ms <= t and agg.session_open_ms > agg.prev_end_ms:
        if agg.last_end_ms < agg.session_open_ms or agg.last_end_ms >= t:
            return int(agg.session_open_ms)
    return None


def loss_streak(buf: Sequence[Sequence[Any]]) -> int:
    """Consecutive losing rounds at the end of the buffer."""
    streak = 0
    for e in reversed(buf):
        if e[_CODE] != ROUND:
            continue
        if e[_B] < e[_A]:
            streak += 1
        else:
            break
    return streak


def compute(
    buf: Sequence[Sequence[Any]],
    agg: AggregatesLike,
    last_action_ms: Mapping[str, int],
    t: int,
) -> list[float]:
    """The feature vector, in ``FEATURES`` order, from events at or before ``t``."""
    events = [e for e in buf if e[_T] <= t]
    stakes: list[float] = []
    net = 0.0
    streak = 0
    rounds_30 = deposits_60 = failures = reversals = bonuses = 0
    deposit_sum = 0.0
    prev_event_t: int | None = None
    last_session_minutes: float | None = None
    open_start: int | None = None
    for e in events:
        code, et = e[_CODE], e[_T]
        if et < t:
            prev_event_t = et
        if code == ROUND:
            stake, payout = float(e[_A]), float(e[_B])
            stakes.append(stake)
            net += stake - payout
            streak = streak + 1 if payout < stake else 0
            if t - et <= 30 * _MINUTE:
                rounds_30 += 1
        elif code == DEPOSIT:
            deposit_sum += float(e[_A])
            if t - et <= 60 * _MINUTE:
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
    if start is None and last_session_minutes is not None and events and events[-1][_CODE] == SESSION_ENDED:
        session_minutes = last_session_minutes
    n_stakes = len(stakes)
    mean = sum(stakes) / n_stakes if n_stakes else 0.0
    var = sum((s - mean) ** 2 for s in stakes) / n_stakes if n_stakes else 0.0
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
    return [
        float(len(events)),
        float(rounds_30),
        (t - prev_event_t) / _MINUTE if prev_event_t is not None else 0.0,
        session_minutes,
        rounds_30 / 30.0,
        mean,
        cv,
        max(-5.0, min(5.0, trend)),
        float(streak),
        net,
        net / deposit_sum if deposit_sum > 0 else 0.0,
        float(deposits_60),
        float(failures),
        float(reversals),
        float(bonuses),
        min(since_action, _NO_ACTION_MINUTES),
        agg.dismissed / responses if responses else 0.0,
        float(agg.sessions),
        float(agg.events),
        avg_session,
        min(vs_avg, 10.0),
        min((t - prev_end) / _MINUTE, 7 * 24 * 60.0) if 0 < prev_end < t else 0.0,
        math.sin(2 * math.pi * hour / 24.0),
        math.cos(2 * math.pi * hour / 24.0),
    ]
