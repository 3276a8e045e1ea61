"""The benchmark's workloads: seeded event streams, cut into trigger batches as Event Hubs and the
Functions host cut them (scripts/bench.py; the method is in docs/performance.md).

Every workload continues generated players from a *warm* state. ``make_source`` generates
``journeys`` (``shared.journeys``) over ``HISTORY + SPAN``; their events before the split
(``HISTORY``, 6 h: the entity's buffer horizon) are the warm-up stream that each design's entity
runs once, unmeasured, to build one state per journey. A workload's player ``p`` continues
journey ``p % journeys``: it starts from that journey's state and receives the journey's events
after the split from a seeded offset on (shifted back so they follow the history, with a seeded
jitter), under its own id. So a workload of 100,000 players needs only the few thousand journeys
generated, and every entity holds the buffer, aggregates and dedupe marks of a player with hours
of history, as at steady load, instead of an empty state.

Events are spread over 32 partitions by partition key (the player id, the devhost's stable hash
as Event Hubs hashes it), numbered per partition in time order, and cut per partition into
batches of the workload's batch size; the batches run in the order their last event arrived.
"""

from __future__ import annotations

import bisect
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.eventhubs.local_hub import partition_for
from devhost.functions_host.bindings import HubEvent
from shared import journeys

PARTITIONS = 32
REFERENCE_EPS = 3700  # docs/capacity.md A1: 320 million events a day
REFERENCE_USED_EPS = 1000  # A4: the events that reach the actors
# The journeys' window starts here (a fixed instant: the in-process runs inject the clock).
T0 = datetime(2026, 1, 5, tzinfo=UTC)
# Journeys run a day before the split (players in their second to fourth sessions), and the
# warm-up replays the last WARMUP of it (the buffer's horizon) through each design's entity.
HISTORY = timedelta(hours=24)
WARMUP = timedelta(hours=6)
SPAN = timedelta(hours=10)
SEQUENCE_BASE = 1_000_000  # workload sequence numbers start above the warm-up's
ENQUEUE_LAG_MS = 50  # producer -> Event Hubs
TRIGGER_LAG_MS = 20  # last event of a batch enqueued -> the trigger runs
MAX_JITTER_MS = 15_000


def _timespan_s(raw: str) -> float:
    m = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", raw.strip())
    if not m:
        raise ValueError(f"not a timespan: {raw!r}")
    days, h, mi, s = m.groups()
    return int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)


@dataclass(frozen=True)
class HostBatching:
    """The host.json settings that decide trigger and entity batch sizes."""

    max_batch: int
    min_batch: int
    max_wait_s: float
    max_entity_batch: int

    @classmethod
    def read(cls, path: Path) -> HostBatching:
        ext = json.loads(path.read_text(encoding="utf-8"))["extensions"]
        hubs, durable = ext["eventHubs"], ext["durableTask"]
        return cls(
            max_batch=int(hubs["maxEventBatchSize"]),
            min_batch=int(hubs.get("minEventBatchSize", 1)),
            max_wait_s=_timespan_s(str(hubs.get("maxWaitTime", "00:01:00"))),
            max_entity_batch=int(durable.get("maxEntityOperationBatchSize", 50)),
        )

    def steady_batch(self, rate: float, partitions: int) -> tuple[int, str]:
        """The per-partition batch size at ``rate`` events/s, and the arithmetic in words.

        The trigger dispatches as soon as ``minEventBatchSize`` events are buffered for a
        partition (up to ``maxEventBatchSize``), and a partial batch once ``maxWaitTime`` has
        passed without reaching it; the function is assumed to return before the next batch
        is due."""
        per_partition = rate / partitions
        in_wait = per_partition * self.max_wait_s
        head = (
            f"{rate:,.0f} events/s / {partitions} partitions = {per_partition:.1f} events/s per partition; "
            f"in maxWaitTime {self.max_wait_s:g} s that is {in_wait:.1f} events"
        )
        if in_wait >= self.min_batch:
            size = min(self.max_batch, self.min_batch)
            return size, (
                f"{head} >= minEventBatchSize {self.min_batch}, so a batch is dispatched as soon as "
                f"{self.min_batch} are buffered, every {self.min_batch / per_partition:.2f} s: "
                f"batches of {size} (maxEventBatchSize {self.max_batch} is never reached)"
            )
        size = max(1, min(self.max_batch, int(in_wait)))
        return size, (
            f"{head} < minEventBatchSize {self.min_batch}, so a partial batch leaves after "
            f"maxWaitTime: batches of {size}"
        )


