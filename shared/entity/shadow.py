"""The challenger model in shadow: its would-be decisions, counted next to the champion's.

At each trigger the challenger scores the same feature row and the same policy decides on its
scores in the same context (the champion's state: the challenger's picks change nothing). Each
trigger is counted into one aggregate per (player, UTC hour of the trigger's event time), held and
written like the suppressed aggregates (shared.entity.outbox): the whole document replaced under
a deterministic id, at most once per operation; the open hour's aggregate is kept in ``state.shd``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from shared.entity.model import HOUR_MS, OutboxItem, PlayerState, ShadowAggregate
from shared.policy import ACTION_TYPES, Decision, Rules

NONE = "none"
# The decisions of the matrix, in its stored order (ShadowAggregate.matrix).
DECISIONS: tuple[str, ...] = (NONE, *ACTION_TYPES)
_INDEX = {d: i for i, d in enumerate(DECISIONS)}
# When both models pick a type, but not the same: the challenger's score put another type first.
RANKING = "ranking"


def shadow_id(player_id: str, hour_ms: int) -> str:
    """Deterministic: every write of the same (player, hour) replaces one document."""
    return "shd-" + hashlib.sha256(f"{player_id}\x1f{hour_ms}".encode()).hexdigest()[:32]


def differ_rule(
    champion: Decision, challenger: Decision, challenger_scores: Mapping[str, float], rules: Rules
) -> str:
    """Why the two decisions differ (call only when they do), by the rule of the side that chose
    nothing: the rule that stopped its best candidate, ``min_score`` when no score reached its
    threshold. When both chose, different types: why the challenger did not choose the champion's
    type (``min_score``, the rule that stopped it, or ``ranking``: it scored another type higher)."""
    c, h = champion.action_type, challenger.action_type
    side = challenger if h is None else champion if c is None else None
    if side is not None:
        return side.suppressed[0][1] if side.suppressed else "min_score"
    assert c is not None
    if challenger_scores.get(c, 0.0) < rules.min_score.get(c, 1.0):
        return "min_score"
    for atype, rule in challenger.suppressed:
        if atype == c:
            return rule
    return RANKING


def add_shadow(
    state: PlayerState,
    player_id: str,
    t: int,
    champion: Decision,
    challenger: Decision,
    champion_scores: Mapping[str, float],
    challenger_scores: Mapping[str, float],
    rules: Rules,
    model: str,
    challenger_version: str,
    now_ms: int,
    enqueued_ms: int | None = None,
) -> bool:
    """Count one trigger scored by both models into its hour's aggregate (which (re)enters the
    outbox); returns whether the two decided alike."""
    hour = t - t % HOUR_MS
    agg_id = shadow_id(player_id, hour)
    agg: ShadowAggregate | None = None
    for item in state.outbox:
        if isinstance(item.rec, ShadowAggregate) and item.rec.id == agg_id:
            agg = item.rec
            break
    else:
        if state.shd is not None and state.shd.id == agg_id:
            agg, state.shd = state.shd, None
        if agg is None:
            agg = ShadowAggregate(agg_id, hour, 0, 0, t, t, model, challenger_version, now_ms)
        state.outbox.append(OutboxItem(agg, since_ms=now_ms, enqueued_ms=enqueued_ms))
    c, h = champion.action_type, challenger.action_type
    agree = c == h
    agg.count += 1
    agg.agree += int(agree)
    agg.first_ms, agg.last_ms = min(agg.first_ms, t), max(agg.last_ms, t)
    agg.model, agg.challenger, agg.decided_ms = model, challenger_version, now_ms
    if len(agg.matrix) != len(DECISIONS) ** 2:
        agg.matrix = [0] * len(DECISIONS) ** 2
    agg.matrix[_INDEX[c or NONE] * len(DECISIONS) + _INDEX[h or NONE]] += 1
    if not agg.sums:
        agg.sums = [[0.0] * 6 for _ in ACTION_TYPES]
    for row, atype in zip(agg.sums, ACTION_TYPES, strict=False):
        x = round(float(champion_scores.get(atype, 0.0)), 6)
        y = round(float(challenger_scores.get(atype, 0.0)), 6)
        row[0] += 1
        row[1] += x
        row[2] += y
        row[3] += x * x
        row[4] += y * y
        row[5] += x * y
    if not agree:
        rule = differ_rule(champion, challenger, challenger_scores, rules)
        agg.differ[rule] = agg.differ.get(rule, 0) + 1
    return agree


_CELLS = tuple(f"{c}|{h}" for c in DECISIONS for h in DECISIONS)


def matrix_counts(agg: ShadowAggregate) -> dict[str, int]:
    """The matrix as the document gives it: ``{"<champion>|<challenger>": n}``, the cells counted."""
    return {cell: v for cell, v in zip(_CELLS, agg.matrix, strict=False) if v}
