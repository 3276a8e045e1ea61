"""The synthetic true effect of delivered actions (shared/journeys.py, issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared import journeys
from shared.outcomes import OUTCOMES

WINDOW = 15 * 60_000


def test_an_effect_is_deterministic_inside_the_window_and_before_the_newest_event() -> None:
    drawn = [
        journeys.draw_effect(7, f"act-{i}", "p", "break_suggestion", 1_000_000, WINDOW, 10**12, 0.4)
        for i in range(2000)
    ]
    assert drawn == [
        journeys.draw_effect(7, f"act-{i}", "p", "break_suggestion", 1_000_000, WINDOW, 10**12, 0.4)
        for i in range(2000)
    ]
    hits = [e.at_ms for e in drawn if e.at_ms is not None]
    assert 0.36 < len(hits) / 2000 < 0.44  # q = 0.4
    assert all(1_000_000 < t <= 1_000_000 + WINDOW for t in hits)
    # a player whose newest event comes 5 minutes after the trigger: the added event precedes it
    late = [
        journeys.draw_effect(7, f"act-{i}", "p", "break_suggestion", 1_000_000, WINDOW, 1_300_000, 0.4)
        for i in range(500)
    ]
    assert all(e.at_ms is None or 1_000_000 < e.at_ms < 1_300_000 for e in late)
    # no room: the trigger was the player's newest event
    assert journeys.draw_effect(7, "a", "p", "help_offer", 5, WINDOW, 6, 1.0).at_ms is None
    assert not journeys.has_room(5, 6) and journeys.has_room(5, 7) and not journeys.has_room(5, None)
    assert all(
        e.at_ms is None
        for e in (journeys.draw_effect(7, f"a{i}", "p", "x", 0, WINDOW, 10**9, 0.0) for i in range(100))
    )


def test_natural_outcomes_and_the_true_uplift_from_the_journeys() -> None:
    start = datetime(2030, 3, 14, tzinfo=UTC)
    js = journeys.generate(20, 3, start, timedelta(days=1))
    outcomes = journeys.Outcomes(js)
    j = next(j for j in js if any(e["type"] == "session.ended" for e in j.events))
    k = next(i for i, e in enumerate(j.events) if e["type"] == "session.ended")
    t_end = j.times_ms[k]
    assert outcomes.met_naturally(j.player_id, "session.ended", t_end - 1, 1)
    assert not outcomes.met_naturally(j.player_id, "session.ended", t_end, WINDOW)  # strictly after t0
    assert outcomes.last_ms(j.player_id) == max(
        t for e, t in zip(j.events, j.times_ms, strict=True) if e["type"] not in journeys.NOISE_TYPES
    )
    assert (
        journeys.true_uplift([(False, True, 0.4), (True, True, 0.4), (False, False, 0.4), (False, True, 0.4)])
        == 0.2
    )
    assert journeys.true_uplift([]) is None
    e = journeys.draw_effect(3, "act-x", j.player_id, "help_offer", t_end - 10_000, WINDOW, t_end, 1.0)
    event = journeys.outcome_event(e, OUTCOMES["help_offer"].event)
    assert (
        event["type"] == "deposit.made" and event["id"] == "outcome-act-x" and event["subject"] == j.player_id
    )
