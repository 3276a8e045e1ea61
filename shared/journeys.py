"""Seeded synthetic player journeys whose hidden state drives events and labels.

There is no labelled production data, so the model is trained on simulated
players. Each player has a hidden state that changes during the journey and
decides how the player behaves, and therefore which events the simulator emits:

- ``fine``: stable stakes, moderate sessions, occasional deposits/withdrawals.
- ``tilting`` (loss chasing): entered after a big loss; stakes rise after each
  loss, rounds come fast, a high-volatility game gives long loss streaks, money
  runs out and is topped up by rapid deposits (often failing) and by reversing
  pending withdrawals. Sessions run long. Label ``break_suggestion``.
- ``newcomer`` (confused newcomer): the journey starts at registration; tiny and
  erratic stakes, slow rounds, failing deposits, very short sessions that end
  abruptly. Graduates to ``fine`` after a few sessions. Label ``help_offer``.
- ``disengaging``: entered after some normal sessions; every further session is
  shorter with fewer, slower rounds, and the gaps between sessions grow.
  Label ``bonus_offer``.

The same hidden state labels every event (``Journey.truth``), so training can
label a trigger with the state the player was in when it fired. Players are
simulated independently from ``(seed, player index)``: a journey does not depend
on how many other players were generated, and a seed always gives the same
events, ids and times. Nothing is emitted after ``start + duration``.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import make_event
from shared.eventtypes import BY_NAME

FINE, TILTING, NEWCOMER, DISENGAGING = "fine", "tilting", "newcomer", "disengaging"
STATES: tuple[str, ...] = (FINE, TILTING, NEWCOMER, DISENGAGING)
LABELS: tuple[str, ...] = ("none", "break_suggestion", "help_offer", "bonus_offer")
STATE_TO_LABEL: dict[str, str] = {
    FINE: "none",
    TILTING: "break_suggestion",
    NEWCOMER: "help_offer",
    DISENGAGING: "bonus_offer",
}

# A profile is what kind of player someone is; the state is what they are now.
STEADY, TILT_PRONE, FADER, NEW = "steady", "tilt_prone", "fader", "newcomer"
PROFILES: tuple[str, ...] = (STEADY, TILT_PRONE, FADER, NEW)
DEFAULT_MIX: dict[str, float] = {STEADY: 0.3, TILT_PRONE: 0.2, FADER: 0.25, NEW: 0.25}
NOISE_TYPES: tuple[str, ...] = ("page.viewed", "heartbeat")

_RTP = 0.95
_MS_PER_H = 3_600_000
_GAMES = ("slots", "roulette", "blackjack", "crash")
_VOLATILE_GAME = "slots-megaways"
_TILT_FAIL_REASONS = ("insufficient_funds", "limit_reached", "card_declined")
_NEW_FAIL_REASONS = ("invalid_card", "3ds_failed", "card_declined", "insufficient_funds")
_PAGES = ("/lobby", "/help", "/cashier", "/promotions", "/account")


@dataclass
class Journey:
    """One player's events (CloudEvent dicts, time-ordered) and hidden state per event."""

    player_id: str
    profile: str
    events: list[dict[str, Any]] = field(default_factory=list)
    truth: list[str] = field(default_factory=list)
    times_ms: list[int] = field(default_factory=list)

    def labels(self) -> list[str]:
        """The action label of each event (``STATE_TO_LABEL`` of its hidden state)."""
        return [STATE_TO_LABEL[s] for s in self.truth]


@dataclass(frozen=True)
class _Funding:
    """How a player in one state tops up: willingness, retries, failure odds."""

    want: float
    attempts: int
    fail: float
    retry_s: tuple[float, float]
    reasons: tuple[str, ...]


_FUNDING: dict[str, _Funding] = {
    FINE: _Funding(0.6, 2, 0.03, (20.0, 90.0), ("card_declined",)),
    TILTING: _Funding(0.97, 6, 0.35, (4.0, 40.0), _TILT_FAIL_REASONS),
    NEWCOMER: _Funding(0.9, 4, 0.35, (20.0, 150.0), _NEW_FAIL_REASONS),
    DISENGAGING: _Funding(0.35, 1, 0.05, (30.0, 90.0), ("card_declined",)),
}


