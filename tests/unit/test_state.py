"""The entity's pure logic: dedupe, ordering, bounds, triggers, outbox, ids."""

from __future__ import annotations

import copy
import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_h

from shared import entity as st
from shared import signals
from shared.entity.dedupe import is_duplicate
from shared.entity.model import MAX_SUPPRESSED_PENDING
from shared.eventtypes import EventType
from shared.features import Features
from shared.policy import ACTION_TYPES, BREAK, Rules
from shared.policy import RULES as RULE_NAMES
from shared.routing import Message, route
from tests.helpers import NOW_MS, T0_MS, body, cloud_event, round_event, signal_event

MIN = 60_000


def break_when_losing(features: Features) -> st.Scored:
    """A transparent scorer: break score grows with the loss streak."""
    scores = {BREAK: min(1.0, features.loss_streak / 5.0), "help_offer": 0.0, "bonus_offer": 0.0}
    return st.Scored(scores, ["loss_streak"], [features.loss_streak])


RULES = Rules(warm_up_events=3)


def losing_session(n: int, start_ms: int = T0_MS, seq0: int = 1, prefix: str = "r") -> list[dict]:
    evs = [signal_event(f"{prefix}-start", "session.started", start_ms, seq=seq0)]
    evs += [
        round_event(f"{prefix}{i}", start_ms + (i + 1) * 10_000, 2.0, 0.0, seq=seq0 + 1 + i) for i in range(n)
    ]
    return evs


def run(state: st.PlayerState, events: list[dict], now_ms: int = T0_MS + 3600_000) -> st.Effects:
    """Apply events as this version's signal (encoded, as ingest sends it)."""
    payload = signals.encode(signals.Signal([signals.from_v1(ev) for ev in events]))
    return st.apply(state, "p1", "events", payload, now_ms, break_when_losing, RULES, "m-test")


def test_loss_streak_triggers_one_break_action() -> None:
    state = st.PlayerState()
    eff = run(state, losing_session(12))
    assert [a.type for a in eff.actions] == [BREAK]
    action = eff.actions[0]
    assert action.trigger == "r4"  # fifth loss: streak 5 -> score 1.0
    assert action.id == st.action_id("p1", "r4", BREAK)
    assert action.status == "pending" and action.model == "m-test"
    assert "feature:loss_streak" in action.reasons and "rule:cooldown" in action.reasons
    assert eff.rejections.get("cooldown", 0) >= 1  # the streak of 10 hit the cooldown
    # The streak's tenth loss was a candidate the cooldown stopped: recorded as suppressed.
    assert [(r.trigger, r.status, r.rejected_by) for r in eff.suppressed] == [
        ("r9", "suppressed", "cooldown")
    ]
    # ... counted into its hour's aggregate, which is what the outbox writes
    hour = T0_MS - T0_MS % st.HOUR_MS
    aggregate = st.suppressed_id("p1", hour, BREAK, "cooldown")
    assert [item.id for item in state.outbox] == [action.id, aggregate]
    assert state.outbox[1].rec.count == 1  # type: ignore[union-attr]


def test_replayed_batch_is_fully_deduplicated() -> None:
    state = st.PlayerState()
    events = losing_session(12)
    first = run(state, events)
    snapshot = msgspec.json.encode(state)
    again = run(state, copy.deepcopy(events))
    assert again.accepted == 0 and again.duplicates == len(events)
    assert again.actions == [] and msgspec.json.encode(state) == snapshot
    assert first.accepted == len(events)


def test_same_event_id_at_a_new_sequence_number_is_a_duplicate() -> None:
    state = st.PlayerState()
    run(state, losing_session(3))
    eff = run(state, [round_event("r1", T0_MS + 20_000, 2.0, 0.0, seq=999)])
    assert eff.duplicates == 1 and eff.accepted == 0


def test_reordered_signals_give_the_same_buffer_and_actions() -> None:
    events = losing_session(12)
    in_order = st.PlayerState()
    run(in_order, events[:6])
    run(in_order, events[6:])
    reordered = st.PlayerState()
    run(reordered, events[6:])
    eff = run(reordered, events[:6])
    assert eff.accepted == 6 and eff.duplicates == 0
    assert [e.h for e in reordered.buf] == [e.h for e in in_order.buf]
    assert [e.t for e in reordered.buf] == sorted(e.t for e in reordered.buf)


