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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from devhost.eventhubs.producers import SyntheticConfig
from shared import journeys
from shared.timeutil import parse_iso_ms

MARKER = "responses_appended"  # meta key: the responses of this run are in the log


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
    start = datetime.fromtimestamp(config.start_ms / 1000, tz=UTC)
    js = journeys.generate(config.players, config.seed, start, timedelta(seconds=config.duration_s))
    return journeys.truth_by_event(js)


def plan_from_cosmos(config: SyntheticConfig) -> list[tuple[journeys.Response, int]]:
    """The run's responses: its pending actions (from the app's Cosmos settings) and its journeys."""
    from shared import runtime, summary_store

    actions = pending_actions(summary_store.actions(runtime.settings().cosmos))
    end_ms = config.start_ms + int(config.duration_s * 1000)
    return plan(actions, truth_of(config), config.seed, end_ms)


def log_items(responses: Iterable[tuple[journeys.Response, int]]) -> list[tuple[str | None, bytes]]:
    """The responses as (partition key, body) items for the event log, in event-time order."""
    items: list[tuple[str | None, bytes]] = []
    for response, at_ms in sorted(responses, key=lambda r: (r[1], r[0].action_id)):
        event = journeys.response_event(response, datetime.fromtimestamp(at_ms / 1000, tz=UTC))
        items.append((response.player_id, json.dumps(event, separators=(",", ":")).encode()))
    return items