class _WindowEnd(Exception):
    """The next event would fall after the window: the journey stops there."""


class _Player:
    """Simulates one player; ``run`` fills a Journey until the window ends."""

    def __init__(
        self,
        journey: Journey,
        idx: int,
        rng: random.Random,
        start_ms: int,
        end_ms: int,
        id_prefix: str,
        noise_share: float,
        traceparent_share: float,
    ) -> None:
        self.j, self.idx, self.rng = journey, idx, rng
        self.end_ms, self.id_prefix = end_ms, id_prefix
        self.noise_share, self.traceparent_share = noise_share, traceparent_share
        self.n = 0
        self.sessions = 0
        self.session_no = 0
        self.pending_withdrawal = 0.0
        self.opted_out = False
        self.fade_level = 0
        self._set_traits(newcomer=journey.profile == NEW)
        self.state = NEWCOMER if journey.profile == NEW else FINE
        self.balance = 0.0 if self.state == NEWCOMER else round(self.base * rng.uniform(10, 50), 2)
        span = end_ms - start_ms
        first = (
            rng.uniform(0, 0.7 * span)
            if self.state == NEWCOMER
            else rng.uniform(0, min(0.1 * span, 12 * _MS_PER_H))
        )
        self.t = start_ms + int(first)
        self.graduate_after = rng.randint(2, 6)
        self.fade_after = rng.randint(2, 4)
        self.tilt_odds = 0.5 if journey.profile == TILT_PRONE else 0.01

    def _set_traits(self, newcomer: bool) -> None:
        rng = self.rng
        # Wide per-player spreads so that no single feature separates the states.
        if newcomer:
            self.base = rng.uniform(0.1, 0.8)
            self.rpm = 1.6 * math.exp(rng.gauss(0.0, 0.4))
            self.session_min = rng.uniform(2.0, 10.0)
            self.gap_h = rng.uniform(1.0, 12.0)
            self.stake_sigma = rng.uniform(0.4, 1.1)
        else:
            self.base = max(0.1, round(math.exp(rng.gauss(0.0, 0.9)), 2))
            self.rpm = 4.0 * math.exp(rng.gauss(0.0, 0.35))
            self.session_min = 15.0 * math.exp(rng.gauss(0.0, 0.5))
            self.gap_h = 8.0 * math.exp(rng.gauss(0.0, 0.6))
            self.stake_sigma = rng.uniform(0.0, 0.3)
        self.volatile_taste = rng.uniform(0.0, 0.2)
        self.level = 1.0

    # -- emission -------------------------------------------------------------
    def emit(self, etype: str, data: dict[str, Any] | None = None, after_s: float = 0.0) -> None:
        """Append one event ``after_s`` seconds after the previous one, or end the journey."""
        t = self.t + int(after_s * 1000)
        if t > self.end_ms:
            raise _WindowEnd
        self.t = t
        self._append(etype, data)
        if self.rng.random() < self.noise_share:
            self._noise()

    def _append(self, etype: str, data: dict[str, Any] | None) -> None:
        self.n += 1
        rng = self.rng
        traceparent = None
        if rng.random() < self.traceparent_share:
            traceparent = f"00-{rng.getrandbits(128) | 1:032x}-{rng.getrandbits(64) | 1:016x}-01"
        when = datetime.fromtimestamp(self.t / 1000, tz=UTC)
        event_id = f"{self.id_prefix}-{self.idx:05d}-{self.n}"
        self.j.events.append(
            make_event(
                event_id,
                etype,
                self.j.player_id,
                when,
                data,
                source="/games/casino-eu",
                traceparent=traceparent,
            )
        )
        self.j.truth.append(self.state)
        self.j.times_ms.append(self.t)

    def _noise(self) -> None:
        """An event of a type the router drops (page views, heartbeats)."""
        t = self.t + int(self.rng.uniform(0.5, 20.0) * 1000)
        if t > self.end_ms:
            return
        self.t = t
        if self.rng.random() < 0.5:
            self._append("page.viewed", {"path": self.rng.choice(_PAGES)})
        else:
            self._append("heartbeat", None)

    # -- the journey ------------------------------------------------------------
    def run(self) -> None:
        try:
            while True:
                self._before_session()
                self._session()
                self._after_session()
                self.t += int(self._gap_h() * _MS_PER_H)
        except _WindowEnd:
            return

    def _before_session(self) -> None:
        rng = self.rng
        if self.pending_withdrawal > 0 and self.state != TILTING:
            if rng.random() < 0.03:
                self._reverse_withdrawal(after_s=rng.uniform(5, 60))
            else:
                self.pending_withdrawal = 0.0  # paid out; no event
        bonus_odds = {
            FINE: 0.08,
            TILTING: 0.15,
            NEWCOMER: 0.3 if self.sessions == 0 else 0.05,
            DISENGAGING: 0.05,
        }
        if rng.random() < bonus_odds[self.state]:
            amount = round(self.base * rng.uniform(5, 20), 2)
            self.emit("bonus.claimed", {"bonusId": f"b-{rng.getrandbits(32):08x}", "amount": amount})
            self.balance += amount
        if self.opted_out and rng.random() < 0.3:
            self.emit("player.optin", None, after_s=rng.uniform(1, 30))
            self.opted_out = False

    def _session(self) -> None:
        rng = self.rng
        self.session_no += 1
        sid = f"s-{self.idx:05d}-{self.session_no}"
        self.emit("session.started", {"sessionId": sid}, after_s=rng.uniform(1, 60))
        self.sessions += 1
        if self.state == TILTING and self.pending_withdrawal > 0 and rng.random() < 0.8:
            self._reverse_withdrawal(after_s=rng.uniform(3, 30))
        self.session_start_ms = self.t
        self.session_budget_ms = int(self._session_minutes() * 60_000)
        self.session_funds = self.balance
        self.session_net = 0.0
        self.streak = 0
        self.chase = 1.0
        self.tilt_rounds = 0
        self.session_deposits = 0
        self.session_withdrew = False
        self.big_loss_seen = False
        if self.balance < 3 * self._stake_floor() and not self._fund():
            self.emit("session.ended", {"sessionId": sid}, after_s=rng.uniform(5, 60))
            return
        while self._round(sid) and not self._session_over():
            pass
        self.emit("session.ended", {"sessionId": sid}, after_s=rng.uniform(2, 30))

    def _after_session(self) -> None:
        rng = self.rng
        if self.state in (FINE, DISENGAGING) and self.balance > 40 * self.base and rng.random() < 0.4:
            amount = round(self.balance * rng.uniform(0.5, 0.9), 2)
            self.emit("withdrawal.requested", {"amount": amount}, after_s=rng.uniform(5, 120))
            self.balance -= amount
            self.pending_withdrawal += amount
        if rng.random() < 0.02:
            response = "accepted" if rng.random() < 0.4 else "dismissed"
            self.emit(
                "action.responded",
                {"actionId": f"act-{rng.getrandbits(64):016x}", "response": response},
                after_s=rng.uniform(5, 90),
            )
        if not self.opted_out and rng.random() < 0.004:
            self.emit("player.optout", None, after_s=rng.uniform(5, 60))
            self.opted_out = True
        self._transition_after_session()

    def _transition_after_session(self) -> None:
        rng = self.rng
        if self.state == TILTING and rng.random() < 0.5:
            self.state = FINE
        elif self.state == NEWCOMER and self.sessions >= self.graduate_after:
            self.state = FINE
            self._set_traits(newcomer=False)
        elif self.j.profile == FADER and self.state == FINE and self.sessions >= self.fade_after:
            self.state = DISENGAGING
        if self.state == DISENGAGING:
            self.fade_level += 1

    # -- per-state behaviour ----------------------------------------------------
    def _gap_h(self) -> float:
        rng = self.rng
        if self.state == TILTING:
            return rng.uniform(0.2, 3.0)
        if self.state == NEWCOMER:
            return min(48.0, max(0.3, self.gap_h * math.exp(rng.gauss(0, 0.6))))
        if self.state == DISENGAGING:
            return self.gap_h * 1.5**self.fade_level * math.exp(rng.gauss(0, 0.4))
        return min(72.0, max(0.5, self.gap_h * math.exp(rng.gauss(0, 0.5))))

    def _session_minutes(self) -> float:
        scale = 0.75**self.fade_level if self.state == DISENGAGING else 1.0
        return max(1.0, self.session_min * scale * math.exp(self.rng.gauss(0, 0.45)))

    def _rounds_per_minute(self) -> float:
        if self.state == TILTING:
            return self.rpm * min(1.5, 1.0 + 0.03 * self.tilt_rounds)  # speeds up as the chase goes on
        if self.state == DISENGAGING:
            return self.rpm * 0.85**self.fade_level
        return self.rpm

    def _stake_floor(self) -> float:
        return max(0.1, self.base)

    def _stake(self) -> float:
        rng = self.rng
        if self.state == TILTING:
            raw = self.base * self.chase * rng.uniform(0.9, 1.1)
        elif self.state == NEWCOMER:
            raw = self.base * math.exp(rng.gauss(0, self.stake_sigma))
        else:
            if rng.random() < 0.04:
                self.level = min(2.0, max(0.5, self.level * rng.choice((0.5, 2.0))))
            raw = self.base * self.level * math.exp(rng.gauss(0, self.stake_sigma))
        return max(0.1, round(raw, 2))

    def _round(self, sid: str) -> bool:
        """Play one round; False when the player cannot or will not fund it."""
        rng = self.rng
        stake = self._stake()
        if stake > self.balance:
            self._maybe_tilt(big_loss=True)
            if not self._fund():
                return False
            stake = max(0.1, round(min(stake, self.balance), 2))
        # Chasers drift to high-volatility games (long loss streaks); others visit them too.
        volatile = rng.random() < (0.7 if self.state == TILTING else self.volatile_taste)
        game = _VOLATILE_GAME if volatile else rng.choice(_GAMES)
        hit = 0.12 if volatile else 0.3
        payout = round(stake * rng.expovariate(hit / _RTP), 2) if rng.random() < hit else 0.0
        self.balance += payout - stake
        self.session_net += payout - stake
        gap_s = max(2.0, rng.expovariate(self._rounds_per_minute() / 60.0))
        self.emit(
            "round.completed",
            {"sessionId": sid, "game": game, "stake": stake, "payout": payout},
            after_s=gap_s,
        )
        self._after_round(stake, payout)
        return True

    def _after_round(self, stake: float, payout: float) -> None:
        rng = self.rng
        self.streak = self.streak + 1 if payout < stake else 0
        if self.state == TILTING:
            self.tilt_rounds += 1
            self.chase = (
                min(15.0, self.chase * rng.uniform(1.03, 1.3))
                if payout < stake
                else max(1.0, self.chase * 0.9)
            )
            if (
                not self.session_withdrew
                and self.pending_withdrawal == 0
                and self.balance > 2 * max(self.session_funds, self.base * 10)
                and rng.random() < 0.3
            ):
                self.session_withdrew = True
                amount = round(self.balance * 0.7, 2)
                self.emit("withdrawal.requested", {"amount": amount}, after_s=rng.uniform(3, 30))
                self.balance -= amount
                self.pending_withdrawal = amount
        else:
            self._maybe_tilt(big_loss=self.session_net <= -15 * self.base and self.streak >= 4)

    def _maybe_tilt(self, big_loss: bool) -> None:
        """The first big loss of a session can flip a settled player into chasing it."""
        if not big_loss or self.big_loss_seen or self.state != FINE:
            return
        self.big_loss_seen = True
        if self.rng.random() < self.tilt_odds:
            self.state = TILTING
            self.chase = 1.0
            self.tilt_rounds = 0

    def _session_over(self) -> bool:
        rng = self.rng
        elapsed = self.t - self.session_start_ms
        if self.state == TILTING:
            return elapsed > 90 * 60_000 or rng.random() < 0.005
        if self.state == NEWCOMER and rng.random() < 0.06:
            return True  # confused, leaves abruptly
        return elapsed >= self.session_budget_ms

    def _fund(self) -> bool:
        """Top up the balance the way the current state does; False if it stays empty."""
        rng = self.rng
        if self.state == TILTING and self.pending_withdrawal > 0:
            self._reverse_withdrawal(after_s=rng.uniform(3, 20))
            return True
        policy = _FUNDING[self.state]
        if rng.random() > policy.want:
            return False
        for attempt in range(policy.attempts):
            amount = self._deposit_amount(attempt)
            after = rng.uniform(*policy.retry_s)
            # Card limits bite harder with every deposit in the same session.
            if rng.random() < min(0.9, policy.fail + 0.1 * self.session_deposits):
                self.emit(
                    "deposit.failed", {"amount": amount, "reason": rng.choice(policy.reasons)}, after_s=after
                )
                continue
            self.emit("deposit.made", {"amount": amount}, after_s=after)
            self.balance += amount
            self.session_deposits += 1
            return True
        return False

    def _deposit_amount(self, attempt: int) -> float:
        rng = self.rng
        if self.state == NEWCOMER:
            return round(rng.uniform(5, 30), 2)
        if self.state == TILTING:
            return round(self.base * self.chase * rng.uniform(5, 15) * (1 + 0.3 * attempt), 2)
        return round(self.base * rng.uniform(20, 60), 2)

    def _reverse_withdrawal(self, after_s: float) -> None:
        amount = round(self.pending_withdrawal, 2)
        self.emit("withdrawal.reversed", {"amount": amount}, after_s=after_s)
        self.balance += amount
        self.pending_withdrawal = 0.0


