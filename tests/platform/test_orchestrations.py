"""Conformance: Durable orchestrations and activities as the Durable extension runs a Python app.

The engine (devhost/durable/engine.py) runs the real SDK (azure-functions-durable 1.7.0) through the
worker path. Upstream sources (each case below names the one it follows):
- EXT: Azure/azure-functions-durable-extension 2.x, src/WebJobs.Extensions.DurableTask/
  (OrchestrationTriggerAttributeBindingProvider.OrchestrationContextToString, OutOfProcOrchestrationShim,
  TaskOrchestrationShim, TaskActivityShim, DurableOrchestrationContext, DurableClient, HttpApiHandler);
- DTC: Azure/durabletask DurableTask.Core 2.17.1 (TaskOrchestrationExecutor, TaskOrchestrationContext,
  TaskOrchestrationDispatcher, RetryInterceptor);
- DAS: DurableTask.AzureStorage 1.17.5 (AzureStorageOrchestrationService.CreateTaskOrchestrationAsync);
- SDK: azure-functions-durable 1.7.0 (DurableOrchestrationContext, TaskOrchestrationExecutor, Task.py,
  DurableOrchestrationClient).

Time is a virtual clock starting 2030-01-01 UTC: nothing here depends on the wall clock's date.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.db import DevDB
from devhost.durable import protocol
from devhost.durable.client import INPROC_BASE_URL, OrchestrationClientTransport, client_request
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.entities import EntityScheduler
from devhost.durable.history import EventType
from devhost.functions_host.indexing import AppIndex, index_app
from devhost.webserver import WebhookServer

HUB = "testhub"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$")

app = df.DFApp()

FLAKY: dict[str, int] = {}
SHIFTY: dict[str, Any] = {}
RECORDED: list[str] = []
SLOW_GATE = threading.Event()


@app.orchestration_trigger(context_name="context")
def greeter(context: df.DurableOrchestrationContext):
    payload = context.get_input()
    started = context.current_utc_datetime
    result = yield context.call_activity("greet", payload)
    return {
        "result": result,
        "started": started.isoformat(),
        "resumed": context.current_utc_datetime.isoformat(),
    }


@app.activity_trigger(input_name="payload")
def greet(payload: dict) -> dict:
    return {"greeting": f"hello {payload['name']}", "n": payload["n"]}


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    results = yield context.task_all([context.call_sub_orchestrator("square_child", i) for i in range(count)])
    return results


@app.orchestration_trigger(context_name="context")
def square_child(context: df.DurableOrchestrationContext):
    squared = yield context.call_activity("square", context.get_input())
    return squared


@app.activity_trigger(input_name="i")
def square(i: int) -> int:
    return i * i


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=1000, max_number_of_attempts=spec["attempts"]
    )
    result = yield context.call_activity_with_retry("flaky", options, spec["key"])
    return result


@app.activity_trigger(input_name="key")
def flaky(key: str) -> str:
    calls = FLAKY[key] = FLAKY.get(key, 0) + 1
    if calls <= 2:
        raise RuntimeError(f"flaky failure {calls}")
    return f"ok after {calls}"


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext):
    hours = context.get_input()
    before = context.current_utc_datetime
    yield context.create_timer(before + timedelta(hours=hours))
    return [before.isoformat(), context.current_utc_datetime.isoformat()]


@app.orchestration_trigger(context_name="context")
def shifty(context: df.DurableOrchestrationContext):
    step = SHIFTY["step"]
    if step == "timer":
        yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    else:
        yield context.call_activity(step, SHIFTY["input"])
    return step


@app.activity_trigger(input_name="value")
def step_a(value: Any) -> str:
    # The code "changes" between the episode that scheduled this activity and the replay after it.
    SHIFTY.update(SHIFTY["then"])
    return "a"


@app.activity_trigger(input_name="value")
def step_b(value: Any) -> str:
    return "b"


@app.orchestration_trigger(context_name="context")
def waits(context: df.DurableOrchestrationContext):
    data = yield context.wait_for_external_event("go")
    return {"data": data, "type": type(data).__name__}


@app.orchestration_trigger(context_name="context")
def calls_failing(context: df.DurableOrchestrationContext):
    yield context.call_activity("explode", None)


@app.activity_trigger(input_name="value")
def explode(value: Any) -> None:
    raise ValueError("boom")


@app.orchestration_trigger(context_name="context")
def parent_of_failure(context: df.DurableOrchestrationContext):
    yield context.call_sub_orchestrator("calls_failing", None, "kid")


@app.orchestration_trigger(context_name="context")
def calls_unknown(context: df.DurableOrchestrationContext):
    yield context.call_activity("no_such_activity", 1)


@app.entity_trigger(context_name="context", entity_name="Counter")
def counter(context: df.DurableEntityContext) -> None:
    context.set_state((context.get_state(lambda: 0) or 0) + (context.get_input() or 0))


@app.orchestration_trigger(context_name="context")
def signal_then_raise(context: df.DurableOrchestrationContext):
    context.signal_entity(df.EntityId("Counter", "c1"), "add", 5)
    raise ValueError("bad input")
    yield context.call_activity("square", 1)  # never reached: makes this a generator


@app.orchestration_trigger(context_name="context")
def race(context: df.DurableOrchestrationContext):
    fast = context.call_activity("square", 3)
    slow = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    winner = yield context.task_any([fast, slow])
    return winner.result


@app.orchestration_trigger(context_name="context")
def two_steps(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("record", "first")
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    second = yield context.call_activity("record", "second")
    return [first, second]


@app.activity_trigger(input_name="label")
def record(label: str) -> str:
    RECORDED.append(label)
    if label == "slow" and not SLOW_GATE.is_set():
        SLOW_GATE.wait(10)
    return label.upper()


@app.orchestration_trigger(context_name="context")
def slow_step(context: df.DurableOrchestrationContext):
    value = yield context.call_activity("record", "slow")
    return value


# -- harness ------------------------------------------------------------------------------------


class VirtualClock:
    """The engine's clock. ``auto``: a timer wait moves time to the timer at once; otherwise time
    only moves when the test calls ``advance``."""

    def __init__(self, start: datetime = T0, auto: bool = True) -> None:
        self.current = start
        self.auto = auto
        self._tick = asyncio.Event()

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        if self.auto:
            self.current += timedelta(seconds=max(seconds, 0.0))
            await asyncio.sleep(0)
        else:
            tick = self._tick
            await tick.wait()

    def advance(self, delta: timedelta) -> None:
        self.current += delta
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()


def _index() -> AppIndex:
    return index_app(app, {})  # the worker's load checks run on every function


@contextlib.asynccontextmanager
async def running(
    tmp: Path,
    clock: VirtualClock | None = None,
    index: AppIndex | None = None,
    **kwargs: Any,
) -> AsyncIterator[OrchestrationEngine]:
    clock = clock or VirtualClock()
    db = DevDB(tmp)
    engine = OrchestrationEngine(
        db.conn, index or _index(), hub=HUB, clock=clock.now, sleep=clock.sleep, **kwargs
    )
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        db.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def types(history: list[dict[str, Any]]) -> list[EventType]:
    return [EventType(e["EventType"]) for e in history]


def sdk_input(value: Any) -> str:
    """ExecutionStarted.Input for a start from the Python client: the body is json=df_dumps(value)."""
    return json.dumps(json.dumps(value))


async def _close_sdk_session() -> None:
    mod: Any = sys.modules["azure.durable_functions.models.utils.http_utils"]
    await mod._close_session()
    mod._session_lock = asyncio.Lock()


# -- the trigger payload and the orchestrator's answer -------------------------------------------


def test_the_orchestrator_gets_the_extensions_payload_and_answers_schema_v3(tmp_path: Path) -> None:
    """EXT OrchestrationContextToString: a JSON string with history (DTFx events: PascalCase, integer
    EventType, ExecutionStarted.Version, Json.NET UTC times), input, instanceId, isReplaying,
    parentInstanceId, upperSchemaVersion 1, upperSchemaVersionNew 2, the timer durations. IsPlayed:
    past message events true, OrchestratorStarted and current events false (DTC TaskOrchestrationExecutor).
    SDK 1.7.0 answers schemaVersion 2 with a one-element outer actions array."""
    index = _index()
    spec = index.functions["greeter"]
    seen: list[tuple[dict[str, Any], Any]] = []
    original = spec.invoke

    async def recording(inv: Any, executor: Any = None) -> Any:
        payload = json.loads(inv.inputs["context"].value)
        assert inv.inputs["context"].type == "string"
        out = await original(inv, executor)
        seen.append((payload, json.loads(out.value)))
        return out

    spec.invoke = recording  # type: ignore[method-assign]

    async def go() -> None:
        async with running(tmp_path, index=index) as engine:
            engine.start_new("greeter", "p1", sdk_input({"name": "ada", "n": 7}))
            await engine.wait_for("p1", 10)

    asyncio.run(go())
    (first, answer1), (second, answer2) = seen
    assert set(first) == {
        "history",
        "input",
        "instanceId",
        "isReplaying",
        "parentInstanceId",
        "upperSchemaVersion",
        "upperSchemaVersionNew",
        "longRunningTimerIntervalDuration",
        "maximumShortTimerDuration",
        "defaultHttpAsyncRequestSleepTimeMillseconds",
    }
    assert first["upperSchemaVersion"] == 1 and first["upperSchemaVersionNew"] == 2
    assert first["maximumShortTimerDuration"] == "6.00:00:00"
    assert first["longRunningTimerIntervalDuration"] == "3.00:00:00"
    assert first["instanceId"] == "p1" and first["parentInstanceId"] is None
    assert first["input"] == json.dumps({"name": "ada", "n": 7})  # a JSON string: double-encoded start
    assert first["isReplaying"] is False and second["isReplaying"] is True
    started, execution = first["history"]
    assert (started["EventType"], started["IsPlayed"], execution["EventType"]) == (12, False, 0)
    assert execution["Version"] == "" and execution["Name"] == "greeter" and execution["IsPlayed"] is False
    assert all(TIME_RE.match(e["Timestamp"]) for e in second["history"])
    assert [(e["EventType"], e["IsPlayed"]) for e in second["history"]] == [
        (12, False),
        (0, True),  # a message event processed in an earlier episode
        (4, False),  # action events are written after the replay: never marked
        (13, False),
        (12, False),
        (5, False),  # this episode's new event
    ]
    assert answer1["schemaVersion"] == 2 and answer1["isDone"] is False
    assert answer1["actions"] == [
        [{"actionType": 0, "functionName": "greet", "input": json.dumps({"name": "ada", "n": 7})}]
    ]
    assert answer2["isDone"] is True and len(answer2["actions"]) == 1


@pytest.mark.parametrize("store_inputs", [False, True])
def test_an_activity_call_round_trip_and_its_encodings(tmp_path: Path, store_inputs: bool) -> None:
    """DTC TaskOrchestrationContext.ScheduleTask serializes the parameters: the activity's message
    carries a one-element array around the SDK's JSON string; the activity gets that string (EXT
    DurableActivityContext, AF ActivityTriggerConverter df_loads); TaskCompleted.Result is the
    activity's return as plain JSON (EXT SetOutput(JToken)); the instance output is single-encoded.
    The history's TaskScheduled keeps the input only with host.json storeInputsInOrchestrationHistory
    (EXT DurableTaskExtension -> DTC TaskOrchestrationDispatcher.IncludeParameters, default false)."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path, store_inputs_in_history=store_inputs) as engine:
            engine.start_new("greeter", "a1", sdk_input({"name": "ada", "n": 7}))
            row = await engine.wait_for("a1", 10)
            return row, engine.history("a1")

    row, history = asyncio.run(go())
    assert row.status == "Completed"
    assert types(history) == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.EXECUTION_STARTED,
        EventType.TASK_SCHEDULED,
        EventType.ORCHESTRATOR_COMPLETED,
        EventType.ORCHESTRATOR_STARTED,
        EventType.TASK_COMPLETED,
        EventType.EXECUTION_COMPLETED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]
    scheduled, completed, done = history[2], history[5], history[6]
    assert scheduled["EventId"] == 0 and scheduled["Name"] == "greet" and scheduled["Version"] == ""
    expected_input = json.dumps([json.dumps({"name": "ada", "n": 7})])
    assert scheduled["Input"] == (expected_input if store_inputs else None)
    assert "Input" in scheduled
    assert completed["EventId"] == -1 and completed["TaskScheduledId"] == 0
    assert completed["Result"] == '{"greeting":"hello ada","n":7}'
    assert done["EventId"] == 1 and done["OrchestrationStatus"] == 1
    assert json.loads(row.output) == {
        "result": {"greeting": "hello ada", "n": 7},
        "started": T0.isoformat(),
        "resumed": T0.isoformat(),
    }


