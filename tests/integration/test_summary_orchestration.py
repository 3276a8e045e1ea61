"""The daily summary orchestrations of the real app, through replay on the devhost's engine.

Real: function_app.app (indexed with the worker's checks), the Durable SDK's orchestrator and
activity code, the engine that replays them as the extension does (devhost/durable/engine.py), a
real DurableOrchestrationClient (in-process transport), @vercel/cosmosdb-server and Azurite.
The action documents are written here following the entity's contract (docs/contracts.md), so
the summaries can be checked against them. Time is virtual (timers, retries, "today").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devhost.db import DevDB
from devhost.durable import protocol
from devhost.durable.client import INPROC_BASE_URL, OrchestrationClientTransport
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.history import EventType
from devhost.functions_host import bindings
from devhost.servers.faultproxy import behind_proxy
from devhost.storage.timers import StatusStore, TimerListener
from scripts import extra_rows
from shared import entity as st
from shared import runtime, summary, summary_store
from shared.config import CosmosSettings
from shared.features import FEATURES
from shared.outcomes import OUTCOMES
from shared.policy import ACTION_TYPES
from shared.store import suppressed_document
from shared.timeutil import parse_iso_ms
from tests.apphost import index

pytestmark = [pytest.mark.cosmos, pytest.mark.timeout(120)]

DAY = "2030-03-14"
NOW = datetime(2030, 3, 15, 0, 29, 58, tzinfo=UTC)  # two seconds before the daily timer
NOW_MS = int(NOW.timestamp() * 1000)
RULES = ("cooldown", "daily_cap", "opt_out", "warm_up", "harm_guard", "stale", "kill_switch")


@pytest.fixture(scope="module")
def storage(azurite_module: str) -> str:
    return azurite_module


@pytest.fixture
def env(
    app_env: dict[str, str], storage: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    container = f"exports{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AzureWebJobsStorage", storage)
    monkeypatch.setenv("SUMMARY_EXPORT_CONTAINER", container)
    runtime.reset()
    return {**app_env, "AzureWebJobsStorage": storage, "SUMMARY_EXPORT_CONTAINER": container}


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def action_doc(rng: random.Random, i: int, at: datetime) -> dict[str, Any]:
    """An action document as the Player entity writes it (the contract in docs/contracts.md)."""
    player, event = f"player-{i % 37:05d}", f"e-{i}"
    atype = rng.choice(ACTION_TYPES)
    status = rng.choices(("pending", "accepted", "dismissed", "suppressed", "holdout"), (3, 2, 2, 2, 2))[0]
    score = round(rng.uniform(0.5, 0.99), 4)
    doc: dict[str, Any] = {
        "id": "act-" + hashlib.sha256(f"{player}|{event}|{atype}".encode()).hexdigest()[:32],
        "playerId": player,
        "type": atype,
        "status": status,
        "score": score,
        "scores": {t: score if t == atype else 0.1 for t in ACTION_TYPES},
        "modelVersion": "pi-test",
        "features": [round(rng.random(), 3) for _ in range(24)],
        "triggerEventId": event,
        "eventTime": iso(at),
        "day": at.date().isoformat(),
        "hour": at.hour,
        "decidedAt": iso(at + timedelta(milliseconds=40)),
        "reasons": ["loss_streak"],
    }
    if status == "suppressed":  # the hour's aggregate of one (type, rule), as the entity writes it
        rule = rng.choice(RULES)
        t = int(at.timestamp() * 1000)
        hour = t - t % st.HOUR_MS
        example = st.SuppressedExample(event, t, score, doc["features"])
        agg = st.SuppressedAggregate(
            st.suppressed_id(player, hour, atype, rule), atype, rule, hour, rng.randint(1, 40),
            t, t + 1000, "pi-test", t + 40, examples=[example],
        )  # fmt: skip
        return suppressed_document(player, agg)
    # the holdout comparison (issue 18): both groups carry their outcome, met or not
    doc["group"] = "holdout" if status == "holdout" else "treated"
    window = OUTCOMES[atype].window_ms
    doc["outcome"] = {"name": OUTCOMES[atype].name, "windowEnd": iso(at + timedelta(milliseconds=window))}
    if rng.random() < 0.4:
        doc["outcome"].update(metAt=iso(at + timedelta(milliseconds=rng.randrange(1, window))), eventId="e-x")
    if status == "holdout":
        return doc
    if status != "pending":
        latency = int(rng.lognormvariate(11, 1))
        doc["respondedAt"] = iso(at + timedelta(milliseconds=latency))
        doc["responseLatencyMs"] = latency
    return doc


def seed_actions(cosmos: CosmosSettings, n: int = 240, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` actions over the day (none in hour 6, a burst in hour 5), plus some either side of it."""
    rng = random.Random(seed)
    start = datetime.fromisoformat(DAY).replace(tzinfo=UTC)
    docs = []
    for i in range(n):
        hour = 5 if i % 4 == 0 else rng.choice([h for h in range(24) if h != 6])
        at = start + timedelta(hours=hour, seconds=rng.randrange(3600), milliseconds=rng.randrange(1000))
        docs.append(action_doc(rng, i, at))
    for i in range(n, n + 20):  # the day before and the day after: never counted
        at = start + (timedelta(hours=-1) if i % 2 else timedelta(hours=24, minutes=5))
        docs.append(action_doc(rng, i, at))
    # Two aggregates of the same (player, hour, type, rule) are one document: the later replaces it.
    docs = list({d["id"]: d for d in docs}.values())
    container = summary_store.actions(cosmos)
    for d in docs:
        container.upsert_item(d)
    return docs