def _id_prefix(seed: int) -> str:
    """Event ids carry a digest of the seed so journeys of different seeds never share ids."""
    return "e" + hashlib.blake2b(str(seed).encode(), digest_size=4).hexdigest()


def _pick_profile(rng: random.Random, mix: Mapping[str, float]) -> str:
    names = [p for p in PROFILES if mix.get(p, 0.0) > 0]
    if not names:
        raise ValueError(f"mix needs a positive weight for one of {PROFILES}")
    return rng.choices(names, weights=[mix[p] for p in names])[0]


def generate(
    n_players: int,
    seed: int,
    start: datetime,
    duration: timedelta,
    *,
    mix: Mapping[str, float] | None = None,
    player_offset: int = 0,
    noise_share: float = 0.04,
    traceparent_share: float = 0.05,
) -> list[Journey]:
    """Journeys of ``n_players`` players (ids ``player-00000`` + offset) within the window.

    ``mix`` weighs the profiles (``PROFILES``); every event time lies in
    ``[start, start + duration]``.
    """
    unknown = set(mix or {}) - set(PROFILES)
    if unknown:
        raise ValueError(f"unknown profiles {sorted(unknown)}; known: {PROFILES}")
    weights = dict(mix) if mix else DEFAULT_MIX
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    end_ms = start_ms + int(duration.total_seconds() * 1000)
    prefix = _id_prefix(seed)
    journeys = []
    for i in range(n_players):
        idx = player_offset + i
        rng = random.Random(f"{seed}:{idx}")
        journey = Journey(player_id=f"player-{idx:05d}", profile=_pick_profile(rng, weights))
        _Player(journey, idx, rng, start_ms, end_ms, prefix, noise_share, traceparent_share).run()
        journeys.append(journey)
    return journeys