def test_current_utc_datetime_is_the_replayed_orchestrator_started_time(tmp_path: Path) -> None:
    """SDK DurableOrchestrationContext: current_utc_datetime starts at the first OrchestratorStarted
    and moves to each later one as replay passes it (DTC: CurrentUtcDateTime = OrchestratorStarted
    .Timestamp); it is the engine's clock, never the machine's. The timer fires at its fireAt
    (DTC TaskOrchestrationDispatcher: TimerFired message visible at FireAt)."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:
            engine.start_new("sleeper", "s1", sdk_input(2))
            row = await engine.wait_for("s1", 10)
            return row, engine.history("s1")

    row, history = asyncio.run(go())
    assert json.loads(row.output) == [T0.isoformat(), (T0 + timedelta(hours=2)).isoformat()]
    created = next(e for e in history if e["EventType"] == EventType.TIMER_CREATED)
    fired = next(e for e in history if e["EventType"] == EventType.TIMER_FIRED)
    assert created["EventId"] == 0 and created["FireAt"] == "2030-01-01T02:00:00Z"
    assert fired["TimerId"] == 0 and fired["FireAt"] == created["FireAt"]
    starts = [e["Timestamp"] for e in history if e["EventType"] == EventType.ORCHESTRATOR_STARTED]
    assert starts == ["2030-01-01T00:00:00Z", "2030-01-01T02:00:00Z"]


def test_a_timer_longer_than_six_days_is_split_into_three_day_legs(tmp_path: Path) -> None:
    """SDK LongTimerTask (schema V3, maximumShortTimerDuration 6 days, longRunningTimerInterval 3 days
    from AzureStorageDurabilityProvider): a 7-day timer is a 3-day leg, then the rest."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:
            engine.start_new("sleeper", "long", sdk_input(24 * 7))
            row = await engine.wait_for("long", 10)
            return row, engine.history("long")

    row, history = asyncio.run(go())
    assert row.status == "Completed"
    fire_ats = [e["FireAt"] for e in history if e["EventType"] == EventType.TIMER_CREATED]
    assert fire_ats == ["2030-01-04T00:00:00Z", "2030-01-08T00:00:00Z"]
    assert json.loads(row.output)[1] == (T0 + timedelta(days=7)).isoformat()


