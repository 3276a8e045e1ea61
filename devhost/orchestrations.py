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
   signals), all in one SQLite transaction (``devhost.orchestration_db``).

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
import math
import sqlite3
import traceback
import unicodedata
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from aiohttp import web
from yarl import URL

from devhost.bindings import client_datum
from devhost.indexing import AppIndex, FunctionSpec
from devhost.orchestration_db import (
    EpisodeCommit,
    InstanceRow,
    Message,
    OrchestrationStore,
    OutMessage,
    WorkItem,
)
from devhost.protocol import WEBHOOK_PATH
from devhost.worker import Datum, Invocation

log = logging.getLogger(__name__)

ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"


class EventType(IntEnum):
    """DTC ``History/EventType.cs`` (= SDK ``history/HistoryEventType.py``)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


# DTC OrchestrationStatus.cs, written as an integer in ExecutionCompleted.OrchestrationStatus.
ORCHESTRATION_STATUS = {
    "Running": 0,
    "Completed": 1,
    "ContinuedAsNew": 2,
    "Failed": 3,
    "Canceled": 4,
    "Terminated": 5,
    "Pending": 6,
    "Suspended": 7,
}
# OverridableStates.NonRunningStates (the default): starting one of these ids is refused.
DEDUPE_STATUSES = frozenset({"Running", "ContinuedAsNew", "Pending", "Suspended"})
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})

# SchemaVersion (OutOfProcOrchestrationShim): Original 0, V2 1, V3 2.
SCHEMA_NAMES = {0: "Original", 1: "V2", 2: "V3"}
UPPER_SCHEMA_VERSION = 1
UPPER_SCHEMA_VERSION_NEW = 2
# AzureStorageDurabilityProvider: MaximumDelayTime 6 days, LongRunningTimerIntervalLength 3 days.
MAXIMUM_DELAY = timedelta(days=6)
LONG_TIMER_INTERVAL = timedelta(days=3)
DEFAULT_HTTP_SLEEP_MS = 30000  # HttpOptions.DefaultAsyncRequestSleepTimeMilliseconds
FAKE_TIMER_ID = -100  # FrameworkConstants.FakeTimerIdToSplitDecision
MAX_INSTANCE_ID_LENGTH = 256  # DurableClient.MaxInstanceIdLength
CUSTOM_STATUS_MAX_KB = 16  # DurableOrchestrationContext.SetCustomStatus
OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
GUID_URL_NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # GuidManager.UrlNamespaceValue
CONNECTION_NAME = "Storage"
RPC_EXCEPTION = "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- wire formats -------------------------------------------------------------------------------


def dotnet_time(dt: datetime) -> str:
    """A UTC DateTime as Json.NET writes it: ISO 8601, up to 7 fractional digits with the trailing
    zeros trimmed (Newtonsoft ``DateTimeUtils``), and ``Z``."""
    dt = dt.astimezone(UTC)
    fraction = f"{dt.microsecond:06d}0".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def parse_time(text: str) -> datetime:
    """An ISO 8601 UTC time (Json.NET's, or the SDK's ``%Y-%m-%dT%H:%M:%S.%fZ`` fireAt)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    head, _, tail = value.partition(".")
    if tail:  # .NET writes up to 7 digits; Python parses up to 6
        digits = ""
        rest = tail
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_ms(dt: datetime) -> int:
    return (dt.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def _ceil_ms(dt: datetime) -> int:
    delta = dt.astimezone(UTC) - _EPOCH
    return math.ceil(delta / timedelta(milliseconds=1))


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def compact(value: Any) -> str:
    """JSON as ``JToken.ToString(Formatting.None)`` writes it: no insignificant whitespace."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def history_event(kind: EventType, event_id: int = -1, *, at: datetime, **fields: Any) -> dict[str, Any]:
    """A DTFx HistoryEvent as ``JArray.FromObject`` serializes it: the ``[DataMember]`` names in
    PascalCase, ``EventType`` as an integer, times as Json.NET UTC strings."""
    event: dict[str, Any] = {"EventId": event_id, "IsPlayed": False, "Timestamp": dotnet_time(at)}
    event["EventType"] = int(kind)
    event.update(fields)
    return event


def _jtoken(text: str | None) -> Any:
    """``DurableClient.ParseToJToken``: the stored string as JSON, or the raw string if it is not."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- errors as the extension reports them -----------------------------------------------------


class ArgumentError(Exception):
    """A .NET ArgumentException: the webhook answers 400; inside an orchestration it fails the instance."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message if param is None else f"{message} (Parameter '{param}')")


class AlreadyExistsError(Exception):
    """``OrchestrationAlreadyExistsException`` (an InvalidOperationException): the webhook answers 500."""


class NonDeterministicError(Exception):
    """DTC ``NonDeterministicOrchestrationException``."""

    def __init__(self, details: str) -> None:
        super().__init__("Non-Deterministic workflow detected: " + details)


class OrchestrationFailure(Exception):
    """DTC ``OrchestrationFailureException``: the message becomes the instance's output."""

    def __init__(self, message: str, details: str | None) -> None:
        super().__init__(message)
        self.details = details


class TaskFailed(Exception):
    """A failed activity or sub-orchestration, as the C# side sees it (only its sequencing matters)."""

    def __init__(self, reason: str | None, details: str | None) -> None:
        super().__init__(reason or "")
        self.details = details


class TaskCanceled(Exception):
    """A canceled C# task (a timer the orchestrator canceled)."""


class NotSupportedByDevhost(Exception):
    """An action the devhost cannot carry out: it fails the orchestration instead of being ignored."""


# -- the C# task model: just enough of System.Threading.Tasks for the shim --------------------

_PENDING, _OK, _FAILED, _CANCELED = range(4)


class _Fut:
    """A C# Task. Continuations run synchronously on completion, as DTFx's synchronous decision
    scheduler runs them: completing a task inside the replay issues the actions that follow it."""

    __slots__ = ("state", "value", "error", "_callbacks")

    def __init__(self) -> None:
        self.state = _PENDING
        self.value: Any = None
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[_Fut], None]] = []

    def done(self) -> bool:
        return self.state != _PENDING

    def _finish(self, state: int, value: Any = None, error: BaseException | None = None) -> bool:
        if self.state != _PENDING:
            return False
        self.state, self.value, self.error = state, value, error
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)
        return True

    def set_result(self, value: Any) -> bool:
        return self._finish(_OK, value)

    def set_exception(self, error: BaseException) -> bool:
        return self._finish(_FAILED, error=error)

    def cancel(self) -> bool:
        return self._finish(_CANCELED, error=TaskCanceled("A task was canceled."))

    def add_done_callback(self, cb: Callable[[_Fut], None]) -> None:
        if self.done():
            cb(self)
        else:
            self._callbacks.append(cb)