def test_late_event_is_inserted_by_time_but_does_not_trigger() -> None:
    state = st.PlayerState()
    run(state, losing_session(3))
    late = signal_event("late-dep", "deposit.made", T0_MS + 5_000, {"amount": 10.0}, seq=50)
    eff = run(state, [late])
    assert eff.accepted == 1 and eff.triggers == 0
    assert [e.h for e in state.buf][:2] == [st.id_hash("r-start"), st.id_hash("late-dep")]


def test_redelivered_evicted_event_is_a_duplicate() -> None:
    state = st.PlayerState()
    events = losing_session(st.MAX_BUFFER_EVENTS + 40)
    run(state, events)
    assert len(state.buf) == st.MAX_BUFFER_EVENTS
    oldest_kept = state.buf[0].t
    evicted = [e for e in events if e["t"] < oldest_kept]
    assert len(evicted) >= 40
    eff = run(state, copy.deepcopy(evicted))
    assert eff.duplicates == len(evicted) and eff.accepted == 0


def test_buffer_is_bounded_by_age() -> None:
    state = st.PlayerState()
    run(state, losing_session(5))
    later = T0_MS + st.MAX_BUFFER_AGE_MS + 10 * MIN
    run(state, [round_event("much-later", later, 1.0, 1.0, seq=100)])
    assert all(e.t >= later - st.MAX_BUFFER_AGE_MS for e in state.buf)
    assert [e.h for e in state.buf] == [st.id_hash("much-later")]
    assert state.agg.events == 7  # lifetime counters keep the history


def test_state_stays_small() -> None:
    state = st.PlayerState()
    for k in range(10):
        run(state, losing_session(60, start_ms=T0_MS + k * 3600_000, seq0=1 + k * 100, prefix=f"s{k}r"))
        st.bound_suppressed(state)  # what the shell does after a flush that failed
    size = len(st.codec.encode(state))  # as stored, with an outbox nothing could write
    assert len(state.buf) <= st.MAX_BUFFER_EVENTS
    assert size < 16 * 1024, size
    pending = [i for i in state.outbox if isinstance(i.rec, st.SuppressedAggregate)]
    assert 0 < len(pending) <= MAX_SUPPRESSED_PENDING + len(ACTION_TYPES) * len(RULE_NAMES)


def test_state_stays_small_with_every_type_and_rule_suppressed_in_one_hour_and_nothing_written() -> None:
    """The worst the aggregates can hold, on top of a full buffer and its unwritten actions: every
    (type, rule) pair of the open hour, the closed hours' aggregates an outage left, examples capped
    over all of them. (``min_score`` selects candidates, it never suppresses one.)"""
    state = st.PlayerState()
    run(state, losing_session(st.MAX_BUFFER_EVENTS + 20))
    assert len(state.buf) == st.MAX_BUFFER_EVENTS
    base = state.newest_ms - state.newest_ms % st.HOUR_MS + st.HOUR_MS
    state.outbox = [i for i in state.outbox if not isinstance(i.rec, st.SuppressedAggregate)]
    features = [0.123456789] * 24
    for hour in range(10):
        state.newest_ms = base + hour * st.HOUR_MS
        for atype in ACTION_TYPES:
            for rule in [r for r in RULE_NAMES if r != "min_score"]:
                for n in range(3):
                    t = base + hour * st.HOUR_MS + n
                    rec = st.ActionRecord(
                        id=f"x{hour}{atype}{rule}{n}",
                        type=atype,
                        status="suppressed",
                        score=0.9,
                        scores=[0.9, 0.9, 0.9],
                        features=features,
                        model="pi-2026-11-21-abcdef01",
                        trigger=f"evt-{hour:02d}-{atype}-{rule}-{n}-0123456789abcdef",
                        t=t,
                        decided_ms=t,
                        rejected_by=rule,
                    )
                    st.add_suppressed(state, "player-0123456789", rec, NOW_MS)
        st.bound_suppressed(state)
    size = len(st.codec.encode(state))
    assert size < 16 * 1024, size
    held = [i.rec for i in state.outbox if isinstance(i.rec, st.SuppressedAggregate)]
    assert sum(len(a.examples) for a in held) <= st.SUPPRESSED_EXAMPLES_HELD
    open_hour = [a for a in held if a.hour_ms == base + 9 * st.HOUR_MS]
    assert len(open_hour) == len(ACTION_TYPES) * (len(RULE_NAMES) - 1) and all(
        a.count == 3 for a in open_hour
    )


