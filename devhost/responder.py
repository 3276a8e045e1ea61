"""The synthetic players' answers to the actions they received (``python -m devhost run --summary``).

The journeys are generated before the run, so they cannot contain answers to actions that do not
exist yet. After the run, the responder reads the actions that went out (``status`` pending, not
suppressed) back from Cosmos DB, looks up each player's hidden state at the action's trigger event
(``Journey.truth`` by event id), draws the answer from ``shared.journeys.ACCEPTANCE`` (deterministic
from the seed and the action id) and produces ``action.responded`` CloudEvents (subject = player,
time = the action's event time plus a drawn delay, never after the window's end) that go through
the same log, trigger and entities as every other event.

``expected`` gives, per action, the probability it ends up accepted, so a test can compare the
summary's acceptance rates with what the players were set up to do.

The actions' effect (issue 18): for every action that went out (group ``treated``; a held-out
decision never), ``shared.journeys.draw_effect`` decides from (seed, action id) whether it makes its
outcome happen (``TRUE_EFFECT[type]``), and when: inside the outcome window, and before the
player's newest event (so it is never after the run's end and never triggers scoring: only the
newest event can). Those outcome events are appended with the responses, after the run; the
entity counts them as late events while the outcome watch is open (its window plus a grace of
10 minutes of wall clock after the decision: the run's flow appends them seconds after the events
were processed). ``true_uplift`` gives the effect a holdout comparison must find, from ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from devhost.eventhubs.producers import SyntheticConfig
from shared import journeys
from shared.outcomes import OUTCOMES
from shared.timeutil import parse_iso_ms

MARKER = "responses_appended"  # meta key: the responses of this run are in the log
SENT_QUERY = (
    "SELECT c.id, c.playerId, c.type, c.triggerEventId, c.eventTime, c.status, c.group FROM c "
    "WHERE c.status IN ('pending', 'accepted', 'dismissed')"
)


class Planned(NamedTuple):
    """One event the synthetic players add after the run: an answer or an action's outcome."""

    player_id: str
    at_ms: int
    event: dict[str, Any]


def pending_actions(cosmos: Any) -> list[dict[str, Any]]:
    """Every action that went out and is still unanswered (the delivery service's view)."""
    query = "SELECT c.id, c.playerId, c.type, c.triggerEventId, c.eventTime FROM c WHERE c.status = 'pending'"
    rows = cosmos.query_items(query, enable_cross_partition_query=True)
    return sorted(rows, key=lambda r: str(r["id"]))


def plan(
    actions: Iterable[Mapping[str, Any]], truth: Mapping[str, str], seed: int, end_ms: int
) -> list[tuple[journeys.Response, int]]:
    """(response, event time ms) for every action answered; actions whose trigger is not a synthetic
    event (unknown id) get no answer."""
    out: list[tuple[journeys.Response, int]] = []
    for a in actions:
        state = truth.get(str(a.get("triggerEventId")))
        if state is None or (a.get("type"), state) not in journeys.ACCEPTANCE:
            continue
        response = journeys.draw_response(seed, str(a["id"]), str(a["playerId"]), str(a["type"]), state)
        if response.responds:
            at = min(parse_iso_ms(str(a["eventTime"])) + response.delay_ms, end_ms)
            out.append((response, at))
    return out


def expected(
    actions: Iterable[Mapping[str, Any]], truth: Mapping[str, str], seed: int
) -> dict[str, journeys.Response]:
    """Per action id, its drawn response (with the probabilities it was drawn from)."""
    out = {}
    for a in actions:
        state = truth.get(str(a.get("triggerEventId")))
        if state is not None and (a.get("type"), state) in journeys.ACCEPTANCE:
            out[str(a["id"])] = journeys.draw_response(
                seed, str(a["id"]), str(a["playerId"]), str(a["type"]), state
            )
    return out


def truth_of(config: SyntheticConfig) -> dict[str, str]:
    return journeys.truth_by_event(journeys_of(config))


def journeys_of(config: SyntheticConfig) -> list[journeys.Journey]:
    start = datetime.fromtimestamp(config.start_ms / 1000, tz=UTC)
    return journeys.generate(config.players, config.seed, start, timedelta(seconds=config.duration_s))