@dataclass
class Batch:
    """One trigger invocation: a partition's events, and the clock when the function runs."""

    partition: str
    events: list[HubEvent]
    now_ms: int
    # Per trigger binding: the host's input for this batch (devhost.functions_host.bindings), the
    # arguments the worker decoded from it, and the CPU that decode took; each made once
    # (scripts/bench_cpu.py).
    invocations: dict[Any, Any] = field(default_factory=dict)
    decoded: dict[Any, dict[str, Any]] = field(default_factory=dict)
    decode_s: dict[Any, float] = field(default_factory=dict)


@dataclass
class Workload:
    name: str
    title: str
    description: str
    players: int
    batch_size: int
    grouping: str  # "backlog": entity batches hold what queued over a round; "per-signal": one op each
    round_batches: int  # backlog: trigger batches per round
    batches: list[Batch]
    player_journey: dict[str, int]  # player id -> the journey whose warm state it starts from
    events: int = 0
    used: int = 0  # events of the types the model uses
    stream_seconds: float = 0.0  # event time the stream spans
    notes: list[str] = field(default_factory=list)

    def bodies(self) -> Iterator[bytes]:
        for b in self.batches:
            for e in b.events:
                yield e.body

    def summary(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "players": self.players,
            "players_with_events": len({e.partition_key for b in self.batches for e in b.events}),
            "events": self.events,
            "used_events": self.used,
            "noise_events": self.events - self.used,
            "trigger_batches": len(self.batches),
            "batch_size": self.batch_size,
            "entity_grouping": self.grouping,
            "round_batches": self.round_batches if self.grouping == "backlog" else None,
            "stream_seconds": round(self.stream_seconds, 1),
            "notes": self.notes,
        }


@dataclass
class Source:
    """Generated journeys, split into a warm-up history and the time that workloads sample."""

    seed: int
    journeys: list[journeys.Journey]
    split_ms: int
    history: list[Batch]
    span_ms: int


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _body(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev, separators=(",", ":")).encode()


def _cut(
    stream: list[tuple[int, str, bytes]],
    batch_size: int,
    partitions: int = PARTITIONS,
    seq_base: int = SEQUENCE_BASE,
) -> list[Batch]:
    """(time, partition key, body) in time order -> per-partition batches in arrival order."""
    per: dict[str, list[HubEvent]] = {}
    offsets: dict[str, int] = {}
    for t, key, body in stream:
        part = partition_for(key, partitions)
        events = per.setdefault(part, [])
        seq = seq_base + len(events)
        offset = offsets.get(part, 0)
        offsets[part] = offset + len(body)
        events.append(HubEvent(body, seq, str(offset), t + ENQUEUE_LAG_MS, key))
    batches = []
    for part, events in per.items():
        for i in range(0, len(events), batch_size):
            chunk = events[i : i + batch_size]
            batches.append(Batch(part, chunk, chunk[-1].enqueued_ms + TRIGGER_LAG_MS))
    batches.sort(key=lambda b: (b.now_ms, int(b.partition)))
    return batches


def make_source(n_journeys: int, seed: int) -> Source:
    """Journeys over HISTORY + SPAN from T0; the history is cut into backlog batches of 256."""
    js = journeys.generate(n_journeys, seed, T0, HISTORY + SPAN)
    split_ms = int((T0 + HISTORY).timestamp() * 1000)
    history: list[tuple[int, str, bytes]] = []
    warm_from = split_ms - int(WARMUP.total_seconds() * 1000)
    for jr in js:
        for t, ev in zip(jr.times_ms, jr.events, strict=True):
            if warm_from <= t < split_ms:
                history.append((t, jr.player_id, _body(ev)))
    history.sort(key=lambda x: x[0])
    # The warm-up's sequence numbers stay below the workloads' (SEQUENCE_BASE).
    batches = _cut(history, 256, seq_base=0)
    return Source(seed, js, split_ms, batches, int(SPAN.total_seconds() * 1000))


