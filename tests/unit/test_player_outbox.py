"""The entity's outbox: reminders while anything is unwritten, refusals kept apart, nothing raised.

The store and the reminder queue are in-process fakes of their adapters (shared.store, shared.reminders),
which are tested against the real Cosmos DB server and Azurite elsewhere."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from shared import entity as st
from shared.entity.model import MAX_SUPPRESSED_PENDING
from shared.player import REMINDER_MAX_S, reminder_delay_s, run_operation
from shared.policy import Rules
from shared.store import Write, WriteReport
from tests.helpers import NOW_MS, T0_MS


class FakeStore:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode  # ok | fail | refuse
        self.calls = 0
        self.docs: list[dict[str, Any]] = []  # every document a write was asked for

    def write_outbox(self, player_id: str, writes: list[Write]) -> WriteReport:
        self.calls += 1
        self.docs.extend(w.doc for w in writes)
        ids = [w.doc["id"] for w in writes]
        if self.mode == "fail":
            return WriteReport(failed={i: "503" for i in ids})
        if self.mode == "refuse":
            return WriteReport(refused={i: 413 for i in ids})
        return WriteReport(written=set(ids))

    def record_outcome(self, player_id: str, outcome: st.OutcomeRecord) -> str:
        return "recorded"

    def delete_player_data(self, player_id: str) -> int:
        return 0

    def record_erasure(self, player_id: str, erased_ms: int) -> None:
        if self.mode == "fail":
            raise ConnectionError("cosmos down")

    def delete_player_deadletters(self, player_id: str) -> int:
        if self.mode == "fail":
            raise ConnectionError("cosmos down")
        return 0


class FakeReminders:
    def __init__(self, broken: bool = False) -> None:
        self.asked: list[tuple[str, int]] = []
        self.ops: list[str] = []
        self.broken = broken

    def remind(self, player_id: str, delay_s: int, op: str = "flush") -> None:
        if self.broken:
            raise ConnectionError("queue service down")
        self.asked.append((player_id, delay_s))
        self.ops.append(op)


def with_outbox(n: int = 1, attempts: int = 0) -> dict[str, Any]:
    """A state as version 1 stored it (a JSON object, outbox items holding documents): every test
    here also proves such a state is upgraded on load."""
    doc = {"type": "break_suggestion", "eventTime": "2026-11-21T10:00:00.000Z", "status": "pending"}
    items = [
        {"doc": dict(doc, id=f"act-{i}"), "since_ms": NOW_MS - 60_000, "attempts": attempts} for i in range(n)
    ]
    return {"v": 1, "outbox": items}


def plain(outcome: Any) -> Any:
    """The outcome with its state as plain data (what a test compares)."""
    return dataclasses.replace(outcome, state=msgspec.to_builtins(outcome.state))


def flush(raw: dict[str, Any], store: FakeStore, reminders: FakeReminders | None, now: int = NOW_MS) -> Any:
    return plain(
        run_operation(
            "p-1",
            "flush",
            raw,
            {"reason": "reminder"},
            now_ms=now,
            scorer=lambda f: st.Scored({}, [], []),
            model_version="m",
            rules=Rules(),
            store=store,
            reminders=reminders,
            reminder_first_s=10,
        )
    )


def test_a_failed_write_asks_for_one_reminder_and_the_next_backs_off() -> None:
    reminders = FakeReminders()
    out = flush(with_outbox(), FakeStore("fail"), reminders)
    [(player, first)] = reminders.asked
    assert player == "p-1" and 10 <= first <= 12 and out.state["remind_ms"] == NOW_MS + first * 1000
    # Another operation before the reminder is due: still one reminder pending, none added.
    again = flush(out.state, FakeStore("fail"), reminders, now=NOW_MS + 1000)
    assert len(reminders.asked) == 1 and again.state["remind_ms"] == out.state["remind_ms"]
    # The reminder's own flush (due now) fails again: the next one waits longer.
    flush(again.state, FakeStore("fail"), reminders, now=out.state["remind_ms"])
    assert len(reminders.asked) == 2 and reminders.asked[1][1] > first


def test_a_successful_flush_empties_the_outbox_and_asks_for_nothing() -> None:
    reminders = FakeReminders()
    out = flush(with_outbox(3), FakeStore("ok"), reminders)
    assert out.written == 3 and not out.state.get("outbox") and not out.state.get("remind_ms")
    assert reminders.asked == []


def test_an_action_refused_for_good_leaves_the_outbox_and_is_kept_with_its_status() -> None:
    reminders = FakeReminders()
    out = flush(with_outbox(2), FakeStore("refuse"), reminders)
    assert not out.state.get("outbox") and reminders.asked == []
    assert [(r["id"], r["status"]) for r in out.state["refused"]] == [("act-0", 413), ("act-1", 413)]


def test_a_reminder_that_cannot_be_scheduled_is_asked_for_again_later() -> None:
    out = flush(with_outbox(), FakeStore("fail"), FakeReminders(broken=True))
    assert out.state["outbox"] and not out.state.get("remind_ms")  # the action is kept, nothing raised
    reminders = FakeReminders()
    flush(out.state, FakeStore("fail"), reminders, now=NOW_MS + 1000)
    assert len(reminders.asked) == 1


def test_reminder_delays_are_bounded_and_spread_between_players() -> None:
    delays = {reminder_delay_s(f"p{i}", 1) for i in range(200)}
    assert min(delays) >= 10 and max(delays) <= 12 and len(delays) > 1
    assert reminder_delay_s("p", 30) <= REMINDER_MAX_S * 1.2


def op(name: str, raw: Any, store: FakeStore, reminders: FakeReminders, now: int, payload: Any = None) -> Any:
    return plain(
        run_operation(
            "p-1",
            name,
            raw,
            payload if payload is not None else {"reason": "reminder"},
            now_ms=now,
            scorer=lambda f: st.Scored({}, [], []),
            model_version="m",
            rules=Rules(),
            store=store,
            reminders=reminders,
        )
    )


def test_an_erasure_cosmos_cannot_complete_keeps_one_backing_off_reminder_not_one_per_event() -> None:
    reminders = FakeReminders()
    out = op("erase", None, FakeStore("fail"), reminders, NOW_MS, {"requested": True})
    assert out.state["erasing"] and reminders.ops == ["erase"]
    state = out.state
    for i in range(50):  # the player's events keep coming while Cosmos is down
        state = op("events", state, FakeStore("fail"), reminders, NOW_MS + 100 + i, {"events": []}).state
    assert reminders.ops == ["erase"]  # still the one pending reminder
    due = state["remind_ms"]
    state = op("erase", state, FakeStore("fail"), reminders, due).state  # the reminder fires, fails again
    assert reminders.ops == ["erase", "erase"] and reminders.asked[1][1] > reminders.asked[0][1]
    done = op("erase", state, FakeStore("ok"), reminders, state["remind_ms"])
    assert not done.state.get("erasing") and done.state["erased_ms"] and reminders.ops[-1] == "sweep"
    # A reminder-sourced erase of a player already erased does nothing more.
    again = op("erase", done.state, FakeStore("fail"), reminders, state["remind_ms"] + 1)
    assert json_result(again) == {"erased": "p-1", "already": True}


def test_a_failed_sweep_is_retried_and_a_sweep_then_looks_after_the_outbox() -> None:
    reminders = FakeReminders()
    erased = op("erase", None, FakeStore("ok"), reminders, NOW_MS, {"requested": True}).state
    failed = op("sweep", erased, FakeStore("fail"), reminders, NOW_MS + 200_000)
    assert failed.result == {"swept": 0, "retrying": True} and reminders.ops == ["sweep", "sweep"]
    with_box = dict(failed.state, outbox=with_outbox()["outbox"], remind_ms=0)
    swept = op("sweep", with_box, FakeStore("ok"), reminders, NOW_MS + 400_000)
    assert swept.result == {"swept": 0} and reminders.ops[-1] == "flush"


def json_result(outcome: Any) -> Any:
    return outcome.result


def suppressed(trigger: str, t: int, rule: str = "cooldown", atype: str = "bonus_offer") -> st.ActionRecord:
    return st.ActionRecord(
        id=st.action_id("p-1", trigger, atype), type=atype, status="suppressed", score=0.8,
        scores=[0.1, 0.2, 0.8], features=[0.5] * 24, model="m", trigger=trigger, t=t, decided_ms=NOW_MS,
        rejected_by=rule,
    )  # fmt: skip


def run_flush(state: st.PlayerState, store: FakeStore, now: int = NOW_MS) -> Any:
    return run_operation(
        "p-1", "flush", state, {"reason": "reminder"}, now_ms=now, scorer=lambda f: st.Scored({}, [], []),
        model_version="m", rules=Rules(), store=store, reminders=FakeReminders(),
    )  # fmt: skip


def test_suppressed_decisions_of_one_hour_type_and_rule_are_one_document_that_goes_on_counting() -> None:
    hour = T0_MS - T0_MS % st.HOUR_MS
    state = st.PlayerState(newest_ms=hour + 10)
    for k in range(5):
        st.add_suppressed(state, "p-1", suppressed(f"e{k}", hour + k), NOW_MS)
    st.add_suppressed(state, "p-1", suppressed("d0", hour + 9, rule="daily_cap"), NOW_MS)
    assert [i.rec.count for i in state.outbox] == [5, 1]  # type: ignore[union-attr]
    store = FakeStore("ok")
    out = run_flush(state, store)
    assert out.written == 2 and not out.state.outbox and len(out.state.sup) == 2  # written, kept to count on
    first = {d["rejectedBy"]: d for d in store.docs}
    assert first["cooldown"]["count"] == 5 and first["cooldown"]["status"] == "suppressed"
    assert [e["triggerEventId"] for e in first["cooldown"]["examples"]] == ["e0", "e1"]
    # the next decision of the same kind: the same document, replaced with the new count
    st.add_suppressed(out.state, "p-1", suppressed("e5", hour + 20), NOW_MS)
    store.docs.clear()
    out = run_flush(out.state, store)
    [doc] = store.docs
    assert doc["id"] == first["cooldown"]["id"] and doc["count"] == 6 and len(doc["examples"]) == 2
    # a trigger in a later hour closes this one: its written aggregates leave the state
    out.state.newest_ms = hour + st.HOUR_MS
    st.add_suppressed(out.state, "p-1", suppressed("n0", hour + st.HOUR_MS), NOW_MS)
    out = run_flush(out.state, store)
    assert [a.hour_ms for a in out.state.sup] == [hour + st.HOUR_MS]


def test_while_cosmos_fails_the_open_hours_aggregates_wait_and_closed_hours_are_bounded() -> None:
    hour = T0_MS - T0_MS % st.HOUR_MS
    state = st.PlayerState()
    for h in range(12):  # twelve hours of suppressions, none written
        state.newest_ms = hour + h * st.HOUR_MS
        st.add_suppressed(state, "p-1", suppressed(f"e{h}", hour + h * st.HOUR_MS), NOW_MS)
        out = run_flush(state, FakeStore("fail"), now=NOW_MS + h * 1000)
        state = out.state
    held = [i.rec for i in state.outbox]
    assert len(held) == MAX_SUPPRESSED_PENDING + 1  # (hours 3-10 closed) + the open hour 11
    assert held[-1].hour_ms == hour + 11 * st.HOUR_MS  # type: ignore[union-attr]
    assert out.effects.suppressed_dropped == 1  # each flush dropped the oldest closed hour's decision
    # long after: the open hour's aggregate never expires (dropping it would let a later write
    # replace its document with a smaller count); the closed ones do
    out = run_flush(state, FakeStore("fail"), now=NOW_MS + st.OUTBOX_TTL_MS + 60_000)
    assert [i.rec.hour_ms for i in out.state.outbox] == [hour + 11 * st.HOUR_MS]  # type: ignore[union-attr]


def test_each_operation_writes_the_aggregates_it_changed_once_with_the_count_so_far() -> None:
    """Writes are bounded by operations, not decisions: an operation that counted three decisions into
    one aggregate writes it once; the document is replaced, never added to."""
    from shared import signals

    hour = T0_MS - T0_MS % st.HOUR_MS
    state = st.PlayerState(newest_ms=hour + 10)
    store = FakeStore("ok")
    for k in range(4):  # four operations, three decisions each
        for j in range(3):
            st.add_suppressed(state, "p-1", suppressed(f"e{k}-{j}", hour + k), NOW_MS)
        state = run_operation(
            "p-1", "events", state, signals.encode(signals.Signal([])), now_ms=NOW_MS + k,
            scorer=lambda f: st.Scored({}, [], []), model_version="m", rules=Rules(), store=store,
        ).state  # fmt: skip
    assert [d["count"] for d in store.docs] == [3, 6, 9, 12] and len({d["id"] for d in store.docs}) == 1
    assert not state.outbox and [a.count for a in state.sup] == [12]