def effects(
    actions: Iterable[Mapping[str, Any]],
    outcomes: journeys.Outcomes,
    seed: int,
    table: Mapping[str, float] | None = None,
) -> list[journeys.Effect]:
    """The drawn effect of every delivered action (group ``treated``) of a known player; ``table``
    (default ``journeys.TRUE_EFFECT``, read at call time) gives q per type."""
    table = journeys.TRUE_EFFECT if table is None else table
    out = []
    for a in actions:
        atype, player = a.get("type"), str(a.get("playerId"))
        last = outcomes.last_ms(player)
        if a.get("group") != "treated" or atype not in OUTCOMES or last is None:
            continue
        out.append(
            journeys.draw_effect(
                seed,
                str(a["id"]),
                player,
                str(atype),
                parse_iso_ms(str(a["eventTime"])),
                OUTCOMES[str(atype)].window_ms,
                last,
                float(table.get(str(atype), 0.0)),
            )
        )
    return out


class Expected(NamedTuple):
    """What the ground truth says about one decision's outcome (sent or held out)."""

    base: bool  # met without this decision's own effect: by the journey or another action's effect
    met: bool  # what the document must say: base, or this action's own drawn effect
    room: bool  # an added event fits between the trigger and the player's newest event
    q: float


def expected_outcomes(
    decisions: Iterable[Mapping[str, Any]],
    outcomes: journeys.Outcomes,
    seed: int,
    table: Mapping[str, float] | None = None,
) -> dict[str, Expected]:
    """Per decision id, its outcome as the journeys and the drawn effects make it, exactly: the
    entity meets a watch with the first event of the outcome's type inside the window, whether the
    journey's or one an action added (another action of the same player and type can meet it too:
    bonus windows of 72 hours overlap the next day's decisions)."""
    decisions = list(decisions)
    drawn = effects(decisions, outcomes, seed, table)
    added: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for e in drawn:
        if e.at_ms is not None:
            added.setdefault((e.player_id, e.action_type), []).append((e.at_ms, e.action_id))
    own = {e.action_id: e for e in drawn}
    table = journeys.TRUE_EFFECT if table is None else table
    out: dict[str, Expected] = {}
    for d in decisions:
        atype, player, did = str(d.get("type")), str(d.get("playerId")), str(d.get("id"))
        if atype not in OUTCOMES:
            continue
        o = OUTCOMES[atype]
        t0 = parse_iso_ms(str(d["eventTime"]))
        base = outcomes.met_naturally(player, o.event, t0, o.window_ms) or any(
            t0 < at <= t0 + o.window_ms and other != did for at, other in added.get((player, atype), [])
        )
        mine = own.get(did)
        met = base or (mine is not None and mine.at_ms is not None)
        room = journeys.has_room(t0, outcomes.last_ms(player))
        out[did] = Expected(base, met, room, float(table.get(atype, 0.0)))
    return out


def true_uplift(
    decisions: Iterable[Mapping[str, Any]], expected: Mapping[str, Expected]
) -> dict[str, float | None]:
    """Per action type, the uplift a holdout comparison of these decisions (sent and held out alike)
    estimates, from ground truth: the mean over them of q times (not met without its own effect,
    and room for an added event): ``shared.journeys.true_uplift``."""
    per: dict[str, list[tuple[bool, bool, float]]] = {t: [] for t in OUTCOMES}
    for d in decisions:
        x = expected.get(str(d.get("id")))
        if x is not None and d.get("type") in per:
            per[str(d["type"])].append((x.base, x.room, x.q))
    return {t: journeys.true_uplift(v) for t, v in per.items()}


def plan_from_cosmos(config: SyntheticConfig) -> list[Planned]:
    """What the players add after the run, from the app's Cosmos settings and the run's journeys:
    their answers to the pending actions and the outcomes the delivered actions cause."""
    from shared import runtime, summary_store

    container = summary_store.actions(runtime.settings().cosmos)
    js = journeys_of(config)
    end_ms = config.start_ms + int(config.duration_s * 1000)
    planned = [
        Planned(r.player_id, at, journeys.response_event(r, datetime.fromtimestamp(at / 1000, tz=UTC)))
        for r, at in plan(pending_actions(container), journeys.truth_by_event(js), config.seed, end_ms)
    ]
    rows = container.query_items(SENT_QUERY, enable_cross_partition_query=True)
    sent = sorted(rows, key=lambda r: str(r["id"]))
    for e in effects(sent, journeys.Outcomes(js), config.seed):
        if e.at_ms is not None:
            event = journeys.outcome_event(e, OUTCOMES[e.action_type].event)
            planned.append(Planned(e.player_id, e.at_ms, event))
    return planned


def log_items(planned: Iterable[Planned]) -> list[tuple[str | None, bytes]]:
    """The added events as (partition key, body) items for the event log, in event-time order."""
    return [
        (p.player_id, json.dumps(p.event, separators=(",", ":")).encode())
        for p in sorted(planned, key=lambda p: (p.at_ms, str(p.event["id"])))
    ]