Coroutine = Generator[_Fut, Any, Any]


def _ignore(_: Any) -> None:
    return None


def _completed(value: Any = None) -> _Fut:
    fut = _Fut()
    fut.set_result(value)
    return fut


def _spawn(gen: Coroutine) -> _Fut:
    """Run a C# async method: synchronously up to its first await of an unfinished task."""
    result = _Fut()

    def step(send: Any, error: BaseException | None) -> None:
        while True:
            try:
                awaited = gen.throw(error) if error is not None else gen.send(send)
            except StopIteration as stop:
                result.set_result(stop.value)
                return
            except Exception as exc:  # the async method's task faults
                result.set_exception(exc)
                return
            if not awaited.done():
                awaited.add_done_callback(lambda f: step(f.value, f.error if f.state != _OK else None))
                return
            send, error = awaited.value, (awaited.error if awaited.state != _OK else None)

    step(None, None)
    return result


def _when_all(futs: list[_Fut]) -> _Fut:
    """``Task.WhenAll``: done when every child is done (even after one failed), faulted by the first
    faulted child, else canceled if one was canceled."""
    result = _Fut()
    remaining = len(futs)
    if remaining == 0:
        result.set_result([])
        return result

    def on_done(_: _Fut) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            return
        failed = [f for f in futs if f.state == _FAILED]
        if failed and failed[0].error is not None:
            result.set_exception(failed[0].error)
        elif any(f.state == _CANCELED for f in futs):
            result.cancel()
        else:
            result.set_result([f.value for f in futs])

    for f in futs:
        f.add_done_callback(on_done)
    return result


def _when_any(futs: list[_Fut]) -> _Fut:
    """``Task.WhenAny``: done (never faulted) when the first child is done."""
    result = _Fut()
    for f in futs:
        f.add_done_callback(lambda child: _ignore(result.set_result(child)))
    return result


class _CancelToken:
    def __init__(self) -> None:
        self.requested = False
        self._callbacks: list[Callable[[], None]] = []

    def register(self, cb: Callable[[], None]) -> None:
        if self.requested:
            cb()
        else:
            self._callbacks.append(cb)

    def cancel(self) -> None:
        if not self.requested:
            self.requested = True
            for cb in self._callbacks:
                cb()


# -- the function registry, as the extension knows it ------------------------------------------


@dataclass
class Functions:
    """Registered orchestrators, activities and entities by name (``FunctionName`` compares
    case-insensitively), in registration order for the extension's error messages."""

    orchestrators: dict[str, tuple[str, FunctionSpec]] = field(default_factory=dict)
    activities: dict[str, tuple[str, FunctionSpec]] = field(default_factory=dict)
    entities: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_index(cls, index: AppIndex) -> Functions:
        fns = cls()
        for spec in index.functions.values():
            trigger = spec.trigger
            if spec.trigger_type == ORCHESTRATION_TRIGGER:
                name = str(trigger.get("orchestration") or spec.name)
                fns.orchestrators[name.lower()] = (name, spec)
            elif spec.trigger_type == ACTIVITY_TRIGGER:
                name = str(trigger.get("activity") or spec.name)
                fns.activities[name.lower()] = (name, spec)
            elif spec.trigger_type == "entityTrigger":
                name = str(trigger.get("entityName") or spec.name)
                fns.entities[name.lower()] = name
        return fns

    def require(self, name: str, kind: str) -> None:
        """``DurableTaskExtension.ThrowIfFunctionDoesNotExist``."""
        known: Mapping[str, Any]
        if kind == "activity":
            known = self.activities
        elif kind == "orchestrator":
            known = self.orchestrators
        else:
            known = self.entities
        if name.lower() in known:
            return
        message = (
            f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. "
            "Additional info: "
        )
        names = [v if isinstance(v, str) else v[0] for v in known.values()]
        # GetInvalidEntityFunctionMessage tests knownOrchestrators (sic) before listing the entities.
        listed = bool(self.orchestrators) if kind == "entity" else bool(known)
        if listed:
            joined = "', '".join(names)
            message += f"The following are the known {kind} functions: '{joined}'."
        else:
            message += f"No {kind} functions are currently registered!"
        raise ArgumentError(message)


# -- one episode: DTFx replaying the C# shim over the history ----------------------------------


@dataclass
class Decision:
    """A DTFx OrchestratorAction left for the dispatcher once the replay is over."""

    kind: str  # task | timer | sub | event | complete | continue
    id: int
    name: str = ""
    input: str | None = None
    fire_at: datetime | None = None
    instance_id: str = ""
    status: str = ""
    result: str | None = None
    details: str | None = None


@dataclass
class PythonOutcome:
    """What the orchestrator function's invocation gave the extension."""

    kind: str  # ok | error (raised, with $OutOfProcData$) | crash (raised, without) | none | missing
    state: dict[str, Any] | None = None
    message: str = ""
    stack: str = ""


_ACTION_CLASS = {
    "task": "ScheduleTaskOrchestratorAction",
    "timer": "CreateTimerOrchestratorAction",
    "sub": "CreateSubOrchestrationAction",
    "event": "SendEventOrchestratorAction",
    "complete": "OrchestrationCompleteOrchestratorAction",
    "continue": "OrchestrationCompleteOrchestratorAction",
}


