"""The orchestration engine's durable state: its own tables on the devhost's SQLite connection.

What the Durable extension keeps in its task hub (Azure Storage: the Instances
and History tables, the control queues and the work-item queue), kept the same
way here, so that one episode is one local transaction, as one work item is one
commit in the Durable Task Framework:

- ``orch_instances``: one row per instance id (the current execution, status,
  input, output, custom status, parent, generation), what ``get_status`` reads;
- ``orch_history``: the current execution's history events, in order, as the JSON
  objects the orchestrator receives;
- ``orch_messages``: the instance's inbox (the control queue): ExecutionStarted,
  TaskCompleted/Failed, TimerFired (visible at its ``FireAt``),
  SubOrchestrationInstanceCompleted/Failed, EventRaised, ExecutionTerminated;
- ``orch_work``: activity work items (the work-item queue), each deleted in the
  same transaction that puts its completion in the orchestration's inbox;
- ``orch_outbox``: entity signals sent by orchestrations, delivered after the
  episode committed and then deleted (at least once, as the platform's signals are).

An episode reads the due messages and the history, runs the orchestrator, and
commits (history appended, instance updated, messages consumed, work items,
timers, child starts and parent notifications added) in one transaction. A
killed devhost therefore resumes every instance where its last commit left it:
an unconsumed message is consumed again, an activity whose completion was not
committed runs again.

Only the event loop thread touches the connection, and no transaction spans an ``await``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS orch_instances (
    instance_id TEXT PRIMARY KEY, name TEXT NOT NULL, execution_id TEXT NOT NULL,
    status TEXT NOT NULL, input TEXT, output TEXT, custom_status TEXT,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    parent TEXT, generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS orch_history (
    instance_id TEXT NOT NULL, seq INTEGER NOT NULL, execution_id TEXT NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orch_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, execution_id TEXT,
    visible_ms INTEGER NOT NULL, event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orch_messages_instance ON orch_messages (instance_id, id);
CREATE INDEX IF NOT EXISTS orch_messages_visible ON orch_messages (visible_ms);
CREATE TABLE IF NOT EXISTS orch_work (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, execution_id TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orch_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL
);
"""

TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


@dataclass
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str  # the extension's OrchestrationRuntimeStatus name: Pending, Running, Completed, ...
    input: str | None  # ExecutionStarted.Input: JSON text (the client's start body is a JSON string)
    output: str | None  # ExecutionCompleted.Result: JSON text, or the failure message
    custom_status: str | None  # JSON text
    created_ms: int
    updated_ms: int
    parent: dict[str, Any] | None  # ExecutionStarted.ParentInstance, for sub-orchestrations
    generation: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class Message:
    id: int
    instance_id: str
    execution_id: str | None
    visible_ms: int
    event: dict[str, Any]


@dataclass(frozen=True)
class WorkItem:
    id: int
    instance_id: str
    execution_id: str
    event: dict[str, Any]  # the TaskScheduled event


@dataclass
class OutMessage:
    """A message an episode sends: to an instance's inbox (possibly delayed: a timer)."""

    instance_id: str
    execution_id: str | None
    visible_ms: int
    event: dict[str, Any]