def _noise_event(pid: str, n: int, t: int, rng: random.Random) -> dict[str, Any]:
    etype = journeys.NOISE_TYPES[rng.randrange(len(journeys.NOISE_TYPES))]
    data = (
        {"path": rng.choice(("/lobby", "/help", "/cashier", "/promotions"))} if etype == "page.viewed" else {}
    )
    return {
        "specversion": "1.0",
        "id": f"n-{pid}-{n}",
        "source": "/games/casino-eu",
        "type": etype,
        "subject": pid,
        "time": _iso(t),
        "datacontenttype": "application/json",
        "data": data,
    }


def stream(
    source: Source,
    name: str,
    *,
    players: int,
    events: int,
    noise: str,
    end_ms: int | None = None,
) -> tuple[list[tuple[int, str, bytes]], dict[str, int], int]:
    """The first ``events`` events (time order) of ``players`` players continuing the source's
    journeys. ``noise``: "natural" (the journeys' own page views and heartbeats, ~4%), "none"
    (only types the model uses) or "reference" (2.7 noise events per used one: 3,700 events/s of
    which 1,000 are used). ``end_ms`` shifts the event times so the last is then. Returns the
    (time, player id, body) items, each player's journey, and how many events are of used types."""
    rng = random.Random(f"bench:{source.seed}:{name}")
    n_j = len(source.journeys)
    # A player joins its journey at one of the journey's events after the split (so it is active
    # when the stream starts: the journeys' in-session rate is about the reference's rate per
    # player, 3,700 events/s from 100,000 players); the journey's events from there on are
    # shifted back to the split, plus a jitter.
    offsets: list[tuple[float, float]] = []
    last = source.split_ms + source.span_ms - 3_600_000
    for p in range(players):
        times = source.journeys[p % n_j].times_ms
        lo = bisect.bisect_left(times, source.split_ms)
        hi = bisect.bisect_left(times, last)
        start = float(times[rng.randrange(lo, hi)]) if hi > lo else rng.uniform(source.split_ms, last)
        offsets.append((start - source.split_ms, rng.uniform(0, MAX_JITTER_MS)))
    noise_per_used = (REFERENCE_EPS - REFERENCE_USED_EPS) / REFERENCE_USED_EPS
    # The reference mix keeps the first used events and adds their noise, so the share is exact.
    wanted = round(events * REFERENCE_USED_EPS / REFERENCE_EPS) if noise == "reference" else events
    window = 10_000.0
    while True:
        cands: list[tuple[int, int, int, int]] = []  # (time, player, journey event index or -n, journey)
        for p in range(players):
            j = p % n_j
            jr = source.journeys[j]
            off, jit = offsets[p]
            lo = bisect.bisect_left(jr.times_ms, source.split_ms + off)
            hi = bisect.bisect_left(jr.times_ms, source.split_ms + off + window)
            for k in range(lo, hi):
                if noise != "natural" and jr.events[k]["type"] in journeys.NOISE_TYPES:
                    continue
                cands.append((int(jr.times_ms[k] - off + jit), p, k, j))
        if len(cands) >= wanted or window > source.span_ms:
            break
        window *= 2
    cands.sort()
    chosen = cands[:wanted]
    if noise == "reference":
        # Page views and heartbeats of the same player within 10 s of each used event.
        for t, p, k, j in list(chosen):
            for n in range(2 + (rng.random() < noise_per_used - 2)):
                chosen.append((t + int(rng.uniform(-10_000, 10_000)), p, -(k * 4 + n) - 1, j))
        chosen.sort()
    time_shift_ms = end_ms - chosen[-1][0] if end_ms is not None and chosen else 0
    mapping: dict[str, int] = {}
    out: list[tuple[int, str, bytes]] = []
    used_count = 0
    for t, p, k, j in chosen:
        pid = f"player-{p:06d}"
        mapping[pid] = j
        if k < 0:
            ev = _noise_event(pid, -k, t + time_shift_ms, rng)
        else:
            orig = source.journeys[j].events[k]
            ev = dict(orig, id=f"{orig['id']}-{p // n_j}", subject=pid, time=_iso(t + time_shift_ms))
            used_count += ev["type"] not in journeys.NOISE_TYPES
        out.append((t + time_shift_ms, pid, _body(ev)))
    return out, mapping, used_count


