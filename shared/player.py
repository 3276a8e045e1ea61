"""Run one entity operation: pure logic, then its effects, then one new state.

This is the only place where the entity's side effects happen, in this order:
decide (pure) -> write the outbox (action documents, the hourly aggregates of
suppressed decisions, outcomes of responses) -> acknowledge -> ask for a reminder if anything is still
unwritten -> return the state to set once.

A failed write leaves the action in the outbox. The entity then asks for an
outbox reminder (a queue message with a visibility delay, shared.reminders)
that signals its ``flush`` operation, so the write is retried soon after Cosmos
recovers whether or not the player sends another event; every later operation
retries it too, until it expires (``OUTBOX_TTL_MS``). An action Cosmos refuses
for good (400, 413) leaves the outbox and is kept, bounded, in ``refused``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from opentelemetry.trace import Status, StatusCode

from shared import entity as st
from shared import erasure, telemetry, tracing
from shared.breaker import CircuitOpen
from shared.policy import Rules
from shared.reminders import Reminders
from shared.store import (
    PermanentWriteFailure,
    Write,
    WriteFailed,
    WriteReport,
    action_document,
    shadow_document,
    suppressed_document,
)

log = logging.getLogger(__name__)


class Store(Protocol):
    def write_outbox(self, player_id: str, writes: list[Write]) -> WriteReport: ...

    def record_outcome(self, player_id: str, outcome: st.OutcomeRecord) -> str: ...

    def record_outcome_met(self, player_id: str, met: st.OutcomeMet) -> str: ...

    def delete_player_data(self, player_id: str) -> int: ...

    def record_erasure(self, player_id: str, erased_ms: int) -> None: ...

    def delete_player_deadletters(self, player_id: str) -> int: ...


# The erasure sweep's part in parked trigger batches (shared.parking.erase_player): takes the
# player's events enqueued up to the erasure (player id, erased_ms) out of every parked blob,
# returns how many; raises when storage refuses.
ParkedEraser = Callable[[str, int], int]


# The first reminder comes after REMINDER_FIRST_S, later ones back off to REMINDER_MAX_S: after
# Cosmos recovers, an unwritten action is written within REMINDER_MAX_S (plus queue polling).
REMINDER_FIRST_S = 10
REMINDER_MAX_S = 300


def reminder_delay_s(player_id: str, attempts: int, first_s: int = REMINDER_FIRST_S) -> int:
    """Back off with the write attempts so far, with a stable per-player jitter of up to 20%,
    so that the players an outage left with an outbox do not all wake at the same instant."""
    base = min(REMINDER_MAX_S, first_s * 2 ** max(0, attempts - 1))
    jitter = int(hashlib.blake2b(player_id.encode(), digest_size=2).hexdigest(), 16) / 0xFFFF
    return max(1, int(base * (1 + 0.2 * jitter)))


class _PlayerRef:
    """The player as telemetry names it (a hash), computed only if a traced event or write needs it."""

    __slots__ = ("_hashed", "_id", "_ref")

    def __init__(self, player_id: str, hashed: bool) -> None:
        self._id, self._hashed, self._ref = player_id, hashed, ""

    def __call__(self) -> str:
        if not self._ref:
            self._ref = telemetry.player_ref(self._id, self._hashed)
        return self._ref


@dataclass
class Outcome:
    state: st.PlayerState | None  # None: the entity is deleted (never, today: erasure keeps a tombstone)
    result: Any
    effects: st.Effects
    written: int = 0
    write_failures: int = 0


def run_operation(
    player_id: str,
    op: str,
    raw_state: Any,
    payload: Any,
    *,
    now_ms: int,
    scorer: st.Scorer,
    model_version: str,
    rules: Rules,
    store: Store,
    reminders: Reminders | None = None,
    reminder_first_s: int = REMINDER_FIRST_S,
    hash_player_ids: bool = True,
    parked: ParkedEraser | None = None,
    challenger: st.Challenger | None = None,
) -> Outcome:
    ref = _PlayerRef(player_id, hash_player_ids)
    state = raw_state if isinstance(raw_state, st.PlayerState) else st.load_state(raw_state)
    from_reminder = isinstance(payload, dict) and payload.get("reason") == "reminder"
    if op == "erase" and from_reminder and state.erased_ms and not state.erasing:
        return Outcome(state, {"erased": player_id, "already": True}, st.Effects())
    if op == "erase" or state.erasing:
        return _erase(player_id, op, state, store, reminders, now_ms)
    if op == "sweep":
        return _sweep(player_id, op, state, store, reminders, now_ms, reminder_first_s, parked)
    effects = st.apply(
        state,
        player_id,
        op,
        payload,
        now_ms,
        tracing.traced_scorer(scorer, model_version),
        rules,
        model_version,
        tracing.trigger_hook(ref, model_version),
        challenger,
    )
    written: list[st.OutboxItem] = []
    failures = 0
    if state.outbox:
        failures = _flush(player_id, ref, state, store, effects, written, now_ms)
        if effects.outbox_expired:
            log.error("outbox items expired unwritten", extra={"expired": effects.outbox_expired})
    _record(op, effects, state, written, failures, now_ms)
    _ask_for_reminder(state, player_id, reminders, now_ms, reminder_first_s)
    return Outcome(state, effects.result, effects, len(written), failures)


def _flush(
    player_id: str,
    ref: Callable[[], str],
    state: st.PlayerState,
    store: Store,
    effects: st.Effects,
    written: list[st.OutboxItem],
    now_ms: int,
) -> int:
    """Write the outbox: its documents together (one transactional batch, or concurrently: see
    ``ActionStore.write_outbox``), a traced one on its own inside its decision's trace, then the
    outcomes unless Cosmos is failing. What fails waits in the outbox (and for a reminder); returns
    1 if anything failed, else 0.

    A suppressed aggregate is written in the operation that changed it, once whatever the number of
    decisions the operation counted into it: writes are bounded by operations (signals), not events.
    (Waiting to count later operations into the same write would leave an hour's last count to a
    reminder, and unwritten when a local run ends.)"""
    items = list(state.outbox)
    done: set[str] = set()
    tried: set[str] = set()
    report = WriteReport()
    outcomes: dict[str, int] = {}
    met: dict[str, int] = {}
    together: list[Write] = []
    for item in items:
        rec = item.rec
        if isinstance(rec, st.OutcomeRecord | st.OutcomeMet):
            continue
        if isinstance(rec, st.SuppressedAggregate):
            write = Write("upsert", suppressed_document(player_id, rec))
        elif isinstance(rec, st.ShadowAggregate):
            write = Write("upsert", shadow_document(player_id, rec))
        else:
            write = Write("create", action_document(player_id, rec))
        tried.add(item.id)
        if item.trace:  # sampled: the write is a child span of the decision, on this thread
            with tracing.write_span(item.trace, item.id, ref) as span:
                one = store.write_outbox(player_id, [write])
                if one.failed or one.refused:
                    span.set_status(Status(StatusCode.ERROR, "write failed or refused"))
            report.merge(one)
        else:
            together.append(write)
    if together:
        report.merge(store.write_outbox(player_id, together))
    if not report.failed:  # after the documents they update
        for item in items:
            rec = item.rec
            if isinstance(rec, st.OutcomeRecord):
                one = _write_outcome(store.record_outcome, player_id, item.id, rec, rec.action_id, outcomes)
            elif isinstance(rec, st.OutcomeMet):
                one = _write_outcome(store.record_outcome_met, player_id, item.id, rec, rec.action_id, met)
            else:
                continue
            tried.add(item.id)
            report.merge(one)
            if one.failed:  # Cosmos is failing: the rest wait in the outbox
                break
    for item in items:
        if item.id in report.written:
            done.add(item.id)
            written.append(item)
    st.record_refused(state, items, report.refused, now_ms)
    effects.outbox_expired = st.acknowledge(state, done, now_ms, tried)
    failures = 1 if report.failed else 0
    if failures:
        dropped = st.bound_suppressed(state)
        effects.suppressed_dropped = sum(st.suppressed_count(i) for i in dropped)
        effects.shadow_dropped = sum(1 for i in dropped if isinstance(i.rec, st.ShadowAggregate))
    if report.refused:
        telemetry.add_counts(
            telemetry.instruments().actions_refused,
            _count(str(s) for s in report.refused.values()),
            "status",
        )
    if outcomes:
        telemetry.add_counts(telemetry.instruments().outcomes, outcomes, "result")
    if met:
        telemetry.add_counts(telemetry.instruments().outcome_writes, met, "result")
    return failures


def _write_outcome(
    record: Callable[[str, Any], str],
    player_id: str,
    item_id: str,
    rec: st.OutcomeRecord | st.OutcomeMet,
    action_id: str,
    counts: dict[str, int],
) -> WriteReport:
    """Record a response (or an outcome met) on its action; an unknown action is counted, not an error."""
    report = WriteReport()
    try:
        result = record(player_id, rec)
    except PermanentWriteFailure as exc:
        log.error("outcome refused by Cosmos DB for good", extra={"action_id": action_id})
        counts["refused"] = counts.get("refused", 0) + 1
        report.refused[item_id] = exc.status
        return report
    except (WriteFailed, CircuitOpen, AzureError, OSError) as exc:
        log.warning("outcome write failed; kept in outbox: %s", exc, extra={"action_id": action_id})
        report.failed[item_id] = str(exc)
        return report
    except Exception as exc:  # noqa: BLE001 - never wedge the entity: retried, and expires like any item
        log.exception("outcome write raised; kept in outbox", extra={"action_id": action_id})
        report.failed[item_id] = f"{type(exc).__name__}: {exc}"
        return report
    counts[result] = counts.get(result, 0) + 1
    report.written.add(item_id)
    return report


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _ask_for_reminder(
    state: st.PlayerState, player_id: str, reminders: Reminders | None, now_ms: int, first_s: int
) -> None:
    """Keep one reminder pending while the outbox holds anything; none when it is empty."""
    if not state.outbox:
        state.remind_ms = 0
        return
    if reminders is None or (state.remind_ms and now_ms < state.remind_ms):
        return  # one is pending (this operation was not it)
    delay = reminder_delay_s(player_id, max(i.attempts for i in state.outbox), first_s)
    state.remind_ms = 0
    _remind(state, player_id, reminders, now_ms, delay, "flush")


def _tombstone(state: st.PlayerState, **fields: Any) -> st.PlayerState:
    """What an erased player keeps: where its stream was, no events or history."""
    return st.PlayerState(seen=state.seen, floor=state.floor, qhi=state.qhi, **fields)


def _erase(
    player_id: str, op: str, state: st.PlayerState, store: Store, reminders: Reminders | None, now_ms: int
) -> Outcome:
    """Erase the player's actions and dead letters, and its history in the entity.

    The history goes at once. The entity keeps a tombstone (the dedupe marks
    and the erasure time, no events) so that a redelivered or reordered signal
    from before the erasure cannot rebuild what was erased. The erasure record
    goes first (shared.erasure): from then on ingest writes no dead letter of
    this player. If Cosmos cannot be reached, the tombstone says ``erasing`` and
    the erasure is retried by a reminder and by every later operation (whose
    events are discarded) until it succeeds; once it has, a sweep a few minutes
    later deletes any dead letter another instance wrote before it learned of
    the erasure.
    """
    effects = st.Effects(erase=True)
    try:
        store.record_erasure(player_id, now_ms)
        deleted = store.delete_player_data(player_id)
    except (AzureError, OSError, RuntimeError) as exc:
        log.warning("erasure incomplete; retried: %s", type(exc).__name__)
        effects.rejections["erasing"] = 1
        _record(op, effects, st.PlayerState(), [], 0, now_ms)
        tomb = _tombstone(state, erasing=True, remind_ms=state.remind_ms, retries=state.retries)
        _retry_later(tomb, player_id, reminders, now_ms, "erase")
        return Outcome(tomb, {"erased": False, "retrying": True}, effects)
    _record(op, effects, st.PlayerState(), [], 0, now_ms)
    tomb = _tombstone(state, erased_ms=now_ms)
    _remind(tomb, player_id, reminders, now_ms, erasure.SWEEP_DELAY_S, "sweep")
    return Outcome(tomb, {"erased": player_id, "documentsDeleted": deleted}, effects)


def _sweep(
    player_id: str,
    op: str,
    state: st.PlayerState,
    store: Store,
    reminders: Reminders | None,
    now_ms: int,
    reminder_first_s: int,
    parked: ParkedEraser | None = None,
) -> Outcome:
    """After an erasure: delete the dead letters of the player that were written meanwhile, and
    take the player's events out of parked trigger batches (``parked``; docs/privacy.md).

    Only dead letters: actions decided after the erasure (from events enqueued after it) are new.
    A sweep that fails is asked for again later (backing off); afterwards, an outbox the player
    built since the erasure gets its own reminder."""
    effects = st.Effects()
    if not state.erased_ms:
        return Outcome(state, {"swept": 0}, effects)
    try:
        swept = store.delete_player_deadletters(player_id)
        from_parked = parked(player_id, state.erased_ms) if parked is not None else None
    except (AzureError, OSError, RuntimeError) as exc:
        log.warning("erasure sweep failed, retried later: %s", type(exc).__name__)
        _retry_later(state, player_id, reminders, now_ms, "sweep")
        return Outcome(state, {"swept": 0, "retrying": True}, effects)
    state.remind_ms, state.retries = 0, 0
    _ask_for_reminder(state, player_id, reminders, now_ms, reminder_first_s)
    _record(op, effects, state, [], 0, now_ms)
    result = {"swept": swept} if from_parked is None else {"swept": swept, "parkedEvents": from_parked}
    return Outcome(state, result, effects)


def _retry_later(
    state: st.PlayerState, player_id: str, reminders: Reminders | None, now_ms: int, op: str
) -> None:
    """One pending reminder for a failed erase or sweep, backing off 10 s doubling to 5 min: the
    player's other operations meanwhile do not each ask for another one."""
    if state.remind_ms and now_ms < state.remind_ms:
        return
    delay = min(REMINDER_MAX_S, REMINDER_FIRST_S * 2 ** min(state.retries, 10))
    state.retries += 1
    _remind(state, player_id, reminders, now_ms, delay, op)


