"""Issue 18 through the real ActionStore and a real local Cosmos server: holdout documents, outcomes
met written onto their decision once, the challenger's shadow aggregates (one write per operation).
Each operation runs as the entity shell runs it (shared.player.run_operation)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pytest

from shared import entity as st
from shared import signals
from shared.features import Features
from shared.model import DEFAULT_MODEL_PATH, get_challenger, get_model
from shared.player import run_operation
from shared.policy import BONUS, BREAK, HELP, Rules
from shared.store import ActionStore, action_document
from shared.timeutil import iso_ms
from tests.challenger_model import break_happy
from tests.helpers import T0_MS, round_event, signal_event

pytestmark = pytest.mark.cosmos

MIN = 60_000
D1 = T0_MS + 10_000


def fixed(scores: Mapping[str, float]) -> Callable[[Features], st.Scored]:
    full = {BREAK: 0.0, HELP: 0.0, BONUS: 0.0, **scores}
    return lambda f: st.Scored(dict(full), ["net_loss"], [float(f.rounds_last_30m), 0.25, 3.0])


def warm() -> list[dict[str, Any]]:
    evs = [signal_event("w-s", "session.started", T0_MS)]
    return evs + [round_event(f"w{i}", T0_MS + (i + 1) * 1000, 1.0, 1.0) for i in range(3)]


class Ran(NamedTuple):
    state: st.PlayerState
    effects: st.Effects


def op(
    store: ActionStore,
    player: str,
    state: Any,
    events: list[dict[str, Any]],
    scorer: Callable[[Features], st.Scored],
    rules: Rules,
    now_ms: int | None = None,
    challenger: st.Challenger | None = None,
    version: str = "m-test",
) -> Ran:
    payload = signals.encode(signals.Signal([signals.from_v1(ev) for ev in events]))
    now = max(e["t"] for e in events) + 1000 if now_ms is None else now_ms
    out = run_operation(
        player, "events", state, payload, now_ms=now, scorer=scorer, model_version=version,
        rules=rules, store=store, challenger=challenger,
    )  # fmt: skip
    assert out.state is not None
    return Ran(out.state, out.effects)


def decisions(store: ActionStore, player: str) -> dict[str, dict[str, Any]]:
    return {
        d["id"]: d for d in store.player_actions(player) if d.get("status") not in ("suppressed", "shadow")
    }


def clean(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k != "ttl"}


def test_a_holdout_decision_is_written_once_never_delivered_and_as_a_sent_action_would_be(
    store: ActionStore,
) -> None:
    rules = Rules(warm_up_events=3, holdout_share={BONUS: 1.0})
    events = [*warm(), signal_event("d1", "deposit.made", D1, {"amount": 20.0})]
    out = op(store, "p-hold", None, events, fixed({BONUS: 0.9}), rules)
    assert [h.status for h in out.effects.holdouts] == ["holdout"] and out.effects.actions == []
    assert not out.state.outbox  # written in the operation that decided it
    (doc,) = decisions(store, "p-hold").values()
    assert doc["status"] == "holdout" and doc["group"] == "holdout"
    assert doc["outcome"] == {"name": "return_3d", "windowEnd": iso_ms(D1 + 72 * 60 * MIN)}
    # the same document a sent action would have been, but for status and group
    sent = st.PlayerState()
    st.apply(sent, "p-hold", "events", signals.Signal([signals.from_v1(e) for e in events]),
             D1 + 1000, fixed({BONUS: 0.9}), Rules(warm_up_events=3), "m-test")  # fmt: skip
    would_be = action_document("p-hold", sent.outbox[0].rec)  # type: ignore[arg-type]
    assert would_be["status"] == "pending" and would_be["group"] == "treated"
    assert {k: v for k, v in clean(doc).items() if k not in ("status", "group")} == {
        k: v for k, v in would_be.items() if k not in ("status", "group")
    }
    # a replay of the operation (from the state before it) creates nothing new
    assert store.write_counts()["action"] == 1
    again = op(store, "p-hold", None, events, fixed({BONUS: 0.9}), rules)
    assert [h.id for h in again.effects.holdouts] == [doc["id"]]
    assert store.write_counts()["action"] == 1 and clean(decisions(store, "p-hold")[doc["id"]]) == clean(doc)
    # never delivered (delivery reads status "pending"), and a response naming it is unknown
    pending = list(
        store.actions.query_items(
            "SELECT c.id FROM c WHERE c.status = 'pending'", enable_cross_partition_query=True
        )
    )
    assert pending == []
    assert store.record_outcome("p-hold", st.OutcomeRecord(doc["id"], "accepted", D1 + MIN)) == "unknown"
    assert decisions(store, "p-hold")[doc["id"]]["status"] == "holdout"


def test_an_outcome_met_is_written_onto_the_action_once(store: ActionStore) -> None:
    rules = Rules(warm_up_events=3)
    first = op(
        store,
        "p-met",
        None,
        [*warm(), signal_event("d1", "deposit.made", D1, {"amount": 9.0})],
        fixed({HELP: 0.9}),
        rules,
    )
    (action,) = first.effects.actions
    assert action.type == HELP and len(first.state.watch) == 1
    before = st.codec.decode(st.codec.encode(first.state))
    meeting = [signal_event("d2", "deposit.made", D1 + 10 * MIN, {"amount": 9.0})]
    second = op(store, "p-met", first.state, meeting, fixed({}), rules)
    assert second.state.watch == [] and not second.state.outbox
    doc = decisions(store, "p-met")[action.id]
    assert doc["outcome"] == {
        "name": "deposit_30m",
        "windowEnd": iso_ms(D1 + 30 * MIN),
        "metAt": iso_ms(D1 + 10 * MIN),
        "eventId": "d2",
    }
    assert doc["status"] == "pending" and doc["group"] == "treated"
    assert store.write_counts()["outcome"] == 1
    # the same operation replayed from the state before it: the conditional write changes nothing
    op(store, "p-met", before, meeting, fixed({}), rules)
    assert store.write_counts()["outcome"] == 1
    assert store.record_outcome_met("p-met", st.OutcomeMet(action.id, D1 + 12 * MIN, "d9")) == "already"
    # a later meeting event finds no watch
    op(
        store,
        "p-met",
        second.state,
        [signal_event("d3", "deposit.made", D1 + 20 * MIN, {"amount": 9.0})],
        fixed({}),
        rules,
    )
    assert store.write_counts()["outcome"] == 1
    assert decisions(store, "p-met")[action.id]["outcome"]["metAt"] == iso_ms(D1 + 10 * MIN)
    # a response still records on it, and keeps the outcome
    assert store.record_outcome("p-met", st.OutcomeRecord(action.id, "accepted", D1 + 11 * MIN)) == "recorded"
    doc = decisions(store, "p-met")[action.id]
    assert doc["status"] == "accepted" and doc["outcome"]["eventId"] == "d2"


def test_an_event_after_the_window_does_not_meet_and_a_late_one_in_the_grace_does(store: ActionStore) -> None:
    rules = Rules(warm_up_events=3)
    start = [*warm(), signal_event("d1", "deposit.made", D1, {"amount": 9.0})]
    out = op(store, "p-late", None, start, fixed({HELP: 0.9}), rules)
    (action,) = out.effects.actions
    op(
        store,
        "p-late",
        out.state,
        [signal_event("d2", "deposit.made", D1 + 31 * MIN, {"amount": 9.0})],
        fixed({}),
        rules,
    )
    assert "metAt" not in decisions(store, "p-late")[action.id]["outcome"]
    # another player: the meeting event arrives 35 minutes after the decision (inside the 10-minute grace)
    out = op(store, "p-grace", None, start, fixed({HELP: 0.9}), rules)
    (action,) = out.effects.actions
    late = [signal_event("d2", "deposit.made", D1 + 29 * MIN, {"amount": 9.0})]
    op(store, "p-grace", out.state, late, fixed({}), rules, now_ms=D1 + 1000 + 35 * MIN)
    assert decisions(store, "p-grace")[action.id]["outcome"]["metAt"] == iso_ms(D1 + 29 * MIN)


def stream(n: int, spacing_ms: int) -> list[list[dict[str, Any]]]:
    """Signals of 50 events: rounds with losses, a deposit every 40th event, sessions every 400."""
    events = []
    for i in range(n):
        t = T0_MS + 30 * MIN + i * spacing_ms  # from 10:30
        if i % 400 == 0:
            events.append(signal_event(f"s{i}", "session.started", t, seq=i))
        elif i % 40 == 39:
            events.append(signal_event(f"d{i}", "deposit.made", t, {"amount": 50.0}, seq=i))
        else:
            events.append(round_event(f"r{i}", t, 5.0, 12.0 * (i % 5 == 0), seq=i))
    return [events[b : b + 50] for b in range(0, n, 50)]


@pytest.fixture(scope="module")
def different_challenger(tmp_path_factory: pytest.TempPathFactory) -> st.Challenger:
    challenger = get_challenger(break_happy(tmp_path_factory.mktemp("challenger")))
    assert challenger is not None
    return challenger


@pytest.mark.parametrize("which", ["champion", "different"])
def test_the_challenger_is_aggregated_per_player_hour_with_one_write_per_operation(
    store: ActionStore, which: str, different_challenger: st.Challenger
) -> None:
    model = get_model()
    challenger = get_challenger(DEFAULT_MODEL_PATH) if which == "champion" else different_challenger
    assert challenger is not None
    rules = Rules()
    state: Any = None
    scored = agree = ops_scoring = 0
    for batch in stream(2400, 3000):  # 2 hours of event time from 10:30: three UTC hours
        out = op(
            store, "p-shadow", state, batch, model.score, rules, challenger=challenger, version=model.version
        )
        state = out.state
        assert not state.outbox
        scored += out.effects.shadow
        agree += out.effects.shadow_agree
        ops_scoring += out.effects.shadow > 0
    docs = [d for d in store.player_actions("p-shadow") if d.get("kind") == "shadow"]
    assert scored > 100, "the stream must make the model score often"
    assert len(docs) == 3 and len({d["id"] for d in docs}) == 3
    assert sum(d["count"] for d in docs) == scored and sum(d["agree"] for d in docs) == agree
    assert store.write_counts()["shadow"] == ops_scoring  # at most one write per operation
    for d in docs:
        assert sum(d["matrix"].values()) == d["count"] and all(
            s["n"] == d["count"] for s in d["scores"].values()
        )
        assert d["modelVersion"] == model.version and d["challengerVersion"] == challenger.version
        assert sum(d["differByRule"].values()) == d["count"] - d["agree"]
    if which == "champion":
        assert agree == scored  # the same model decides alike every time
        assert all(d["differByRule"] == {} for d in docs)
        for d in docs:
            for s in d["scores"].values():
                assert s["sx"] == pytest.approx(s["sy"]) and s["sxy"] == pytest.approx(s["sxx"])
    else:
        assert agree < scored  # a different model must show it
        assert any(d["differByRule"] for d in docs)