class _Replay:
    """``TaskOrchestrationExecutor`` + ``TaskOrchestrationContext`` with the extension's
    ``TaskOrchestrationShim``/``OutOfProcOrchestrationShim`` as the orchestration: one episode."""

    def __init__(
        self,
        *,
        name: str,
        instance_id: str,
        execution_id: str,
        parent_instance_id: str | None,
        functions: Functions,
        outcome: PythonOutcome,
    ) -> None:
        self.name = name
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.parent_instance_id = parent_instance_id
        self.functions = functions
        self.outcome = outcome
        self.id_counter = 0
        self.actions: dict[int, Decision] = {}
        self.open: dict[int, _Fut] = {}
        self.current_utc = _EPOCH
        self.result: _Fut | None = None
        self.completed = False
        self.continue_as_new: Decision | None = None
        self.custom_status: str | None = None
        self.output: str | None = None
        self.pending_events: dict[str, list[_Fut]] = {}
        self.buffered_events: dict[str, deque[str | None]] = {}
        self.guid_counter = 0

    # -- the executor --------------------------------------------------------------------
    def run(self, events: Iterable[Mapping[str, Any]]) -> list[Decision]:
        try:
            for event in events:
                if event["EventType"] == EventType.ORCHESTRATOR_STARTED:
                    self.current_utc = parse_time(str(event["Timestamp"]))
                    continue
                self._process(event)
            if not self.open and self.result is not None and self.result.done():
                if self.result.state == _OK:
                    self._complete(self.result.value, None, "Completed")
                else:
                    self._fail(self.result.error or TaskCanceled("A task was canceled."))
        except NonDeterministicError as exc:
            self._fail(exc)
        return [self.actions[k] for k in sorted(self.actions)]

    def _process(self, event: Mapping[str, Any]) -> None:
        kind = event["EventType"]
        if kind == EventType.EXECUTION_STARTED:
            self.result = _spawn(self._execute())
        elif kind == EventType.EXECUTION_TERMINATED:
            self._complete(event.get("Input"), None, "Terminated")
        elif kind == EventType.TASK_SCHEDULED:
            self._match(event, "task")
        elif kind == EventType.TIMER_CREATED:
            if event["EventId"] != FAKE_TIMER_ID:
                self._match(event, "timer")
        elif kind == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED:
            self._match(event, "sub")
        elif kind == EventType.EVENT_SENT:
            self._match(event, "event")
        elif kind in (EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED):
            self._resolve(int(event["TaskScheduledId"]), event)
        elif kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
            self._resolve(
                int(event["TaskScheduledId"]), event, TaskFailed(event.get("Reason"), event.get("Details"))
            )
        elif kind == EventType.TIMER_FIRED:
            self._resolve(int(event["TimerId"]), event)
        elif kind == EventType.EVENT_RAISED:
            self._raise_event(str(event.get("Name") or ""), event.get("Input"))

    def _resolve(self, task_id: int, event: Mapping[str, Any], error: Exception | None = None) -> None:
        fut = self.open.pop(task_id, None)
        if fut is None:  # LogDuplicateEvent: a completion for no open task is ignored
            log.debug("instance %s: duplicate completion for task %s ignored", self.instance_id, task_id)
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(event.get("Result"))

    def _match(self, event: Mapping[str, Any], kind: str) -> None:
        """``HandleTaskScheduledEvent`` and its siblings: the non-determinism checks."""
        task_id = int(event["EventId"])
        name = str(event.get("Name") or "")
        action = self.actions.get(task_id)
        if kind == "task":
            if action is None:
                raise NonDeterministicError(
                    "A previous execution of this orchestration scheduled an activity task with sequence "
                    f"ID {task_id} and name '{name}' (version '{event.get('Version') or ''}'), but the "
                    "current replay execution hasn't (yet?) scheduled this task. Was a change made to the "
                    "orchestrator code after this instance had already started running?"
                )
            if action.kind != "task":
                raise NonDeterministicError(
                    "A previous execution of this orchestration scheduled an activity task with sequence "
                    f"number {task_id} named '{name}', but the current orchestration replay instead produced "
                    f"a {_ACTION_CLASS[action.kind]} action with this sequence number. Was a change made to "
                    "the orchestrator code after this instance had already started running?"
                )
            if name.lower() != action.name.lower():
                raise NonDeterministicError(
                    "A previous execution of this orchestration scheduled an activity task with sequence "
                    f"number {task_id} named '{name}', but the current orchestration replay instead "
                    f"scheduled an activity task named '{action.name}' with this sequence number.  Was a "
                    "change made to the orchestrator code after this instance had already started running?"
                )
        elif kind == "timer":
            if action is None:
                raise NonDeterministicError(
                    "A previous execution of this orchestration scheduled a timer task with sequence number "
                    f"{task_id} but the current replay execution hasn't (yet?) scheduled this task. Was a "
                    "change made to the orchestrator code after this instance had already started running?"
                )
            if action.kind != "timer":
                raise NonDeterministicError(
                    "A previous execution of this orchestration scheduled a timer task with sequence number "
                    f"{task_id} named but the current orchestration replay instead produced a "
                    f"{_ACTION_CLASS[action.kind]} action with this sequence number. Was a change made to "
                    "the orchestrator code after this instance had already started running?"
                )
        elif kind == "sub":
            described = (
                "A previous execution of this orchestration scheduled a sub-orchestration task with "
                f"sequence ID {task_id} and name '{name}' (version '{event.get('Version') or ''}', "
                f"instance ID '{event.get('InstanceId')}'), but the current"
            )
            if action is None:
                raise NonDeterministicError(
                    f"{described} replay execution hasn't (yet?) scheduled this task. Was a change made to "
                    "the orchestrator code after this instance had already started running?"
                )
            if action.kind != "sub":
                raise NonDeterministicError(
                    f"{described} orchestration replay instead produced a {_ACTION_CLASS[action.kind]} "
                    "action at this sequence number. Was a change made to the orchestrator code after this "
                    "instance had already started running?"
                )
            if name.lower() != action.name.lower():
                raise NonDeterministicError(
                    f"{described} orchestration replay instead scheduled a sub-orchestration task with "
                    f"name {action.name} at this sequence number. Was a change made to the orchestrator code "
                    "after this instance had already started running?"
                )
        else:  # EventSent
            described = (
                f"A previous execution of this orchestration scheduled a send event task with sequence ID "
                f"{task_id}, type '{EventType.EVENT_SENT.name}', name '{name}', instance ID "
                f"'{event.get('InstanceId')}'"
            )
            if action is None:
                raise NonDeterministicError(
                    f"{described}, but the current replay execution hasn't (yet?) scheduled this task. Was a "
                    "change made to the orchestrator code after this instance had already started running?"
                )
            if action.kind != "event":
                raise NonDeterministicError(
                    f"{described}, but the current orchestration replay instead scheduled a "
                    f"{_ACTION_CLASS[action.kind]} task at this sequence number. Was a change made to the "
                    "orchestrator code after this instance had already started running?"
                )
            if name.lower() != action.name.lower():
                raise NonDeterministicError(
                    f"{described}), but the current orchestration replay instead scheduled a send event task "
                    f"with name {action.name}at this sequence number. Was a change made to the orchestrator "
                    "code after this instance had already started running?"
                )
        del self.actions[task_id]

    # -- DTFx's TaskOrchestrationContext API -------------------------------------------------
    def _next_id(self) -> int:
        task_id = self.id_counter
        self.id_counter += 1
        return task_id

    def _schedule_task(self, name: str, input_: Any) -> _Fut:
        task_id = self._next_id()
        # The parameters array is serialized: a one-element JSON array around the SDK's JSON string.
        self.actions[task_id] = Decision("task", task_id, name=name, input=compact([input_]))
        fut = _Fut()
        self.open[task_id] = fut
        return fut

    def _create_timer(self, fire_at: datetime, token: _CancelToken | None = None) -> _Fut:
        task_id = self._next_id()
        self.actions[task_id] = Decision("timer", task_id, fire_at=fire_at)
        fut = _Fut()
        self.open[task_id] = fut
        if token is not None:

            def on_cancel() -> None:
                if fut.cancel():
                    self.open.pop(task_id, None)

            token.register(on_cancel)
        return fut

    def _create_sub(self, name: str, instance_id: str | None, input_: Any) -> _Fut:
        task_id = self._next_id()
        actual = instance_id if instance_id and instance_id.strip() else f"{self.execution_id}:{task_id}"
        self.actions[task_id] = Decision("sub", task_id, name=name, instance_id=actual, input=compact(input_))
        fut = _Fut()
        self.open[task_id] = fut
        return fut

    def _send_event(self, target: str, name: str, data: Any) -> None:
        task_id = self._next_id()
        self.actions[task_id] = Decision("event", task_id, name=name, instance_id=target, input=compact(data))

    def _complete(self, result: str | None, details: str | None, status: str) -> None:
        """``CompleteOrchestration``: takes a sequence id even when it does nothing."""
        task_id = self._next_id()
        if status == "Completed" and self.continue_as_new is not None:
            decision = self.continue_as_new
        else:
            if self.completed:
                return
            self.completed = True
            decision = Decision("complete", task_id, status=status, result=result, details=details)
        decision.id = task_id
        self.actions[task_id] = decision

    def _fail(self, failure: BaseException) -> None:
        """``FailOrchestration`` (ErrorPropagationMode.SerializeExceptions)."""
        if isinstance(failure, OrchestrationFailure):
            details = failure.details
        else:
            details = (
                f"Unhandled exception while executing orchestration: {_dotnet_type(failure)}: {failure}\n\t"
            )
        self._complete(str(failure), details, "Failed")

    # -- the extension's DurableOrchestrationContext ------------------------------------------
    def _retry(self, call: Callable[[], _Fut], options: Mapping[str, Any]) -> Coroutine:
        """DTC ``RetryInterceptor.Invoke``: a timer after every failure, the last one immediate."""
        first_ms = int(options["firstRetryIntervalInMilliseconds"])
        attempts = int(options["maxNumberOfAttempts"])
        backoff = float(options.get("backoffCoefficient", 1.0))
        max_interval = (
            timedelta(milliseconds=int(options["maxRetryIntervalInMilliseconds"]))
            if "maxRetryIntervalInMilliseconds" in options
            else MAXIMUM_DELAY  # the extension's RetryOptions default (DefaultMaxRetryinterval)
        )
        timeout = (
            timedelta(milliseconds=int(options["retryTimeoutInMilliseconds"]))
            if "retryTimeoutInMilliseconds" in options
            else None
        )
        first_attempt = self.current_utc
        last_error: BaseException | None = None
        for retry_count in range(attempts):
            try:
                value = yield call()
                return value
            except Exception as exc:
                last_error = exc
            if retry_count + 1 == attempts:
                yield self._create_timer(self.current_utc)  # "Dummy timer for back-compat"
                break
            delay = timedelta(0)
            if timeout is None or self.current_utc < first_attempt + timeout:
                delay_ms = first_ms * backoff**retry_count
                delay = (
                    timedelta(milliseconds=delay_ms)
                    if delay_ms < max_interval / timedelta(milliseconds=1)
                    else max_interval
                )
            if delay == timedelta(0):
                break
            yield self._create_timer(self.current_utc + delay)
        if last_error is not None:
            raise last_error
        return None

    def _check_retry(self, options: Any) -> Mapping[str, Any]:
        if not isinstance(options, Mapping):
            raise ArgumentError("Invalid JSON. Must contain field firstRetryIntervalInMilliseconds", "reader")
        for key in ("firstRetryIntervalInMilliseconds", "maxNumberOfAttempts"):
            if key not in options:
                raise ArgumentError(f"Invalid JSON. Must contain field {key}", "reader")
        first = timedelta(milliseconds=int(options["firstRetryIntervalInMilliseconds"]))
        if first <= timedelta(0):
            raise ArgumentError("Value must be greater than TimeSpan.Zero.", "firstRetryInterval")
        max_interval = (
            timedelta(milliseconds=int(options.get("maxRetryIntervalInMilliseconds", 0))) or MAXIMUM_DELAY
        )
        for value, param in ((max_interval, "MaxRetryInterval"), (first, "FirstRetryInterval")):
            if value > MAXIMUM_DELAY:
                raise ArgumentError(
                    f"The Azure Storage provider supports a maximum of {MAXIMUM_DELAY.days} days for "
                    "time-based delays",
                    param,
                )
        return options

    def _call_activity(self, name: str, input_: Any, retry: Any = None) -> _Fut:
        options = None if retry is None else self._check_retry(retry)
        self.functions.require(name, "activity")
        if options is None:
            return self._schedule_task(name, input_)
        return _spawn(self._retry(lambda: self._schedule_task(name, input_), options))

    def _call_sub(self, name: str, instance_id: str | None, input_: Any, retry: Any = None) -> _Fut:
        options = None if retry is None else self._check_retry(retry)
        self.functions.require(name, "orchestrator")
        if instance_id is not None and (
            instance_id.lower() == self.instance_id.lower()
            or (
                self.parent_instance_id is not None and instance_id.lower() == self.parent_instance_id.lower()
            )
        ):
            raise ArgumentError(
                "The instance ID of a sub-orchestration must be different than the instance ID of a parent "
                "orchestration."
            )
        if instance_id is not None and instance_id.startswith("@"):
            raise ArgumentError("instanceId", "Orchestration instance ids must not start with @")
        if options is None:
            return self._create_sub(name, instance_id, input_)
        return _spawn(self._retry(lambda: self._create_sub(name, instance_id, input_), options))

    def _ext_timer(self, fire_at: datetime, token: _CancelToken) -> Coroutine:
        """``IDurableOrchestrationContext.CreateTimer``: a timer beyond MaximumDelayTime is a loop of
        LongRunningTimerIntervalLength timers (the SDK already splits them under schema V3)."""
        if fire_at - self.current_utc <= MAXIMUM_DELAY:
            yield self._create_timer(fire_at, token)
            return None
        interval_at = self.current_utc + LONG_TIMER_INTERVAL
        while self.current_utc < fire_at and not token.requested:
            yield self._create_timer(interval_at, token)
            remaining = fire_at - self.current_utc
            if remaining <= timedelta(0):
                break
            interval_at = self.current_utc + min(remaining, LONG_TIMER_INTERVAL)
        return None

    def _wait_for_event(self, name: str) -> _Fut:
        key = name.lower()
        fut = _Fut()
        self.pending_events.setdefault(key, []).append(fut)  # a stack: the newest waiter is served first
        buffered = self.buffered_events.get(key)
        if buffered:
            raw = buffered.popleft()
            if not buffered:
                del self.buffered_events[key]
            self._raise_event(name, raw)
        return fut

    def _raise_event(self, name: str, data: str | None) -> None:
        key = name.lower()
        waiters = self.pending_events.get(key)
        if waiters:
            fut = waiters.pop()
            if not waiters:
                del self.pending_events[key]
            fut.set_result(data)
        else:
            self.buffered_events.setdefault(key, deque()).append(data)

    def _new_guid(self) -> str:
        name = f"{self.instance_id}_{self.current_utc.isoformat()}_{self.guid_counter}"
        self.guid_counter += 1
        return str(uuid.uuid5(GUID_URL_NAMESPACE, name))

    def _signal_entity(self, scheduler_id: str, operation: str, input_: Any) -> _Fut:
        entity, key = _parse_scheduler_id(scheduler_id)
        self.functions.require(entity, "entity")
        request: dict[str, Any] = {"op": operation, "signal": True}
        if input_ is not None:
            request["input"] = input_
        request.update(id=self._new_guid(), parent=self.instance_id, parentExecution=self.execution_id)
        self._send_event(f"@{entity.lower()}@{key}", "op", request)
        return _completed()

    # -- the out-of-process shim ---------------------------------------------------------------
    def _invoke(self, action: Mapping[str, Any], schema: int) -> _Fut:
        """``InvokeAPIFromAction``: issues the action; raising here fails the orchestration."""
        kind = action.get("actionType")
        if kind == 0:
            return self._call_activity(str(action.get("functionName")), action.get("input"))
        if kind == 1:
            return self._call_activity(
                str(action.get("functionName")), action.get("input"), action.get("retryOptions")
            )
        if kind == 2:
            return self._call_sub(
                str(action.get("functionName")), action.get("instanceId"), action.get("input")
            )
        if kind == 3:
            return self._call_sub(
                str(action.get("functionName")),
                action.get("instanceId"),
                action.get("input"),
                action.get("retryOptions"),
            )
        if kind == 4:
            self.continue_as_new = Decision("continue", -1, result=compact(action.get("input")))
            return _completed()
        if kind == 5:
            fire_at = parse_time(str(action["fireAt"]))
            if schema < 2 and fire_at - self.current_utc > MAXIMUM_DELAY:
                raise ArgumentError(
                    f"The Azure Storage provider supports a maximum of {MAXIMUM_DELAY.days} days for "
                    "time-based delays",
                    "fireAt",
                )
            token = _CancelToken()
            fut = _spawn(self._ext_timer(fire_at, token))
            if action.get("isCanceled"):
                token.cancel()
            return fut
        if kind == 6:
            return self._wait_for_event(str(action.get("externalEventName")))
        if kind == 9:
            return self._signal_entity(
                str(action.get("instanceId")), str(action.get("operation")), action.get("input")
            )
        if kind in (7, 8, 10):
            api = {7: "CallEntity (call_entity)", 8: "CallHttp (call_http)", 10: "ScheduledSignalEntity"}[
                kind
            ]
            raise NotSupportedByDevhost(
                f"The devhost does not run {api} actions in orchestrations; run the app with `func start`."
            )
        if kind in (11, 12):
            children = [self._invoke(child, schema) for child in action.get("compoundActions") or []]
            return _when_any(children) if kind == 11 else _when_all(children)
        raise Exception(f"Received an unexpected action type from the out-of-proc function: '${kind}'.")

    def _schedule_events(self, state: Mapping[str, Any], stack: str | None) -> Coroutine:
        """``ScheduleDurableTaskEvents``."""
        if state.get("customStatus") is not None:
            self.custom_status = _custom_status(state["customStatus"])
        actions = state.get("actions")
        schema = state.get("schemaVersion", 0)
        if schema in (1, 2):
            if not isinstance(actions, list) or len(actions) != 1:
                size = len(actions) if isinstance(actions, list) else 0
                raise ArgumentError(
                    f"With OOProc schema {SCHEMA_NAMES[schema]}, expected actions array to be of length 1 in "
                    f"outer layer but got size: {size}"
                )
            for action in actions[0]:
                fut = self._invoke(action, schema)
                try:
                    yield fut
                except Exception:  # failures are handled by the SDK, not by this loop
                    pass
        elif schema == 0:
            if actions is None:
                raise ArgumentError("Out-of-proc orchestrator schema must have a non-null actions property.")
            for action_set in actions:
                tasks = [self._invoke(a, schema) for a in action_set]
                if tasks:
                    yield _when_any(tasks)
        else:
            raise ArgumentError(
                f'The OOProc schema of of version "{schema}" is unsupported by this durable-extension '
                "version."
            )
        error = state.get("error")
        if error:
            raise OrchestrationFailure(
                f"Orchestrator function '{self.name}' failed: {error}",
                f"Message: {error}, StackTrace: {stack}",
            )
        if state.get("isDone"):
            output = state.get("output")
            self.output = None if output is None else compact(output)
            return
        yield _Fut()  # more work to do: wait for ever (HandleDurableTaskReplay)

    def _execute(self) -> Coroutine:
        """``TaskOrchestrationShim.Execute`` / ``InvokeUserCodeAndHandleResults``."""
        outcome = self.outcome
        if outcome.kind == "ok":
            assert outcome.state is not None
            try:
                yield from self._schedule_events(outcome.state, None)
            except Exception as exc:
                raise OrchestrationFailure(
                    f"Orchestrator function '{self.name}' failed: {exc}", _serialize_cause(exc)
                ) from exc
            return self.output
        if outcome.kind == "error":
            assert outcome.state is not None
            # An exception while issuing an action escapes unwrapped (only OrchestrationFailure is caught).
            yield from self._schedule_events(outcome.state, outcome.stack)
            return self.output
        if outcome.kind == "none":
            return None
        raise OrchestrationFailure(
            f"Orchestrator function '{self.name}' failed: {outcome.message}",
            _serialize_cause(outcome.message),
        )


