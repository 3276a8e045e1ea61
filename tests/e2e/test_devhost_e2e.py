"""The real app end to end through the devhost, against a real cosmosdb-server.

Each run generates a seeded synthetic workload, pushes it through the Event
Hubs stand-in, the real ingest function, the Durable client (in-process or
over loopback HTTP), the entity scheduler and the real Player entity, which
writes actions to Cosmos. The checks compare what landed in Cosmos and in the
entity states with an oracle, with the other transport, and with a run that
was killed and resumed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from devhost.db import DB_FILE, DevDB
from devhost.host import Host, RunConfig, RunResult
from devhost.pipeline import entity_runner
from shared.config import CosmosSettings
from shared.entity import load_state
from shared.store import ActionStore, ensure_containers, make_client
from tests.conftest import LOCAL_KEY, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(120)]

DAY_S = 86_400.0
# A fixed window in the past: every run of a test sees the same events and event times.
START_MS = (int(time.time()) // 3600 - 3 * 24) * 3600 * 1000
Action = tuple[str, str, str, float, str]


def settings_file(tmp: Path, cosmos: CosmosSettings, **extra: str) -> Path:
    """A local.settings.json for the test's Cosmos database, plus ``extra`` Values."""
    path = tmp / f"local.settings.{cosmos.database}.json"
    values = {
        "COSMOS_ENDPOINT": cosmos.endpoint,
        "COSMOS_KEY": cosmos.key or "",
        "COSMOS_DATABASE": cosmos.database,
        "EVENTHUB_NAME": "player-events",
        "EVENTHUB_CONSUMER_GROUP": "$Default",
        "DURABLE_TASK_HUB": "e2ehub",
        "OUTBOX_REMINDER_QUEUE": "outbox-reminders",
        **extra,
    }
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    return path


@pytest.fixture
def second_db(cosmos_endpoint: str) -> Iterator[CosmosSettings]:
    settings = CosmosSettings(endpoint=cosmos_endpoint, database=f"t{uuid.uuid4().hex[:12]}", key=LOCAL_KEY)
    client = make_client(settings)
    ensure_containers(client, settings)
    yield settings
    client.delete_database(settings.database)


def run_devhost(tmp: Path, cosmos: CosmosSettings, name: str, **overrides: Any) -> RunResult:
    cfg = RunConfig(
        players=overrides.pop("players", 30),
        duration_s=overrides.pop("duration_s", 2 * DAY_S),
        seed=overrides.pop("seed", 5),
        start_ms=START_MS,
        partitions=8,
        state_dir=tmp / name,
        fresh=True,
        report_dir=None,
        settings_path=settings_file(tmp, cosmos),
        progress=False,
        **overrides,
    )
    return Host(cfg).run()


def cosmos_actions(cosmos: CosmosSettings) -> list[Action]:
    """Every decision document: actions sent and candidates a guardrail suppressed."""
    rows = ActionStore(cosmos).actions.query_items("SELECT * FROM c", enable_cross_partition_query=True)
    return sorted(
        (r["id"], r["type"], r["rejectedBy"], r["count"], r["status"])  # an hour's suppressed aggregate
        if r["status"] == "suppressed"
        else (r["id"], r["type"], r["triggerEventId"], r["score"], r["status"])
        for r in rows
    )


def buffers(state_dir: Path) -> dict[str, Any]:
    db = DevDB(state_dir)
    try:
        return {
            k: msgspec.to_builtins(load_state(json.loads(v)).buf)
            for k, v in db.entity_states("player").items()
        }
    finally:
        db.close()