def test_batching_does_not_change_decisions() -> None:
    events = losing_session(40)
    whole = st.PlayerState()
    eff_whole = run(whole, events)
    singles = st.PlayerState()
    actions = []
    for ev in events:
        actions += run(singles, [ev]).actions
    strip = lambda recs: [msgspec.structs.replace(r, decided_ms=0) for r in recs]  # noqa: E731
    assert strip(actions) == strip(eff_whole.actions)
    assert msgspec.json.encode(singles.buf) == msgspec.json.encode(whole.buf)


def test_action_id_is_deterministic_and_distinct() -> None:
    a = st.action_id("p1", "e1", BREAK)
    assert a == st.action_id("p1", "e1", BREAK)
    assert (
        len(
            {
                a,
                st.action_id("p2", "e1", BREAK),
                st.action_id("p1", "e2", BREAK),
                st.action_id("p1", "e1", "help_offer"),
            }
        )
        == 4
    )


def test_outbox_is_retried_then_expires() -> None:
    state = st.PlayerState()
    now = T0_MS + 3600_000
    run(state, losing_session(5), now_ms=now)
    assert len(state.outbox) == 1
    assert st.acknowledge(state, set(), now) == 0
    assert len(state.outbox) == 1 and state.outbox[0].attempts == 1
    doc_id = state.outbox[0].id
    assert st.acknowledge(state, {doc_id}, now + 1000) == 0 and state.outbox == []
    state2 = st.PlayerState()
    run(state2, losing_session(5), now_ms=now)
    assert st.acknowledge(state2, set(), now + st.OUTBOX_TTL_MS + 1) == 1
    assert state2.outbox == []


def test_state_round_trips_through_its_stored_form() -> None:
    state = st.PlayerState()
    run(state, losing_session(12))
    stored = st.codec.encode(state)
    assert isinstance(stored, str) and stored.startswith("p2:")
    assert st.load_state(stored) == state
    assert st.load_state(None) == st.PlayerState()


@pytest.mark.parametrize("payload", [None, [], {}, {"events": None}, "events"])
def test_malformed_operation_input_is_reported_not_raised(payload: object) -> None:
    state = st.PlayerState()
    eff = st.apply(state, "p1", "events", payload, T0_MS, break_when_losing, RULES, "m")
    assert eff.rejections == {"malformed_signal": 1}
    assert state == st.PlayerState()


def test_unknown_event_type_in_signal_is_counted() -> None:
    state = st.PlayerState()
    eff = run(state, [{"id": "x", "type": "page.viewed", "t": T0_MS}])
    assert eff.rejections == {"malformed_signal_event": 1} and eff.accepted == 0


def test_unknown_operation_is_reported() -> None:
    eff = st.apply(st.PlayerState(), "p1", "explode", {"x": 1}, T0_MS, break_when_losing, RULES, "m")
    assert eff.rejections == {"unknown_operation": 1}


def test_opt_out_and_back_in() -> None:
    state = st.PlayerState()
    run(state, [signal_event("o1", "player.optout", T0_MS - MIN, seq=0)])
    eff = run(state, losing_session(6))
    assert eff.actions == [] and eff.rejections.get("opt_out", 0) >= 1
    run(state, [signal_event("o2", "player.optin", T0_MS + 2 * MIN, seq=100)])
    eff = run(state, [round_event(f"z{i}", T0_MS + 3 * MIN + i * 1000, 2, 0, seq=101 + i) for i in range(5)])
    assert [a.type for a in eff.actions] == [BREAK]


def test_signal_inputs_are_never_falsy() -> None:
    """The 1.x client turns falsy inputs ([] or {}) into None: signals always carry a non-empty dict."""
    msgs = [Message(body(cloud_event(event_id=f"e{i}", at_ms=T0_MS + i)), "0", i) for i in range(3)]
    msgs.append(Message(body(cloud_event("heartbeat", player="p2", data={})), "0", 9))
    batch = route(msgs, now_ms=T0_MS + 3600_000)
    inputs = batch.signal_inputs()
    assert set(inputs) == {"player-00042"}
    for payload in inputs.values():
        assert isinstance(payload, str) and bool(payload) is True
        assert [e.id for e in signals.decode(payload).events] == ["e0", "e1", "e2"]