def interleave(journeys: Iterable[Journey]) -> Iterator[dict[str, Any]]:
    """All players' events merged by event time (ties by player, then order), as a stream."""

    def stream(player: int, j: Journey) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
        # A function, not a nested generator expression: each stream must bind its own player
        # index (a generator expression would read the loop variable late, making every key the
        # last player's, so ties fell through to comparing the event dicts).
        for k, (t, ev) in enumerate(zip(j.times_ms, j.events, strict=True)):
            yield t, player, k, ev

    for _t, _p, _k, ev in heapq.merge(*(stream(p, j) for p, j in enumerate(journeys))):
        yield ev


# -- responses to actions ------------------------------------------------------------------------
#
# A player who receives an action may answer it (``action.responded``: accepted or dismissed). How
# likely is set by the action type and the player's hidden state when the action was triggered:
# (probability of answering at all, probability that an answer is "accepted"). A suggestion that
# fits the state is answered and taken more often; a bonus appeals to every state (which is why the
# harm guard keeps it from tilting players).
ACCEPTANCE: dict[tuple[str, str], tuple[float, float]] = {
    ("break_suggestion", TILTING): (0.8, 0.6),
    ("break_suggestion", FINE): (0.5, 0.15),
    ("break_suggestion", NEWCOMER): (0.5, 0.2),
    ("break_suggestion", DISENGAGING): (0.4, 0.1),
    ("help_offer", NEWCOMER): (0.85, 0.65),
    ("help_offer", FINE): (0.5, 0.1),
    ("help_offer", TILTING): (0.3, 0.1),
    ("help_offer", DISENGAGING): (0.4, 0.15),
    ("bonus_offer", DISENGAGING): (0.75, 0.55),
    ("bonus_offer", FINE): (0.7, 0.3),
    ("bonus_offer", TILTING): (0.7, 0.5),
    ("bonus_offer", NEWCOMER): (0.6, 0.35),
}
RESPONSE_DELAY_S: tuple[float, float] = (5.0, 1800.0)  # log-uniform: seconds to half an hour


