"""The entity's part in issue 18, pure logic: holdout decisions, outcome watches, the challenger's
shadow aggregates, the version 4 state."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Mapping

import msgspec
import pytest

from shared import entity as st
from shared import signals
from shared.entity import codec
from shared.entity.model import (
    MAX_SHADOW_PENDING,
    MAX_SUPPRESSED_PENDING,
    MAX_WATCHES,
    OUTCOME_GRACE_MS,
    STATE_VERSION,
)
from shared.entity.shadow import matrix_counts
from shared.features import Features
from shared.holdout import is_held_out
from shared.outcomes import OUTCOMES
from shared.policy import BONUS, BREAK, HELP, Rules
from shared.store import action_document, shadow_document
from shared.timeutil import iso_ms, utc_day
from tests.helpers import T0_MS, round_event, signal_event

MIN = 60_000
RULES = Rules(warm_up_events=3)


def fixed(scores: Mapping[str, float]) -> Callable[[Features], st.Scored]:
    full = {BREAK: 0.0, HELP: 0.0, BONUS: 0.0, **scores}
    return lambda f: st.Scored(dict(full), ["net_loss"], [float(f.rounds_last_30m), 1.5])


def warm(start: int = T0_MS, prefix: str = "w") -> list[dict]:
    """A session start and three rounds: past the warm-up, no trigger (rounds trigger every 10)."""
    evs = [signal_event(f"{prefix}-s", "session.started", start)]
    return evs + [round_event(f"{prefix}{i}", start + (i + 1) * 1000, 1.0, 1.0) for i in range(3)]


def deposit(event_id: str, at: int) -> dict:
    return signal_event(event_id, "deposit.made", at, {"amount": 20.0})


def run(
    state: st.PlayerState,
    events: list[dict],
    scorer: Callable[[Features], st.Scored],
    rules: Rules = RULES,
    now_ms: int | None = None,
    player: str = "p1",
    challenger: st.Challenger | None = None,
) -> st.Effects:
    now = max(e["t"] for e in events) + 1000 if now_ms is None else now_ms
    payload = signals.encode(signals.Signal([signals.from_v1(ev) for ev in events]))
    return st.apply(state, player, "events", payload, now, scorer, rules, "m-test", challenger=challenger)


def acts(state: st.PlayerState) -> list[st.ActionRecord]:
    return [i.rec for i in state.outbox if isinstance(i.rec, st.ActionRecord)]


# -- holdout ----------------------------------------------------------------------------------


def test_a_held_out_pick_is_the_same_record_as_a_sent_one_but_status_holdout() -> None:
    events = [*warm(), deposit("d1", T0_MS + 10_000)]
    sent_state, held_state = st.PlayerState(), st.PlayerState()
    sent = run(sent_state, events, fixed({BONUS: 0.9}))
    held = run(held_state, events, fixed({BONUS: 0.9}), Rules(warm_up_events=3, holdout_share={BONUS: 1.0}))
    assert [a.status for a in sent.actions] == ["pending"] and sent.holdouts == []
    assert held.actions == [] and [a.status for a in held.holdouts] == ["holdout"]
    a, h = sent.actions[0], held.holdouts[0]
    assert msgspec.structs.replace(h, status="pending") == a  # same id, score, scores, features, reasons
    assert acts(held_state) == [h]  # written like an action (the outbox creates it)
    # counted for the cooldown and the daily cap exactly like a sent action
    assert held_state.last_action_ms == sent_state.last_action_ms == {BONUS: T0_MS + 10_000}
    assert held_state.day_count == sent_state.day_count == 1
    again = run(
        held_state,
        [deposit("d2", T0_MS + 20_000)],
        fixed({BONUS: 0.9}),
        Rules(warm_up_events=3, holdout_share={BONUS: 1.0}),
    )
    assert again.holdouts == [] and [s.rejected_by for s in again.suppressed] == ["cooldown"]


def test_the_daily_cap_counts_holdout_decisions() -> None:
    rules = Rules(warm_up_events=3, daily_cap=2, cooldown_ms={}, holdout_share={BREAK: 1.0})
    state = st.PlayerState()
    deposits = [deposit(f"d{i}", T0_MS + (10 + i) * 1000) for i in range(4)]
    eff = run(state, [*warm(), *deposits], fixed({BREAK: 0.9}), rules)
    assert len(eff.holdouts) == 2 and eff.actions == [] and state.day_count == 2
    assert [s.rejected_by for s in eff.suppressed] == ["daily_cap", "daily_cap"]


def test_the_group_follows_the_keyed_hash_and_a_replay_assigns_alike() -> None:
    rules = Rules(warm_up_events=3, holdout_share={BONUS: 0.5}, holdout_key="k-test")
    groups = {}
    for n in range(40):
        player = f"player-{n:03d}"
        state = st.PlayerState()
        events = [*warm(), deposit("d1", T0_MS + 10_000)]
        before = copy.deepcopy(state)
        eff = run(state, events, fixed({BONUS: 0.9}), rules, player=player)
        (rec,) = eff.actions + eff.holdouts
        expected = is_held_out(player, utc_day(T0_MS + 10_000), BONUS, 0.5, "k-test")
        assert (rec.status == "holdout") == expected
        # a re-run of the same operation from the state before it (a replayed entity batch)
        replay = run(before, copy.deepcopy(events), fixed({BONUS: 0.9}), rules, player=player)
        assert replay.actions + replay.holdouts == [rec]
        groups[player] = rec.status
    assert 8 <= sum(s == "holdout" for s in groups.values()) <= 32  # both groups occur


def test_documents_carry_group_and_outcome() -> None:
    state = st.PlayerState()
    run(state, [*warm(), deposit("d1", T0_MS + 10_000)], fixed({HELP: 0.9}))
    (rec,) = acts(state)
    doc = action_document("p1", rec)
    assert doc["status"] == "pending" and doc["group"] == "treated"
    assert doc["outcome"] == {"name": "deposit_30m", "windowEnd": iso_ms(T0_MS + 10_000 + 30 * MIN)}
    held = action_document("p1", msgspec.structs.replace(rec, status="holdout"))
    assert held["status"] == "holdout" and held["group"] == "holdout" and held["outcome"] == doc["outcome"]
    suppressed = action_document(
        "p1", msgspec.structs.replace(rec, status="suppressed", rejected_by="cooldown")
    )
    assert "group" not in suppressed and "outcome" not in suppressed


# -- outcome watches ----------------------------------------------------------------------------

D1 = T0_MS + 10_000  # the trigger's event time
DECIDED = D1 + 1000  # the wall clock when it was decided (run's default now)


def decided_break(rules: Rules = RULES) -> tuple[st.PlayerState, st.ActionRecord]:
    state = st.PlayerState()
    eff = run(state, [*warm(), deposit("d1", D1)], fixed({BREAK: 0.9}), rules)
    (rec,) = eff.actions + eff.holdouts
    assert state.watch == [st.Watch(rec.id, 0, D1, D1 + 15 * MIN, DECIDED)]
    state.outbox.clear()  # (written)
    return state, rec


def met_records(state: st.PlayerState) -> list[st.OutcomeMet]:
    return [i.rec for i in state.outbox if isinstance(i.rec, st.OutcomeMet)]


def test_an_outcome_event_inside_the_window_meets_the_watch_once() -> None:
    state, rec = decided_break()
    ended = signal_event("end-1", "session.ended", D1 + 10 * MIN)
    eff = run(state, [ended], fixed({}), now_ms=D1 + 10 * MIN + 500)
    assert met_records(state) == [st.OutcomeMet(rec.id, D1 + 10 * MIN, "end-1")]
    assert state.watch == [] and eff.watches_ended == [(BREAK, "met")]
    # the same event again (a redelivery) is a duplicate; another meeting event finds no watch
    state.outbox.clear()
    assert run(state, [copy.deepcopy(ended)], fixed({})).duplicates == 1
    run(state, [signal_event("end-2", "session.ended", D1 + 12 * MIN)], fixed({}))
    assert met_records(state) == []


def test_the_window_is_after_the_trigger_and_up_to_its_end_inclusive() -> None:
    state, rec = decided_break()
    run(state, [signal_event("early", "session.ended", D1)], fixed({}), now_ms=D1 + 2000)  # t == t0
    run(state, [signal_event("other", "deposit.made", D1 + MIN, {"amount": 5.0})], fixed({}))  # wrong type
    assert met_records(state) == [] and len(state.watch) == 1
    run(state, [signal_event("late", "session.ended", D1 + 15 * MIN + 1)], fixed({}))  # after the end
    assert met_records(state) == [] and len(state.watch) == 1
    state2, rec2 = decided_break()
    run(state2, [signal_event("edge", "session.ended", D1 + 15 * MIN)], fixed({}))  # exactly at the end
    assert met_records(state2) == [st.OutcomeMet(rec2.id, D1 + 15 * MIN, "edge")]


def test_a_late_event_within_the_grace_still_meets_and_after_it_the_watch_is_gone() -> None:
    state, rec = decided_break()
    late_now = DECIDED + 15 * MIN + OUTCOME_GRACE_MS  # the last instant of the grace
    run(state, [signal_event("end-late", "session.ended", D1 + 14 * MIN)], fixed({}), now_ms=late_now)
    assert met_records(state) == [st.OutcomeMet(rec.id, D1 + 14 * MIN, "end-late")]
    state, rec = decided_break()
    eff = run(
        state, [signal_event("too-late", "session.ended", D1 + 14 * MIN)], fixed({}), now_ms=late_now + 1
    )
    assert met_records(state) == [] and state.watch == [] and (BREAK, "expired") in eff.watches_ended
    # a flush (no events) lets expired watches go too
    state, _ = decided_break()
    flushed = st.apply(state, "p1", "flush", None, late_now + 1, fixed({}), RULES, "m")
    assert state.watch == [] and flushed.watches_ended == [(BREAK, "expired")]


def test_a_holdout_decision_is_watched_like_a_sent_action() -> None:
    state, rec = decided_break(Rules(warm_up_events=3, holdout_share={BREAK: 1.0}))
    assert rec.status == "holdout"
    run(state, [signal_event("end-1", "session.ended", D1 + 5 * MIN)], fixed({}))
    assert met_records(state) == [st.OutcomeMet(rec.id, D1 + 5 * MIN, "end-1")]


def test_watches_are_bounded_oldest_dropped_and_counted() -> None:
    rules = Rules(warm_up_events=3, daily_cap=100, cooldown_ms={})
    state = st.PlayerState()
    eff = run(
        state,
        [*warm(), *(deposit(f"d{i}", D1 + i * 1000) for i in range(MAX_WATCHES + 3))],
        fixed({BREAK: 0.9}),
        rules,
    )
    assert len(eff.actions) == MAX_WATCHES + 3
    assert [w.action_id for w in state.watch] == [a.id for a in eff.actions[3:]]
    assert eff.watches_ended.count((BREAK, "dropped")) == 3


def test_the_outcome_event_of_each_type() -> None:
    assert {a: (o.event, o.window_ms) for a, o in OUTCOMES.items()} == {
        BREAK: ("session.ended", 15 * MIN),
        HELP: ("deposit.made", 30 * MIN),
        BONUS: ("session.started", 72 * 60 * MIN),
    }
    state = st.PlayerState()
    run(state, [*warm(), deposit("d1", D1)], fixed({BONUS: 0.9}))
    (rec,) = acts(state)
    state.outbox.clear()
    run(
        state,
        [signal_event("back", "session.started", D1 + 48 * 60 * MIN)],
        fixed({}),
        now_ms=DECIDED + 48 * 60 * MIN,
    )
    assert met_records(state) == [st.OutcomeMet(rec.id, D1 + 48 * 60 * MIN, "back")]


# -- state version 4 ------------------------------------------------------------------------------


def test_a_version_3_state_is_read_and_written_back_as_version_4() -> None:
    state = st.PlayerState()
    run(state, [*warm(), deposit("d1", D1)], fixed({HELP: 0.9}))
    state.outbox.clear()
    v3 = msgspec.structs.replace(state, v=3, watch=[], shd=None)
    raw = "p2:" + base64.b64encode(msgspec.msgpack.encode(v3)).decode("ascii")
    assert b"watch" not in msgspec.msgpack.encode(v3)  # what version 3 code stored: no such key
    loaded = codec.decode(raw)
    assert loaded.v == STATE_VERSION == 4 and loaded.watch == [] and loaded.shd is None
    assert loaded.buf == state.buf and loaded.last_action_ms == state.last_action_ms and not loaded.v2_keys
    run(
        loaded,
        [deposit("d2", D1 + 40 * MIN)],
        fixed({HELP: 0.9}),
        rules=Rules(warm_up_events=3, cooldown_ms={}),
    )
    again = codec.decode(codec.encode(loaded))
    assert again == loaded and len(again.watch) == 1


# -- the challenger in shadow -------------------------------------------------------------------


def challenger(scores: Mapping[str, float], version: str = "ch-1") -> st.Challenger:
    full = {BREAK: 0.0, HELP: 0.0, BONUS: 0.0, **scores}
    return st.Challenger(lambda f: dict(full), version)


def shadows(state: st.PlayerState) -> list[st.ShadowAggregate]:
    return [i.rec for i in state.outbox if isinstance(i.rec, st.ShadowAggregate)]


def test_the_challenger_changes_nothing_the_champion_decides() -> None:
    events = [*warm(), deposit("d1", D1), deposit("d2", D1 + 1000), deposit("d3", D1 + 2000)]
    plain, shadowed = st.PlayerState(), st.PlayerState()
    a = run(plain, events, fixed({BREAK: 0.9, HELP: 0.7}))
    b = run(shadowed, events, fixed({BREAK: 0.9, HELP: 0.7}), challenger=challenger({BONUS: 0.9}))
    assert (a.actions, a.suppressed, a.rejections) == (b.actions, b.suppressed, b.rejections)
    assert [i.id for i in plain.outbox] == [
        i.id for i in shadowed.outbox if not isinstance(i.rec, st.ShadowAggregate)
    ]
    assert b.shadow == 3 and a.shadow == 0


def test_shadow_aggregate_counts_agreement_matrix_scores_and_rules() -> None:
    state = st.PlayerState()
    rules = Rules(warm_up_events=3)
    # d1: champion break, challenger none (its scores under min_score);
    # d2: champion suppressed by the break cooldown -> none; challenger none: agree
    eff = run(
        state,
        [*warm(), deposit("d1", D1), deposit("d2", D1 + 1000)],
        fixed({BREAK: 0.9}),
        rules,
        challenger=challenger({BREAK: 0.2}),
    )
    (agg,) = shadows(state)
    hour = D1 - D1 % st.HOUR_MS
    assert agg.id == st.shadow_id("p1", hour) and agg.hour_ms == hour
    assert (agg.count, agg.agree, eff.shadow, eff.shadow_agree) == (2, 1, 2, 1)
    assert matrix_counts(agg) == {"break_suggestion|none": 1, "none|none": 1}
    assert agg.matrix == [1, 0, 0, 0, 1] + [0] * 11  # stored: row-major counts
    assert agg.differ == {"min_score": 1}
    assert agg.sums[0] == pytest.approx([2, 1.8, 0.4, 1.62, 0.08, 0.36])
    assert agg.model == "m-test" and agg.challenger == "ch-1"
    doc = shadow_document("p1", agg)
    assert doc["id"].startswith("shd-") and doc["kind"] == doc["status"] == "shadow"
    assert doc["scores"][BREAK] == {"n": 2, "sx": 1.8, "sy": 0.4, "sxx": 1.62, "syy": 0.08, "sxy": 0.36}
    assert (doc["count"], doc["agree"], doc["differByRule"]) == (2, 1, {"min_score": 1})
    assert doc["modelVersion"] == "m-test" and doc["challengerVersion"] == "ch-1"
    assert doc["day"] == utc_day(hour) and doc["hour"] == 10


def test_the_rule_of_a_difference_is_the_one_that_stopped_the_side_that_chose_nothing_or_ranking() -> None:
    rules = Rules(warm_up_events=3)
    # the champion's break is in its cooldown: it picks help; the challenger's break is too: nothing
    state = st.PlayerState()
    state.last_action_ms[BREAK] = D1 - MIN
    run(
        state,
        [*warm(), deposit("d1", D1)],
        fixed({BREAK: 0.9, HELP: 0.7}),
        rules,
        challenger=challenger({BREAK: 0.9}),
    )
    assert shadows(state)[0].differ == {"cooldown": 1}
    assert matrix_counts(shadows(state)[0]) == {"help_offer|none": 1}
    # both choose, different types: the challenger ranked another type first
    state = st.PlayerState()
    run(
        state,
        [*warm(), deposit("d1", D1)],
        fixed({BREAK: 0.9, HELP: 0.7}),
        rules,
        challenger=challenger({BREAK: 0.7, HELP: 0.9}),
    )
    assert shadows(state)[0].differ == {"ranking": 1} and matrix_counts(shadows(state)[0]) == {
        "break_suggestion|help_offer": 1
    }
    # both choose, the challenger's score of the champion's type is under its threshold
    state = st.PlayerState()
    run(state, [*warm(), deposit("d1", D1)], fixed({BREAK: 0.9}), rules, challenger=challenger({HELP: 0.9}))
    assert shadows(state)[0].differ == {"min_score": 1}


def test_one_aggregate_per_hour_kept_while_its_hour_is_open() -> None:
    state = st.PlayerState()
    ch = challenger({BREAK: 0.9})
    run(state, [*warm(), deposit("d1", D1)], fixed({BREAK: 0.9}), challenger=ch)
    (first,) = shadows(state)
    st.acknowledge(state, {i.id for i in state.outbox}, DECIDED)
    assert state.outbox == [] and state.shd == first  # written, kept to go on counting
    run(state, [deposit("d2", D1 + 60_000)], fixed({BREAK: 0.9}), challenger=ch)
    assert shadows(state) == [first] and first.count == 2 and state.shd is None  # back in the outbox
    st.acknowledge(state, {i.id for i in state.outbox}, DECIDED)
    next_hour = D1 - D1 % st.HOUR_MS + st.HOUR_MS + 5 * MIN
    run(state, [deposit("d3", next_hour)], fixed({BREAK: 0.9}), challenger=ch)
    (second,) = shadows(state)
    assert second.id != first.id and second.count == 1
    st.acknowledge(state, {i.id for i in state.outbox}, DECIDED)
    assert state.shd == second  # the closed hour's aggregate left the state


def test_a_state_with_watches_and_a_shadow_aggregate_round_trips() -> None:
    state = st.PlayerState()
    run(state, [*warm(), deposit("d1", D1)], fixed({BREAK: 0.9}), challenger=challenger({HELP: 0.9}))
    assert state.watch and shadows(state)
    assert codec.decode(codec.encode(state)) == state


# -- bounds ---------------------------------------------------------------------------------------


def test_the_worst_state_with_watches_outcomes_and_shadow_aggregates_stays_under_16_kb() -> None:
    """tests/unit/test_state.py's worst case (a full buffer, every (type, rule) aggregate of the open
    hour and the closed hours' an outage left, nothing written) plus what issue 18 adds at most: every
    watch open, an unwritten outcome record per watch, and the challenger's aggregates of ten hours
    (the open hour's plus those the bound keeps) with every matrix cell and rule counted."""
    from shared.policy import RULES as RULE_NAMES

    state = st.PlayerState()
    rounds = [round_event(f"r{i}", T0_MS + i * 10_000, 2.0, 0.0) for i in range(st.MAX_BUFFER_EVENTS + 20)]
    run(state, [*warm(), *rounds], fixed({}))
    assert len(state.buf) == st.MAX_BUFFER_EVENTS
    base = state.newest_ms - state.newest_ms % st.HOUR_MS + st.HOUR_MS
    player = "player-0123456789"
    features = [0.123456789] * 24
    for hour in range(10):
        t0 = base + hour * st.HOUR_MS
        state.newest_ms = t0
        for atype in (BREAK, HELP, BONUS):
            for rule in [r for r in RULE_NAMES if r != "min_score"]:
                for n in range(3):
                    rec = st.ActionRecord(
                        f"x{hour}{atype}{rule}{n}", atype, "suppressed", 0.9, [0.9] * 3, features,
                        "pi-2026-11-21-abcdef01", f"evt-{hour:02d}-{atype}-{rule}-{n}-0123456789abcdef",
                        t0 + n, t0 + n, rejected_by=rule,
                    )  # fmt: skip
                    st.add_suppressed(state, player, rec, t0)
        agg = st.ShadowAggregate(
            st.shadow_id(player, t0), t0, 10_000, 5_000, t0, t0 + 3_599_999, "pi-2026-11-21-abcdef01",
            "pi-2026-12-01-0123abcd", t0,
            matrix=[1000 + i for i in range(16)],
            sums=[[10_000.0, 1234.56789123, 2345.67891234, 345.678912345, 456.789123456, 567.891234567]] * 3,
            differ={r: 100 for r in [*RULE_NAMES, "ranking"]},
        )  # fmt: skip
        state.outbox.append(st.OutboxItem(agg, since_ms=t0))
        st.bound_suppressed(state)
    for k in range(st.MAX_WATCHES):
        aid = st.action_id(player, f"evt-trigger-{k}-0123456789abcdef", BONUS)
        state.watch.append(st.Watch(aid, 2, base + k, base + k + 72 * 3_600_000, base + k))
        state.outbox.append(
            st.OutboxItem(st.OutcomeMet(aid, base + k + 1, f"evt-meeting-{k}-0123456789abcdef"), base)
        )
    size = len(codec.encode(state))
    assert size < 16 * 1024, size
    kept = [i.rec.hour_ms for i in state.outbox if isinstance(i.rec, st.ShadowAggregate)]
    # the open hour's is never dropped; of the closed hours', the newest MAX_SHADOW_PENDING wait
    assert kept == [base + h * st.HOUR_MS for h in range(9 - MAX_SHADOW_PENDING, 10)]
    closed = [
        i
        for i in state.outbox
        if isinstance(i.rec, st.SuppressedAggregate) and i.rec.hour_ms < base + 9 * st.HOUR_MS
    ]
    assert len(closed) == MAX_SUPPRESSED_PENDING


def test_on_compressed_time_a_spent_watch_still_meets_a_late_event_and_gives_its_slot_first() -> None:
    """A replay or a devhost run on compressed time: event time runs ahead of the wall clock. A watch
    whose window is long past in event time is still met by an event that arrives late (an outcome
    appended after the run) while the wall clock is within the grace; it only gives its slot first
    when a new watch needs the room (so it never pushes out a live one)."""
    state, rec = decided_break()
    # 26 minutes of event time later (past end 15 min + grace 10 min), the wall clock a second on
    run(state, [round_event("r-late", D1 + 26 * MIN, 1.0, 1.0)], fixed({}), now_ms=DECIDED + 1000)
    assert len(state.watch) == 1
    eff = run(state, [signal_event("end", "session.ended", D1 + 5 * MIN)], fixed({}), now_ms=DECIDED + 2000)
    assert state.watch == [] and len(met_records(state)) == 1 and eff.watches_ended == [(BREAK, "met")]
    # ... and a full set of watches makes room by expiring those first, not by dropping a live one
    rules = Rules(warm_up_events=3, daily_cap=100, cooldown_ms={})
    state = st.PlayerState()
    run(
        state,
        [*warm(), *(deposit(f"d{i}", D1 + i * 1000) for i in range(MAX_WATCHES))],
        fixed({BREAK: 0.9}),
        rules,
    )
    assert len(state.watch) == MAX_WATCHES
    later = D1 + 40 * MIN  # in one operation: a round past every window, then a decision
    eff = run(
        state,
        [round_event("r", later, 1.0, 1.0), deposit("dx", later + 1000)],
        fixed({BONUS: 0.9}),
        rules,
        now_ms=DECIDED + 5000,
    )
    assert [w.type for w in state.watch] == [2]  # the bonus offer's
    assert eff.watches_ended == [(BREAK, "expired")] * MAX_WATCHES
