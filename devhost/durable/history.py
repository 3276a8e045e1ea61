"""Durable Task Framework history, as the Durable extension keeps and sends it.

The history events of an orchestration (``DurableTask.Core`` ``EventType`` and its JSON shape),
the time formats, the ``orchestrationTrigger`` payload of one episode
(``OrchestrationContextToString``), and the errors and failure details the extension reports
(``Utils.SerializeCause``, the out-of-process exception text). Used by the replay
(``devhost.durable.replay``), the engine (``devhost.durable.engine``) and the client API
(``devhost.durable.client``).
"""

from __future__ import annotations

import json
import logging
import math
import traceback
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import msgspec

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

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    return (dt.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1)


def ceil_ms(dt: datetime) -> int:
    delta = dt.astimezone(UTC) - EPOCH
    return math.ceil(delta / timedelta(milliseconds=1))


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


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


def jtoken(text: str | None) -> Any:
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


def custom_status_json(value: Any) -> str:
    text = compact(value)
    size_kb = int(len(text.encode("utf-16-le")) / 1024.0)
    if size_kb > CUSTOM_STATUS_MAX_KB:
        raise ArgumentError(
            f"The UTF-16 size of the JSON-serialized payload must not exceed {CUSTOM_STATUS_MAX_KB:,} KB. "
            f"The current payload size is {size_kb:,} KB."
        )
    return text


def parse_scheduler_id(scheduler_id: str) -> tuple[str, str]:
    """``EntityId.GetEntityIdFromSchedulerId``: ``@name@key``."""
    if not scheduler_id.startswith("@") or "@" not in scheduler_id[1:]:
        raise ArgumentError(f"Invalid entity scheduler id {scheduler_id!r}")
    name, _, key = scheduler_id[1:].partition("@")
    return name, key


def dotnet_type(exc: BaseException) -> str:
    return {
        NonDeterministicError: "DurableTask.Core.Exceptions.NonDeterministicOrchestrationException",
        ArgumentError: "System.ArgumentException",
        TaskFailed: "DurableTask.Core.Exceptions.TaskFailedException",
        TaskCanceled: "System.Threading.Tasks.TaskCanceledException",
    }.get(type(exc), "System.Exception")


def serialize_cause(cause: BaseException | str) -> str:
    """``Utils.SerializeCause``: the exception as Json.NET writes it with TypeNameHandling.Objects.
    The shape is the .NET one; the stack fields are not reproduced."""
    message = cause if isinstance(cause, str) else str(cause)
    type_name = "System.Exception" if isinstance(cause, str) else dotnet_type(cause)
    return compact(_exception_json(f"{type_name}, System.Private.CoreLib", type_name, message))


def _exception_json(
    type_ref: str,
    class_name: str,
    message: str,
    inner: dict[str, Any] | None = None,
    remote: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A .NET exception as Json.NET writes it with TypeNameHandling.Objects (``System.Exception``'s
    serialised fields, in their order; ``remote``: an RpcException's own fields, which come first).
    The shape is the .NET one; the stack fields are not reproduced."""
    return {
        "$type": type_ref,
        **(remote or {}),
        "ClassName": class_name,
        "Message": message,
        "Data": None,
        "InnerException": inner,
        "HelpURL": None,
        "StackTraceString": None,
        "RemoteStackTraceString": None,
        "RemoteStackIndex": 0,
        "ExceptionMethod": None,
        "HResult": -2146233088,
        "Source": None,
        "WatsonBuckets": None,
    }


def worker_failure(exc: BaseException) -> tuple[str, str]:
    """The worker's RpcException for a function that raised (dispatcher ``_serialize_exception``):
    ``f"{type(exc).__name__}: {exc}"`` and the formatted traceback entries (no message). From a worker
    process the exception arrives already serialised (``RpcException``)."""
    message = getattr(exc, "message", None)
    stack = getattr(exc, "stack_trace", None)
    if type(exc).__name__ == "RpcException" and isinstance(message, str) and isinstance(stack, str):
        return message, stack
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
    worker_message = worker_failure(exc)[0]
    rpc_message = f"Result: Failure\nException: {worker_message}\nStack: {stack}"
    friendly = out_of_proc_message(worker_message, stack)
    if OUT_OF_PROC_LABEL in friendly:
        friendly = friendly[: friendly.index(OUT_OF_PROC_LABEL)]
    rpc = _exception_json(
        f"{RPC_EXCEPTION}, Microsoft.Azure.WebJobs.Script",
        RPC_EXCEPTION,
        rpc_message,
        remote={
            "IsUserException": False,
            "RemoteStackTrace": stack,
            "RemoteMessage": worker_message,
            "RemoteTypeName": None,
        },
    )
    details = compact(
        _exception_json("System.Exception, System.Private.CoreLib", "System.Exception", friendly, inner=rpc)
    )
    return f"Activity function '{activity}' failed: {friendly}", details


def trigger_json(
    instance_id: str, started: Mapping[str, Any], parent_id: str | None, events: list[dict[str, Any]]
) -> str:
    """The ``orchestrationTrigger`` input of one episode (``OrchestrationContextToString``)."""
    raw_input = started.get("Input")
    payload = {
        "history": events,
        "input": jtoken(raw_input) if raw_input is not None else None,
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
    return indented(payload)


def indented(value: Any) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, written by msgspec's C encoder: the same
    text (tests/platform/test_orchestrations.py checks it on every episode's history shapes) at a
    tenth of the pure-Python indenting encoder's CPU, which was ~0.5 ms per episode. Floats, which
    the two write differently in places, fall back to ``json``."""
    if _has_float(value):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def first_episode_json(name: str, instance_id: str, input_json: str | None, now: datetime) -> str:
    """The trigger input of a just-started instance's first episode: its history is the
    ``OrchestratorStarted`` of the episode and the client's ``ExecutionStarted`` (tests and the
    benchmark run a start through the real orchestrator function with it)."""
    started = execution_started(now, instance_id, uuid.uuid4().hex, name, input_json, None, 0)
    events = [history_event(EventType.ORCHESTRATOR_STARTED, at=now), started]
    return trigger_json(instance_id, started, None, events)


def signal_actions(state: Mapping[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(entity name, key, operation, input) of every SignalEntity action an orchestrator returned
    (schema 2: the one-element outer array of every action yielded so far)."""
    out: list[tuple[str, str, str, Any]] = []
    for group in state.get("actions") or []:
        for action in group:
            if action.get("actionType") == 9:
                name, key = parse_scheduler_id(str(action.get("instanceId")))
                out.append((name, key, str(action.get("operation")), action.get("input")))
    return out


def execution_started(
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