@dataclass(frozen=True)
class Response:
    """A drawn response to one action: whether the player answers, which answer, after how long."""

    action_id: str
    player_id: str
    responds: bool
    accepted: bool
    delay_ms: int
    p_respond: float
    p_accept: float

    @property
    def p_accepted(self) -> float:
        """The probability that this action ends up accepted (answered, and answered yes)."""
        return self.p_respond * self.p_accept


def draw_response(seed: int, action_id: str, player_id: str, action_type: str, state: str) -> Response:
    """The response to one action: deterministic from (seed, action id), whatever else was drawn."""
    p_respond, p_accept = ACCEPTANCE[(action_type, state)]
    rng = random.Random(f"response:{seed}:{action_id}")
    responds = rng.random() < p_respond
    accepted = rng.random() < p_accept
    low, high = RESPONSE_DELAY_S
    delay_s = math.exp(rng.uniform(math.log(low), math.log(high)))
    return Response(
        action_id, player_id, responds, responds and accepted, int(delay_s * 1000), p_respond, p_accept
    )


def truth_by_event(journeys: Iterable[Journey]) -> dict[str, str]:
    """Every event id's hidden state (what the player was when that event happened)."""
    return {ev["id"]: state for j in journeys for ev, state in zip(j.events, j.truth, strict=True)}


