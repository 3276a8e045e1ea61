"""What the Functions host sends the worker for each trigger, and reads back from it.

The host turns each binding's data into RPC ``TypedData`` and the worker turns
that into a ``Datum``; the devhost builds the same ``Datum`` objects directly
and leaves the decoding to the azure.functions converters (``devhost.functions_host.worker``).
Sources: Azure/azure-functions-host (``RpcMessageConversionExtensions``),
the Event Hubs extension (``EventHubTriggerBindingStrategy``) and the notes in
docs/platform.md, each pinned by a test in tests/platform/.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from devhost.functions_host.worker import Datum, Invocation, RetryContext


class HostBindingError(RuntimeError):
    """The host failed the invocation before the worker ran (for example, a body that is not JSON)."""


@dataclass(frozen=True, slots=True)
class HubEvent:
    """One Event Hubs event as the host's trigger listener received it."""

    body: bytes
    sequence: int
    offset: str
    enqueued_ms: int
    partition_key: str | None = None
    properties: Mapping[str, Any] | None = None  # the event's application properties


@functools.lru_cache(maxsize=8192)
def _dotnet_utc(ms: int) -> str:
    """``EnqueuedTimeUtc`` as the host writes it: ``DateTimeOffset.DateTime`` (Kind Unspecified)
    through Json.NET's defaults, so ISO 8601 with no zone suffix and the fraction's trailing
    zeros trimmed (Newtonsoft ``DateTimeUtils``). azure.functions parses it into a naive datetime."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    fraction = f"{dt.microsecond // 1000:03d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")


def _dotnet_offset(ms: int) -> str:
    """``x-opt-enqueued-time``: a DateTimeOffset, written with its +00:00 offset."""
    return _dotnet_utc(ms) + "+00:00"


def eventhub_data(events: Sequence[HubEvent], data_type: str | None) -> Datum:
    """The trigger's TypedData for cardinality many, by the binding's ``dataType``.

    - ``binary``: ``collection_bytes``, every body byte for byte.
    - ``string``: ``collection_string``; the host drops empty strings from the collection.
    - none: the host binds ``object[]``: every body is parsed as JSON (one that is not fails the
      whole invocation before Python runs) and the array is sent as ``json``.
    """
    kind = (data_type or "").lower()
    if kind == "binary":
        return Datum(SimpleNamespace(bytes=[e.body for e in events]), "collection_bytes")
    if kind == "string":
        strings = [e.body.decode("utf-8", errors="replace") for e in events]
        return Datum(SimpleNamespace(string=[s for s in strings if s]), "collection_string")
    if kind in ("", "undefined"):
        parsed = []
        for e in events:
            try:
                parsed.append(json.loads(e.body))
            except (UnicodeDecodeError, ValueError) as exc:
                raise HostBindingError(
                    f"Exception binding parameter: the event at sequence {e.sequence} is not JSON "
                    f"({exc}); set dataType to binary on the trigger"
                ) from exc
        return Datum(json.dumps(parsed), "json")
    raise HostBindingError(f"unsupported dataType {data_type!r} for an Event Hubs trigger")


def eventhub_metadata(
    events: Sequence[HubEvent], *, partition: str, hub: str, consumer_group: str, namespace: str
) -> dict[str, Datum]:
    """Trigger metadata of a many-batch, as ``EventHubTriggerBindingStrategy`` builds it and the host
    converts it (``ScriptInvocationContextExtensions.ToRpc``): per-event arrays, the partition
    context once. Null values are skipped, null or empty partition keys are dropped from
    ``PartitionKeyArray``, and the webjobs ``sys`` binding data is not sent to out-of-process workers."""
    system = []
    times = []  # each event's EnqueuedTimeUtc, formatted once for both arrays
    for e in events:
        enqueued = _dotnet_utc(e.enqueued_ms)
        times.append(enqueued)
        props: dict[str, Any] = {
            "x-opt-sequence-number": e.sequence,
            "x-opt-offset": e.offset,
            "x-opt-enqueued-time": enqueued + "+00:00",
        }
        if e.partition_key is not None:
            props["x-opt-partition-key"] = e.partition_key
        props.update(
            SequenceNumber=e.sequence,
            Offset=int(e.offset) if e.offset.lstrip("-").isdigit() else -1,
            OffsetString=e.offset,
            PartitionKey=e.partition_key,
            EnqueuedTimeUtc=enqueued,
        )
        system.append(props)
    context = {
        "IsCheckpointingAfterInvocation": True,
        "FullyQualifiedNamespace": namespace,
        "EventHubName": hub,
        "ConsumerGroup": consumer_group,
        "PartitionId": partition,
    }
    context_json = json.dumps(context)
    return {
        "PartitionContext": Datum(context_json, "json"),
        "TriggerPartitionContext": Datum(context_json, "json"),
        "SystemPropertiesArray": Datum(json.dumps(system), "json"),
        "PropertiesArray": Datum(json.dumps([dict(e.properties or {}) for e in events]), "json"),
        "PartitionKeyArray": Datum(
            SimpleNamespace(string=[e.partition_key for e in events if e.partition_key]), "collection_string"
        ),
        "OffsetArray": Datum(SimpleNamespace(string=[e.offset for e in events]), "collection_string"),
        "SequenceNumberArray": Datum(
            SimpleNamespace(sint64=[e.sequence for e in events]), "collection_sint64"
        ),
        "EnqueuedTimeUtcArray": Datum(json.dumps(times), "json"),
    }


def eventhub_invocation(
    trigger: Mapping[str, Any],
    events: Sequence[HubEvent],
    *,
    partition: str,
    hub: str,
    consumer_group: str,
    client_args: Mapping[str, str],
    retry: RetryContext,
    namespace: str = "devhost.servicebus.windows.net",
) -> Invocation:
    inputs = {str(trigger["name"]): eventhub_data(events, trigger.get("dataType"))}
    inputs.update({arg: client_datum(binding) for arg, binding in client_args.items()})
    return Invocation(
        inputs=inputs,
        trigger_metadata=eventhub_metadata(
            events, partition=partition, hub=hub, consumer_group=consumer_group, namespace=namespace
        ),
        retry=retry,
    )


def client_datum(binding_json: str) -> Datum:
    """A ``durableClient`` input: the extension's client JSON as a string."""
    return Datum(binding_json, "string")