# -- sub-orchestrations --------------------------------------------------------------------------


def test_sub_orchestration_fan_out_fan_in_keeps_each_history_small(tmp_path: Path) -> None:
    """DTC CreateSubOrchestrationInstance: the default child id is {parentExecutionId}:{sequenceId};
    the child's ExecutionCompleted.Result becomes the parent's SubOrchestrationInstanceCompleted
    (DTC TaskOrchestrationDispatcher); task_all results come back in child order (SDK WhenAllTask).
    Each instance has its own history: a child holds its own 8 events, the parent 2 per child."""

    async def go() -> tuple[Any, list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        async with running(tmp_path) as engine:
            engine.start_new("fan_out", "parent", sdk_input(5))
            row = await engine.wait_for("parent", 20)
            children = {
                r.instance_id: engine.history(r.instance_id) for r in engine.store.instances() if r.parent
            }
            return row, engine.history("parent"), children

    row, parent, children = asyncio.run(go())
    assert row.status == "Completed" and json.loads(row.output) == [0, 1, 4, 9, 16]
    execution_id = parent[1]["OrchestrationInstance"]["ExecutionId"]
    created = [e for e in parent if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED]
    assert [e["InstanceId"] for e in created] == [f"{execution_id}:{i}" for i in range(5)]
    assert [e["Input"] for e in created] == [None] * 5  # storeInputsInOrchestrationHistory is off
    completed = [e for e in parent if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED]
    assert sorted(e["TaskScheduledId"] for e in completed) == list(range(5))
    assert sorted(children) == [f"{execution_id}:{i}" for i in range(5)]
    for i in range(5):
        # The child's start message carries the input: a JSON string (the SDK's df_dumps, serialized).
        assert children[f"{execution_id}:{i}"][1]["Input"] == json.dumps(json.dumps(i))
    for child_id, history in children.items():
        assert len(history) == 8, child_id
        assert history[1]["ParentInstance"]["OrchestrationInstance"]["InstanceId"] == "parent"
    episodes = sum(1 for e in parent if e["EventType"] == EventType.ORCHESTRATOR_STARTED)
    assert len(parent) == 2 * 5 + 2 + 2 * episodes  # per child 2, ExecutionStarted/Completed, per episode 2


def test_a_failed_child_fails_the_parents_task_with_the_childs_message(tmp_path: Path) -> None:
    """DTC TaskOrchestrationDispatcher: a failed child sends SubOrchestrationInstanceFailed{Reason =
    the child's "Orchestrator function 'child' failed: ...", Details = "Message: ..., StackTrace:
    ..."} (EXT OutOfProcOrchestrationShim); a given child id is used as is."""

    async def go() -> tuple[Any, Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:
            engine.start_new("parent_of_failure", "pf")
            parent = await engine.wait_for("pf", 10)
            return parent, engine.status("kid"), engine.history("pf")

    parent, child, history = asyncio.run(go())
    assert child is not None and child.status == "Failed"
    failed = next(e for e in history if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_FAILED)
    assert failed["Reason"] == child.output
    assert failed["Details"].startswith("Message: Activity function 'explode' failed:  ValueError: boom")
    assert parent.status == "Failed"
    assert (
        parent.output
        == f"Orchestrator function 'parent_of_failure' failed: {child.output} \n {failed['Details']}"
    )


# -- retries -------------------------------------------------------------------------------------


def test_an_activity_that_fails_twice_succeeds_on_the_third_attempt_with_one_timer_per_failure(
    tmp_path: Path,
) -> None:
    """DTC RetryInterceptor (EXT CallActivityWithRetryAsync): every attempt is a new TaskScheduled with a
    new sequence id, each failure is followed by a timer at now + firstRetryInterval; the SDK's
    RetryAbleTask counts the same ids."""
    FLAKY.pop("third-time", None)

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:
            engine.start_new("retrying", "r1", sdk_input({"key": "third-time", "attempts": 3}))
            row = await engine.wait_for("r1", 20)
            return row, engine.history("r1")

    row, history = asyncio.run(go())
    assert row.status == "Completed" and json.loads(row.output) == "ok after 3"
    steps = [
        (
            EventType(e["EventType"]).name,
            e["EventId"] if e["EventId"] >= 0 else e.get("TaskScheduledId", e.get("TimerId")),
        )
        for e in history
        if e["EventType"] not in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED)
    ]
    assert steps == [
        ("EXECUTION_STARTED", None),
        ("TASK_SCHEDULED", 0),
        ("TASK_FAILED", 0),
        ("TIMER_CREATED", 1),
        ("TIMER_FIRED", 1),
        ("TASK_SCHEDULED", 2),
        ("TASK_FAILED", 2),
        ("TIMER_CREATED", 3),
        ("TIMER_FIRED", 3),
        ("TASK_SCHEDULED", 4),
        ("TASK_COMPLETED", 4),
        ("EXECUTION_COMPLETED", 5),
    ]
    failed = next(e for e in history if e["EventType"] == EventType.TASK_FAILED)
    assert failed["Reason"] == "Activity function 'flaky' failed:  RuntimeError: flaky failure 1"
    assert json.loads(failed["Details"])["$type"].startswith("System.Exception")
    # The retry timer is CurrentUtcDateTime (the failure's episode) + firstRetryInterval.
    timer_1 = next(e for e in history if e["EventType"] == EventType.TIMER_CREATED)
    assert timer_1["FireAt"] == "2030-01-01T00:00:01Z"


def test_the_last_failed_attempt_still_waits_for_an_immediate_dummy_timer_then_fails(tmp_path: Path) -> None:
    """DTC RetryInterceptor: after the last failed attempt a "Dummy timer for back-compat" fires at
    CurrentUtcDateTime; only then does the SDK raise (Task.py RetryAbleTask). The uncaught activity
    failure reaches Python as Exception(f"{Reason} \\n {Details}") and the instance output is
    "Orchestrator function 'X' failed: ..." (EXT OutOfProcOrchestrationShim)."""
    FLAKY.pop("never", None)

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:
            engine.start_new("retrying", "r2", sdk_input({"key": "never", "attempts": 2}))
            row = await engine.wait_for("r2", 20)
            return row, engine.history("r2")

    row, history = asyncio.run(go())
    assert row.status == "Failed"
    assert row.output.startswith(
        "Orchestrator function 'retrying' failed: "
        "Activity function 'flaky' failed:  RuntimeError: flaky failure 2 \n {"
    )
    timers = [e for e in history if e["EventType"] == EventType.TIMER_CREATED]
    assert [t["EventId"] for t in timers] == [1, 3]
    last_failure_episode = max(i for i, e in enumerate(history) if e["EventType"] == EventType.TASK_FAILED)
    episode_start = max(
        e["Timestamp"]
        for e in history[: last_failure_episode + 1]
        if e["EventType"] == EventType.ORCHESTRATOR_STARTED
    )
    assert timers[1]["FireAt"] == episode_start  # fires immediately
    done = history[-2]
    assert done["EventType"] == EventType.EXECUTION_COMPLETED and done["OrchestrationStatus"] == 3
    assert done["Result"] == row.output


# -- failures ------------------------------------------------------------------------------------


def test_an_uncaught_activity_failure_fails_the_instance_with_the_extensions_message(tmp_path: Path) -> None:
    """EXT TaskActivityShim: Reason = "Activity function 'A' failed: " + the text between
    "\\nException:" and "\\nStack:" of the host's RpcException (hence the double space); Details is
    the serialized .NET exception. SDK: the orchestrator sees Exception(f"{Reason} \\n {Details}")."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:
            engine.start_new("calls_failing", "f1")
            row = await engine.wait_for("f1", 10)
            return row, engine.history("f1")

    row, history = asyncio.run(go())
    failed = next(e for e in history if e["EventType"] == EventType.TASK_FAILED)
    assert failed["Reason"] == "Activity function 'explode' failed:  ValueError: boom"
    assert row.status == "Failed"
    assert (
        row.output
        == f"Orchestrator function 'calls_failing' failed: {failed['Reason']} \n {failed['Details']}"
    )


def test_actions_yielded_before_a_raise_are_still_carried_out(tmp_path: Path) -> None:
    """EXT TaskOrchestrationShim: on an exception carrying $OutOfProcData$ the shim still replays the
    actions (here an entity signal, EventSent with sequence id 0) before failing the instance with
    "Orchestrator function 'X' failed: <error>"."""
    signals: list[tuple[str, str, str, str | None]] = []

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path, entity_signal=lambda *a: signals.append(a)) as engine:
            engine.start_new("signal_then_raise", "sr")
            row = await engine.wait_for("sr", 10)
            await engine.drained()
            return row, engine.history("sr")

    row, history = asyncio.run(go())
    assert (
        row.status == "Failed" and row.output == "Orchestrator function 'signal_then_raise' failed: bad input"
    )
    sent = next(e for e in history if e["EventType"] == EventType.EVENT_SENT)
    assert (sent["EventId"], sent["InstanceId"], sent["Name"]) == (0, "@counter@c1", "op")
    assert signals == [("counter", "c1", "add", "5")]


def test_an_unknown_activity_fails_the_orchestration_when_the_action_is_issued(tmp_path: Path) -> None:
    """EXT DurableOrchestrationContext.CallDurableTaskFunctionAsync -> ThrowIfFunctionDoesNotExist:
    the ArgumentException is thrown while the action is issued, outside the shim's swallow."""

    async def go() -> Any:
        async with running(tmp_path) as engine:
            engine.start_new("calls_unknown", "u1")
            return await engine.wait_for("u1", 10)

    row = asyncio.run(go())
    assert row.status == "Failed"
    assert row.output.startswith(
        "Orchestrator function 'calls_unknown' failed: The function 'no_such_activity' doesn't exist, is "
        "disabled, or is not an activity function. Additional info: The following are the known activity "
        "functions: 'greet', 'square', 'flaky'"
    )


def test_an_instance_completes_only_when_no_task_is_open(tmp_path: Path) -> None:
    """DTC TaskOrchestrationExecutor.ExecuteCore completes the orchestration only `if
    (!this.context.HasOpenTasks)`: after task_any the losing timer keeps the instance Running until it
    fires, although the orchestrator already returned."""
    clock = VirtualClock(auto=False)

    async def go() -> tuple[list[str], Any, list[dict[str, Any]]]:
        async with running(tmp_path, clock) as engine:
            engine.start_new("race", "race")
            await until(lambda: EventType.TASK_COMPLETED in types(engine.history("race")))
            await asyncio.sleep(0.05)
            statuses = [engine.status("race").status]  # type: ignore[union-attr]
            clock.advance(timedelta(hours=1))
            row = await engine.wait_for("race", 10)
            return statuses, row, engine.history("race")

    statuses, row, history = asyncio.run(go())
    assert statuses == ["Running"]
    assert row.status == "Completed" and json.loads(row.output) == 9
    last_episode = history[
        max(i for i, e in enumerate(history) if e["EventType"] == EventType.ORCHESTRATOR_STARTED) :
    ]
    assert types(last_episode) == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.TIMER_FIRED,
        EventType.EXECUTION_COMPLETED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]