def _custom_status(value: Any) -> str:
    text = compact(value)
    size_kb = int(len(text.encode("utf-16-le")) / 1024.0)
    if size_kb > CUSTOM_STATUS_MAX_KB:
        raise ArgumentError(
            f"The UTF-16 size of the JSON-serialized payload must not exceed {CUSTOM_STATUS_MAX_KB:,} KB. "
            f"The current payload size is {size_kb:,} KB."
        )
    return text


def _parse_scheduler_id(scheduler_id: str) -> tuple[str, str]:
    """``EntityId.GetEntityIdFromSchedulerId``: ``@name@key``."""
    if not scheduler_id.startswith("@") or "@" not in scheduler_id[1:]:
        raise ArgumentError(f"Invalid entity scheduler id {scheduler_id!r}")
    name, _, key = scheduler_id[1:].partition("@")
    return name, key


def _dotnet_type(exc: BaseException) -> str:
    return {
        NonDeterministicError: "DurableTask.Core.Exceptions.NonDeterministicOrchestrationException",
        ArgumentError: "System.ArgumentException",
        TaskFailed: "DurableTask.Core.Exceptions.TaskFailedException",
        TaskCanceled: "System.Threading.Tasks.TaskCanceledException",
    }.get(type(exc), "System.Exception")