def response_event(response: Response, at: datetime) -> dict[str, Any]:
    """The ``action.responded`` CloudEvent of an answered action, at ``at``."""
    return make_event(
        f"resp-{response.action_id}",
        "action.responded",
        response.player_id,
        at,
        {"actionId": response.action_id, "response": "accepted" if response.accepted else "dismissed"},
        source="/apps/player-app",
    )


# -- the true effect of a delivered action (issue 18) ----------------------------------------------
#
# The journeys are generated before the run and do not react to actions. The effect of an action is
# therefore added after the run (devhost/responder.py), as its outcome's event (shared.outcomes: a
# break suggestion -> session.ended within 15 minutes, a help offer -> deposit.made within 30
# minutes, a bonus offer -> session.started within 72 hours): a *delivered* action (group
# "treated", never a held-out decision) makes its outcome happen, when it would not have happened
# anyway, with probability TRUE_EFFECT[type]. The uplift a randomized holdout should find over a set
# of decisions is then known exactly: q times the share of them whose outcome the journey does not
# already hold (``true_uplift``).
TRUE_EFFECT: dict[str, float] = {"break_suggestion": 0.4, "help_offer": 0.4, "bonus_offer": 0.8}
# The event types the router passes to the entities (shared.eventtypes): the player's newest event
# the entity knows of is the newest of these (page views and heartbeats are dropped before it).
_ROUTED: frozenset[str] = frozenset(BY_NAME)


