"""Outcome definitions: what counts as "it worked" for each action type.

An action (or a holdout decision) of type A decided on a trigger at event time
``t0`` *meets* its outcome when the entity sees an event of ``OUTCOMES[A].event``
of the same player with ``t0 < t <= t0 + window`` (event time). Late events
still count up to a grace after the window (shared.entity: OUTCOME_GRACE_MS).
The daily summary compares the met rate of treated and held-out decisions
(docs/workflows.md). The definitions are code, not settings: changing one
changes what every past document's ``outcome.name`` means, so a new definition
gets a new name.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.eventtypes import BY_NAME
from shared.policy import ACTION_TYPES, BONUS, BREAK, HELP

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True)
class OutcomeDef:
    action_type: str
    event: str  # CloudEvents ``type`` name of the meeting event
    window_ms: int
    name: str
    description: str


OUTCOMES: dict[str, OutcomeDef] = {
    BREAK: OutcomeDef(
        BREAK,
        "session.ended",
        15 * MINUTE_MS,
        "session_end_15m",
        "the player stops within 15 minutes",
    ),
    HELP: OutcomeDef(
        HELP,
        "deposit.made",
        30 * MINUTE_MS,
        "deposit_30m",
        "a deposit goes through within 30 minutes: the payment problem is solved",
    ),
    BONUS: OutcomeDef(
        BONUS,
        "session.started",
        72 * HOUR_MS,
        "return_3d",
        "the player comes back within 3 days",
    ),
}


def window_end_ms(action_type: str, t_ms: int) -> int:
    """End (inclusive) of the outcome window of an ``action_type`` decided on a trigger at ``t_ms``."""
    return t_ms + OUTCOMES[action_type].window_ms


def _check() -> None:
    if set(OUTCOMES) != set(ACTION_TYPES):
        raise RuntimeError("shared.outcomes.OUTCOMES must define exactly one outcome per action type")
    for atype, d in OUTCOMES.items():
        if d.action_type != atype or d.event not in BY_NAME or d.window_ms <= 0:
            raise RuntimeError(f"shared.outcomes.OUTCOMES[{atype!r}] is inconsistent")
    if len({d.name for d in OUTCOMES.values()}) != len(OUTCOMES):
        raise RuntimeError("shared.outcomes.OUTCOMES names must be unique")


_check()
