"""shared.outcomes: the outcome table the entity tracks and the summary evaluates."""

from __future__ import annotations

import pytest

from shared.eventtypes import BY_NAME
from shared.outcomes import OUTCOMES, OutcomeDef, window_end_ms
from shared.policy import ACTION_TYPES


def test_one_outcome_per_action_type_with_the_agreed_definitions() -> None:
    assert set(OUTCOMES) == set(ACTION_TYPES)
    assert (OUTCOMES["break_suggestion"].event, OUTCOMES["break_suggestion"].window_ms) == (
        "session.ended",
        15 * 60_000,
    )
    assert (OUTCOMES["help_offer"].event, OUTCOMES["help_offer"].window_ms) == ("deposit.made", 30 * 60_000)
    assert (OUTCOMES["bonus_offer"].event, OUTCOMES["bonus_offer"].window_ms) == (
        "session.started",
        72 * 3_600_000,
    )
    assert [OUTCOMES[a].name for a in ("break_suggestion", "help_offer", "bonus_offer")] == [
        "session_end_15m",
        "deposit_30m",
        "return_3d",
    ]
    for atype, d in OUTCOMES.items():
        assert isinstance(d, OutcomeDef) and d.action_type == atype and d.description
        assert d.event in BY_NAME


def test_window_end_adds_the_window_to_the_trigger_time() -> None:
    t = 1_700_000_000_123
    assert window_end_ms("break_suggestion", t) == t + 900_000
    assert window_end_ms("help_offer", t) == t + 1_800_000
    assert window_end_ms("bonus_offer", t) == t + 259_200_000


def test_unknown_action_type_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        window_end_ms("free_spins", 0)


def test_definitions_are_frozen() -> None:
    with pytest.raises(AttributeError):
        OUTCOMES["help_offer"].window_ms = 1  # type: ignore[misc]
