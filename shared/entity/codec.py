"""How the entity's state is stored: one compact string, decoded once per entity batch.

The state crosses the Durable protocol as ``"p2:" + base64(MessagePack)``: the SDK
stores and returns it as a JSON string (no per-key work in its JSON layers), and
one typed msgspec call decodes it. Within one entity batch the SDK hands back the
exact string object the previous operation set, so ``StateCache`` decodes a
player's state once per batch rather than once per operation.

Version 1 states (the JSON object an earlier deployment stored) are read and
upgraded on load (``upgrade``). Version 2 states (the same string form, with
32-bit dedupe hashes of the id alone) are read as they are and marked version 3:
their old hashes are matched by the old rule (shared.entity.dedupe) until the
buffer turns over. The prefix stays ``p2:`` so that a rollback to the code
before version 3 still reads the state (it then only misses the new keys,
while the sequence ranges still catch redeliveries).

Version 4 adds the outcome watches (``watch``) and the challenger's open
aggregate (``shd``); a version 3 state is read as it is (it has neither) and
marked version 4. Code of version 3 refuses a version 4 state (``StateError``):
a rollback across it must be a rollback of the state too (docs/contracts.md).
"""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime
from typing import Any

import msgspec

from shared.entity.dedupe import has_legacy_keys, legacy_hash
from shared.entity.model import STATE_VERSION, ActionRecord, OutboxItem, PlayerState
from shared.policy import ACTION_TYPES
from shared.timeutil import DAY_MS, parse_iso_ms

PREFIX = "p2:"
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PlayerState)


class StateError(ValueError):
    """A stored state this code cannot read (a newer version, after a rollback): the operation fails
    with an error result, its input is not applied, and the stored state is kept."""


def encode(state: PlayerState) -> str:
    return PREFIX + base64.b64encode(_ENCODER.encode(state)).decode("ascii")


def decode(raw: Any) -> PlayerState:
    """The state from what the Durable runtime stored (this version's string, a v1 object, or None)."""
    if raw is None or raw == "":
        return PlayerState()
    if isinstance(raw, str):
        if raw.startswith(PREFIX):
            return _current(_DECODER.decode(base64.b64decode(raw[len(PREFIX) :])))
        if raw[:1] == "{":  # a v1 state handed over as its JSON text
            return upgrade(msgspec.json.decode(raw))
        raise StateError(f"unknown entity state format {raw[:8]!r}")
    if isinstance(raw, dict):
        return upgrade(raw)
    raise StateError(f"unexpected entity state of type {type(raw).__name__}")


def _current(state: PlayerState) -> PlayerState:
    """A stored version 2, 3 or 4 state as version 4 (nothing to convert: see the module doc)."""
    if state.v > STATE_VERSION:
        raise StateError(f"entity state version {state.v} is newer than this code")
    if state.v < STATE_VERSION:
        if state.v < 3:
            state.v2_keys = has_legacy_keys(state)
        state.v = STATE_VERSION
    return state


def upgrade(old: dict[str, Any]) -> PlayerState:
    """A version 1 state (JSON object) as the current version: same buffer layout; the day as its start in ms;
    outbox documents as records."""
    if int(old.get("v", 1)) > 2:
        raise StateError(f"entity state version {old.get('v')} is newer than this code")
    fields = dict(old)
    fields["v"] = STATE_VERSION
    # v1 entries were [t, kind, a, b, id, partition, sequence]; they keep the id's version 2 hash
    # (v1 had no source), matched by the version 2 rule.
    fields["buf"] = [[e[0], e[1], e[2], e[3], legacy_hash(str(e[4]))] for e in fields.get("buf") or []]
    fields["evicted"] = [legacy_hash(str(i)) for i in fields.get("evicted") or []]
    day = fields.pop("day", None)
    if isinstance(day, str) and day:
        fields["day_ms"] = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    outbox = []
    for item in fields.pop("outbox", None) or []:
        if "doc" in item:
            item = dict(item)
            item["rec"] = msgspec.to_builtins(_record_from_doc(item.pop("doc")))
        outbox.append(item)
    fields["outbox"] = outbox
    state = msgspec.convert(fields, PlayerState)
    state.v2_keys = has_legacy_keys(state)
    return state


def _record_from_doc(doc: dict[str, Any]) -> ActionRecord:
    t = parse_iso_ms(doc["eventTime"])
    return ActionRecord(
        id=doc["id"],
        type=doc["type"],
        status=doc.get("status", "pending"),
        score=float(doc.get("score", 0.0)),
        scores=[float(doc.get("score", 0.0)) if a == doc["type"] else 0.0 for a in ACTION_TYPES],
        features=[],
        model=str(doc.get("modelVersion", "")),
        trigger=str(doc.get("triggerEventId", "")),
        t=t,
        decided_ms=parse_iso_ms(doc["decidedAt"]) if doc.get("decidedAt") else t,
        reasons=list(doc.get("reasons", [])),
        tp=doc.get("traceparent"),
    )


def day_start(t_ms: int) -> int:
    return t_ms - t_ms % DAY_MS


class StateCache(threading.local):
    """The decoded state of the entity this thread ran last, kept with the very string object the
    SDK holds: an entity batch runs its operations one after another on one thread, and the SDK
    hands each the string the previous one set, so the state is decoded once per batch. Reused
    only while the SDK hands back that same object, so it can never serve a stale state; one
    slot per thread, so it holds no memory for entities that are not running."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._encoded: str | None = None
        self._state: PlayerState | None = None

    def load(self, key: str, raw: Any) -> PlayerState:
        if self._state is not None and key == self._key and raw is self._encoded:
            return self._state
        return decode(raw)

    def store(self, key: str, state: PlayerState) -> str:
        encoded = encode(state)
        self._key, self._encoded, self._state = key, encoded, state
        return encoded

    def forget(self, key: str) -> None:
        if key == self._key:
            self._key = self._encoded = self._state = None


__all__ = ["OutboxItem", "PlayerState", "StateCache", "decode", "encode", "upgrade"]
