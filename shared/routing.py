"""Turn one Event Hubs batch into per-player signals and dead letters.

Funnel step 1: events of types the model never uses are dropped (counted);
invalid messages become dead letters with a reason. Valid events are grouped
by player in arrival order, so each player gets ONE signal per batch: a typed,
versioned, pre-encoded value (shared.signals).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared import signals
from shared.events import Dropped, PlayerEvent, Rejected, parse
from shared.signals import Signal, SignalEvent


@dataclass(frozen=True, slots=True)
class Message:
    """An Event Hubs message as the router needs it (decoupled from azure.functions)."""

    body: bytes
    partition: str | None
    sequence: int | None
    enqueued_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    rejected: Rejected
    message: Message


@dataclass
class RoutedBatch:
    events_in: int = 0
    signals: dict[str, list[SignalEvent]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    routed: int = 0
    # Per partition, the sequence numbers the batch holds; the entity records that it has seen
    # every one of its events in each contiguous run of them.
    sequences: dict[str, list[int]] = field(default_factory=dict)

    def ranges(self) -> list[tuple[str, int, int]]:
        """Contiguous runs ``(partition, first, last)``. A batch of one partition is one run; re-injected
        parked events (read at their first position) add runs of their own, never a span that
        would claim the sequence numbers between them and the batch's as seen."""
        out: list[tuple[str, int, int]] = []
        for part, seqs in sorted(self.sequences.items()):
            ordered = sorted(set(seqs))
            lo = prev = ordered[0]
            for seq in ordered[1:]:
                if seq != prev + 1:
                    out.append((part, lo, prev))
                    lo = seq
                prev = seq
            out.append((part, lo, prev))
        return out

    def signal_inputs(self) -> dict[str, str]:
        """Each player's encoded signal (untraced; ingest encodes traced ones inside their span)."""
        ranges = self.ranges()
        return {pid: signals.encode(Signal(evs, ranges)) for pid, evs in self.signals.items()}


def route(
    messages: list[Message],
    *,
    now_ms: int,
    max_bytes: int = 16 * 1024,
    max_future_skew_ms: int = 300_000,
) -> RoutedBatch:
    batch = RoutedBatch(events_in=len(messages))
    for msg in messages:
        if msg.partition is not None and msg.sequence is not None:
            batch.sequences.setdefault(msg.partition, []).append(msg.sequence)
        result = parse(
            msg.body,
            now_ms=now_ms,
            max_bytes=max_bytes,
            max_future_skew_ms=max_future_skew_ms,
            partition=msg.partition,
            sequence=msg.sequence,
            enqueued_ms=msg.enqueued_ms,
        )
        if isinstance(result, PlayerEvent):
            batch.signals.setdefault(result.player_id, []).append(result.to_signal())
            batch.routed += 1
        elif isinstance(result, Dropped):
            batch.dropped[result.type] += 1
        else:
            batch.dead_letters.append(DeadLetter(result, msg))
    return batch