class Clock:
    """Virtual time for the engine, its timers, the timer trigger and the handlers' "now"."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def now_ms(self) -> int:
        return int(self.current.timestamp() * 1000)

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


class Harness:
    def __init__(self, engine: OrchestrationEngine, clock: Clock, binding: str) -> None:
        self.engine, self.clock, self.binding = engine, clock, binding
        self.index = engine_index = index()
        self.specs = engine_index.functions

    async def http(self, name: str, method: str, day: str) -> tuple[int, Any]:
        spec = self.specs[name]
        inv = bindings.http_invocation(
            spec.trigger,
            method=method,
            url=f"{INPROC_BASE_URL}/api/summaries/{day}",
            headers={},
            query={},
            route_params={"day": day},
            body=b"",
            client_args={arg: self.binding for arg in spec.client_args},
        )
        reply = bindings.http_reply(await spec.invoke(inv))
        return reply.status, json.loads(reply.body)

    async def summarise(self, day: str = DAY) -> dict[str, Any]:
        status, body = await self.http("start_day_summary", "POST", day)
        assert status == 202, body
        await self.engine.wait_for(body["instanceId"], 60)
        status, body = await self.http("get_day_summary", "GET", day)
        assert status == 200, body
        return dict(body)

    def children(self) -> list[Any]:
        return [r for r in self.engine.store.instances() if r.parent]


@contextlib.asynccontextmanager
async def running(tmp: Path, clock: Clock | None = None) -> AsyncIterator[Harness]:
    clock = clock or Clock(NOW)
    db = DevDB(tmp / "state")
    idx = index()
    engine = OrchestrationEngine(
        db.conn,
        idx,
        hub="testhub",
        clock=clock.now,
        sleep=clock.sleep,
        max_orchestrations=8,
        max_activities=4,
    )
    binding = protocol.client_binding_json(INPROC_BASE_URL, "testhub")
    engine.client_binding = binding
    transport = OrchestrationClientTransport(engine)
    task = asyncio.create_task(engine.run())
    try:
        with runtime.clock(clock.now_ms), protocol.client_transport(transport.post, transport.get):
            yield Harness(engine, clock, binding)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        mod: Any = __import__("sys").modules["azure.durable_functions.models.utils.http_utils"]
        await mod._close_session()
        mod._session_lock = asyncio.Lock()
        db.close()


def day_docs(docs: list[dict[str, Any]], day: str = DAY) -> list[dict[str, Any]]:
    return [d for d in docs if d["day"] == day]


def as_of_of(body: dict[str, Any]) -> int:
    """The time the summary was taken as of (the orchestration's clock at its start): virtual time,
    a few seconds after NOW at most."""
    as_of = parse_iso_ms(body["index"]["asOf"])
    assert NOW_MS <= as_of < NOW_MS + 60_000
    return as_of


def summaries_of(cosmos: CosmosSettings, day: str = DAY) -> list[dict[str, Any]]:
    return summary_store.read_day(cosmos, day)


def test_a_days_summary_equals_the_action_documents_and_each_child_writes_its_own(
    env: dict[str, str], cosmos_settings: CosmosSettings, tmp_path: Path
) -> None:
    docs = seed_actions(cosmos_settings)

    async def go() -> tuple[dict[str, Any], Harness, list[Any]]:
        async with running(tmp_path) as h:
            body = await h.summarise()
            return body, h, [(c, h.engine.history(c.instance_id)) for c in h.children()]

    body, _h, children = asyncio.run(go())
    as_of = as_of_of(body)
    expected = summary.report(summary.aggregate(day_docs(docs), as_of))
    index_doc = body["index"]
    assert body["runtimeStatus"] == "Completed"
    got = index_doc["summary"]
    # the day is not final yet (bonus windows of 72 hours are open), and one run wrote all of it
    assert index_doc["final"] is False and index_doc["finalAt"] == "2030-03-18T00:10:00.000Z"
    assert all(p["run"] == index_doc["run"] for p in body["parts"]) and body["mixedRuns"] == []
    bonus = got["types"]["bonus_offer"]["outcome"]
    assert bonus["treated"]["open"] + bonus["holdout"]["open"] > 0
    for t in ACTION_TYPES:
        for key in (
            "outcome",
            "sent",
            "accepted",
            "dismissed",
            "noResponse",
            "suppressed",
            "rejectionsByRule",
            "calibration",
        ):
            assert got["types"][t][key] == expected["types"][t][key], (t, key)
        assert got["types"][t]["medianResponseMs"] == expected["types"][t]["medianResponseMs"]
    sent = sum(1 for d in day_docs(docs) if d["status"] not in ("suppressed", "holdout"))
    assert got["exportedRows"] == sent and got["documents"] == len(day_docs(docs))
    # rejections by rule are the aggregates' counts, summed (not their number of documents)
    for t in ACTION_TYPES:
        aggregates = [d for d in day_docs(docs) if d["status"] == "suppressed" and d["type"] == t]
        assert got["types"][t]["suppressed"] == sum(d["count"] for d in aggregates) > len(aggregates)
    # one document per hour (written by its child) and the index (written by the parent)
    stored = summaries_of(cosmos_settings)
    assert sorted(d["id"] for d in stored) == sorted(
        [summary.index_id(DAY)] + [summary.part_id(DAY, h) for h in range(24)]
    )
    assert len(body["parts"]) == 24
    for part in body["parts"]:
        hour_docs = [d for d in day_docs(docs) if d["hour"] == part["hour"]]
        assert part["summary"]["types"] == summary.report(summary.aggregate(hour_docs, as_of))["types"]
        assert part["summary"]["exportedRows"] == sum(
            1 for d in hour_docs if d["status"] not in ("suppressed", "holdout")
        )
    # the export: one JSON-lines blob per hour, a header, then (features, action, outcome) rows
    container = summary_store.export_container()
    blob = container.download_blob(summary.export_blob_name(DAY, 5)).readall().decode().splitlines()
    header, rows = json.loads(blob[0]), [json.loads(line) for line in blob[1:]]
    assert header["schema"] == summary.EXPORT_SCHEMA and len(header["features"]) == 24
    assert header["run"] == index_doc["run"]
    hour5 = [d for d in day_docs(docs) if d["hour"] == 5 and d["status"] not in ("suppressed", "holdout")]
    assert sorted(r["features"] for r in rows) == sorted(d["features"] for d in hour5)
    assert all(set(r) == {"action", "outcome", "score", "modelVersion", "features"} for r in rows)
    # ... which scripts.train_model --extra-rows reads back from blob storage as labelled rows
    extra = extra_rows.load([f"blob://{env['SUMMARY_EXPORT_CONTAINER']}/{DAY}/"], FEATURES, ACTION_TYPES)
    answered = [d for d in day_docs(docs) if d["status"] in ("accepted", "dismissed")]
    assert extra.files == 24 and len(extra.labels) == len(answered)
    assert extra.labels.count("none") == sum(1 for d in answered if d["status"] == "dismissed")
    # a child's history: the same handful of events whatever its hour held (hour 5: ~70 documents,
    # hour 6: none); its size is bounded by the fixed-size partial, not by the documents
    by_hour = {json.loads(json.loads(c.input))["hour"]: h for c, h in children}
    busy, empty = by_hour[5], by_hour[6]
    assert len(children) == 24
    assert [e["EventType"] for e in busy] == [e["EventType"] for e in empty]
    assert len(busy) <= 12
    assert len(json.dumps(busy)) < 16_000
    assert len(json.dumps(busy)) < 1.5 * len(json.dumps(empty))


def test_a_failing_activity_is_retried_by_its_retry_policy(
    env: dict[str, str], cosmos_settings: CosmosSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first summary write is refused (an injected fault in front of the real Cosmos server): the
    activity fails, the SDK's RetryOptions schedule a 5 s timer and a second attempt, which writes."""
    docs = seed_actions(cosmos_settings, n=60)
    with behind_proxy(cosmos_settings, status=400, failures=1) as (fault, proxied):
        monkeypatch.setenv("COSMOS_ENDPOINT", proxied.endpoint)
        runtime.reset()

        async def go() -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
            async with running(tmp_path) as h:
                body = await h.summarise()
                return body, [h.engine.history(c.instance_id) for c in h.children()]

        body, histories = asyncio.run(go())
    assert fault.faults_served == 1
    failed = [h for h in histories if any(e["EventType"] == EventType.TASK_FAILED for e in h)]
    assert len(failed) == 1
    kinds = [EventType(e["EventType"]) for e in failed[0]]
    i = kinds.index(EventType.TASK_FAILED)
    assert EventType.TIMER_CREATED in kinds[i:] and EventType.TIMER_FIRED in kinds[i:]
    assert kinds.count(EventType.TASK_SCHEDULED) == 3  # scan, write (failed), write again
    assert body["runtimeStatus"] == "Completed"
    expected = summary.report(summary.aggregate(day_docs(docs), as_of_of(body)))["types"]
    assert body["index"]["summary"]["types"] == expected
    assert len(summaries_of(cosmos_settings)) == 25


def test_a_rerun_of_the_same_day_replaces_it_and_a_start_while_running_is_a_no_op(
    env: dict[str, str], cosmos_settings: CosmosSettings, tmp_path: Path
) -> None:
    docs = seed_actions(cosmos_settings, n=80)

    async def go() -> tuple[Any, ...]:
        async with running(tmp_path) as h:
            first = await h.summarise()
            row1 = h.engine.status(summary.instance_id(DAY))
            # more actions arrive for the day; the day is summarised again, twice at once
            extra = seed_actions(cosmos_settings, n=30, seed=12)
            a = await h.http("start_day_summary", "POST", DAY)
            b = await h.http("start_day_summary", "POST", DAY)
            await h.engine.wait_for(summary.instance_id(DAY), 60)
            row2 = h.engine.status(summary.instance_id(DAY))
            _, second = await h.http("get_day_summary", "GET", DAY)
            return first, row1, a, b, row2, second, extra

    first, row1, a, b, row2, second, extra = asyncio.run(go())
    assert a[1]["started"] is True and b[1]["started"] is False
    assert a[1]["instanceId"] == b[1]["instanceId"] == summary.instance_id(DAY)
    assert row2.generation == row1.generation + 1 and row2.execution_id != row1.execution_id
    stored = summaries_of(cosmos_settings)
    assert len(stored) == 25  # exactly one set of summaries
    all_docs = {d["id"]: d for d in docs + extra}  # the second seed upserted over some ids
    expected = summary.report(summary.aggregate(day_docs(list(all_docs.values())), as_of_of(second)))
    assert second["index"]["summary"]["types"] == expected["types"]
    assert first["index"]["summary"]["types"] != expected["types"]
    # each run has its own id, on the index and on every hour document it wrote
    assert second["index"]["run"] != first["index"]["run"]
    assert {p["run"] for p in second["parts"]} == {second["index"]["run"]} and second["mixedRuns"] == []


def test_the_http_api_validates_the_day_against_the_injected_clock(
    env: dict[str, str], cosmos_settings: CosmosSettings, tmp_path: Path
) -> None:
    async def go() -> list[tuple[int, Any]]:
        async with running(tmp_path) as h:
            return [
                await h.http("start_day_summary", "POST", "2030-03-16"),  # tomorrow by the virtual clock
                await h.http("start_day_summary", "POST", "2030-3-14"),
                await h.http("get_day_summary", "GET", "2030-02-30"),
                await h.http("get_day_summary", "GET", "2030-03-01"),  # never started
                await h.http("start_day_summary", "POST", "2030-03-15"),  # today
                await h.http("start_day_summary", "POST", "2030-03-08"),  # its first actions expired
            ]

    replies = asyncio.run(go())
    assert [s for s, _ in replies] == [400, 400, 400, 404, 400, 400]
    assert "future" in replies[0][1]["error"]
    assert "is today" in replies[4][1]["error"]
    assert "ACTION_TTL_SECONDS" in replies[5][1]["error"] and replies[5][1]["day"] == "2030-03-08"


def test_the_daily_timer_starts_every_kept_day_without_a_final_summary(
    env: dict[str, str], cosmos_settings: CosmosSettings, tmp_path: Path
) -> None:
    """The real summary_timer (0 30 0 * * *) on the devhost's timer listener, on virtual time: at
    00:30 UTC on 2030-03-15 it starts summary-2030-03-14 (yesterday) and re-runs the days whose
    index is not final; final days and days the actions TTL no longer keeps are left alone."""
    seed_actions(cosmos_settings, n=20)
    # the state the previous days' runs left: 03-11 summarised before its windows closed, 03-10 and
    # 03-09 final (03-12 and 03-13 have no index: missed while the app was down); 03-08 has expired
    target = summary_store.summaries(cosmos_settings)
    for day, final in (("2030-03-11", False), ("2030-03-10", True), ("2030-03-09", True)):
        target.upsert_item({"id": summary.index_id(day), "day": day, "kind": "index", "final": final})
    due = ["2030-03-14", "2030-03-13", "2030-03-12", "2030-03-11"]
    left = ["2030-03-10", "2030-03-09", "2030-03-08"]
    clock = Clock(NOW)

    async def timer_sleep(seconds: float) -> None:
        if seconds > 60:  # the next day's occurrence: not in this test
            await asyncio.Event().wait()
        await clock.sleep(seconds)

    async def go() -> Any:
        async with running(tmp_path, clock) as h:
            spec = h.specs["summary_timer"]
            timer = TimerListener(
                spec,
                StatusStore(),
                client_args={a: h.binding for a in spec.client_args},
                clock=clock.now,
                sleep=timer_sleep,
            )
            task = asyncio.create_task(timer.run())
            try:
                async with asyncio.timeout(30):
                    while any(h.engine.status(summary.instance_id(d)) is None for d in due):
                        await asyncio.sleep(0.01)
                rows = [await h.engine.wait_for(summary.instance_id(d), 60) for d in due]
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            others = [h.engine.status(summary.instance_id(d)) for d in left]
            return rows, others, timer.stats

    rows, others, stats = asyncio.run(go())
    assert [r.status for r in rows] == ["Completed"] * 4
    assert others == [None, None, None]
    assert stats.invocations >= 1 and stats.failures == 0
    assert len(summaries_of(cosmos_settings)) == 25
    finals = summary_store.index_finals(cosmos_settings, [*due, "2030-03-10", "2030-03-08"])
    # 03-11's windows closed on the 15th at 00:10: its re-run is final; the newer days are not yet
    assert finals == {
        "2030-03-14": False,
        "2030-03-13": False,
        "2030-03-12": False,
        "2030-03-11": True,
        "2030-03-10": True,
        "2030-03-08": None,
    }
