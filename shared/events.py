"""CloudEvents 1.0 (structured JSON mode) parsing and validation.

Validation is declarative: the envelope and each event type's ``data`` are
msgspec Structs, and msgspec's decoder checks types, ranges and patterns while
it parses (one pass over the bytes, in C). A message either becomes a
``PlayerEvent``, is ``Dropped`` by the router (a type the model never uses), or
is ``Rejected`` with a reason for the dead-letter container. Nothing raises out
of ``parse``: one bad message never fails the batch it came in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from shared.eventtypes import SPECS, USED_TYPES, EventType, NonEmpty, name_of
from shared.signals import SignalEvent
from shared.timeutil import iso

# 1-128 of [A-Za-z0-9_.:-] with at least one letter or digit: the Durable client puts the key in
# a URL path unescaped and aiohttp normalises the dot segments "." and ".." (docs/contracts.md).
# Anchored with \Z, not $: Python's $ also matches before a final newline, so "p1\n" would pass.
PLAYER_ID_PATTERN = r"^(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9_.:-]{1,128}\Z"
_PLAYER_ID_RE = re.compile(PLAYER_ID_PATTERN)
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z"
_TRACEPARENT_RE = re.compile(TRACEPARENT_PATTERN)
JSON_CONTENT_TYPE_PATTERN = r"^(?i:application/(?:[a-z0-9.+-]+\+)?json)[ \t]*(?:;.*)?\Z"

PlayerId = Annotated[str, msgspec.Meta(pattern=PLAYER_ID_PATTERN)]


class Envelope(msgspec.Struct, frozen=True):
    """CloudEvents 1.0 required and used optional attributes."""

    specversion: Literal["1.0"]
    id: NonEmpty
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    subject: PlayerId
    time: Annotated[datetime, msgspec.Meta(tz=True)]
    # JSON with media-type parameters (RFC 9110: "application/json; charset=utf-8") and +json types.
    datacontenttype: Annotated[str, msgspec.Meta(pattern=JSON_CONTENT_TYPE_PATTERN)] | None = None
    # Checked after decoding: W3C Trace Context says a malformed traceparent is ignored, not fatal.
    traceparent: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"{}")


# The event types the model and the policy use, with their data schema (shared.eventtypes).
DATA_SCHEMAS: dict[str, type[msgspec.Struct]] = {spec.name: spec.schema for spec in SPECS}

_ENVELOPE = msgspec.json.Decoder(Envelope)
_DATA = {spec.name: (spec, msgspec.json.Decoder(spec.schema)) for spec in SPECS}


@dataclass(frozen=True, slots=True)
class PlayerEvent:
    """A validated event of a used type, as routed to the player's entity."""

    id: str
    kind: EventType
    player_id: str
    time_ms: int
    a: float = 0.0  # what the entity keeps of the data (shared.eventtypes: EventSpec.lift)
    b: float = 0.0
    ref: str | None = None
    traceparent: str | None = None
    partition: str | None = None
    sequence: int | None = None
    enqueued_ms: int | None = None
    source: str | None = None  # the CloudEvent's source: with id, its dedupe key

    @property
    def type(self) -> str:
        """The CloudEvent type."""
        return name_of(self.kind)

    def to_signal(self) -> SignalEvent:
        """The event as the entity's signal carries it."""
        return SignalEvent(
            self.id,
            int(self.kind),
            self.time_ms,
            self.a,
            self.b,
            self.ref,
            self.partition,
            self.sequence,
            self.enqueued_ms,
            self.traceparent,
            None,
            self.source,
        )


@dataclass(frozen=True, slots=True)
class Dropped:
    """A well-formed event of a type the model never uses (funnel step 1)."""

    type: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that is not a valid event: dead-lettered with the reason."""

    reason: str
    detail: str
    player_id: str | None = None
    event_id: str | None = None


ParseResult = PlayerEvent | Dropped | Rejected


def is_valid_player_id(value: object) -> bool:
    return isinstance(value, str) and _PLAYER_ID_RE.match(value) is not None


def parse(
    body: bytes,
    *,
    now_ms: int,
    max_bytes: int = 16 * 1024,
    max_future_skew_ms: int = 300_000,
    partition: str | None = None,
    sequence: int | None = None,
    enqueued_ms: int | None = None,
) -> ParseResult:
    """Parse one Event Hubs message body into a routed event or a verdict; never raises.

    Any exception while parsing one body (msgspec's RecursionError on deeply nested
    JSON, an out-of-range timestamp, ...) becomes that body's ``unparseable`` verdict:
    a failure here must never fail the batch, or the partition would stall on it.
    """
    try:
        return _parse(
            body,
            now_ms=now_ms,
            max_bytes=max_bytes,
            max_future_skew_ms=max_future_skew_ms,
            partition=partition,
            sequence=sequence,
            enqueued_ms=enqueued_ms,
        )
    except Exception as exc:  # noqa: BLE001 - one body's failure is that body's dead letter
        return Rejected("unparseable", f"{type(exc).__name__}: {str(exc)[:200]}")


def _parse(
    body: bytes,
    *,
    now_ms: int,
    max_bytes: int,
    max_future_skew_ms: int,
    partition: str | None,
    sequence: int | None,
    enqueued_ms: int | None,
) -> ParseResult:
    if len(body) > max_bytes:
        return Rejected("oversized", f"{len(body)} bytes > limit {max_bytes}")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected("not_utf8", str(exc))
    try:
        env = _ENVELOPE.decode(body)
    except msgspec.ValidationError as exc:
        return Rejected(_envelope_reason(str(exc)), str(exc))
    except msgspec.DecodeError as exc:
        return Rejected("malformed_json", str(exc))
    if env.type not in USED_TYPES:
        return Dropped(env.type)
    time_ms = int(env.time.timestamp() * 1000)
    if time_ms > now_ms + max_future_skew_ms:
        return Rejected(
            "future_time",
            f"event time {env.time.isoformat()} is more than {max_future_skew_ms // 1000}s ahead",
            env.subject,
            env.id,
        )
    spec, data_decoder = _DATA[env.type]
    raw_data = bytes(env.data)
    try:
        # "data": null carries no fields, like an absent data (a null opt-out is still an opt-out).
        data = data_decoder.decode(b"{}" if raw_data == b"null" or raw_data.strip() == b"null" else raw_data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return Rejected("invalid_data", f"{env.type}: {exc}", env.subject, env.id)
    a, b, ref = spec.lift(data)
    return PlayerEvent(
        id=env.id,
        kind=spec.code,
        player_id=env.subject,
        time_ms=time_ms,
        a=a,
        b=b,
        ref=ref,
        traceparent=env.traceparent if env.traceparent and _TRACEPARENT_RE.match(env.traceparent) else None,
        partition=partition,
        sequence=sequence,
        enqueued_ms=enqueued_ms,
        source=env.source,
    )


def _envelope_reason(message: str) -> str:
    if "$.subject" in message:
        return "invalid_player_id"
    if "missing required field" in message:
        return "missing_field"
    if "$.time" in message:
        return "invalid_time"
    return "invalid_envelope"


def make_event(
    event_id: str,
    event_type: str,
    player_id: str,
    time: datetime,
    data: dict[str, Any] | None = None,
    *,
    source: str = "/games/demo",
    traceparent: str | None = None,
) -> dict[str, Any]:
    """Build a structured-mode CloudEvent dict (producers, tests, the journey generator)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": player_id,
        "time": iso(time),
        "datacontenttype": "application/json",
        "data": data or {},
    }
    if traceparent:
        event["traceparent"] = traceparent
    return event