def _serialize_cause(cause: BaseException | str) -> str:
    """``Utils.SerializeCause``: the exception as Json.NET writes it with TypeNameHandling.Objects.
    The shape is the .NET one; the stack fields are not reproduced."""
    message = cause if isinstance(cause, str) else str(cause)
    type_name = "System.Exception" if isinstance(cause, str) else _dotnet_type(cause)
    return compact(
        {
            "$type": f"{type_name}, System.Private.CoreLib",
            "ClassName": type_name,
            "Message": message,
            "Data": None,
            "InnerException": None,
            "HelpURL": None,
            "StackTraceString": None,
            "RemoteStackTraceString": None,
            "RemoteStackIndex": 0,
            "ExceptionMethod": None,
            "HResult": -2146233088,
            "Source": None,
            "WatsonBuckets": None,
        }
    )


def worker_failure(exc: BaseException) -> tuple[str, str]:
    """The worker's RpcException for a function that raised (dispatcher ``_serialize_exception``):
    ``f"{type(exc).__name__}: {exc}"`` and the formatted traceback entries (no message)."""
    return f"{type(exc).__name__}: {exc}", "".join(traceback.format_tb(exc.__traceback__))


def out_of_proc_message(worker_message: str, stack: str) -> str:
    """``OutOfProcExceptionHelpers.TryGetFullOutOfProcMessage``: the host's RpcException message is
    ``Result: Failure\nException: {message}\nStack: {stack}``; the extension keeps the text between
    the first ``\nException:`` and the first ``\nStack:``."""
    rpc_message = f"Result: Failure\nException: {worker_message}\nStack: {stack}"
    start = rpc_message.index("\nException:") + len("\nException:")
    return rpc_message[start : rpc_message.index("\nStack:")]