def signals_of(events: list[dict], per_batch: int, partition: str = "0") -> list[dict]:
    """Cut a partition's events into trigger batches, as the router would: one signal each, with its range."""
    out = []
    for k in range(0, len(events), per_batch):
        chunk = events[k : k + per_batch]
        out.append({"events": chunk, "r": [[partition, chunk[0]["s"], chunk[-1]["s"]]]})
    return out


def apply_signal(state: st.PlayerState, payload: dict) -> st.Effects:
    return st.apply(state, "p1", "events", payload, T0_MS + 3600_000, break_when_losing, RULES, "m")


def test_a_reordered_signal_is_accepted_even_after_the_newer_one_filled_the_buffer() -> None:
    older = [
        signal_event("a-start", "session.started", T0_MS, seq=1),
        signal_event("a-dep", "deposit.made", T0_MS + 1000, {"amount": 20.0}, seq=2),
        signal_event("a-out", "player.optout", T0_MS + 2000, seq=3),
    ]
    newer = [round_event(f"b{i}", T0_MS + 10_000 + i * 1000, 1.0, 1.0, seq=10 + i) for i in range(120)]
    state = st.PlayerState()
    apply_signal(state, {"events": newer, "r": [["0", 4, 200]]})
    eff = apply_signal(state, {"events": older, "r": [["0", 1, 3]]})
    assert eff.accepted == 3 and eff.duplicates == 0
    assert state.agg.deposits == 1 and state.opted_out is True
    assert state.seen == {"0": [[1, 200]]}
    again = apply_signal(state, {"events": older, "r": [["0", 1, 3]]})
    assert again.accepted == 0 and again.duplicates == 3


def test_a_late_opt_in_does_not_undo_a_newer_opt_out() -> None:
    state = st.PlayerState()
    run(state, [signal_event("out", "player.optout", T0_MS + 2 * MIN, seq=2)])
    run(state, [signal_event("in", "player.optin", T0_MS + 1 * MIN, seq=1)])
    assert state.opted_out is True
    run(state, [signal_event("in2", "player.optin", T0_MS + 3 * MIN, seq=3)])
    assert state.opted_out is False


def test_seen_ranges_stay_bounded_and_fold_into_a_floor() -> None:
    state = st.PlayerState()
    for k in range(40):  # 40 signals from non-adjacent batches
        st.mark_seen(state, "0", k * 100, k * 100 + 10)
    assert len(state.seen["0"]) == st.SEEN_RANGES
    assert state.floor["0"] == (40 - st.SEEN_RANGES - 1) * 100 + 10
    at = lambda seq: signals.SignalEvent("x", EventType.ROUND, T0_MS, p="0", s=seq)  # noqa: E731
    assert is_duplicate(state, at(5), 1) is True  # below the floor
    assert is_duplicate(state, at(3905), 1) is True  # in a kept range
    assert is_duplicate(state, at(3950), 1) is False  # a gap: never seen


def test_a_long_session_keeps_its_length_after_its_start_left_the_buffer() -> None:
    from shared import features as feat

    state = st.PlayerState()
    run(state, losing_session(150))
    assert all(e.kind != EventType.SESSION_STARTED for e in state.buf)  # the start was evicted
    t = state.newest_ms
    features = feat.compute(state.buf, state.agg, state.last_action_ms, t)
    assert features.session_minutes == pytest.approx((t - T0_MS) / MIN)
    run(state, [signal_event("end", "session.ended", t + 1000, seq=1000)])
    assert state.agg.session_count_closed == 1
    assert state.agg.session_minutes_sum == pytest.approx((t + 1000 - T0_MS) / MIN)


