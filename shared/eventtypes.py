"""The event types the engine uses: one table, read by ingest, the entity, features and training.

Each used CloudEvent type has one row in ``SPECS``: its numeric code (``EventType``,
stored in signals and in the entity's buffer), its CloudEvent ``type`` name, the
msgspec schema its ``data`` must satisfy, how two numbers and one reference are
lifted off that data for the entity, and whether the event always makes the
entity score. Adding an event type is adding one ``EventType`` member and one
row here (docs/contracts.md; README "How to add an event type").

Codes are stored in entity state: never renumber or reuse one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Literal

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e9)]


class EventType(IntEnum):
    SESSION_STARTED = 0
    SESSION_ENDED = 1
    ROUND = 2
    DEPOSIT = 3
    DEPOSIT_FAILED = 4
    WITHDRAWAL = 5
    WITHDRAWAL_REVERSED = 6
    BONUS = 7
    RESPONDED = 8
    OPT_OUT = 9
    OPT_IN = 10


# -- the data schema of each type ---------------------------------------------------------------
class NoData(msgspec.Struct, frozen=True):
    pass


class SessionData(msgspec.Struct, frozen=True):
    sessionId: NonEmpty | None = None


class RoundData(msgspec.Struct, frozen=True):
    stake: Money
    payout: Money
    game: NonEmpty
    sessionId: NonEmpty | None = None


class AmountData(msgspec.Struct, frozen=True):
    amount: Money


class DepositFailedData(msgspec.Struct, frozen=True):
    amount: Money
    reason: NonEmpty


class BonusData(msgspec.Struct, frozen=True):
    bonusId: NonEmpty | None = None
    amount: Money | None = None


class ActionRespondedData(msgspec.Struct, frozen=True):
    actionId: NonEmpty
    response: Literal["accepted", "dismissed"]


# What the entity keeps of an event's data: two numbers and an optional reference.
Lifted = tuple[float, float, str | None]


def _nothing(_: msgspec.Struct) -> Lifted:
    return 0.0, 0.0, None


def _round(d: RoundData) -> Lifted:
    return d.stake, d.payout, None


def _amount(d: AmountData | DepositFailedData) -> Lifted:
    return d.amount, 0.0, None


def _response(d: ActionRespondedData) -> Lifted:
    return (1.0 if d.response == "accepted" else 0.0), 0.0, d.actionId


@dataclass(frozen=True)
class EventSpec:
    code: EventType
    name: str  # the CloudEvent ``type``
    schema: type[msgspec.Struct]
    # a, b, ref for the entity (e.g. stake and payout of a round; the action id of a response)
    lift: Callable[[Any], Lifted]
    # Scores whenever it is the newest event (others trigger by rule: shared.entity.decide)
    always_triggers: bool = False


SPECS: tuple[EventSpec, ...] = (
    EventSpec(EventType.SESSION_STARTED, "session.started", SessionData, _nothing),
    EventSpec(EventType.SESSION_ENDED, "session.ended", SessionData, _nothing, always_triggers=True),
    EventSpec(EventType.ROUND, "round.completed", RoundData, _round),
    EventSpec(EventType.DEPOSIT, "deposit.made", AmountData, _amount, always_triggers=True),
    EventSpec(EventType.DEPOSIT_FAILED, "deposit.failed", DepositFailedData, _amount, always_triggers=True),
    EventSpec(EventType.WITHDRAWAL, "withdrawal.requested", AmountData, _amount),
    EventSpec(
        EventType.WITHDRAWAL_REVERSED, "withdrawal.reversed", AmountData, _amount, always_triggers=True
    ),
    EventSpec(EventType.BONUS, "bonus.claimed", BonusData, _nothing),
    EventSpec(EventType.RESPONDED, "action.responded", ActionRespondedData, _response),
    EventSpec(EventType.OPT_OUT, "player.optout", NoData, _nothing),
    EventSpec(EventType.OPT_IN, "player.optin", NoData, _nothing),
)

BY_NAME: dict[str, EventSpec] = {s.name: s for s in SPECS}
BY_CODE: dict[int, EventSpec] = {int(s.code): s for s in SPECS}
USED_TYPES = frozenset(BY_NAME)
ALWAYS_TRIGGER = frozenset(int(s.code) for s in SPECS if s.always_triggers)


def name_of(code: int) -> str:
    return BY_CODE[code].name


def _check() -> None:
    codes = [int(s.code) for s in SPECS]
    if sorted(codes) != sorted(int(c) for c in EventType) or len(set(codes)) != len(codes):
        raise RuntimeError("shared.eventtypes.SPECS must list every EventType exactly once")


_check()
