"""Builders shared by the tests (not fixtures: plain functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.events import make_event

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
NOW_MS = T0_MS + 24 * 3600 * 1000


def cloud_event(
    event_type: str = "round.completed",
    player: str = "player-00042",
    *,
    event_id: str = "e-1",
    at_ms: int = T0_MS,
    data: dict[str, Any] | None = None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    if data is None and event_type == "round.completed":
        data = {"sessionId": "s-1", "game": "slots", "stake": 2.5, "payout": 0.0}
    return make_event(
        event_id,
        event_type,
        player,
        datetime.fromtimestamp(at_ms / 1000, tz=UTC),
        data,
        traceparent=traceparent,
    )


def body(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def signal_event(
    event_id: str,
    event_type: str,
    at_ms: int,
    data: dict[str, Any] | None = None,
    *,
    partition: str | None = "0",
    seq: int | None = None,
) -> dict[str, Any]:
    """An event in the compact form the router puts in a signal."""
    ev: dict[str, Any] = {"id": event_id, "type": event_type, "t": at_ms, "d": data or {}}
    if partition is not None and seq is not None:
        ev["p"], ev["s"] = partition, seq
    return ev


def round_event(
    event_id: str, at_ms: int, stake: float, payout: float, seq: int | None = None
) -> dict[str, Any]:
    return signal_event(
        event_id, "round.completed", at_ms, {"stake": stake, "payout": payout, "game": "slots"}, seq=seq
    )
