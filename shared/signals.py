"""The ``events`` signal from ingest to a player's entity: a typed, versioned, compact value.

A signal holds all of one player's events of one trigger batch and the batch's
sequence ranges. It crosses the Durable protocol as one short string,
``"s2:" + base64(MessagePack)``, so the SDK's JSON layers (``json.dumps`` in the
client, ``json.loads`` twice in the entity) only copy a string, and the entity
decodes it with one typed msgspec call. The prefix is the version: the entity
checks it before decoding and refuses versions it does not know (counted as
``unsupported_signal_version``). Version 1 (a JSON object ``{"v": 1, "events":
[{"id", "type", "t", "d", ...}], "r": [...]}``) is still read, so signals queued
by an older deployment are applied after an upgrade.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from shared.eventtypes import BY_NAME

SIGNAL_VERSION = 2
PREFIX = "s2:"


class SignalEvent(msgspec.Struct, array_like=True):
    """One event as the entity needs it; see shared.eventtypes for ``kind``, ``a``, ``b``, ``ref``."""

    id: str
    kind: int
    t: int  # event time, epoch ms
    a: float = 0.0
    b: float = 0.0
    ref: str | None = None
    p: str | None = None  # partition
    s: int | None = None  # sequence number
    q: int | None = None  # enqueued time, epoch ms
    tp: str | None = None  # the CloudEvent's traceparent
    tc: str | None = None  # the ingest/signal span to continue (set for traced events only)
    # The CloudEvent's source: with ``id``, what identifies the event (the entity's dedupe key).
    # Last, so a signal encoded before it was added still decodes (as None).
    src: str | None = None


class Signal(msgspec.Struct, array_like=True):
    events: list[SignalEvent]
    # ``(partition, first, last)``: every event of this player in these runs is in ``events``.
    ranges: list[tuple[str, int, int]] = msgspec.field(default_factory=list)


class SignalError(ValueError):
    """The input is not a signal this version understands; ``reason`` names why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Signal)


def encode(signal: Signal) -> str:
    return PREFIX + base64.b64encode(_ENCODER.encode(signal)).decode("ascii")


def decode(payload: Any) -> Signal:
    """A signal from an operation's input (this version's string, or a version 1 object)."""
    if isinstance(payload, str):
        if not payload.startswith(PREFIX):
            if ":" not in payload[:16]:
                raise SignalError("malformed_signal", "not an encoded signal")
            version = payload.split(":", 1)[0]
            raise SignalError("unsupported_signal_version", f"signal version {version!r}")
        try:
            return _DECODER.decode(base64.b64decode(payload[len(PREFIX) :], validate=True))
        except (msgspec.DecodeError, binascii.Error, ValueError) as exc:
            raise SignalError("malformed_signal", str(exc)[:200]) from None
    if isinstance(payload, Mapping):
        if payload.get("v", 1) != 1:
            raise SignalError("unsupported_signal_version", f"signal version {payload.get('v')!r}")
        events = payload.get("events")
        if not isinstance(events, list):
            raise SignalError("malformed_signal", "input must be {'events': [...]}")
        return Signal([from_v1(ev) for ev in events], _v1_ranges(payload.get("r")))
    raise SignalError("malformed_signal", f"unexpected input of type {type(payload).__name__}")


# A v1 event that is not an event: kept as kind -1 so the entity counts it and moves on.
MALFORMED = -1


def from_v1(ev: Any) -> SignalEvent:
    """A version 1 event (``{"id", "type", "t", "d", "p", "s", "q", "tp", "tc"}``)."""
    if not isinstance(ev, Mapping):
        return SignalEvent("", MALFORMED, 0)
    spec = BY_NAME.get(str(ev.get("type")))
    if spec is None or "id" not in ev or not isinstance(ev.get("t"), int):
        return SignalEvent(str(ev.get("id", "")), MALFORMED, 0)
    data = ev.get("d") or {}
    try:
        a, b, ref = spec.lift(msgspec.convert(data, spec.schema))
    except (msgspec.ValidationError, TypeError):
        a, b, ref = _lenient(data)
    return SignalEvent(
        id=str(ev["id"]),
        kind=int(spec.code),
        t=int(ev["t"]),
        a=a,
        b=b,
        ref=ref,
        p=None if ev.get("p") is None else str(ev["p"]),
        s=ev.get("s") if isinstance(ev.get("s"), int) else None,
        q=ev.get("q") if isinstance(ev.get("q"), int) else None,
        tp=ev["tp"] if isinstance(ev.get("tp"), str) else None,
        tc=ev["tc"] if isinstance(ev.get("tc"), str) else None,
        src=ev["src"] if isinstance(ev.get("src"), str) else None,
    )


def _lenient(data: Any) -> tuple[float, float, str | None]:
    """v1 data that no longer validates: the numbers it has (v1 read them leniently too)."""
    if not isinstance(data, Mapping):
        return 0.0, 0.0, None
    if "stake" in data:
        return float(data.get("stake") or 0.0), float(data.get("payout") or 0.0), None
    if "response" in data:
        ref = data.get("actionId")
        return (1.0 if data.get("response") == "accepted" else 0.0), 0.0, str(ref) if ref else None
    return float(data.get("amount") or 0.0), 0.0, None


def _v1_ranges(raw: Any) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for r in raw if isinstance(raw, Sequence) and not isinstance(raw, str) else ():
        if isinstance(r, Sequence) and len(r) == 3 and isinstance(r[1], int) and isinstance(r[2], int):
            out.append((str(r[0]), r[1], r[2]))
    return out
