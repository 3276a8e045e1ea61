"""When to score, and what a score becomes: an action, suppressed candidates, or nothing.

Everything is decided on event time, so replaying the same events gives the same
decisions whatever the batching, the redeliveries or the wall clock. Only the
newest event the entity has seen can trigger (a late event changes history, it
does not start an intervention about the past).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

from shared import features as feat
from shared.entity.model import ActionRecord, Entry, OutboxItem, PlayerState, Watch
from shared.entity.outbox import add_suppressed
from shared.entity.shadow import add_shadow
from shared.entity.watch import open_watch
from shared.eventtypes import ALWAYS_TRIGGER, EventType
from shared.holdout import is_held_out
from shared.policy import ACTION_TYPES, PolicyContext, Rules, decide
from shared.signals import SignalEvent
from shared.timeutil import DAY_MS, utc_day

ROUNDS_PER_SCORE = 10
LOSS_STREAK_TRIGGER = 5


class Scored(NamedTuple):
    scores: Mapping[str, float]  # per action type
    top: list[str]  # the features that drove them (for the action's reasons)
    vector: list[float]  # the scored row, in the model card's order


# A scorer maps the features of a moment to per-action probabilities (shared.model.InterventionModel).
Scorer = Callable[[feat.Features], Scored]


class Challenger(NamedTuple):
    """A second model scored in shadow on the same features (shared.entity.shadow)."""

    scores: Callable[[feat.Features], Mapping[str, float]]  # per action type
    version: str


class TriggerSpan(Protocol):
    """What a tracing hook hands back around one trigger (see shared.tracing)."""

    traceparent: str | None

    def outcome(self, action_type: str | None, rejections: Mapping[str, int]) -> None: ...


# Called around each trigger with the signal event; None means no tracing.
TriggerHook = Callable[[SignalEvent], AbstractContextManager[TriggerSpan]]


def action_id(player_id: str, trigger_event_id: str, action_type: str) -> str:
    """Deterministic: a replay of the same trigger creates the same document, once."""
    digest = hashlib.sha256(f"{player_id}\x1f{trigger_event_id}\x1f{action_type}".encode()).hexdigest()
    return f"act-{digest[:32]}"


def is_trigger(state: PlayerState, entry: Entry) -> bool:
    kind = entry.kind
    if kind in ALWAYS_TRIGGER:
        return True
    if kind == EventType.SESSION_STARTED:
        return state.agg.sessions >= 2
    if kind == EventType.ROUND:
        state.rounds_since_score += 1
        if state.rounds_since_score >= ROUNDS_PER_SCORE:
            return True
        streak = feat.loss_streak(state.buf)
        return streak > 0 and streak % LOSS_STREAK_TRIGGER == 0
    return False


class Decided(NamedTuple):
    action: ActionRecord | None  # status "pending" (sent) or "holdout" (withheld)
    suppressed: list[ActionRecord]
    rejections: dict[str, int]
    # Outcome watches that left to make room for the action's, and how (shared.entity.watch)
    watches_ended: list[tuple[Watch, str]] = []
    # With a challenger: whether its would-be decision was the champion's; None without one
    agree: bool | None = None


def score_and_decide(
    state: PlayerState,
    player_id: str,
    ev: SignalEvent,
    now_ms: int,
    scorer: Scorer,
    rules: Rules,
    model_version: str,
    span: TriggerSpan | None = None,
    challenger: Challenger | None = None,
) -> Decided:
    """Score the moment of ``ev`` and put what the policy decides in the outbox: the action (sent, or
    a holdout decision when the player is held out for its type that day: shared.holdout), and each
    suppressed candidate counted into its (hour, type, rule) aggregate. The suppressed records are
    returned too (for counts and traces); they are not written one by one. With a ``challenger``,
    its scores go through the same policy in the same context, counted into the hour's shadow
    aggregate (shared.entity.shadow)."""
    state.rounds_since_score = 0
    t = ev.t
    features = feat.compute(state.buf, state.agg, state.last_action_ms, t)
    scored = scorer(features)
    day = t - t % DAY_MS
    if day != state.day_ms:
        state.day_ms, state.day_count = day, 0
    ctx = PolicyContext(
        event_time_ms=t,
        day_count=state.day_count,
        last_action_ms=state.last_action_ms,
        opted_out=state.opted_out,
        history_events=len(state.buf),
        features=features,
        lag_ms=now_ms - ev.q if ev.q is not None else None,
    )
    decision = decide(scored.scores, ctx, rules, scored.top)
    if span is not None:
        span.outcome(decision.action_type, decision.rejections)
    agree = None
    if challenger is not None:  # before the champion's action changes the context
        shadow_scores = challenger.scores(features)
        shadow = decide(shadow_scores, ctx, rules)
        agree = add_shadow(
            state, player_id, t, decision, shadow, scored.scores, shadow_scores, rules,
            model_version, challenger.version, now_ms, ev.q,
        )  # fmt: skip
    if decision.action_type is None and not decision.suppressed:
        return Decided(None, [], decision.rejections, [], agree)
    all_scores = [round(float(scored.scores.get(a, 0.0)), 6) for a in ACTION_TYPES]
    vector = [round(float(v), 6) for v in scored.vector]

    def record(atype: str, status: str, reasons: list[str], rule: str | None = None) -> ActionRecord:
        return ActionRecord(
            id=action_id(player_id, ev.id, atype),
            type=atype,
            status=status,
            score=round(float(scored.scores[atype]), 6),
            scores=all_scores,
            features=vector,
            model=model_version,
            trigger=ev.id,
            t=t,
            decided_ms=now_ms,
            reasons=reasons,
            rejected_by=rule,
            tp=ev.tp,
        )

    trace = span.traceparent if span is not None else None
    suppressed = [record(atype, "suppressed", [], rule) for atype, rule in decision.suppressed]
    for rec in suppressed:  # counted into its hour's aggregate, not a document of its own
        add_suppressed(state, player_id, rec, now_ms, ev.q, trace)
    action = None
    dropped: list[tuple[Watch, str]] = []
    if decision.action_type is not None:
        atype = decision.action_type
        share = rules.holdout_share.get(atype, 0.0)
        held = share > 0.0 and is_held_out(player_id, utc_day(t), atype, share, rules.holdout_key)
        action = record(atype, "holdout" if held else "pending", decision.reasons)
        # A holdout decision counts for the cooldown and the daily cap like a sent action: both
        # groups meet the same guardrails afterwards.
        state.last_action_ms[action.type] = t
        state.day_count += 1
        state.outbox.append(OutboxItem(action, since_ms=now_ms, enqueued_ms=ev.q, trace=trace))
        dropped = open_watch(state, action)
    return Decided(action, suppressed, decision.rejections, dropped, agree)