def _remind(
    state: st.PlayerState, player_id: str, reminders: Reminders | None, now_ms: int, delay_s: int, op: str
) -> None:
    if reminders is None:
        return
    try:
        reminders.remind(player_id, delay_s, op)
    except Exception as exc:  # noqa: BLE001 - best effort: the next operation asks again
        log.warning("%s reminder could not be scheduled: %s", op, type(exc).__name__)
        telemetry.instruments().reminders.add(1, {"outcome": "failed"})
        return
    telemetry.instruments().reminders.add(1, {"outcome": "scheduled"})
    state.remind_ms = now_ms + delay_s * 1000


def _record(
    op: str,
    effects: st.Effects,
    state: st.PlayerState,
    written: list[st.OutboxItem],
    failures: int,
    now_ms: int,
) -> None:
    """Count the operation into the shared OpenTelemetry instruments (the per-operation counts
    through the process's tally: telemetry.Tally)."""
    m, tally = telemetry.instruments(), telemetry.tally
    tally.add(m.entity_operations, 1, (("op", op),))
    tally.add(m.events_duplicate, effects.duplicates)
    tally.add(m.scores, effects.scored)
    for action in effects.actions:
        tally.add(m.actions, 1, (("type", action.type),))
    for held in effects.holdouts:
        tally.add(m.actions_holdout, 1, (("type", held.type),))
    for atype, how in effects.watches_ended:
        tally.add(m.outcome_watches, 1, (("type", atype), ("result", how)))
    if effects.shadow:
        tally.add(m.shadow_decisions, effects.shadow_agree, (("result", "agree"),))
        tally.add(m.shadow_decisions, effects.shadow - effects.shadow_agree, (("result", "differ"),))
    if effects.shadow_dropped:
        m.outbox_expired.add(effects.shadow_dropped, {"kind": "shadow"})
    for suppressed in effects.suppressed:
        attrs = (("type", suppressed.type), ("rule", suppressed.rejected_by or ""))
        tally.add(m.actions_suppressed, 1, attrs)
    if effects.suppressed_dropped:  # unwritten suppressed decisions dropped to bound the state
        m.outbox_expired.add(effects.suppressed_dropped, {"kind": "suppressed"})
    for rule, n in effects.rejections.items():
        tally.add(m.rejections, n, (("rule", rule),))
    if failures:
        m.action_write_failures.add(failures)
    if effects.outbox_expired:
        m.outbox_expired.add(effects.outbox_expired)
    if state.outbox or written or failures:  # an empty outbox that stayed empty is not news
        m.outbox_size.record(len(state.outbox))
    for item in written:
        if isinstance(item.rec, st.ActionRecord) and item.rec.status == "pending":
            m.action_latency.record(max(0, now_ms - st.latency_start_ms(item)), {"type": item.rec.type})
