"""The devhost's durable state: one SQLite file (WAL) for everything a crash must not lose.

The Event Hubs log (events per partition with sequence numbers, offsets and
enqueued times), the consumer checkpoints, the entity signal queues and the
entity states live in the same file, so that each step of the pipeline is one
local transaction:

- the source appends events and its own position together;
- a signal is committed to the entity's queue before the webhook answers 202,
  hence before the trigger returns, hence before its batch is checkpointed;
- an entity batch saves the new state and deletes the processed queue rows
  together.

A killed devhost therefore resumes with nothing lost (every uncheckpointed
batch is redelivered, every unprocessed signal is still queued) and nothing
doubled (redelivered events and re-run entity operations are deduped by the
entity; actions are created once under deterministic ids).

Only the event loop thread touches the connection.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_FILE = "devhost.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    partition TEXT NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL, pkey TEXT, body BLOB NOT NULL, props TEXT,
    PRIMARY KEY (partition, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    partition TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    partition TEXT PRIMARY KEY, seq INTEGER NOT NULL, offset INTEGER NOT NULL, at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, key TEXT NOT NULL,
    op TEXT NOT NULL, input TEXT, at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_entity ON queue (name, key, id);
CREATE TABLE IF NOT EXISTS entities (
    name TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE IF NOT EXISTS failed_batches (
    partition TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL, error TEXT NOT NULL, at_ms INTEGER NOT NULL
);
"""


