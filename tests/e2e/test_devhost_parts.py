"""The devhost's Event Hubs stand-in and app indexing, part by part (no servers needed)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from devhost.db import DevDB
from devhost.eventhubs.local_hub import BatchOptions, EventLog, PartitionPump, PumpStats, partition_for
from devhost.functions_host import bindings
from devhost.functions_host.bindings import HubEvent
from devhost.functions_host.indexing import RetryPolicy, UnsupportedBinding, index_app
from devhost.functions_host.settings import SettingsError, resolve
from devhost.functions_host.worker import RetryContext
from functions.ingest import batch_partition, to_message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_partitioner_is_stable_in_range_and_spreads_keys() -> None:
    keys = [f"player-{i:05d}" for i in range(3200)]
    parts = [partition_for(k, 32) for k in keys]
    assert parts == [partition_for(k, 32) for k in keys]  # stable (no per-process hash seed)
    assert partition_for("player-00042", 32) == "11"  # pinned: stored logs stay valid across versions
    counts = Counter(parts)
    assert set(counts) == {str(p) for p in range(32)}
    assert max(counts.values()) < 2 * 100 and min(counts.values()) > 100 // 2


async def _log_with(db: DevDB, items: list[tuple[str | None, bytes]], partitions: int = 4) -> EventLog:
    log = EventLog(db, [str(p) for p in range(partitions)])
    log.append(items, at_ms=1_790_000_000_000)
    return log


def test_log_assigns_sequence_numbers_and_offsets_per_partition(tmp_path: Path) -> None:
    async def go() -> None:
        db = DevDB(tmp_path)
        items = [("alice", b"a" * 10), ("bob", b"b" * 7), ("alice", b"a" * 5), (None, b"keyless")]
        log = await _log_with(db, items)
        rows = [r for p in range(4) for r in db.read_events(str(p), -1, 100)]
        assert sorted(r.body for r in rows) == sorted(b for _, b in items)
        for p in range(4):
            part = db.read_events(str(p), -1, 100)
            assert [r.seq for r in part] == list(range(len(part)))
            assert [r.offset for r in part] == [sum(len(x.body) for x in part[:i]) for i in range(len(part))]
        alice = [r.partition for r in rows if r.pkey == "alice"]
        assert alice == [partition_for("alice", 4)] * 2
        assert all(r.enqueued_ms == 1_790_000_000_000 for r in rows)
        assert log.total == 4
        # The tails survive a reopen (a restarted devhost appends after them).
        db.close()
        db2 = DevDB(tmp_path)
        assert EventLog(db2, [str(p) for p in range(4)]).tails == log.tails

    asyncio.run(go())


class Recorder:
    """An invoke() that records batches (as the library's converter decodes what the host sends),
    the retry context of each attempt, and what was checkpointed while each one ran."""

    def __init__(self, db: DevDB, partition: str, fail_times: int = 0) -> None:
        self.db, self.partition, self.fail_times = db, partition, fail_times
        self.batches: list[list[func.EventHubEvent]] = []
        self.retry_counts: list[int] = []
        self.checkpoint_during: list[int | None] = []

    async def __call__(self, partition: str, events: list[HubEvent], retry: RetryContext) -> None:
        data = bindings.eventhub_data(events, "binary")
        meta = bindings.eventhub_metadata(
            events, partition=partition, hub="player-events", consumer_group="$Default", namespace="ns"
        )
        converter = func.get_binding_registry().get("eventHubTrigger")
        self.batches.append(converter.decode(data, trigger_metadata=meta))
        self.retry_counts.append(retry.retry_count)
        self.checkpoint_during.append(self.db.checkpoints().get(self.partition))
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("downstream unavailable")


def _pump(
    log: EventLog,
    invoke: Any,
    max_batch: int,
    retry: RetryPolicy | None = None,
    sleeps: list[float] | None = None,
) -> PartitionPump:
    async def sleep(s: float) -> None:
        (sleeps if sleeps is not None else []).append(s)

    return PartitionPump(
        log,
        "0",
        invoke,
        BatchOptions(max_batch, 1, 0.01),
        hub="player-events",
        consumer_group="$Default",
        retry=retry,
        stats=PumpStats(),
        sleep=sleep,
    )


def test_batches_follow_max_event_batch_size_and_carry_trigger_metadata(tmp_path: Path) -> None:
    async def go() -> Recorder:
        db = DevDB(tmp_path)
        log = EventLog(db, ["0"])
        log.append([("p", json.dumps({"n": i}).encode()) for i in range(600)])
        log.close()
        rec = Recorder(db, "0")
        await _pump(log, rec, max_batch=256).run()
        return rec

    rec = asyncio.run(go())
    assert [len(b) for b in rec.batches] == [256, 256, 88]
    seqs = [e.sequence_number for b in rec.batches for e in b]
    assert seqs == list(range(600))
    first = rec.batches[1][0]
    msg = to_message(first, batch_partition(rec.batches[1]))  # the app's own reader of the metadata
    assert (msg.partition, msg.sequence) == ("0", 256)
    assert msg.enqueued_ms is not None and first.offset is not None and int(first.offset) > 0
    assert first.metadata["PartitionContext"]["EventHubName"] == "player-events"


def test_checkpoint_is_taken_only_after_the_function_returns(tmp_path: Path) -> None:
    async def go() -> tuple[Recorder, dict[str, int]]:
        db = DevDB(tmp_path)
        log = EventLog(db, ["0"])
        log.append([("p", b"x") for _ in range(30)])
        log.close()
        rec = Recorder(db, "0")
        await _pump(log, rec, max_batch=10).run()
        return rec, db.checkpoints()

    rec, checkpoints = asyncio.run(go())
    assert rec.checkpoint_during == [None, 9, 19]  # while batch k runs, only batch k-1 is checkpointed
    assert checkpoints == {"0": 29}


def test_a_crash_inside_the_function_redelivers_the_batch(tmp_path: Path) -> None:
    """The process dies mid-invocation: no checkpoint, so the next pump gets the same batch."""

    async def crashing(partition: str, events: list[HubEvent], retry: RetryContext) -> None:
        raise asyncio.CancelledError  # not an Exception: escapes the retry loop like a kill would

    async def go() -> list[int]:
        db = DevDB(tmp_path)
        log = EventLog(db, ["0"])
        log.append([("p", b"x") for _ in range(5)])
        log.close()
        with pytest.raises(asyncio.CancelledError):
            await _pump(log, crashing, max_batch=10).run()
        assert db.checkpoints() == {}
        rec, again = Recorder(db, "0"), EventLog(db, ["0"])
        again.close()
        await _pump(again, rec, max_batch=10).run()
        return [e.sequence_number for e in rec.batches[0]]

    assert asyncio.run(go()) == [0, 1, 2, 3, 4]


def test_failed_invocations_are_retried_per_policy_then_the_host_moves_on(tmp_path: Path) -> None:
    policy = RetryPolicy("exponential_backoff", 3, minimum_s=1.0, maximum_s=3.0)

    async def go(fail_times: int) -> tuple[Recorder, list[float], DevDB]:
        db = DevDB(tmp_path / str(fail_times))
        log = EventLog(db, ["0"])
        log.append([("p", b"x") for _ in range(4)])
        log.close()
        rec, sleeps = Recorder(db, "0", fail_times=fail_times), []
        await _pump(log, rec, max_batch=10, retry=policy, sleeps=sleeps).run()
        return rec, sleeps, db

    rec, sleeps, db = asyncio.run(go(2))
    assert len(rec.batches) == 3 and rec.checkpoint_during == [None, None, None]
    assert rec.retry_counts == [0, 1, 2]  # the host's RetryContext: 0 on the first attempt
    # webjobs-sdk RandomizedExponentialBackoffStrategy: min, then min + U(0.8, 1.2) * 2**(n-2) * min
    assert len(sleeps) == 2 and sleeps[0] == 1.0 and 1.8 <= sleeps[1] <= 2.2
    assert db.checkpoints() == {"0": 3} and db.failed_batches() == []

    rec, sleeps, db = asyncio.run(go(10))
    assert len(rec.batches) == 4  # the first try + max_retry_count retries
    assert all(s <= 3.0 for s in sleeps) and rec.retry_counts == [0, 1, 2, 3]
    assert db.checkpoints() == {"0": 3}  # moved on, like the host ...
    assert [(p, a, b, n) for p, a, b, n, _ in db.failed_batches()] == [("0", 0, 3, 4)]  # ... but visibly


def test_the_real_app_is_indexed_with_resolved_binding_expressions() -> None:
    import function_app

    settings = {"EVENTHUB_NAME": "hub-x", "EVENTHUB_CONSUMER_GROUP": "cg-y", "OUTBOX_REMINDER_QUEUE": "q-z"}
    index = index_app(function_app.app, settings)
    assert index.functions["outbox_reminder"].trigger["queueName"] == "q-z"
    ingest = index.by_trigger("eventHubTrigger")[0]
    assert (ingest.trigger["eventHubName"], ingest.trigger["consumerGroup"]) == ("hub-x", "cg-y")
    assert (
        ingest.client_args == ["client"] and ingest.retry is not None and ingest.retry.max_retry_count == -1
    )
    assert index.entity("player").name == "player"
    assert {f.name for f in index.by_trigger("httpTrigger")} == {
        "get_player",
        "get_player_actions",
        "erase_player",
        "health",
        "start_day_summary",
        "get_day_summary",
    }
    assert [f.name for f in index.by_trigger("timerTrigger")] == ["summary_timer"]
    with pytest.raises(SettingsError, match="EVENTHUB_NAME"):
        index_app(function_app.app, {"EVENTHUB_CONSUMER_GROUP": "cg", "OUTBOX_REMINDER_QUEUE": "q"})


def test_an_unsupported_binding_is_refused_with_the_function_named() -> None:
    app = df.DFApp()

    @app.blob_trigger(arg_name="blob", path="uploads/{name}", connection="AzureWebJobsStorage")
    def nightly(blob: func.InputStream) -> None:  # pragma: no cover - never invoked
        pass

    with pytest.raises(UnsupportedBinding, match=r"'nightly'.*'blobTrigger'.*func start"):
        index_app(app, {})


def test_binding_expressions_resolve_from_settings() -> None:
    assert resolve("%A%-%B%", {"A": "x", "B": "y"}, "here") == "x-y"
    assert resolve(7, {}, "here") == 7
    with pytest.raises(SettingsError, match="here: .*%MISSING%"):
        resolve("%MISSING%", {}, "here")


def test_eventhub_source_is_configured_from_the_func_start_settings() -> None:
    """No hub can run here: check the wiring and the errors, not the receiving."""
    from devhost.eventhubs.producers import SourceError
    from devhost.host import hub_source_from_settings

    with pytest.raises(SourceError, match="EventHubConnection"):
        hub_source_from_settings({}, "player-events", "$Default")
    with pytest.raises(SourceError, match="AzureWebJobsStorage"):
        hub_source_from_settings(
            {"EventHubConnection__fullyQualifiedNamespace": "ns"}, "player-events", "$Default"
        )
    conn = "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=eA==;UseDevelopmentEmulator=true;"
    source = hub_source_from_settings(
        {"EventHubConnection": conn, "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
        "player-events",
        "cg",
    )
    assert (source.connection, source.eventhub, source.consumer_group) == (conn, "player-events", "cg")
    asyncio.run(source.close())


def test_jsonl_source_keeps_bad_lines_for_the_dead_letter_path(tmp_path: Path) -> None:
    from devhost.eventhubs.producers import JsonlSource

    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"subject": "p-1", "id": "a"}\n\n{not json\n{"subject": "p-2"}\n')
    source = JsonlSource(path)
    asyncio.run(source.prepare())
    assert source.total == 3
    assert [k for k, _ in source.items] == ["p-1", None, "p-2"]
    assert source.items[1][1] == b"{not json"


def test_jsonl_source_survives_deep_nesting_and_keeps_bare_cr_inside_a_line(tmp_path: Path) -> None:
    from devhost.eventhubs.producers import JsonlSource

    deep = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "events.jsonl"
    path.write_bytes(deep + b"\n" + b'{"subject": "p-1", "note": "a\rb"}\r\n' + b"\n")
    source = JsonlSource(path)
    asyncio.run(source.prepare())
    assert source.total == 2
    assert source.items[0] == (None, deep)
    # One line (one dead letter: a raw CR is not allowed in a JSON string), not two.
    assert source.items[1] == (None, b'{"subject": "p-1", "note": "a\rb"}')
