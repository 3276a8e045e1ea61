"""The counters of issue 18, as an entity operation records them (shared.player._record): holdout
decisions per type, outcome watches ended and written, the challenger's agreement."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from shared import entity as st
from shared import signals, telemetry
from shared.player import run_operation
from shared.policy import BONUS, BREAK, HELP, Rules
from shared.store import Write, WriteReport
from tests.helpers import T0_MS, round_event, signal_event

MIN = 60_000
D1 = T0_MS + 10_000


class Store:
    def __init__(self) -> None:
        self.met: list[st.OutcomeMet] = []

    def write_outbox(self, player_id: str, writes: list[Write]) -> WriteReport:
        return WriteReport(written={w.doc["id"] for w in writes})

    def record_outcome(self, player_id: str, outcome: st.OutcomeRecord) -> str:
        return "recorded"

    def record_outcome_met(self, player_id: str, met: st.OutcomeMet) -> str:
        self.met.append(met)
        return "recorded" if len(self.met) == 1 else "already"

    def delete_player_data(self, player_id: str) -> int:
        return 0

    def record_erasure(self, player_id: str, erased_ms: int) -> None:
        return None

    def delete_player_deadletters(self, player_id: str) -> int:
        return 0


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    telemetry.tally.flush()  # counts of earlier tests go to their own instruments
    saved = telemetry._instruments
    r = InMemoryMetricReader()
    telemetry._instruments = telemetry.Instruments(MeterProvider(metric_readers=[r]).get_meter("t"))
    try:
        yield r
    finally:
        telemetry.tally.flush()
        telemetry._instruments = saved


def counts(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    telemetry.tally.flush()
    out: dict[tuple[tuple[str, Any], ...], float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        assert isinstance(p, NumberDataPoint)
                        out[tuple(sorted((p.attributes or {}).items()))] = p.value
    return out


def scorer(scores: dict[str, float]) -> Any:
    full = {BREAK: 0.0, HELP: 0.0, BONUS: 0.0, **scores}
    return lambda f: st.Scored(dict(full), [], [1.0])


def op(state: Any, events: list[dict[str, Any]], store: Store, rules: Rules, **kw: Any) -> st.PlayerState:
    payload = signals.encode(signals.Signal([signals.from_v1(e) for e in events]))
    out = run_operation(
        "p1", "events", state, payload, now_ms=kw.pop("now_ms", max(e["t"] for e in events) + 1000),
        scorer=kw.pop("scorer"), model_version="m", rules=rules, store=store, **kw,
    )  # fmt: skip
    assert out.state is not None
    return out.state


def warm() -> list[dict[str, Any]]:
    evs = [signal_event("w-s", "session.started", T0_MS)]
    return evs + [round_event(f"w{i}", T0_MS + (i + 1) * 1000, 1.0, 1.0) for i in range(3)]


def test_holdout_watches_outcome_writes_and_shadow_are_counted(reader: InMemoryMetricReader) -> None:
    store = Store()
    rules = Rules(warm_up_events=3, holdout_share={BREAK: 1.0})
    challenger = st.Challenger(lambda f: {BREAK: 0.1, HELP: 0.1, BONUS: 0.1}, "ch")
    state = op(None, [*warm(), signal_event("d1", "deposit.made", D1, {"amount": 5.0})], store, rules,
               scorer=scorer({BREAK: 0.9}), challenger=challenger)  # fmt: skip
    assert counts(reader, telemetry.ACTIONS_HOLDOUT) == {(("type", BREAK),): 1}
    assert counts(reader, telemetry.ACTIONS) == {}  # nothing was sent
    assert counts(reader, telemetry.SHADOW_DECISIONS) == {(("result", "differ"),): 1}
    # the break's outcome: the session ends 5 minutes later (a trigger too: the challenger agrees on none)
    state = op(state, [signal_event("e1", "session.ended", D1 + 5 * MIN)], store, rules,
               scorer=scorer({}), challenger=challenger)  # fmt: skip
    assert counts(reader, telemetry.OUTCOME_WATCHES) == {(("result", "met"), ("type", BREAK)): 1}
    assert counts(reader, telemetry.OUTCOME_WRITES) == {(("result", "recorded"),): 1}
    assert store.met == [st.OutcomeMet(st.action_id("p1", "d1", BREAK), D1 + 5 * MIN, "e1")]
    assert counts(reader, telemetry.SHADOW_DECISIONS) == {
        (("result", "differ"),): 1,
        (("result", "agree"),): 1,
    }


def test_an_expired_watch_is_counted(reader: InMemoryMetricReader) -> None:
    store = Store()
    rules = Rules(warm_up_events=3)
    state = op(None, [*warm(), signal_event("d1", "deposit.made", D1, {"amount": 5.0})], store, rules,
               scorer=scorer({HELP: 0.9}))  # fmt: skip
    assert len(state.watch) == 1
    late = D1 + 1000 + 30 * MIN + st.OUTCOME_GRACE_MS + 1
    run_operation("p1", "flush", state, None, now_ms=late, scorer=scorer({}), model_version="m",
                  rules=rules, store=store)  # fmt: skip
    assert state.watch == []
    assert counts(reader, telemetry.OUTCOME_WATCHES) == {(("result", "expired"), ("type", HELP)): 1}