# -- non-determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("then", "status", "message"),
    [
        (
            {"step": "step_b"},
            "Failed",
            "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
            "an activity task with sequence number 0 named 'step_a', but the current orchestration replay "
            "instead scheduled an activity task named 'step_b' with this sequence number.",
        ),
        (
            {"step": "timer"},
            "Failed",
            "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
            "an activity task with sequence number 0 named 'step_a', but the current orchestration replay "
            "instead produced a CreateTimerOrchestratorAction action with this sequence number.",
        ),
        ({"step": "STEP_A"}, "Completed", None),  # names compare case-insensitively
        ({"input": {"changed": True}}, "Completed", None),  # inputs are never compared
    ],
)
def test_a_replay_that_schedules_something_else_fails_the_instance(
    tmp_path: Path, then: dict[str, Any], status: str, message: str | None
) -> None:
    """DTC TaskOrchestrationContext.HandleTaskScheduledEvent: a past TaskScheduled must match the
    replay's action with the same sequence id by kind and (case-insensitive) name, never by input;
    a mismatch is a NonDeterministicOrchestrationException, which fails the instance
    (TaskOrchestrationExecutor -> FailOrchestration). The SDK checks nothing itself."""
    SHIFTY.clear()
    SHIFTY.update(step="step_a", input={"v": 1}, then=then)

    async def go() -> Any:
        async with running(tmp_path) as engine:
            engine.start_new("shifty", "nd")
            return await engine.wait_for("nd", 10)

    row = asyncio.run(go())
    assert row.status == status
    if message is not None:
        assert row.output.startswith(message)


