"""Event sources that fill the partition log: synthetic journeys and a JSONL file.

(A real Event Hub is read by ``devhost.eventhubs.live_hub`` with blob checkpoints
instead: it has its own partitions, sequence numbers and checkpoint store.)

Each source appends its events together with its own position in the same
transaction, so a restarted devhost continues where the killed one stopped and
never appends an event twice. The synthetic source regenerates the same
journeys from the stored (seed, players, window) and skips what it already
appended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from devhost.eventhubs.local_hub import EventLog

log = logging.getLogger(__name__)

POSITION = "source_position"
CHUNK = 128

Gate = Callable[[], Awaitable[None]]


class SourceError(RuntimeError):
    """A source that cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class SyntheticConfig:
    players: int
    duration_s: float
    seed: int
    start_ms: int  # the journey window is [start, start + duration], laid in the past
    bad_share: float = 0.0  # share of extra messages that are malformed on purpose (dead-lettered)

    def events(self) -> list[dict[str, Any]]:
        from shared import journeys

        start = datetime.fromtimestamp(self.start_ms / 1000, tz=UTC)
        js = journeys.generate(self.players, self.seed, start, timedelta(seconds=self.duration_s))
        return list(journeys.interleave(js))


class Source:
    total: int | None = None

    async def prepare(self) -> None:
        """Load or generate (may be slow: runs off the event loop)."""

    async def run(self, log_: EventLog, gate: Gate) -> None:
        raise NotImplementedError


async def _pace(started: float, sent: int, rate: float) -> None:
    if rate > 0:
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)


class ListSource(Source):
    """Append (partition key, body) items in order, from a stored position, optionally paced."""

    def __init__(self, rate: float = 0.0) -> None:
        self.rate = rate
        self.items: list[tuple[str | None, bytes]] = []

    async def run(self, log_: EventLog, gate: Gate) -> None:
        pos = int(log_.db.get_meta(POSITION) or 0)
        started, sent = time.monotonic(), 0
        it: Iterator[tuple[str | None, bytes]] = islice(iter(self.items), pos, None)
        while True:
            chunk = list(islice(it, CHUNK))
            if not chunk:
                break
            await gate()
            pos += len(chunk)
            log_.append(chunk, {POSITION: pos})
            sent += len(chunk)
            await _pace(started, sent, self.rate)
            await asyncio.sleep(0)
        log_.close()


class SyntheticSource(ListSource):
    def __init__(self, config: SyntheticConfig, rate: float = 0.0) -> None:
        super().__init__(rate)
        self.config = config

    async def prepare(self) -> None:
        events = await asyncio.to_thread(self.config.events)
        self.items = [(ev["subject"], json.dumps(ev, separators=(",", ":")).encode()) for ev in events]
        if self.config.bad_share > 0:
            self.items = with_bad_messages(self.items, self.config.bad_share, self.config.seed)
        self.total = len(self.items)


def _malformed(kind: int, key: str | None, body: bytes) -> bytes:
    """One of the kinds of bad input the ingest function must dead-letter, from a good body."""
    if kind == 0:
        return body[: len(body) // 2]  # truncated: not JSON
    if kind == 1:
        return b"\xff\xfe" + body  # not UTF-8
    ev = json.loads(body)
    if kind == 2:
        ev["subject"] = f"{key}/../admin"  # player id outside [A-Za-z0-9_.:-]
    elif kind == 3:
        del ev["source"]  # missing required attribute
    elif kind == 4:
        ev["type"], ev["data"] = "round.completed", {"stake": "lots", "payout": 0, "game": "slots"}
    else:
        ev["time"] = "2999-01-01T00:00:00Z"  # far in the future
    return json.dumps(ev, separators=(",", ":")).encode()


def with_bad_messages(
    items: list[tuple[str | None, bytes]], share: float, seed: int
) -> list[tuple[str | None, bytes]]:
    """Insert malformed copies of some messages (seeded): the demo shows dead-lettering at work."""
    import random

    rng = random.Random(seed * 7919 + 17)
    out: list[tuple[str | None, bytes]] = []
    kind = 0
    for key, body in items:
        out.append((key, body))
        if rng.random() < share:
            out.append((key, _malformed(kind % 6, key, body)))
            kind += 1
    return out


_SUBJECT = msgspec.json.Decoder(dict[str, object])


def _subject(line: bytes) -> str | None:
    """The line's partition key (its CloudEvent subject), if the line is a JSON object with one.

    Never raises: a line the app will dead-letter (not JSON, nested 100,000 deep, ...) still
    goes through, keyless, for the app to judge."""
    if len(line) > 1024 * 1024:
        return None
    try:
        subject = _SUBJECT.decode(line).get("subject")
    except Exception:  # noqa: BLE001 - msgspec errors, RecursionError on deep nesting
        return None
    return subject if isinstance(subject, str) else None


class JsonlSource(ListSource):
    """One CloudEvent per line; lines that are not valid JSON go through as-is (to be dead-lettered)."""

    def __init__(self, path: Path, rate: float = 0.0) -> None:
        super().__init__(rate)
        self.path = path

    async def prepare(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"--file {self.path}: no such file")
        items: list[tuple[str | None, bytes]] = []
        # Lines end at LF only (CRLF is trimmed): a bare CR inside a line is part of it, as
        # producers that write JSONL mean it (bytes.splitlines would also split at CR, VT, FF...).
        for raw in self.path.read_bytes().split(b"\n"):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line.strip():
                continue
            items.append((_subject(line), line))
        self.items = items
        self.total = len(items)