@dataclass
class EpisodeCommit:
    """Everything one episode writes, committed together."""

    instance: InstanceRow
    consumed: Sequence[int]
    new_events: Sequence[dict[str, Any]]
    messages: Sequence[OutMessage] = ()
    work: Sequence[dict[str, Any]] = ()  # TaskScheduled events for the work-item queue
    outbox: Sequence[tuple[str, dict[str, Any]]] = ()
    children: Sequence[tuple[InstanceRow, OutMessage]] = ()  # sub-orchestrations started
    reset_history: bool = False  # continue-as-new: the new execution starts a fresh history
    expected_execution: str | None = None  # the execution the episode ran (None: do not check)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class OrchestrationStore:
    """Typed access to the orchestration tables; every public write is one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        if conn.isolation_level is not None:
            raise ValueError(
                "the orchestration store needs a connection in autocommit mode (isolation_level=None)"
            )
        self.conn = conn
        self.conn.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- instances ---------------------------------------------------------------
    def instance(self, instance_id: str) -> InstanceRow | None:
        row = self.conn.execute(
            "SELECT instance_id, name, execution_id, status, input, output, custom_status, created_ms, "
            "updated_ms, parent, generation FROM orch_instances WHERE instance_id = ?",
            (instance_id,),
        ).fetchone()
        return None if row is None else _instance(row)

    def instances(self) -> list[InstanceRow]:
        rows = self.conn.execute(
            "SELECT instance_id, name, execution_id, status, input, output, custom_status, created_ms, "
            "updated_ms, parent, generation FROM orch_instances ORDER BY created_ms, instance_id"
        ).fetchall()
        return [_instance(r) for r in rows]

    def _put_instance(self, row: InstanceRow) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO orch_instances (instance_id, name, execution_id, status, input, output, "
            "custom_status, created_ms, updated_ms, parent, generation) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.instance_id,
                row.name,
                row.execution_id,
                row.status,
                row.input,
                row.output,
                row.custom_status,
                row.created_ms,
                row.updated_ms,
                None if row.parent is None else _dumps(row.parent),
                row.generation,
            ),
        )

    def _clear(self, instance_id: str) -> None:
        """A new execution replaces the old one: its history, inbox and work items go."""
        for table in ("orch_history", "orch_messages", "orch_work"):
            self.conn.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))  # noqa: S608

    def create(self, row: InstanceRow, start: OutMessage) -> None:
        """A client start: a new execution with a fresh history, and its ExecutionStarted message."""
        with self._tx():
            self._clear(row.instance_id)
            self._put_instance(row)
            self._put_message(start)

    def purge(self, instance_id: str) -> int:
        with self._tx():
            self._clear(instance_id)
            cur = self.conn.execute("DELETE FROM orch_instances WHERE instance_id = ?", (instance_id,))
        return int(cur.rowcount)

    # -- history -------------------------------------------------------------------
    def history(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT event FROM orch_history WHERE instance_id = ? ORDER BY seq", (instance_id,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- messages ------------------------------------------------------------------
    def _put_message(self, msg: OutMessage) -> None:
        self.conn.execute(
            "INSERT INTO orch_messages (instance_id, execution_id, visible_ms, event) VALUES (?, ?, ?, ?)",
            (msg.instance_id, msg.execution_id, msg.visible_ms, _dumps(msg.event)),
        )

    def send(self, msg: OutMessage) -> None:
        with self._tx():
            self._put_message(msg)

    def messages(self, instance_id: str, now_ms: int) -> list[Message]:
        rows = self.conn.execute(
            "SELECT id, instance_id, execution_id, visible_ms, event FROM orch_messages "
            "WHERE instance_id = ? AND visible_ms <= ? ORDER BY id",
            (instance_id, now_ms),
        ).fetchall()
        return [Message(i, n, x, v, json.loads(e)) for i, n, x, v, e in rows]

    def discard(self, ids: Iterable[int]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM orch_messages WHERE id = ?", [(i,) for i in ids])

    def due_instances(self, now_ms: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT instance_id, MIN(id) AS first FROM orch_messages WHERE visible_ms <= ? "
            "GROUP BY instance_id ORDER BY first",
            (now_ms,),
        ).fetchall()
        return [r[0] for r in rows]

    def next_visible_ms(self, now_ms: int) -> int | None:
        row = self.conn.execute(
            "SELECT MIN(visible_ms) FROM orch_messages WHERE visible_ms > ?", (now_ms,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def message_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM orch_messages").fetchone()[0])

    # -- activity work items ---------------------------------------------------------
    def work_items(self) -> list[WorkItem]:
        rows = self.conn.execute(
            "SELECT id, instance_id, execution_id, event FROM orch_work ORDER BY id"
        ).fetchall()
        return [WorkItem(i, n, x, json.loads(e)) for i, n, x, e in rows]

    def finish_work(self, work_id: int, completion: OutMessage) -> bool:
        """The activity's completion goes to the orchestration's inbox as its work item is deleted.

        False when the work item is gone (its instance was replaced or purged meanwhile).
        """
        with self._tx():
            cur = self.conn.execute("DELETE FROM orch_work WHERE id = ?", (work_id,))
            if cur.rowcount == 0:
                return False
            self._put_message(completion)
        return True

    # -- outbox ------------------------------------------------------------------------
    def outbox(self) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.conn.execute("SELECT id, kind, payload FROM orch_outbox ORDER BY id").fetchall()
        return [(i, k, json.loads(p)) for i, k, p in rows]

    def delete_outbox(self, outbox_id: int) -> None:
        with self._tx():
            self.conn.execute("DELETE FROM orch_outbox WHERE id = ?", (outbox_id,))

    def delete_outbox_rows(self, outbox_ids: Iterable[int]) -> None:
        """Inside the caller's transaction (the entity queue's, which takes the signals)."""
        self.conn.executemany("DELETE FROM orch_outbox WHERE id = ?", [(i,) for i in outbox_ids])

    # -- the episode -------------------------------------------------------------------
    def commit_episode(self, c: EpisodeCommit) -> list[str] | None:
        """Write one episode; returns the ids of the child instances actually started, or None when
        the instance was purged or replaced while the episode ran (nothing is written)."""
        started: list[str] = []
        with self._tx():
            iid = c.instance.instance_id
            if c.expected_execution is not None:
                current = self.instance(iid)
                if current is None or current.execution_id != c.expected_execution:
                    return None
            if c.reset_history:
                self.conn.execute("DELETE FROM orch_history WHERE instance_id = ?", (iid,))
            row = self.conn.execute(
                "SELECT COALESCE(MAX(seq), -1) FROM orch_history WHERE instance_id = ?", (iid,)
            ).fetchone()
            seq = int(row[0]) + 1
            self.conn.executemany(
                "INSERT INTO orch_history (instance_id, seq, execution_id, event) VALUES (?, ?, ?, ?)",
                [(iid, seq + n, c.instance.execution_id, _dumps(e)) for n, e in enumerate(c.new_events)],
            )
            self._put_instance(c.instance)
            self.conn.executemany("DELETE FROM orch_messages WHERE id = ?", [(i,) for i in c.consumed])
            for msg in c.messages:
                self._put_message(msg)
            self.conn.executemany(
                "INSERT INTO orch_work (instance_id, execution_id, event) VALUES (?, ?, ?)",
                [(iid, c.instance.execution_id, _dumps(e)) for e in c.work],
            )
            self.conn.executemany(
                "INSERT INTO orch_outbox (kind, payload) VALUES (?, ?)", [(k, _dumps(p)) for k, p in c.outbox]
            )
            for child, start in c.children:
                existing = self.instance(child.instance_id)
                if existing is not None and not existing.terminal:
                    continue  # an ExecutionStarted for a live instance is not applied (see the engine)
                if existing is not None:
                    child.generation = existing.generation + 1
                    start.event["Generation"] = child.generation
                self._clear(child.instance_id)
                self._put_instance(child)
                self._put_message(start)
                started.append(child.instance_id)
        return started


def _instance(row: Sequence[Any]) -> InstanceRow:
    return InstanceRow(
        instance_id=row[0],
        name=row[1],
        execution_id=row[2],
        status=row[3],
        input=row[4],
        output=row[5],
        custom_status=row[6],
        created_ms=int(row[7]),
        updated_ms=int(row[8]),
        parent=None if row[9] is None else json.loads(row[9]),
        generation=int(row[10]),
    )