# -- the client: start, status, duplicates --------------------------------------------------------


@contextlib.asynccontextmanager
async def sdk_client(
    kind: str, engine: OrchestrationEngine, tmp: Path
) -> AsyncIterator[df.DurableOrchestrationClient]:
    """A real DurableOrchestrationClient, in-process (the SDK's request functions swapped) or over
    the extension's webhooks on loopback HTTP."""
    server = None
    base = INPROC_BASE_URL
    if kind == "http":
        scheduler = EntityScheduler(DevDB(tmp / "entities"), {}, max_batch=50, workers=1)
        server = WebhookServer(scheduler, [], HUB, orchestrations=engine)
        base = await server.start()
    transport = OrchestrationClientTransport(engine)
    try:
        with (
            protocol.client_transport(transport.post, transport.get)
            if kind == "inproc"
            else contextlib.nullcontext()
        ):
            yield df.DurableOrchestrationClient(protocol.client_binding_json(base, HUB))
    finally:
        if server is not None:
            await server.stop()
        await _close_sdk_session()


@pytest.mark.parametrize("kind", ["inproc", "http"])
def test_start_and_status_through_the_sdk_client(tmp_path: Path, kind: str) -> None:
    """SDK DurableOrchestrationClient.start_new posts json=df_dumps(input) to orchestrators/{name}: the
    extension answers 202 with the management payload (EXT HttpApiHandler); get_status reads
    instances/{id}: input is a str (double-encoded start), output a dict (single-encoded); an unknown
    id is 404 (a falsy status)."""

    async def go() -> tuple[str, Any, Any, Any]:
        async with running(tmp_path) as engine, sdk_client(kind, engine, tmp_path) as client:
            instance_id = await client.start_new("greeter", None, {"name": "ada", "n": 7})
            await engine.wait_for(instance_id, 10)
            status = await client.get_status(instance_id)
            missing = await client.get_status("nobody")
            payload = client.create_http_management_payload(instance_id)
            return instance_id, status, missing, payload

    instance_id, status, missing, payload = asyncio.run(go())
    assert re.fullmatch(r"[0-9a-f]{32}", instance_id)  # Guid.NewGuid().ToString("N")
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.input_ == json.dumps({"name": "ada", "n": 7})
    assert status.output["result"] == {"greeting": "hello ada", "n": 7}
    assert status.created_time == T0
    assert not missing
    assert payload["id"] == instance_id


