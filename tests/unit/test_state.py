"""The entity's pure logic: dedupe, ordering, bounds, triggers, outbox, ids."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import msgspec
import pytest

from shared import state as st
from shared.policy import BREAK, Rules
from shared.routing import Message, route
from tests.helpers import T0_MS, body, cloud_event, round_event, signal_event

MIN = 60_000


def break_when_losing(vector: list[float]) -> tuple[Mapping[str, float], list[str]]:
    """A transparent scorer: break score grows with the loss streak."""
    from shared.features import FEATURES

    streak = vector[FEATURES.index("loss_streak")]
    return {BREAK: min(1.0, streak / 5.0), "help_offer": 0.0, "bonus_offer": 0.0}, ["loss_streak"]


RULES = Rules(warm_up_events=3)


def losing_session(n: int, start_ms: int = T0_MS, seq0: int = 1, prefix: str = "r") -> list[dict]:
    evs = [signal_event(f"{prefix}-start", "session.started", start_ms, seq=seq0)]
    evs += [
        round_event(f"{prefix}{i}", start_ms + (i + 1) * 10_000, 2.0, 0.0, seq=seq0 + 1 + i) for i in range(n)
    ]
    return evs


def run(state: st.PlayerState, events: list[dict], now_ms: int = T0_MS + 3600_000) -> st.Effects:
    return st.apply(state, "p1", "events", {"events": events}, now_ms, break_when_losing, RULES, "m-test")


def test_loss_streak_triggers_one_break_action() -> None:
    state = st.PlayerState()
    eff = run(state, losing_session(12))
    assert [a["type"] for a in eff.actions] == [BREAK]
    action = eff.actions[0]
    assert action["triggerEventId"] == "r4"  # fifth loss: streak 5 -> score 1.0
    assert action["id"] == st.action_id("p1", "r4", BREAK)
    assert action["status"] == "pending" and action["modelVersion"] == "m-test"
    assert "feature:loss_streak" in action["reasons"] and "rule:cooldown" in action["reasons"]
    assert eff.rejections.get("cooldown", 0) >= 1  # the streak of 10 hit the cooldown
    assert [item.doc["id"] for item in state.outbox] == [action["id"]]


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
    assert [e[st.ID] for e in reordered.buf] == [e[st.ID] for e in in_order.buf]
    assert [e[st.T] for e in reordered.buf] == sorted(e[st.T] for e in reordered.buf)


def test_late_event_is_inserted_by_time_but_does_not_trigger() -> None:
    state = st.PlayerState()
    run(state, losing_session(3))
    late = signal_event("late-dep", "deposit.made", T0_MS + 5_000, {"amount": 10.0}, seq=50)
    eff = run(state, [late])
    assert eff.accepted == 1 and eff.triggers == 0
    assert [e[st.ID] for e in state.buf][:2] == ["r-start", "late-dep"]


def test_redelivered_evicted_event_is_a_duplicate() -> None:
    state = st.PlayerState()
    events = losing_session(st.MAX_BUFFER_EVENTS + 40)
    run(state, events)
    assert len(state.buf) == st.MAX_BUFFER_EVENTS
    oldest_kept = state.buf[0][st.T]
    evicted = [e for e in events if e["t"] < oldest_kept]
    assert len(evicted) >= 40
    eff = run(state, copy.deepcopy(evicted))
    assert eff.duplicates == len(evicted) and eff.accepted == 0


def test_buffer_is_bounded_by_age() -> None:
    state = st.PlayerState()
    run(state, losing_session(5))
    later = T0_MS + st.MAX_BUFFER_AGE_MS + 10 * MIN
    run(state, [round_event("much-later", later, 1.0, 1.0, seq=100)])
    assert all(e[st.T] >= later - st.MAX_BUFFER_AGE_MS for e in state.buf)
    assert [e[st.ID] for e in state.buf] == ["much-later"]
    assert state.agg.events == 7  # lifetime counters keep the history


def test_state_stays_small() -> None:
    state = st.PlayerState()
    for k in range(10):
        run(state, losing_session(60, start_ms=T0_MS + k * 3600_000, seq0=1 + k * 100, prefix=f"s{k}r"))
    size = len(msgspec.json.encode(state))
    assert len(state.buf) <= st.MAX_BUFFER_EVENTS
    assert size < 16 * 1024, size


def test_batching_does_not_change_decisions() -> None:
    events = losing_session(40)
    whole = st.PlayerState()
    eff_whole = run(whole, events)
    singles = st.PlayerState()
    actions = []
    for ev in events:
        actions += run(singles, [ev]).actions
    strip = lambda docs: [{k: v for k, v in d.items() if k != "decidedAt"} for d in docs]  # noqa: E731
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
    doc_id = state.outbox[0].doc["id"]
    assert st.acknowledge(state, {doc_id}, now + 1000) == 0 and state.outbox == []
    run(state, [round_event("x", T0_MS + 40 * MIN, 1, 0, seq=500)], now_ms=now)
    state2 = st.PlayerState()
    run(state2, losing_session(5), now_ms=now)
    assert st.acknowledge(state2, set(), now + st.OUTBOX_TTL_MS + 1) == 1
    assert state2.outbox == []


def test_state_round_trips_through_json() -> None:
    state = st.PlayerState()
    run(state, losing_session(8))
    dumped = st.dump_state(state)
    import json

    again = st.load_state(json.dumps(dumped))
    assert msgspec.json.encode(again) == msgspec.json.encode(state)
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
    assert [a["type"] for a in eff.actions] == [BREAK]


def test_signal_inputs_are_never_falsy() -> None:
    """The 1.x client turns falsy inputs ([] or {}) into None: signals always carry a non-empty dict."""
    msgs = [Message(body(cloud_event(event_id=f"e{i}", at_ms=T0_MS + i)), "0", i) for i in range(3)]
    msgs.append(Message(body(cloud_event("heartbeat", player="p2", data={})), "0", 9))
    batch = route(msgs, now_ms=T0_MS + 3600_000)
    inputs = batch.signal_inputs()
    assert set(inputs) == {"player-00042"}
    for payload in inputs.values():
        assert isinstance(payload, dict) and payload and payload["events"]
        assert bool(payload) is True
