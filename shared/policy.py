"""Constraints and boundaries: whether a scored moment may become an action.

Every rule has a name. A candidate action that a rule stops is counted under
that name; an action that is sent lists the rules it passed in its ``reasons``
(after the features that drove its score), so each decision can be explained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

BREAK, HELP, BONUS = "break_suggestion", "help_offer", "bonus_offer"
ACTION_TYPES: tuple[str, ...] = (BREAK, HELP, BONUS)
# Marketing-like actions that the harm guard never lets through.
MARKETING = frozenset({BONUS})

RULES: tuple[str, ...] = (
    "stale",
    "min_score",
    "kill_switch",
    "opt_out",
    "warm_up",
    "harm_guard",
    "cooldown",
    "daily_cap",
)


@dataclass(frozen=True)
class Rules:
    min_score: Mapping[str, float] = field(default_factory=lambda: {BREAK: 0.55, HELP: 0.55, BONUS: 0.5})
    cooldown_ms: Mapping[str, int] = field(
        default_factory=lambda: {BREAK: 30 * 60_000, HELP: 60 * 60_000, BONUS: 24 * 3600_000}
    )
    daily_cap: int = 3
    disabled: frozenset[str] = frozenset()
    # No action on an event that waited longer than this in Event Hubs (a backlog,
    # a new consumer group reading from the start): the moment has passed.
    stale_after_ms: int = 15 * 60_000
    warm_up_events: int = 6
    # Harm signals: any one of these makes the guard hold back marketing.
    harm_break_score: float = 0.4
    harm_loss_streak: float = 8
    harm_deposit_failures: float = 2
    harm_withdrawal_reversals: float = 1
    # Randomized holdout (shared.holdout): the share of each type's would-be actions withheld, and
    # the key of the assignment hash. None held out here; the app takes HOLDOUT_SHARE and
    # HOLDOUT_SALT (shared.runtime.rules), whose default holds out a share of bonus offers.
    holdout_share: Mapping[str, float] = field(default_factory=dict)
    holdout_key: str = "pi-holdout-1"


@dataclass(frozen=True)
class PolicyContext:
    event_time_ms: int
    day_count: int
    last_action_ms: Mapping[str, int]
    opted_out: bool
    history_events: int
    features: Mapping[str, float] | object  # a mapping, or shared.features.Features (by attribute)
    lag_ms: int | None = None  # now - enqueued time of the event, when known


@dataclass
class Decision:
    action_type: str | None
    reasons: list[str]
    rejections: dict[str, int]
    # Candidates (score at or above their min_score) a guardrail stopped: (action type, rule).
    suppressed: list[tuple[str, str]] = field(default_factory=list)


def _feature(features: Mapping[str, float] | object, name: str) -> float:
    if isinstance(features, Mapping):
        return float(features.get(name, 0.0))
    return float(getattr(features, name))


def harm_signals(scores: Mapping[str, float], ctx: PolicyContext, rules: Rules) -> list[str]:
    f = ctx.features
    signals = []
    if scores.get(BREAK, 0.0) >= rules.harm_break_score:
        signals.append("break_score")
    if _feature(f, "loss_streak") >= rules.harm_loss_streak:
        signals.append("loss_streak")
    if _feature(f, "deposit_failures") >= rules.harm_deposit_failures:
        signals.append("deposit_failures")
    if _feature(f, "withdrawal_reversals") >= rules.harm_withdrawal_reversals:
        signals.append("withdrawal_reversals")
    return signals


def _blocking_rule(atype: str, ctx: PolicyContext, rules: Rules, harmed: bool) -> str | None:
    """The first rule that stops ``atype`` here, or None. Cheapest, firmest first."""
    if ctx.lag_ms is not None and ctx.lag_ms > rules.stale_after_ms:
        return "stale"
    if atype in rules.disabled:
        return "kill_switch"
    if ctx.opted_out:
        return "opt_out"
    if ctx.history_events < rules.warm_up_events:
        return "warm_up"
    if harmed and atype in MARKETING:
        return "harm_guard"
    last = ctx.last_action_ms.get(atype)
    if last is not None and ctx.event_time_ms - last < rules.cooldown_ms.get(atype, 0):
        return "cooldown"
    if ctx.day_count >= rules.daily_cap:
        return "daily_cap"
    return None


def decide(
    scores: Mapping[str, float],
    ctx: PolicyContext,
    rules: Rules,
    top_features: list[str] | None = None,
) -> Decision:
    """Pick at most one action: the highest-scoring candidate that every rule allows."""
    rejections: dict[str, int] = {}
    candidates = []
    for atype in ACTION_TYPES:
        if scores.get(atype, 0.0) >= rules.min_score.get(atype, 1.0):
            candidates.append(atype)
        elif scores.get(atype, 0.0) >= 0.5 * rules.min_score.get(atype, 1.0):
            # Near misses are counted so the thresholds can be tuned from metrics.
            rejections["min_score"] = rejections.get("min_score", 0) + 1
    candidates.sort(key=lambda a: scores[a], reverse=True)
    if not candidates:
        return Decision(None, [], rejections)
    harmed = bool(harm_signals(scores, ctx, rules))
    suppressed: list[tuple[str, str]] = []
    for atype in candidates:
        rule = _blocking_rule(atype, ctx, rules, harmed)
        if rule is not None:
            rejections[rule] = rejections.get(rule, 0) + 1
            suppressed.append((atype, rule))
            continue
        reasons = [f"feature:{name}" for name in (top_features or [])]
        reasons += _RULE_REASONS
        if harmed:
            reasons.append("harm_guard:marketing_blocked")
        return Decision(atype, reasons, rejections, suppressed)
    return Decision(None, [], rejections, suppressed)


_RULE_REASONS = [f"rule:{name}" for name in RULES]
