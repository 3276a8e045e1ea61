"""One orchestration episode: DTFx replaying the extension's C# shim over the history.

An emulation of ``TaskOrchestrationExecutor`` + ``TaskOrchestrationContext`` (with
``RetryInterceptor``) running the extension's ``TaskOrchestrationShim`` /
``OutOfProcOrchestrationShim`` as the orchestration: the actions the Python orchestrator
returned are re-issued in order, past history events are matched against them by id, kind and
name, and what is left becomes the episode's decisions (see ``devhost.durable.engine``).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devhost.durable.history import (
    ACTIVITY_TRIGGER,
    EPOCH,
    FAKE_TIMER_ID,
    GUID_URL_NAMESPACE,
    LONG_TIMER_INTERVAL,
    MAXIMUM_DELAY,
    ORCHESTRATION_TRIGGER,
    SCHEMA_NAMES,
    ArgumentError,
    EventType,
    NonDeterministicError,
    NotSupportedByDevhost,
    OrchestrationFailure,
    TaskCanceled,
    TaskFailed,
    compact,
    custom_status_json,
    dotnet_type,
    parse_scheduler_id,
    parse_time,
    serialize_cause,
)
from devhost.functions_host.indexing import AppIndex, FunctionSpec

log = logging.getLogger(__name__)

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


class Replay:
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
        self.current_utc = EPOCH
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
                f"Unhandled exception while executing orchestration: {dotnet_type(failure)}: {failure}\n\t"
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
        entity, key = parse_scheduler_id(scheduler_id)
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
            self.custom_status = custom_status_json(state["customStatus"])
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
                    f"Orchestrator function '{self.name}' failed: {exc}", serialize_cause(exc)
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
            serialize_cause(outcome.message),
        )