def oracle(state_dir: Path) -> list[Action]:
    """The pure domain logic applied to the events the devhost logged, per player in partition order."""
    from shared import runtime
    from shared.entity import HOUR_MS, PlayerState, apply_events, suppressed_id
    from shared.events import PlayerEvent, parse
    from shared.model import get_model
    from shared.signals import Signal

    db = DevDB(state_dir)
    try:
        logged = db.all_events()
    finally:
        db.close()
    now = int(time.time() * 1000)
    by_player: dict[str, list[Any]] = {}
    for e in logged:  # partition by partition, in sequence order
        ev = parse(e.body, now_ms=now, partition=e.partition, sequence=e.seq, enqueued_ms=e.enqueued_ms)
        if isinstance(ev, PlayerEvent):
            by_player.setdefault(ev.player_id, []).append(ev.to_signal())
    model = get_model()
    actions: list[Action] = []
    for player, events in by_player.items():
        effects = apply_events(
            PlayerState(), player, Signal(events), now, model.score, runtime.rules(), model.version
        )
        actions += [(a.id, a.type, a.trigger, a.score, a.status) for a in effects.actions + effects.holdouts]
        counts: dict[tuple[str, str, str], int] = {}
        for r in effects.suppressed:  # one document per (UTC hour, type, rule), counting them
            key = (
                suppressed_id(player, r.t - r.t % HOUR_MS, r.type, r.rejected_by or ""),
                r.type,
                r.rejected_by or "",
            )
            counts[key] = counts.get(key, 0) + 1
        actions += [(i, t, rule, n, "suppressed") for (i, t, rule), n in counts.items()]
    return sorted(actions)


def test_actions_in_cosmos_equal_the_pure_logic_applied_to_the_same_events(
    tmp_path: Path, cosmos_settings: CosmosSettings, app_env: dict[str, str]
) -> None:
    result = run_devhost(tmp_path, cosmos_settings, "oracle")
    found = cosmos_actions(cosmos_settings)
    expected = oracle(tmp_path / "oracle")
    assert len(expected) >= 20 and len({a[1] for a in expected}) >= 2, "workload too small to mean anything"
    assert found == expected
    assert len({a[0] for a in found}) == len(found)  # no duplicates
    pipeline = result.summary["pipeline"]
    sent = [a for a in expected if a[4] == "pending"]
    assert sum(pipeline["actions"].values()) == len(sent)  # read from the OpenTelemetry instruments
    assert sum(pipeline["suppressed"].values()) == sum(a[3] for a in expected if a[4] == "suppressed")
    assert pipeline["events_in"] == result.summary["events_processed"] > 0
    assert pipeline["latency_ms"]["count"] == len(sent) and pipeline["latency_ms"]["p50"] is not None
    assert result.summary["host"]["queued_operations_left"] == 0


def test_redelivered_batches_change_nothing(
    tmp_path: Path, cosmos_settings: CosmosSettings, app_env: dict[str, str]
) -> None:
    """At-least-once on purpose: tails of 40% of the batches are delivered twice, cut differently."""
    result = run_devhost(tmp_path, cosmos_settings, "again", redeliver_share=0.4)
    assert result.summary["host"]["redelivered_events"] > 100
    assert result.summary["pipeline"]["duplicates"] > 0  # the entities saw them and ignored them
    found = cosmos_actions(cosmos_settings)
    assert found == oracle(tmp_path / "again") and len({a[0] for a in found}) == len(found)
    state = buffers(tmp_path / "again")
    assert all(len({e[4] for e in buf}) == len(buf) for buf in state.values())  # no event twice


def test_http_transport_gives_the_same_result_as_in_process(
    tmp_path: Path, cosmos_settings: CosmosSettings, second_db: CosmosSettings
) -> None:
    inproc = run_devhost(tmp_path, cosmos_settings, "inproc", players=20, transport="inproc")
    http = run_devhost(tmp_path, second_db, "http", players=20, transport="http")
    actions = cosmos_actions(cosmos_settings)
    assert actions and cosmos_actions(second_db) == actions
    assert buffers(tmp_path / "http") == buffers(tmp_path / "inproc")
    # Signals and operations depend on how events happened to be batched; decisions do not.
    for key in ("events_in", "scored", "actions", "rejections"):
        assert http.summary["pipeline"][key] == inproc.summary["pipeline"][key]