@given(
    seed=st_h.integers(0, 10_000),
    per_batch=st_h.integers(1, 12),
    window=st_h.integers(1, 8),
    replays=st_h.integers(0, 6),
)
@settings(max_examples=60, deadline=None)
def test_any_reordering_or_replay_of_signals_gives_the_same_history(
    seed: int, per_batch: int, window: int, replays: int
) -> None:
    """Signals reordered (each by at most `window` places, < SEEN_RANGES) and replayed: same history."""
    rng = random.Random(seed)
    events, t = [], T0_MS
    kinds = ["round.completed"] * 6 + [
        "deposit.made",
        "session.started",
        "session.ended",
        "player.optout",
        "player.optin",
        "deposit.failed",
    ]
    for i in range(rng.randint(20, 160)):
        t += rng.randint(1, 90) * 1000
        kind = rng.choice(kinds)
        data = (
            {"stake": 2.0, "payout": rng.choice([0.0, 4.0]), "game": "slots"}
            if kind == "round.completed"
            else ({"amount": 10.0, "reason": "x"} if kind.startswith("deposit") else {})
        )
        events.append(signal_event(f"e{i}", kind, t, data, seq=i * 3 + rng.randint(0, 2)))
    signals = signals_of(events, per_batch)
    delivered = list(signals)
    for _ in range(replays):
        delivered.insert(rng.randrange(len(delivered) + 1), copy.deepcopy(rng.choice(signals)))
    # Reorder with bounded displacement (no signal moves more than `window` places).
    keyed = sorted(enumerate(delivered), key=lambda kv: kv[0] + rng.uniform(0, window))
    shuffled = [payload for _, payload in keyed]

    in_order, mixed = st.PlayerState(), st.PlayerState()
    for payload in signals:
        apply_signal(in_order, copy.deepcopy(payload))
    for payload in shuffled:
        apply_signal(mixed, copy.deepcopy(payload))
    assert [e.h for e in mixed.buf] == [e.h for e in in_order.buf]
    for counter in ("events", "sessions", "deposits", "deposit_failures", "first_ms"):
        assert getattr(mixed.agg, counter) == getattr(in_order.agg, counter), counter
    assert mixed.opted_out == in_order.opted_out


def test_a_restarted_sequence_is_recognised_by_its_newer_enqueued_time() -> None:
    """A new hub or a failover restarts sequence numbers: newer events in old ranges are not replays."""
    state = st.PlayerState()
    old = [dict(round_event(f"o{i}", T0_MS + i * 1000, 1, 1, seq=i), q=T0_MS + i * 1000) for i in range(50)]
    apply_signal(state, {"events": old, "r": [["0", 0, 49]]})
    new = [
        dict(round_event(f"n{i}", T0_MS + 90_000 + i, 1, 1, seq=i), q=T0_MS + 90_000 + i) for i in range(10)
    ]
    eff = apply_signal(state, {"events": new, "r": [["0", 0, 9]]})
    assert eff.accepted == 10 and eff.duplicates == 0
    assert apply_signal(state, {"events": new, "r": [["0", 0, 9]]}).duplicates == 10  # a true redelivery
    assert apply_signal(state, {"events": old[:5], "r": [["0", 0, 4]]}).accepted == 0


def test_without_batch_ranges_a_reordered_signal_is_still_accepted() -> None:
    state = st.PlayerState()
    first = [round_event(f"a{i}", T0_MS + i * 1000, 1, 1, seq=10 + i) for i in range(5)]
    later = [round_event(f"b{i}", T0_MS + 10_000 + i * 1000, 1, 1, seq=40 + i) for i in range(5)]
    apply_signal(state, {"events": later})
    eff = apply_signal(state, {"events": first})
    assert eff.accepted == 5 and state.seen == {"0": [[10, 14], [40, 44]]}


def test_ranges_across_many_partitions_stay_bounded() -> None:
    state = st.PlayerState()
    for k in range(32 * 10):
        st.mark_seen(state, str(k % 32), k * 100, k * 100 + 5)
    assert sum(len(r) for r in state.seen.values()) <= st.SEEN_RANGES_TOTAL
    assert len(msgspec.json.encode(state)) < 2048


def test_opt_out_wins_a_tie() -> None:
    for order in (["player.optout", "player.optin"], ["player.optin", "player.optout"]):
        state = st.PlayerState()
        for n, kind in enumerate(order):
            run(state, [signal_event(f"x{n}", kind, T0_MS, seq=n)])
        assert state.opted_out is True, order


def test_a_signal_built_with_integral_amounts_applies_and_stores_them_compactly() -> None:
    """Amounts arrive as floats from msgspec; a signal built in Python may carry ints: both apply."""
    state = st.PlayerState()
    events = [
        signals.SignalEvent(f"i{i}", EventType.ROUND, T0_MS + i * 1000, 2, 0, p="0", s=i) for i in range(3)
    ]
    events.append(signals.SignalEvent("f", EventType.ROUND, T0_MS + 5000, 2.5, 0.0, p="0", s=3))
    signal = signals.Signal(events)
    eff = st.apply(state, "p1", "events", signal, T0_MS + 3600_000, break_when_losing, RULES, "m")
    assert eff.accepted == 4
    assert [(e.a, type(e.a)) for e in state.buf] == [(2, int)] * 3 + [(2.5, float)]
    assert st.load_state(st.codec.encode(state)) == state