def activity_failure(activity: str, exc: BaseException, stack: str) -> tuple[str, str]:
    """TaskFailed's Reason and Details for an activity that raised (``TaskActivityShim``).

    The worker reports ``f"{type(exc).__name__}: {exc}"``; the host wraps it as
    ``Result: Failure\\nException: {message}\\nStack: {stack}``; the extension keeps the text
    between ``\\nException:`` and ``\\nStack:`` (hence the leading space) as the friendly message.
    """
    worker_message = f"{type(exc).__name__}: {exc}"
    rpc_message = f"Result: Failure\nException: {worker_message}\nStack: {stack}"
    friendly = out_of_proc_message(worker_message, stack)
    if OUT_OF_PROC_LABEL in friendly:
        friendly = friendly[: friendly.index(OUT_OF_PROC_LABEL)]
    details = compact(
        {
            "$type": "System.Exception, System.Private.CoreLib",
            "ClassName": "System.Exception",
            "Message": friendly,
            "Data": None,
            "InnerException": {
                "$type": f"{RPC_EXCEPTION}, Microsoft.Azure.WebJobs.Script",
                "IsUserException": False,
                "RemoteStackTrace": stack,
                "RemoteMessage": worker_message,
                "RemoteTypeName": None,
                "ClassName": RPC_EXCEPTION,
                "Message": rpc_message,
                "Data": None,
                "InnerException": None,
                "HelpURL": None,
                "StackTraceString": None,
                "RemoteStackTraceString": None,
                "RemoteStackIndex": 0,
                "ExceptionMethod": None,
                "HResult": -2146233088,
                "Source": None,
                "WatsonBuckets": None,
            },
            "HelpURL": None,
            "StackTraceString": None,
            "RemoteStackTraceString": None,
            "RemoteStackIndex": 0,
            "ExceptionMethod": None,
            "HResult": -2146233088,
            "Source": None,
            "WatsonBuckets": None,
        }
    )
    return f"Activity function '{activity}' failed: {friendly}", details


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
        started = _execution_started(now, instance_id, execution_id, name, input_json, None, generation)
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
        for outbox_id, kind, payload in self.store.outbox():
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
                    Details=_serialize_cause(exc),
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
        replay = _Replay(
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
        replay: _Replay,
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
                messages.append(OutMessage(row.instance_id, row.execution_id, _ceil_ms(d.fire_at), fired))
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
                start = _execution_started(now, d.instance_id, child_execution, d.name, d.input, parent, 0)
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
                    entity, key = _parse_scheduler_id(d.instance_id)
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
                start = _execution_started(
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


def trigger_json(
    instance_id: str, started: Mapping[str, Any], parent_id: str | None, events: list[dict[str, Any]]
) -> str:
    """The ``orchestrationTrigger`` input of one episode (``OrchestrationContextToString``)."""
    raw_input = started.get("Input")
    payload = {
        "history": events,
        "input": _jtoken(raw_input) if raw_input is not None else None,
        "instanceId": instance_id,
        "isReplaying": bool(started.get("IsPlayed")),
        "parentInstanceId": parent_id,
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
        "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
        "longRunningTimerIntervalDuration": "3.00:00:00",
        "maximumShortTimerDuration": "6.00:00:00",
        "defaultHttpAsyncRequestSleepTimeMillseconds": DEFAULT_HTTP_SLEEP_MS,
    }
    # JObject.ToString(): indented; a script trigger without dataType is bound as a string.
    return json.dumps(payload, indent=2, ensure_ascii=False)


def first_episode_json(name: str, instance_id: str, input_json: str | None, now: datetime) -> str:
    """The trigger input of a just-started instance's first episode: its history is the
    ``OrchestratorStarted`` of the episode and the client's ``ExecutionStarted`` (tests and the
    benchmark run a start through the real orchestrator function with it)."""
    started = _execution_started(now, instance_id, uuid.uuid4().hex, name, input_json, None, 0)
    events = [history_event(EventType.ORCHESTRATOR_STARTED, at=now), started]
    return trigger_json(instance_id, started, None, events)


def signal_actions(state: Mapping[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(entity name, key, operation, input) of every SignalEntity action an orchestrator returned
    (schema 2: the one-element outer array of every action yielded so far)."""
    out: list[tuple[str, str, str, Any]] = []
    for group in state.get("actions") or []:
        for action in group:
            if action.get("actionType") == 9:
                name, key = _parse_scheduler_id(str(action.get("instanceId")))
                out.append((name, key, str(action.get("operation")), action.get("input")))
    return out


def _execution_started(
    now: datetime,
    instance_id: str,
    execution_id: str,
    name: str,
    input_json: str | None,
    parent: Mapping[str, Any] | None,
    generation: int,
) -> dict[str, Any]:
    return history_event(
        EventType.EXECUTION_STARTED,
        at=now,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=None if parent is None else dict(parent),
        Name=name,
        Version="",
        Input=input_json,
        Tags=None,
        Correlation=None,
        ParentTraceContext=None,
        ScheduledStartTime=None,
        Generation=generation,
    )


# -- the client API: the extension's webhooks (HttpApiHandler) ----------------------------------


class ClientReply(NamedTuple):
    status: int
    body: Any  # JSON value, or None for an empty body
    headers: dict[str, str]


def _error(status: int, message: str, exc: BaseException) -> ClientReply:
    """``request.CreateErrorResponse(status, message, exception)``: an HttpError body."""
    type_name = {
        ArgumentError: "System.ArgumentException",
        AlreadyExistsError: "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
    }.get(type(exc), "System.Exception")
    body = {"Message": message, "ExceptionMessage": str(exc), "ExceptionType": type_name, "StackTrace": None}
    return ClientReply(status, body, {})


def management_payload(origin: str, instance_id: str, hub: str) -> dict[str, str]:
    """``CreateCheckStatusResponse``'s body (HttpApiHandler.GetClientResponseLinks)."""
    prefix = origin.rstrip("/") + WEBHOOK_PATH + "instances/" + quote_plus(instance_id)
    query = f"taskHub={quote_plus(hub)}&connection={CONNECTION_NAME}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{prefix}?{query}",
        "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{prefix}?{query}",
        "restartPostUri": f"{prefix}/restart?{query}",
        "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{prefix}/resume?reason={{text}}&{query}",
    }


def _iso_seconds(ms: int) -> str:
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def status_payload(row: InstanceRow) -> dict[str, Any]:
    """``StatusResponsePayload`` (HttpApiHandler.ConvertFrom): input, customStatus and output are JSON
    parsed from the stored strings (raw string if not JSON), times to the second."""
    return {
        "name": row.name,
        "instanceId": row.instance_id,
        "runtimeStatus": row.status,
        "input": _jtoken(row.input),
        "customStatus": _jtoken(row.custom_status),
        "output": _jtoken(row.output),
        "createdTime": _iso_seconds(row.created_ms),
        "lastUpdatedTime": _iso_seconds(row.updated_ms),
    }


_NO_BODY = object()


def client_request(
    engine: OrchestrationEngine, method: str, url: str, body: Any = _NO_BODY
) -> ClientReply | None:
    """One webhook call on orchestrations, or None when the URL is not an orchestration URL.

    ``body`` is the request body's JSON value (``_NO_BODY`` when there is none).
    """
    parsed = URL(url)
    path = parsed.path
    idx = path.find(WEBHOOK_PATH)
    if idx < 0:
        return None
    segments = path[idx + len(WEBHOOK_PATH) :].split("/")
    origin = str(parsed.origin()) if parsed.is_absolute() else ""
    method = method.upper()
    try:
        if segments[0] == "orchestrators" and len(segments) in (2, 3) and segments[1] and method == "POST":
            instance_id = segments[2] if len(segments) == 3 and segments[2] else None
            input_json = "null" if body is _NO_BODY else compact(body)
            new_id = engine.start_new(segments[1], instance_id, input_json)
            payload = management_payload(origin, new_id, engine.hub)
            return ClientReply(202, payload, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})
        if segments[0] != "instances" or len(segments) < 2 or not segments[1]:
            return None
        instance_id = segments[1]
        if len(segments) == 2 and method == "GET":
            row = engine.status(instance_id)
            if row is None:
                return ClientReply(404, None, {})
            if row.status in TERMINAL_STATUSES:
                return ClientReply(200, status_payload(row), {})
            return ClientReply(202, status_payload(row), {"Location": url, "Retry-After": "5"})
        if len(segments) == 2 and method == "DELETE":
            deleted = engine.purge(instance_id)
            return (
                ClientReply(200, {"instancesDeleted": deleted}, {}) if deleted else ClientReply(404, None, {})
            )
        if len(segments) == 4 and segments[2] == "raiseEvent" and method == "POST":
            data = None if body is _NO_BODY else compact(body)
            return ClientReply(engine.raise_event(instance_id, segments[3], data), None, {})
        if len(segments) == 3 and segments[2] == "terminate" and method == "POST":
            return ClientReply(engine.terminate(instance_id, parsed.query.get("reason")), None, {})
    except ArgumentError as exc:
        return _error(400, "One or more of the arguments submitted is incorrect", exc)
    except Exception as exc:  # the extension answers 500 for any other exception
        return _error(500, "Something went wrong while processing your request", exc)
    return None


class OrchestrationClientTransport:
    """The in-process transport for orchestration URLs, in front of another transport (entities).

    Its ``post``/``get`` have the SDK request functions' signatures; use them with
    ``protocol.client_transport(t.post, t.get)``. URLs are normalised as the SDK's aiohttp
    client would put them on the wire.
    """

    def __init__(
        self,
        engine: OrchestrationEngine,
        post: Callable[..., Awaitable[list[Any]]] | None = None,
        get: Callable[..., Awaitable[list[Any]]] | None = None,
    ) -> None:
        self.engine = engine
        self._post, self._get = post, get

    async def post(self, url: str, data: Any = None, *args: Any, **kwargs: Any) -> list[Any]:
        sent = str(URL(url))
        reply = client_request(self.engine, "POST", sent, _NO_BODY if data is None else data)
        if reply is not None:
            return [reply.status, reply.body]
        if self._post is None:
            return [404, None]
        return await self._post(url, data, *args, **kwargs)

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        sent = str(URL(url))
        reply = client_request(self.engine, "GET", sent)
        if reply is not None:
            return [reply.status, "" if reply.body is None else reply.body]
        if self._get is None:
            return [404, ""]
        return await self._get(url, *args, **kwargs)


def add_webhook_routes(app: web.Application, engine: OrchestrationEngine) -> None:
    """The orchestration webhooks on an aiohttp app (register before any catch-all route)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = _NO_BODY
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                return web.json_response(
                    {"Message": "Invalid JSON content", "ExceptionMessage": str(exc)}, status=400
                )
        if request.method == "POST" and "/raiseEvent/" in request.path:
            if not request.content_type.startswith("application/json"):
                return web.json_response(
                    {"Message": "Only application/json request content is supported"}, status=400
                )
        reply = client_request(engine, request.method, str(request.url), body)
        if reply is None:
            return web.Response(status=404)
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    app.router.add_route("*", WEBHOOK_PATH + "orchestrators/{tail:.*}", handle)
    app.router.add_route("*", WEBHOOK_PATH + "instances/{tail:.*}", handle)


__all__ = [
    "AlreadyExistsError",
    "ArgumentError",
    "ClientReply",
    "EventType",
    "Functions",
    "OrchestrationClientTransport",
    "OrchestrationEngine",
    "OrchestrationStats",
    "activity_failure",
    "add_webhook_routes",
    "client_request",
    "dotnet_time",
    "management_payload",
    "parse_time",
    "status_payload",
]