def entity_invocation(trigger: Mapping[str, Any], batch_json: str) -> Invocation:
    """An entity batch (the extension's out-of-process JSON shim) as the ``entityTrigger`` input."""
    return Invocation(inputs={str(trigger["name"]): Datum(batch_json, "json")})


def http_invocation(
    trigger: Mapping[str, Any],
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
    client_args: Mapping[str, str],
) -> Invocation:
    """``RpcHttp`` as ``Datum.from_typed_data`` builds it; an empty body is ``bytes`` b''."""
    value = {
        "method": Datum(method, "string"),
        "url": Datum(url, "string"),
        "headers": {k.lower(): Datum(v, "string") for k, v in headers.items()},
        "body": Datum(body, "bytes"),
        "params": {k: Datum(v, "string") for k, v in route_params.items()},
        "query": {k: Datum(v, "string") for k, v in query.items()},
    }
    inputs = {str(trigger["name"]): Datum(value, "http")}
    inputs.update({arg: client_datum(binding) for arg, binding in client_args.items()})
    return Invocation(inputs=inputs)


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


def http_reply(datum: Datum | None) -> HttpReply:
    """The host's reading of an ``http`` (or ``string``) return value."""
    if datum is None or datum.type is None:
        return HttpReply(204, {}, b"")
    if datum.type == "string":
        return HttpReply(200, {"content-type": "text/plain; charset=utf-8"}, str(datum.value).encode())
    if datum.type != "http":
        raise HostBindingError(f"an HTTP function returned {datum.type!r}")
    value = datum.value
    body = value["body"].value if value.get("body") is not None else b""
    if isinstance(body, str):
        body = body.encode()
    headers = {k: str(v.value) for k, v in value.get("headers", {}).items()}
    return HttpReply(int(value["status_code"].value), headers, body)


def _dotnet_offset_iso(dt: datetime | None) -> str | None:
    """A DateTimeOffset as Json.NET writes it (ISO 8601 with its +00:00 offset)."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


def queue_invocation(
    trigger: Mapping[str, Any],
    body: bytes,
    *,
    message_id: str,
    dequeue_count: int,
    insertion_time: datetime | None,
    expiration_time: datetime | None,
    next_visible_time: datetime | None,
    pop_receipt: str,
    client_args: Mapping[str, str],
) -> Invocation:
    """A Storage queue message as the host sends it: the decoded body as a string (binary data as
    bytes), and its metadata (Id, DequeueCount, the times, PopReceipt, QueueTrigger)."""
    try:
        data = Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        data = Datum(body, "bytes")
    metadata: dict[str, Datum] = {
        "Id": Datum(message_id, "string"),
        "DequeueCount": Datum(dequeue_count, "int"),
        "PopReceipt": Datum(pop_receipt, "string"),
    }
    for key, when in (
        ("InsertionTime", insertion_time),
        ("ExpirationTime", expiration_time),
        ("NextVisibleTime", next_visible_time),
    ):
        text = _dotnet_offset_iso(when)
        if text is not None:
            metadata[key] = Datum(json.dumps(text), "json")
    if data.type == "string":
        metadata["QueueTrigger"] = Datum(data.value, "string")
    inputs = {str(trigger["name"]): data}
    inputs.update({arg: client_datum(binding) for arg, binding in client_args.items()})
    return Invocation(inputs=inputs, trigger_metadata=metadata)