def test_http_functions_read_entity_state_through_the_webhook(
    tmp_path: Path, cosmos_settings: CosmosSettings
) -> None:
    """GET /api/players/{id}: the real HTTP function, its real client, the read-state webhook."""
    import aiohttp

    import function_app
    from devhost.durable.entities import EntityScheduler
    from devhost.functions_host.indexing import index_app
    from devhost.functions_host.settings import applied, load_local_settings
    from devhost.webserver import WebhookServer
    from shared import runtime

    run_devhost(tmp_path, cosmos_settings, "api", players=10, duration_s=DAY_S)
    settings = load_local_settings(settings_file(tmp_path, cosmos_settings))
    states = buffers(tmp_path / "api")
    player = sorted(states)[0]

    async def go() -> list[tuple[int, Any]]:
        index = index_app(function_app.app, settings)
        db = DevDB(tmp_path / "api")
        scheduler = EntityScheduler(
            db, {"Player": entity_runner(index.entity("Player"))}, max_batch=50, workers=1
        )
        server = WebhookServer(scheduler, index.by_trigger("httpTrigger"), "e2ehub")
        base = await server.start()
        out = []
        try:
            async with aiohttp.ClientSession() as http:
                for path in (f"/api/players/{player}", "/api/players/nobody", "/api/health"):
                    async with http.get(base + path) as resp:
                        out.append((resp.status, await resp.json()))
        finally:
            await server.stop()
            db.close()
        return out

    with applied(settings):
        runtime.reset()
        try:
            found, missing, health = asyncio.run(go())
        finally:
            runtime.reset()
    assert found[0] == 200 and found[1]["playerId"] == player
    assert found[1]["bufferedEvents"] == len(states[player])
    assert missing[0] == 404
    assert health[0] == 200 and health[1]["status"] == "ok"


def _progress(state_dir: Path) -> tuple[int, int]:
    """(events checkpointed, events the source will send), read while the devhost writes."""
    path = state_dir / DB_FILE
    if not path.exists():
        return 0, 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            done = conn.execute("SELECT COALESCE(SUM(seq + 1), 0) FROM checkpoints").fetchone()[0]
            total = conn.execute("SELECT v FROM meta WHERE k = 'source_total'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0
    return int(done), int(json.loads(total[0])) if total else 0


def test_a_killed_devhost_resumes_with_nothing_lost_and_nothing_doubled(
    tmp_path: Path, cosmos_settings: CosmosSettings, second_db: CosmosSettings
) -> None:
    state = tmp_path / "crashy"
    start = datetime.fromtimestamp(START_MS / 1000, tz=UTC).isoformat()
    options = f"--players 40 --duration {2 * DAY_S} --seed 11 --start {start} --partitions 8 --rate 5000"
    args = [sys.executable, "-m", "devhost", "run", *options.split(), "--max-lag", "512", "--no-report"]
    args += [
        "--no-progress",
        "--settings",
        str(settings_file(tmp_path, cosmos_settings)),
        "--state-dir",
        str(state),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first_log = tmp_path / "first-run.log"
    with first_log.open("wb") as out:  # a file, not a pipe: nobody drains a pipe while we poll
        proc = subprocess.Popen([*args, "--fresh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, total = _progress(state)
        if total and done >= total // 3:
            break
        assert proc.poll() is None, first_log.read_text(errors="replace")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    done, total = _progress(state)
    assert 0 < done < total, "the kill must land in the middle of the run"

    resumed = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _progress(state) == (total, total)

    run_devhost(tmp_path, second_db, "reference", players=40, seed=11)
    reference = cosmos_actions(second_db)
    assert reference and cosmos_actions(cosmos_settings) == reference
    assert buffers(state) == buffers(tmp_path / "reference")
