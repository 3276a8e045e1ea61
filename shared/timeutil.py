"""Epoch milliseconds <-> the ISO 8601 UTC strings the documents carry. One place, no local time."""

from __future__ import annotations

from datetime import UTC, datetime

DAY_MS = 86_400_000


def iso_ms(ms: int) -> str:
    """``2026-11-21T10:00:00.123Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso(dt: datetime) -> str:
    """An aware datetime as ``...Z`` with milliseconds."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_day(ms: int) -> str:
    """``2026-11-21``: the UTC day of an instant (daily caps and summaries count per UTC day)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def parse_iso_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