def now_ms() -> int:
    """The wall clock in epoch milliseconds: what the log, the queues and the states are stamped with."""
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One event as stored in the partition log."""

    partition: str
    seq: int
    offset: int
    enqueued_ms: int
    pkey: str | None
    body: bytes
    props: dict[str, Any] | None = None  # application properties (JSON), e.g. a re-injected event's origin


@dataclass(frozen=True, slots=True)
class QueuedOp:
    id: int
    op: str
    input: str | None


class DevDB:
    """Typed access to the devhost's SQLite file; every public write is one transaction."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_FILE
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a killed process (not a power cut), without an fsync each.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(events)")}
        if "props" not in columns:  # a state dir from before application properties
            self.conn.execute("ALTER TABLE events ADD COLUMN props TEXT")

    def close(self) -> None:
        self.conn.close()

    def _tx(self) -> _Tx:
        return _Tx(self.conn)

    # -- meta ------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self._put_meta(key, value)

    def _put_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, json.dumps(value)))

    # -- the partition log -------------------------------------------------------
    def log_tails(self) -> dict[str, tuple[int, int]]:
        """partition -> (next sequence number, next offset)."""
        rows = self.conn.execute("SELECT partition, next_seq, next_offset FROM partitions").fetchall()
        return {p: (s, o) for p, s, o in rows}

    def append_events(self, events: Sequence[LogEvent], meta: dict[str, Any] | None = None) -> None:
        """Append events (sequence numbers already assigned) and the source's position, atomically."""
        with self._tx():
            self.conn.executemany(
                "INSERT INTO events (partition, seq, offset, enqueued_ms, pkey, body, props) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.partition,
                        e.seq,
                        e.offset,
                        e.enqueued_ms,
                        e.pkey,
                        e.body,
                        json.dumps(e.props) if e.props else None,
                    )
                    for e in events
                ],
            )
            tails: dict[str, tuple[int, int]] = {}
            for e in events:
                tails[e.partition] = (e.seq + 1, e.offset + len(e.body))
            self.conn.executemany(
                "INSERT OR REPLACE INTO partitions (partition, next_seq, next_offset) VALUES (?, ?, ?)",
                [(p, s, o) for p, (s, o) in tails.items()],
            )
            for k, v in (meta or {}).items():
                self._put_meta(k, v)

    def read_events(self, partition: str, after_seq: int, limit: int) -> list[LogEvent]:
        rows = self.conn.execute(
            "SELECT seq, offset, enqueued_ms, pkey, body, props FROM events WHERE partition = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (partition, after_seq, limit),
        ).fetchall()
        return [
            LogEvent(partition, s, o, q, k, bytes(b), json.loads(pr) if pr else None)
            for s, o, q, k, b, pr in rows
        ]

    def all_events(self) -> list[LogEvent]:
        rows = self.conn.execute(
            "SELECT partition, seq, offset, enqueued_ms, pkey, body FROM events ORDER BY partition, seq"
        ).fetchall()
        return [LogEvent(p, s, o, q, k, bytes(b)) for p, s, o, q, k, b in rows]

    # -- checkpoints -------------------------------------------------------------
    def checkpoints(self) -> dict[str, int]:
        """partition -> last checkpointed sequence number."""
        return {p: s for p, s in self.conn.execute("SELECT partition, seq FROM checkpoints").fetchall()}

    def checkpoint(self, partition: str, seq: int, offset: int, now_ms: int) -> None:
        with self._tx():
            self.conn.execute(
                "INSERT OR REPLACE INTO checkpoints (partition, seq, offset, at_ms) VALUES (?, ?, ?, ?)",
                (partition, seq, offset, now_ms),
            )

    def record_failed_batch(
        self, partition: str, first_seq: int, last_seq: int, attempts: int, error: str, now_ms: int
    ) -> None:
        with self._tx():
            self.conn.execute(
                "INSERT INTO failed_batches (partition, first_seq, last_seq, attempts, error, at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (partition, first_seq, last_seq, attempts, error[:2000], now_ms),
            )

    def failed_batches(self) -> list[tuple[str, int, int, int, str]]:
        return self.conn.execute(
            "SELECT partition, first_seq, last_seq, attempts, error FROM failed_batches ORDER BY rowid"
        ).fetchall()

    # -- entity queues and states --------------------------------------------------
    def enqueue(self, name: str, key: str, op: str, data: str | None, now_ms: int) -> None:
        with self._tx():
            self.conn.execute(
                "INSERT INTO queue (name, key, op, input, at_ms) VALUES (?, ?, ?, ?, ?)",
                (name, key, op, data, now_ms),
            )

    def enqueue_many(
        self,
        ops: Sequence[tuple[str, str, str, str | None]],
        now_ms: int,
        also: Callable[[], None] | None = None,
    ) -> None:
        """Enqueue (name, key, op, input) operations in order, and run ``also`` (the sender's own
        bookkeeping on this connection), in one transaction."""
        with self._tx():
            self.conn.executemany(
                "INSERT INTO queue (name, key, op, input, at_ms) VALUES (?, ?, ?, ?, ?)",
                [(n, k, o, d, now_ms) for n, k, o, d in ops],
            )
            if also is not None:
                also()

    def queued_entities(self) -> list[tuple[str, str]]:
        return self.conn.execute("SELECT DISTINCT name, key FROM queue ORDER BY name, key").fetchall()

    def queue_depth(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def next_ops(self, name: str, key: str, limit: int) -> list[QueuedOp]:
        rows = self.conn.execute(
            "SELECT id, op, input FROM queue WHERE name = ? AND key = ? ORDER BY id LIMIT ?",
            (name, key, limit),
        ).fetchall()
        return [QueuedOp(i, o, d) for i, o, d in rows]

    def has_ops(self, name: str, key: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM queue WHERE name = ? AND key = ? LIMIT 1", (name, key)
        ).fetchone()
        return row is not None

    def entity_state(self, name: str, key: str) -> str | None:
        row = self.conn.execute(
            "SELECT state FROM entities WHERE name = ? AND key = ?", (name, key)
        ).fetchone()
        return str(row[0]) if row else None

    def entity_states(self, name: str) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, state FROM entities WHERE name = ?", (name,)).fetchall())

    def finish_entity_batch(
        self, name: str, key: str, state: str | None, done_ids: Iterable[int], now_ms: int
    ) -> None:
        """Save (or delete) the state and drop the processed queue rows in one transaction."""
        with self._tx():
            if state is None:
                self.conn.execute("DELETE FROM entities WHERE name = ? AND key = ?", (name, key))
            else:
                self.conn.execute(
                    "INSERT OR REPLACE INTO entities (name, key, state, at_ms) VALUES (?, ?, ?, ?)",
                    (name, key, state, now_ms),
                )
            self.conn.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in done_ids])


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