@dataclass(frozen=True)
class Effect:
    """The drawn effect of one delivered action: whether it makes its outcome happen, and when."""

    action_id: str
    player_id: str
    action_type: str
    at_ms: int | None  # the outcome event's time, None: no effect (not drawn, or no room for it)
    q: float


class Outcomes:
    """Per player, the times of the journey's events of each type the entity sees, to tell whether a
    decision's outcome happens without any action (``met_naturally``) and how late an added event
    may be so it is never the player's newest (``last_ms``): an older event never triggers scoring."""

    def __init__(self, journeys: Iterable[Journey]) -> None:
        self.times: dict[str, dict[str, list[int]]] = {}
        self.last: dict[str, int] = {}
        for j in journeys:
            per: dict[str, list[int]] = {}
            for ev, t in zip(j.events, j.times_ms, strict=True):
                if ev["type"] in _ROUTED:
                    per.setdefault(ev["type"], []).append(t)
                    self.last[j.player_id] = max(self.last.get(j.player_id, t), t)
            self.times[j.player_id] = per

    def last_ms(self, player_id: str) -> int | None:
        return self.last.get(player_id)

    def met_naturally(self, player_id: str, event_type: str, t0_ms: int, window_ms: int) -> bool:
        """Does the journey hold an ``event_type`` event with ``t0 < t <= t0 + window``?"""
        times = self.times.get(player_id, {}).get(event_type, [])
        k = bisect.bisect_right(times, t0_ms)
        return k < len(times) and times[k] <= t0_ms + window_ms


def draw_effect(
    seed: int,
    action_id: str,
    player_id: str,
    action_type: str,
    t0_ms: int,
    window_ms: int,
    last_ms: int,
    q: float,
) -> Effect:
    """The effect of one delivered action, deterministic from (seed, action id): with probability
    ``q`` an outcome event at a uniform time in ``(t0, t0 + window]``, moved back to just before the
    player's newest event (``last_ms``, never after the run's end) when later; no room (the trigger
    was the player's newest event): no effect."""
    rng = random.Random(f"effect:{seed}:{action_id}")
    u = rng.random()
    at = t0_ms + 1 + int(rng.random() * window_ms)
    at = min(at, t0_ms + window_ms, last_ms - 1)
    if u >= q or at <= t0_ms:
        return Effect(action_id, player_id, action_type, None, q)
    return Effect(action_id, player_id, action_type, at, q)


def has_room(t0_ms: int, last_ms: int | None) -> bool:
    """Whether an added outcome event fits between the trigger and the player's newest event."""
    return last_ms is not None and last_ms - 1 > t0_ms


def true_uplift(expected_effects: Iterable[tuple[bool, bool, float]]) -> float | None:
    """The uplift a randomized comparison estimates over a set of decisions, from ground truth: per
    decision (met naturally, room for an added event, q), a delivered action raises the chance of
    its outcome by q when the journey does not meet it and there is room; the mean over them."""
    values = [(0.0 if met or not room else q) for met, room, q in expected_effects]
    return sum(values) / len(values) if values else None


def outcome_event(effect: Effect, event_type: str) -> dict[str, Any]:
    """The outcome's CloudEvent an effective action adds (id ``outcome-<action id>``)."""
    assert effect.at_ms is not None
    data: dict[str, Any]
    if event_type == "deposit.made":
        data = {"amount": 20.0}
    else:
        data = {"sessionId": f"s-effect-{effect.action_id[-12:]}"}
    return make_event(
        f"outcome-{effect.action_id}",
        event_type,
        effect.player_id,
        datetime.fromtimestamp(effect.at_ms / 1000, tz=UTC),
        data,
        source="/games/casino-eu",
    )