@pytest.mark.parametrize("kind", ["inproc", "http"])
def test_starting_a_running_id_is_refused_and_a_finished_one_is_replaced(tmp_path: Path, kind: str) -> None:
    """EXT DurableClient.StartNewAsync with the default OverridableExistingInstanceStates
    (NonRunningStates): DAS CreateTaskOrchestrationAsync throws OrchestrationAlreadyExistsException
    for Running/Pending/ContinuedAsNew/Suspended (the webhook answers 500, the SDK raises); a
    Completed/Failed/Terminated id gets a new execution with a fresh history and Generation + 1."""

    async def go() -> tuple[Exception, Any, list[dict[str, Any]], Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine, sdk_client(kind, engine, tmp_path) as client:
            await client.start_new("waits", "dup")
            await until(lambda: engine.status("dup").status == "Running")  # type: ignore[union-attr]
            with pytest.raises(Exception) as refused:
                await client.start_new("waits", "dup")
            await client.raise_event("dup", "go", {"a": 1})
            first = await engine.wait_for("dup", 10)
            first_history = engine.history("dup")
            await client.start_new("greeter", "dup", {"name": "bob", "n": 2})
            second = await engine.wait_for("dup", 10)
            return refused.value, first, first_history, second, engine.history("dup")

    refused, first, first_history, second, second_history = asyncio.run(go())
    assert (
        refused.args[0]["ExceptionMessage"]
        == "An Orchestration instance with the status Running already exists."
    )
    # raise_event double-encodes too: a dict payload reaches the orchestrator as a str (SDK issue #295).
    assert json.loads(first.output) == {"data": json.dumps({"a": 1}), "type": "str"}
    assert second.status == "Completed" and second.name == "greeter"
    assert second.execution_id != first.execution_id and second.generation == first.generation + 1
    assert types(second_history).count(EventType.EXECUTION_STARTED) == 1
    assert second_history[1]["Generation"] == 1 and second_history[1]["Name"] == "greeter"
    assert not any(e.get("Name") == "go" for e in second_history)
    assert len(first_history) > 0


def test_the_start_webhook_validates_names_and_ids_as_the_extension_does(tmp_path: Path) -> None:
    """EXT DurableClient.StartNewAsync: an unknown orchestrator, an id starting with '@' or holding
    '/', '\\\\', '#', '?' or a control character, or longer than 256 characters is an ArgumentException
    -> 400 with ExceptionMessage (HttpApiHandler), which the SDK raises. (The extension passes the
    text as the parameter name, hence "instanceId (Parameter '...')".) Status answers 202 while
    running and 404 for an unknown id."""

    async def go() -> list[Any]:
        async with running(tmp_path) as engine:
            base = f"{INPROC_BASE_URL}{protocol.WEBHOOK_PATH}"
            replies = [
                client_request(engine, "POST", base + "orchestrators/nope", "null"),
                client_request(engine, "POST", base + "orchestrators/waits/@x", "null"),
                client_request(engine, "POST", base + "orchestrators/waits/" + "x" * 257, "null"),
                client_request(engine, "POST", base + "orchestrators/waits/ok", json.dumps(1)),
                client_request(engine, "GET", base + "instances/ok"),
                client_request(engine, "GET", base + "instances/unknown"),
            ]
            return replies

    nope, at, long, ok, running_status, unknown = asyncio.run(go())
    assert nope is not None and nope.status == 400
    assert nope.body["ExceptionMessage"].startswith(
        "The function 'nope' doesn't exist, is disabled, or is not an orchestrator function. "
        "Additional info: The following are the known orchestrator functions: 'greeter', 'fan_out'"
    )
    assert at is not None and at.status == 400
    assert (
        at.body["ExceptionMessage"]
        == "instanceId (Parameter 'Orchestration instance ids must not start with @.')"
    )
    assert long is not None and long.status == 400
    assert ok is not None and ok.status == 202 and ok.body["id"] == "ok"
    assert ok.headers["Location"] == ok.body["statusQueryGetUri"]
    assert ok.body["statusQueryGetUri"].endswith(f"/instances/ok?taskHub={HUB}&connection=Storage")
    assert set(ok.body) == {
        "id",
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
    }
    assert running_status is not None and running_status.status == 202
    assert running_status.body["runtimeStatus"] in ("Pending", "Running")
    assert running_status.body["createdTime"] == "2030-01-01T00:00:00Z"
    assert unknown is not None and unknown.status == 404 and unknown.body is None


def test_a_failed_instance_answers_200_with_the_failure_message(tmp_path: Path) -> None:
    """EXT HttpApiHandler.HandleGetStatusRequestAsync: Failed is 200 (500 only with
    returnInternalServerErrorOnFailure); the output is the failure message (DAS: FailureDetails ??
    Result)."""

    async def go() -> Any:
        async with running(tmp_path) as engine:
            engine.start_new("calls_failing", "f2")
            await engine.wait_for("f2", 10)
            return client_request(engine, "GET", f"{INPROC_BASE_URL}{protocol.WEBHOOK_PATH}instances/f2")

    reply = asyncio.run(go())
    assert reply is not None and reply.status == 200
    assert reply.body["runtimeStatus"] == "Failed"
    assert reply.body["output"].startswith("Orchestrator function 'calls_failing' failed: Activity function")


# -- durability ----------------------------------------------------------------------------------


def test_a_new_engine_on_the_same_sqlite_file_resumes_an_instance_waiting_on_a_timer(tmp_path: Path) -> None:
    """The task hub is durable (DTFx: history, control queue and timer messages in storage): a devhost
    killed while an instance waits on a timer resumes it, nothing lost and nothing run twice."""
    RECORDED.clear()

    async def first_run() -> list[dict[str, Any]]:
        async with running(tmp_path, VirtualClock(auto=False)) as engine:  # time never moves: no timer fires
            engine.start_new("two_steps", "durable")
            await until(lambda: EventType.TIMER_CREATED in types(engine.history("durable")))
            return engine.history("durable")

    async def second_run() -> tuple[Any, list[dict[str, Any]]]:
        async with running(tmp_path) as engine:  # a new engine, a new connection, the same file
            row = await engine.wait_for("durable", 10)
            return row, engine.history("durable")

    before = asyncio.run(first_run())
    row, after = asyncio.run(second_run())
    assert row.status == "Completed" and json.loads(row.output) == ["FIRST", "SECOND"]
    assert RECORDED == ["first", "second"]
    assert after[: len(before)] == before
    assert types(after).count(EventType.TASK_SCHEDULED) == 2


def test_an_activity_interrupted_by_a_restart_runs_again(tmp_path: Path) -> None:
    """DTFx activities are at least once: a work item whose completion was not committed is delivered
    again after a restart (TaskActivityDispatcher; the devhost commits the completion with the
    deletion of the work item)."""
    RECORDED.clear()
    SLOW_GATE.clear()

    async def first_run() -> None:
        async with running(tmp_path) as engine:
            engine.start_new("slow_step", "slow")
            await until(lambda: RECORDED == ["slow"])  # the activity is running, blocked

    async def second_run() -> Any:
        async with running(tmp_path) as engine:
            return await engine.wait_for("slow", 10)

    try:
        asyncio.run(first_run())
        SLOW_GATE.set()  # the first run's thread finishes; its result was never committed
        row = asyncio.run(second_run())
    finally:
        SLOW_GATE.set()
    assert row.status == "Completed" and json.loads(row.output) == "SLOW"
    assert RECORDED == ["slow", "slow"]