@dataclass(frozen=True)
class Sizes:
    journeys: int
    backlog_players: int
    backlog_events: int
    steady_players: int
    steady_events: int
    reference_players: int
    reference_events: int
    backlog_round_batches: int = 32


FULL = Sizes(
    journeys=1000,
    backlog_players=10_000,
    backlog_events=65_536,
    steady_players=100_000,
    steady_events=32_768,
    # The reference's used events (1,000/s) at (b)'s rate per player: 100,000 x 1,000 / 3,700.
    reference_players=27_000,
    reference_events=37_000,
)
TINY = Sizes(
    journeys=40,
    backlog_players=400,
    backlog_events=2048,
    steady_players=2000,
    steady_events=768,
    reference_players=600,
    reference_events=1480,
    backlog_round_batches=8,
)


def workloads(source: Source, sizes: Sizes, host: HostBatching) -> list[Workload]:
    steady_b, arithmetic = host.steady_batch(REFERENCE_EPS, PARTITIONS)
    out = []
    for name, title, players, n, noise, batch, grouping, desc in (
        (
            "backlog",
            "(a) backlog",
            sizes.backlog_players,
            sizes.backlog_events,
            "natural",
            host.max_batch,
            "backlog",
            f"{sizes.backlog_players:,} players catching up: full trigger batches of {host.max_batch} "
            f"(maxEventBatchSize); an entity batch holds every operation queued for the entity while "
            f"the trigger ran {sizes.backlog_round_batches} batches (one per partition), up to "
            f"{host.max_entity_batch} (maxEntityOperationBatchSize); the journeys' own noise (~4%)",
        ),
        (
            "steady",
            "(b) steady",
            sizes.steady_players,
            sizes.steady_events,
            "none",
            steady_b,
            "per-signal",
            f"{sizes.steady_players:,} players at {REFERENCE_EPS:,} events/s: batches of {steady_b} "
            f"per partition, about one event per player per batch, one operation per entity batch; "
            f"every event a type the model uses (the worst case for entity overhead)",
        ),
        (
            "reference",
            "(c) reference mix",
            sizes.reference_players,
            sizes.reference_events,
            "reference",
            steady_b,
            "per-signal",
            f"{sizes.reference_players:,} players, {REFERENCE_EPS:,} events/s of which "
            f"{REFERENCE_USED_EPS:,} are types the model uses; the rest (page views, heartbeats) "
            f"are dropped at ingest; batches of {steady_b}, one operation per entity batch",
        ),
    ):
        items, mapping, used = stream(source, name, players=players, events=n, noise=noise)
        w = Workload(
            name=name,
            title=title,
            description=desc,
            players=players,
            batch_size=batch,
            grouping=grouping,
            round_batches=sizes.backlog_round_batches,
            batches=_cut(items, batch),
            player_journey=mapping,
            events=len(items),
            used=used,
            stream_seconds=(items[-1][0] - items[0][0]) / 1000 if items else 0.0,
        )
        if name != "backlog":
            w.notes.append(arithmetic)
        out.append(w)
    return out


# The devhost starts from empty entities, and the policy's warm-up rule holds back any action
# for a player with fewer than 6 events: its reference mix gives each player about this many
# used events, so that actions (and with them the latency) are measured.
DEVHOST_USED_PER_PLAYER = 25


def devhost_players(events: int) -> int:
    used = events * REFERENCE_USED_EPS / REFERENCE_EPS
    return max(50, int(used / DEVHOST_USED_PER_PLAYER))


def write_jsonl(source: Source, path: Path, events: int, end_ms: int) -> int:
    """The reference mix for the devhost (``--source jsonl``), one CloudEvent per line, from
    ``devhost_players(events)`` players, its event times shifted to end at ``end_ms`` (the
    devhost dead-letters events from the future)."""
    items, _, _ = stream(
        source, "devhost", players=devhost_players(events), events=events, noise="reference", end_ms=end_ms
    )
    with path.open("wb") as f:
        for _, _, body in items:
            f.write(body + b"\n")
    return len(items)
