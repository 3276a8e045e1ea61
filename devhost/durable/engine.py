"""Durable orchestrations and activities, run the way the Durable extension runs a Python app.

Python orchestrators use the extension's out-of-process JSON "shim" protocol
(Azure/azure-functions-durable-extension 2.x, ``OutOfProcOrchestrationShim`` and
``TaskOrchestrationShim``), on top of the Durable Task Framework (Azure/durabletask,
``DurableTask.Core`` 2.17.1, the version the extension pins). Each episode:

1. the due messages of one instance (its control queue) become the new events, after an
   ``OrchestratorStarted`` stamped with the engine's clock (``TaskOrchestrationDispatcher``);
2. the real orchestrator function runs once, through the worker path
   (``FunctionSpec.invoke``), with the whole history in the ``orchestrationTrigger``
   payload the extension builds (``OrchestrationContextToString``);
3. the returned actions (``schemaVersion`` 2: one-element outer array of every action
   yielded so far) are re-issued, in order, by an emulation of the C# shim running
   inside an emulation of the DTFx replay (``TaskOrchestrationExecutor``,
   ``TaskOrchestrationContext``, ``RetryInterceptor``): every ScheduleTask, CreateTimer,
   CreateSubOrchestrationInstance and SendEvent takes the next sequence id; past
   history events are matched against them by id, kind and case-insensitive name
   (never by input) and a mismatch fails the instance as non-deterministic; completion
   events resolve the C# tasks, whose continuations issue the next actions; an
   instance completes only when its shim task is done and no task is open;
4. what is left (new TaskScheduled, TimerCreated, SubOrchestrationInstanceCreated,
   EventSent, ExecutionCompleted) is appended to the history with
   ``OrchestratorCompleted`` and sent (activity work items, timer messages visible
   at ``FireAt``, child ExecutionStarted, the parent's completion message, entity
   signals), all in one SQLite transaction (``devhost.durable.orchestration_db``).

Activities run through the worker path with the ``activityTrigger`` input the
extension sends (the action's JSON string, unwrapped from DTFx's one-element
parameter array) and their completion is committed with the deletion of their work
item. The encodings follow the platform: the client's start input is a JSON string
holding JSON (double-encoded), activity and orchestrator outputs are single-encoded.

Each behaviour is pinned by a conformance test in ``tests/platform/test_orchestrations.py``
that names its upstream source (EXT/DTC/DAS/SDK files).

Not emulated: CallEntity and CallHttp actions (they fail the orchestration with a message
saying so), suspend/resume/rewind/restart, the create-and-wait start (``?timeout=``),
``showHistory`` on status queries, and the Azure Storage blob offload of large payloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devhost.durable.history import (
    DEDUPE_STATUSES,
    MAX_INSTANCE_ID_LENGTH,
    ORCHESTRATION_STATUS,
    OUT_OF_PROC_LABEL,
    TERMINAL_STATUSES,
    AlreadyExistsError,
    ArgumentError,
    EventType,
    activity_failure,
    ceil_ms,
    compact,
    dotnet_time,
    execution_started,
    history_event,
    out_of_proc_message,
    parse_scheduler_id,
    serialize_cause,
    to_ms,
    trigger_json,
    worker_failure,
)
from devhost.durable.orchestration_db import (
    EpisodeCommit,
    InstanceRow,
    Message,
    OrchestrationStore,
    OutMessage,
    WorkItem,
)
from devhost.durable.replay import Decision, Functions, PythonOutcome, Replay
from devhost.functions_host.bindings import client_datum
from devhost.functions_host.indexing import AppIndex, FunctionSpec
from devhost.functions_host.worker import Datum, Invocation

log = logging.getLogger(__name__)

# -- the engine ---------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OrchestrationStats:
    started: int = 0
    episodes: int = 0
    activities: int = 0
    activity_failures: int = 0
    completed: int = 0
    failed: int = 0
    episode_errors: int = 0  # host-level failures of an episode (not committed, retried)
    completed_by_name: dict[str, int] = field(default_factory=dict)  # orchestrator name, lower-cased


class OrchestrationEngine:
    """Durable orchestrations for the devhost: a task hub in SQLite and its dispatchers.

    Create it with the devhost's SQLite connection (``DevDB.conn``) and the indexed app;
    run ``await engine.run()`` as a background task on the host's loop (it runs until
    cancelled; on start it picks up every message, timer and activity a previous run
    left). Clients reach it through ``OrchestrationClientTransport`` (in-process) or
    ``add_webhook_routes`` (HTTP). ``clock`` stamps every event (``current_utc_datetime``
    comes from it, never from the wall clock directly) and ``sleep`` waits for timers;
    tests inject a virtual clock for both.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        index: AppIndex,
        *,
        hub: str = "devhost",
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_orchestrations: int = 4,
        max_activities: int = 4,
        executor: Executor | None = None,
        entity_signal: Callable[[str, str, str, str | None], Any] | None = None,
        entity_signals: Callable[[list[tuple[str, str, str, str | None]], Callable[[], None]], Any]
        | None = None,
        client_binding: str | None = None,
        store_inputs_in_history: bool = False,
    ) -> None:
        self.store = OrchestrationStore(conn)
        self.functions = Functions.from_index(index)
        self.hub = hub
        self.clock = clock
        self.sleep = sleep
        self.max_orchestrations = max_orchestrations
        self.max_activities = max_activities
        self._own_executor = executor is None
        self.executor: Executor = executor or ThreadPoolExecutor(
            max_workers=max_orchestrations + max_activities, thread_name_prefix="durable"
        )
        self.entity_signal = entity_signal
        # Several signals and the outbox rows they came from in one transaction (the devhost's entity
        # scheduler); without it, one signal and one delete at a time.
        self.entity_signals = entity_signals
        self.client_binding = client_binding  # the durableClient JSON for functions that bind one
        # host.json durableTask.storeInputsInOrchestrationHistory (DTFx IncludeParameters), default false.
        self.store_inputs_in_history = store_inputs_in_history
        self.stats = OrchestrationStats()
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._scheduled: set[str] = set()
        self._running: set[str] = set()
        self._work: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._work_seen: set[int] = set()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._episode_failures: dict[str, int] = {}
        self._outbox_warned = False

    # -- time ------------------------------------------------------------------------------
    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the orchestration clock must return an aware UTC datetime")
        return now.astimezone(UTC)

    # -- client operations (the extension's DurableClient, on the loop thread) --------------
    def start_new(self, name: str, instance_id: str | None = None, input_json: str | None = "null") -> str:
        """``StartNewAsync``: the instance id; ``ArgumentError`` -> 400, ``AlreadyExistsError`` -> 500.

        ``input_json`` is ``ExecutionStarted.Input``: the start body's value as JSON (the SDK's
        body is a JSON string holding JSON, so this is a JSON string literal).
        """
        self.functions.require(name, "orchestrator")
        if not instance_id:
            instance_id = uuid.uuid4().hex
        elif instance_id.startswith("@"):
            raise ArgumentError("instanceId", "Orchestration instance ids must not start with @.")
        elif any(c in "/\\?#" or unicodedata.category(c) == "Cc" for c in instance_id):
            raise ArgumentError(
                "instanceId",
                "Orchestration instance ids must not contain /, \\, #, ?, or control characters.",
            )
        if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
            raise ArgumentError(f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters.")
        existing = self.store.instance(instance_id)
        if existing is not None and existing.status in DEDUPE_STATUSES:
            raise AlreadyExistsError(
                f"An Orchestration instance with the status {existing.status} already exists."
            )
        generation = 0 if existing is None else existing.generation + 1
        now = self.now()
        execution_id = uuid.uuid4().hex
        started = execution_started(now, instance_id, execution_id, name, input_json, None, generation)
        row = InstanceRow(
            instance_id=instance_id,
            name=name,
            execution_id=execution_id,
            status="Pending",
            input=input_json,
            output=None,
            custom_status=None,
            created_ms=to_ms(now),
            updated_ms=to_ms(now),
            parent=None,
            generation=generation,
        )
        self.store.create(row, OutMessage(instance_id, execution_id, to_ms(now), started))
        self.stats.started += 1
        self._poke()
        return instance_id

    def status(self, instance_id: str) -> InstanceRow | None:
        return self.store.instance(instance_id)

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        return self.store.history(instance_id)

    def raise_event(self, instance_id: str, name: str, data_json: str | None) -> int:
        """``RaiseEventAsync``: 202, 404 unknown, 410 when the instance is done."""
        row = self.store.instance(instance_id)
        if row is None:
            return 404
        if row.status in TERMINAL_STATUSES:
            return 410
        event = history_event(
            EventType.EVENT_RAISED, at=self.now(), Name=name, Input=data_json, ParentTraceContext=None
        )
        self.store.send(OutMessage(instance_id, row.execution_id, to_ms(self.now()), event))
        self._poke()
        return 202

    def terminate(self, instance_id: str, reason: str | None) -> int:
        """``TerminateAsync``: 202, 404 unknown, 410 when the instance is done."""
        row = self.store.instance(instance_id)
        if row is None:
            return 404
        if row.status in TERMINAL_STATUSES:
            return 410
        event = history_event(EventType.EXECUTION_TERMINATED, at=self.now(), Input=reason)
        self.store.send(OutMessage(instance_id, row.execution_id, to_ms(self.now()), event))
        self._poke()
        return 202

    def purge(self, instance_id: str) -> int:
        deleted = self.store.purge(instance_id)
        self._poke()
        return deleted

    async def wait_for(self, instance_id: str, timeout: float | None = None) -> InstanceRow:
        """Wait until the instance is in a terminal state (for tests and tools)."""

        async def wait() -> InstanceRow:
            while True:
                changed = self._changed
                row = self.store.instance(instance_id)
                if row is not None and row.status in TERMINAL_STATUSES:
                    return row
                await changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    def pending(self) -> int:
        """Messages (including future timers), activity work items and episodes not finished."""
        return (
            self.store.message_count()
            + len(self.store.work_items())
            + len(self._running)
            + len(self.store.outbox())
        )

    async def drained(self) -> None:
        """Wait until nothing is queued, due later, running or unsent."""
        while True:
            changed = self._changed
            if self.pending() == 0:
                return
            await changed.wait()

    # -- the dispatchers ----------------------------------------------------------------------
    def _poke(self) -> None:
        self._wake.set()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def run(self) -> None:
        """Run until cancelled: schedule due instances, run episodes, activities and timers."""
        tasks = [asyncio.create_task(self._dispatch(), name="orchestrations-dispatch")]
        tasks += [asyncio.create_task(self._episode_worker()) for _ in range(self.max_orchestrations)]
        tasks += [asyncio.create_task(self._activity_worker()) for _ in range(self.max_activities)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._own_executor:
                self.executor.shutdown(wait=False, cancel_futures=True)

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            now_ms = to_ms(self.now())
            for instance_id in self.store.due_instances(now_ms):
                if instance_id not in self._scheduled and instance_id not in self._running:
                    self._scheduled.add(instance_id)
                    self._ready.put_nowait(instance_id)
            for item in self.store.work_items():
                if item.id not in self._work_seen:
                    self._work_seen.add(item.id)
                    self._work.put_nowait(item)
            self._deliver_outbox()
            self._notify()
            due = self.store.next_visible_ms(now_ms)
            if due is None:
                await self._wake.wait()
                continue
            wake = asyncio.ensure_future(self._wake.wait())
            nap = asyncio.ensure_future(self.sleep((due - now_ms) / 1000))
            try:
                await asyncio.wait({wake, nap}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (wake, nap):
                    t.cancel()
                await asyncio.gather(wake, nap, return_exceptions=True)

    def _deliver_outbox(self) -> None:
        rows = self.store.outbox()
        if rows and self.entity_signals is not None:
            signals = [
                (p["name"], p["key"], p["op"], p.get("input")) for _, kind, p in rows if kind == "entity"
            ]
            ids = [outbox_id for outbox_id, _, _ in rows]
            self.entity_signals(signals, lambda: self.store.delete_outbox_rows(ids))
            return
        for outbox_id, kind, payload in rows:
            if kind != "entity":
                self.store.delete_outbox(outbox_id)
                continue
            if self.entity_signal is None:
                if not self._outbox_warned:
                    log.warning(
                        "orchestrations signalled entities but no entity scheduler is wired: signals wait"
                    )
                    self._outbox_warned = True
                return
            try:
                self.entity_signal(payload["name"], payload["key"], payload["op"], payload.get("input"))
            except KeyError as exc:
                log.error("entity signal from an orchestration dropped: %s", exc)
            self.store.delete_outbox(outbox_id)

    async def _episode_worker(self) -> None:
        while True:
            instance_id = await self._ready.get()
            self._scheduled.discard(instance_id)
            self._running.add(instance_id)
            try:
                await self._episode(instance_id)
                self._episode_failures.pop(instance_id, None)
            except Exception:
                # A host-level failure: nothing was committed; the messages are delivered again.
                failures = self._episode_failures[instance_id] = (
                    self._episode_failures.get(instance_id, 0) + 1
                )
                self.stats.episode_errors += 1
                log.exception(
                    "orchestration %s: episode failed (attempt %d), retrying", instance_id, failures
                )
                await asyncio.sleep(min(5.0, 0.05 * 2 ** min(failures - 1, 8)))
            finally:
                self._running.discard(instance_id)
                self._poke()

    async def _activity_worker(self) -> None:
        while True:
            item = await self._work.get()
            try:
                await self._run_activity(item)
            except Exception:
                log.exception("activity work item %s failed at the host level; it runs again", item.id)
                await asyncio.sleep(0.5)
            finally:
                self._work_seen.discard(item.id)
                self._poke()

    # -- activities -----------------------------------------------------------------------------
    async def _run_activity(self, item: WorkItem) -> None:
        scheduled = item.event
        name = str(scheduled.get("Name"))
        task_id = int(scheduled["EventId"])
        entry = self.functions.activities.get(name.lower())
        completion: dict[str, Any]
        if entry is None:  # TaskNonexistentActivityShim
            try:
                self.functions.require(name, "activity")
            except ArgumentError as exc:
                reason = f"Activity function '{name}' failed: {exc}"
                completion = history_event(
                    EventType.TASK_FAILED,
                    at=self.now(),
                    TaskScheduledId=task_id,
                    Reason=reason,
                    Details=serialize_cause(exc),
                    FailureDetails=None,
                )
        else:
            registered, spec = entry
            completion = await self._invoke_activity(registered, spec, scheduled, task_id)
        self.stats.activities += 1
        done = self.store.finish_work(
            item.id, OutMessage(item.instance_id, item.execution_id, to_ms(self.now()), completion)
        )
        if not done:
            log.info("activity %s of %s finished after its instance was replaced", name, item.instance_id)

    async def _invoke_activity(
        self, registered: str, spec: FunctionSpec, scheduled: Mapping[str, Any], task_id: int
    ) -> dict[str, Any]:
        # DurableActivityContext: the one-element parameter array is unwrapped; a string element is
        # handed over as is (GetInput(typeof(string))), as a TypedData string.
        raw = scheduled.get("Input")
        params = json.loads(raw) if isinstance(raw, str) else None
        element = params[0] if isinstance(params, list) and params else None
        datum = Datum(element, "string") if isinstance(element, str) else Datum(compact(element), "json")
        inputs: dict[str, Datum] = {str(spec.trigger["name"]): datum}
        if self.client_binding is not None:
            inputs.update({arg: client_datum(self.client_binding) for arg in spec.client_args})
        try:
            out = await spec.invoke(Invocation(inputs=inputs), self.executor)
        except Exception as exc:
            self.stats.activity_failures += 1
            reason, details = activity_failure(registered, exc, worker_failure(exc)[1])
            return history_event(
                EventType.TASK_FAILED,
                at=self.now(),
                TaskScheduledId=task_id,
                Reason=reason,
                Details=details,
                FailureDetails=None,
            )
        result: str | None = None
        if out is not None and out.value is not None:
            parsed = json.loads(out.value) if isinstance(out.value, str) else out.value
            result = None if parsed is None else compact(parsed)  # SetOutput(JToken): ToString(None)
        return history_event(EventType.TASK_COMPLETED, at=self.now(), TaskScheduledId=task_id, Result=result)

    # -- episodes ---------------------------------------------------------------------------------
    async def _episode(self, instance_id: str) -> None:
        now = self.now()
        messages = self.store.messages(instance_id, to_ms(now))
        if not messages:
            return
        row = self.store.instance(instance_id)
        keep, drop = self._applicable(row, messages)
        if drop:
            self.store.discard(m.id for m in drop)
        if row is None or not keep:
            return
        history = self.store.history(instance_id)
        has_start = any(e["EventType"] == EventType.EXECUTION_STARTED for e in history)
        new: list[dict[str, Any]] = []
        for m in keep:
            if m.event["EventType"] == EventType.EXECUTION_STARTED and (
                has_start or any(e["EventType"] == EventType.EXECUTION_STARTED for e in new)
            ):
                continue  # a second ExecutionStarted for this execution is a duplicate
            new.append(dict(m.event, IsPlayed=False))
        if not new:
            self.store.discard(m.id for m in keep)
            return
        if not has_start and not any(e["EventType"] == EventType.EXECUTION_STARTED for e in new):
            log.warning("instance %s: messages without an ExecutionStarted are discarded", instance_id)
            self.store.discard(m.id for m in keep)
            return
        episode = [history_event(EventType.ORCHESTRATOR_STARTED, at=now), *new]
        events = history + episode
        started = next(e for e in events if e["EventType"] == EventType.EXECUTION_STARTED)
        parent = started.get("ParentInstance") or None
        parent_id = parent["OrchestrationInstance"]["InstanceId"] if parent else None
        outcome = await self._call_orchestrator(row.name, instance_id, started, parent_id, events)
        replay = Replay(
            name=row.name,
            instance_id=instance_id,
            execution_id=row.execution_id,
            parent_instance_id=parent_id,
            functions=self.functions,
            outcome=outcome,
        )
        decisions = replay.run(events)
        commit = self._commit(row, replay, decisions, episode, [m.id for m in keep], now)
        children = self.store.commit_episode(commit)
        if children is None:
            log.warning(
                "instance %s was purged or replaced while an episode ran: episode dropped", instance_id
            )
            return
        for child, _ in commit.children:
            if child.instance_id not in children:
                log.warning(
                    "instance %s: sub-orchestration %s is still running; its new ExecutionStarted is dropped",
                    instance_id,
                    child.instance_id,
                )
        self.stats.episodes += 1
        if commit.instance.status == "Completed":
            self.stats.completed += 1
            by_name = self.stats.completed_by_name
            by_name[row.name.lower()] = by_name.get(row.name.lower(), 0) + 1
        elif commit.instance.status == "Failed":
            self.stats.failed += 1
            log.warning("orchestration %s (%s) failed: %s", instance_id, row.name, commit.instance.output)

    def _applicable(
        self, row: InstanceRow | None, messages: list[Message]
    ) -> tuple[list[Message], list[Message]]:
        """Messages for another execution, or for an instance that is done, are discarded."""
        if row is None:
            return [], messages
        keep: list[Message] = []
        drop: list[Message] = []
        for m in messages:
            stale = m.execution_id is not None and m.execution_id != row.execution_id
            (drop if stale or row.status in TERMINAL_STATUSES else keep).append(m)
        return keep, drop

    async def _call_orchestrator(
        self,
        name: str,
        instance_id: str,
        started: Mapping[str, Any],
        parent_id: str | None,
        events: list[dict[str, Any]],
    ) -> PythonOutcome:
        entry = self.functions.orchestrators.get(name.lower())
        if entry is None:
            try:
                self.functions.require(name, "orchestrator")
            except ArgumentError as exc:
                return PythonOutcome("missing", message=str(exc))
        assert entry is not None
        spec = entry[1]
        inputs: dict[str, Datum] = {
            str(spec.trigger["name"]): Datum(trigger_json(instance_id, started, parent_id, events), "string")
        }
        if self.client_binding is not None:
            inputs.update({arg: client_datum(self.client_binding) for arg in spec.client_args})
        try:
            out = await spec.invoke(Invocation(inputs=inputs), self.executor)
        except Exception as exc:
            message, stack = worker_failure(exc)
            full = out_of_proc_message(message, stack)
            if OUT_OF_PROC_LABEL in full:  # TryExtractOutOfProcStateJson
                state_json = full.split(OUT_OF_PROC_LABEL, 1)[1]
                try:
                    return PythonOutcome("error", state=json.loads(state_json), message=full, stack=stack)
                except ValueError:
                    pass
            return PythonOutcome("crash", message=message, stack=stack)
        value = None if out is None else out.value
        if value is None:
            return PythonOutcome("none")
        try:
            state = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            return PythonOutcome("crash", message="Out of proc orchestrators must return a valid JSON schema")
        if not isinstance(state, dict):
            return PythonOutcome(
                "crash",
                message="The data returned by the out-of-process function execution was not valid json.",
            )
        return PythonOutcome("ok", state=state)

    def _commit(
        self,
        row: InstanceRow,
        replay: Replay,
        decisions: list[Decision],
        episode: list[dict[str, Any]],
        consumed: list[int],
        now: datetime,
    ) -> EpisodeCommit:
        """``TaskOrchestrationDispatcher``: the decisions become history events and messages."""
        now_ms = to_ms(now)
        for event in episode[1:]:
            event["IsPlayed"] = True  # DTFx marks every processed event but OrchestratorStarted
        new_events = list(episode)
        instance = InstanceRow(**{**row.__dict__})
        instance.status = "Running" if row.status == "Pending" else row.status
        instance.custom_status = replay.custom_status
        instance.updated_ms = now_ms
        messages: list[OutMessage] = []
        work: list[dict[str, Any]] = []
        outbox: list[tuple[str, dict[str, Any]]] = []
        children: list[tuple[InstanceRow, OutMessage]] = []
        reset = False
        for d in decisions:
            if d.kind == "task":
                event = history_event(
                    EventType.TASK_SCHEDULED,
                    d.id,
                    at=now,
                    Name=d.name,
                    Version="",
                    Input=d.input,
                    ParentTraceContext=None,
                )
                work.append(event)  # the activity's message carries the input
                # IncludeParameters (host.json storeInputsInOrchestrationHistory, default false): the
                # history's TaskScheduled has no input unless it is set.
                new_events.append(event if self.store_inputs_in_history else dict(event, Input=None))
            elif d.kind == "timer":
                assert d.fire_at is not None
                new_events.append(
                    history_event(EventType.TIMER_CREATED, d.id, at=now, FireAt=dotnet_time(d.fire_at))
                )
                fired = history_event(
                    EventType.TIMER_FIRED, at=now, TimerId=d.id, FireAt=dotnet_time(d.fire_at)
                )
                messages.append(OutMessage(row.instance_id, row.execution_id, ceil_ms(d.fire_at), fired))
            elif d.kind == "sub":
                new_events.append(
                    history_event(
                        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
                        d.id,
                        at=now,
                        Name=d.name,
                        Version="",
                        InstanceId=d.instance_id,
                        Input=d.input if self.store_inputs_in_history else None,
                        ClientSpanId=uuid.uuid4().hex[:16],
                    )
                )
                child_execution = uuid.uuid4().hex
                parent = {
                    "Name": row.name,
                    "OrchestrationInstance": {"InstanceId": row.instance_id, "ExecutionId": row.execution_id},
                    "TaskScheduleId": d.id,
                    "Version": "",
                }
                start = execution_started(now, d.instance_id, child_execution, d.name, d.input, parent, 0)
                child = InstanceRow(
                    instance_id=d.instance_id,
                    name=d.name,
                    execution_id=child_execution,
                    status="Pending",
                    input=d.input,
                    output=None,
                    custom_status=None,
                    created_ms=now_ms,
                    updated_ms=now_ms,
                    parent=parent,
                )
                children.append((child, OutMessage(d.instance_id, child_execution, now_ms, start)))
            elif d.kind == "event":
                new_events.append(
                    history_event(
                        EventType.EVENT_SENT,
                        d.id,
                        at=now,
                        InstanceId=d.instance_id,
                        Name=d.name,
                        Input=d.input,
                    )
                )
                if d.instance_id.startswith("@"):
                    entity, key = parse_scheduler_id(d.instance_id)
                    request = json.loads(d.input or "{}")
                    outbox.append(
                        (
                            "entity",
                            {
                                "name": entity,
                                "key": key,
                                "op": request.get("op"),
                                "input": request.get("input"),
                            },
                        )
                    )
                else:
                    raised = history_event(
                        EventType.EVENT_RAISED, at=now, Name=d.name, Input=d.input, ParentTraceContext=None
                    )
                    messages.append(OutMessage(d.instance_id, None, now_ms, raised))
            elif d.kind == "continue":
                # ContinueAsNew: a new execution, with a fresh history, starts right away.
                new_execution = uuid.uuid4().hex
                start = execution_started(
                    now, row.instance_id, new_execution, row.name, d.result, row.parent, row.generation
                )
                instance.execution_id = new_execution
                instance.input = d.result
                instance.status = "Running"
                messages.append(OutMessage(row.instance_id, new_execution, now_ms, start))
                reset = True
            else:  # complete
                new_events.append(
                    history_event(
                        EventType.EXECUTION_COMPLETED,
                        d.id,
                        at=now,
                        OrchestrationStatus=ORCHESTRATION_STATUS[d.status],
                        Result=d.result,
                        FailureDetails=None,
                    )
                )
                instance.status = d.status
                instance.output = d.result
                if row.parent is not None:
                    messages.append(self._notify_parent(row.parent, d, now))
        if reset:
            # The new execution starts a fresh history. Timers of the finished execution are not sent,
            # nor are its new activities (their completions could only reach the new execution).
            new_events = []
            work = []
            messages = [
                m
                for m in messages
                if m.instance_id != row.instance_id or m.execution_id == instance.execution_id
            ]
        else:
            new_events.append(history_event(EventType.ORCHESTRATOR_COMPLETED, at=now))
        return EpisodeCommit(
            instance=instance,
            consumed=consumed,
            new_events=new_events,
            messages=messages,
            work=work,
            outbox=outbox,
            children=children,
            reset_history=reset,
            expected_execution=row.execution_id,
        )

    def _notify_parent(self, parent: Mapping[str, Any], d: Decision, now: datetime) -> OutMessage:
        target = parent["OrchestrationInstance"]
        task_id = int(parent["TaskScheduleId"])
        if d.status == "Completed":
            event = history_event(
                EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                at=now,
                TaskScheduledId=task_id,
                Result=d.result,
            )
        else:
            event = history_event(
                EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                at=now,
                TaskScheduledId=task_id,
                Reason=d.result,
                Details=d.details,
                FailureDetails=None,
            )
        return OutMessage(str(target["InstanceId"]), str(target["ExecutionId"]), to_ms(now), event)
