"""Each guardrail blocks what it should, is named when it does, and lets the rest through."""

from __future__ import annotations

from shared.policy import BONUS, BREAK, HELP, RULES, PolicyContext, Rules, decide

T = 1_700_000_000_000


def ctx(**kw) -> PolicyContext:
    base = dict(
        event_time_ms=T, day_count=0, last_action_ms={}, opted_out=False, history_events=50, features={}
    )
    base.update(kw)
    return PolicyContext(**base)


def test_highest_scoring_allowed_candidate_wins_and_lists_every_rule() -> None:
    d = decide({BREAK: 0.7, HELP: 0.9, BONUS: 0.1}, ctx(), Rules(), ["net_loss"])
    assert d.action_type == HELP
    assert d.reasons[0] == "feature:net_loss"
    assert [r for r in d.reasons if r.startswith("rule:")] == [f"rule:{r}" for r in RULES]


def test_min_score() -> None:
    d = decide({BREAK: 0.5, HELP: 0.1, BONUS: 0.1}, ctx(), Rules())
    assert d.action_type is None and d.rejections == {"min_score": 1}


def test_kill_switch_falls_back_to_next_candidate() -> None:
    d = decide({BREAK: 0.9, HELP: 0.8, BONUS: 0.0}, ctx(), Rules(disabled=frozenset({BREAK})))
    assert d.action_type == HELP and d.rejections == {"kill_switch": 1}


def test_opt_out_blocks_everything() -> None:
    d = decide({BREAK: 0.9, HELP: 0.8, BONUS: 0.7}, ctx(opted_out=True), Rules())
    assert d.action_type is None and d.rejections == {"opt_out": 3}


def test_warm_up() -> None:
    d = decide({BREAK: 0.9}, ctx(history_events=2), Rules(warm_up_events=6))
    assert d.action_type is None and d.rejections == {"warm_up": 1}


def test_harm_guard_never_lets_a_bonus_through_but_allows_safer_play() -> None:
    harmed = ctx(features={"deposit_failures": 3.0})
    d = decide({BONUS: 0.95, BREAK: 0.1}, harmed, Rules())
    assert d.action_type is None and d.rejections == {"harm_guard": 1}
    d = decide({BONUS: 0.95, BREAK: 0.6}, harmed, Rules())
    assert d.action_type == BREAK and "harm_guard:marketing_blocked" in d.reasons
    d = decide({BONUS: 0.95}, ctx(), Rules())
    assert d.action_type == BONUS


def test_high_break_score_alone_is_a_harm_signal() -> None:
    d = decide({BONUS: 0.9, BREAK: 0.45}, ctx(), Rules())
    assert d.action_type is None and d.rejections == {"harm_guard": 1, "min_score": 1}


def test_cooldown_is_per_type() -> None:
    recent = ctx(last_action_ms={BREAK: T - 10 * 60_000})
    d = decide({BREAK: 0.9, HELP: 0.1}, recent, Rules())
    assert d.action_type is None and d.rejections == {"cooldown": 1}
    d = decide({BREAK: 0.9, HELP: 0.8}, recent, Rules())
    assert d.action_type == HELP
    old = ctx(last_action_ms={BREAK: T - 31 * 60_000})
    assert decide({BREAK: 0.9}, old, Rules()).action_type == BREAK


def test_daily_cap() -> None:
    d = decide({BREAK: 0.9}, ctx(day_count=3), Rules(daily_cap=3))
    assert d.action_type is None and d.rejections == {"daily_cap": 1}
    assert decide({BREAK: 0.9}, ctx(day_count=2), Rules(daily_cap=3)).action_type == BREAK


def test_stale_events_never_become_actions() -> None:
    d = decide({BREAK: 0.9, HELP: 0.8}, ctx(lag_ms=20 * 60_000), Rules(stale_after_ms=15 * 60_000))
    assert d.action_type is None and d.rejections == {"stale": 2}
    assert decide({BREAK: 0.9}, ctx(lag_ms=60_000), Rules()).action_type == BREAK
    assert decide({BREAK: 0.9}, ctx(lag_ms=None), Rules()).action_type == BREAK  # enqueued time unknown
