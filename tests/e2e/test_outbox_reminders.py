"""An action whose write failed is written after Cosmos recovers, although the player sends nothing more.

Real: the devhost hosting the app (the Player entity, the queue-triggered outbox_reminder function
run as the Storage Queues extension runs it, against Azurite), the Cosmos DB server, and a loopback
proxy in front of it that refuses every document write with 503 until it is told to stop (an outage).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devhost.host import Host, RunConfig
from devhost.servers.faultproxy import behind_proxy
from shared.config import CosmosSettings
from shared.store import ActionStore
from tests.e2e.test_devhost_e2e import settings_file
from tests.helpers import body, cloud_event

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(180)]


def tilting_session(player: str, start_ms: int) -> list[bytes]:
    """A session whose stakes climb while the player loses and tops up: it ends in actions."""
    out = [body(cloud_event("session.started", player, event_id=f"{player}-s", at_ms=start_ms, data={}))]
    for i in range(40):
        at = start_ms + (i + 1) * 15_000
        data = {"stake": 5.0 * (1 + i / 4), "payout": 0.0, "game": "slots", "sessionId": "s1"}
        out.append(
            body(cloud_event("round.completed", player, event_id=f"{player}-r{i}", at_ms=at, data=data))
        )
        if i % 6 == 5:
            dep = {"amount": 50.0}
            out.append(
                body(cloud_event("deposit.made", player, event_id=f"{player}-d{i}", at_ms=at + 500, data=dep))
            )
    return out


def test_an_outbox_is_flushed_by_a_reminder_after_an_outage(
    tmp_path: Path, cosmos_settings: CosmosSettings
) -> None:
    now = int(time.time() * 1000)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(tilting_session("quiet-1", now - 20 * 60_000)) + b"\n")
    with behind_proxy(cosmos_settings, status=503, failures=10**6, retry_after_ms=1) as (proxy, down):
        settings = settings_file(tmp_path, down, OUTBOX_REMINDER_SECONDS="1")
        cfg = RunConfig(
            source="jsonl",
            file=events,
            partitions=2,
            state_dir=tmp_path / "state",
            fresh=True,
            report_dir=None,
            settings_path=settings,
            progress=False,
            drain_reminders_s=60,
        )

        def recover() -> None:  # the outage ends once the entity has failed a few writes
            deadline = time.monotonic() + 60
            while proxy.faults_served < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)
            proxy.failures_left = 0

        healer = threading.Thread(target=recover)
        healer.start()
        summary = Host(cfg).run().summary
        healer.join()
    pipeline = summary["pipeline"]
    assert pipeline["write_failures"] >= 1, "the outage never hit a write: the test proves nothing"
    actions = [a for a in ActionStore(cosmos_settings).player_actions("quiet-1") if a["status"] == "pending"]
    assert actions and len(actions) == sum(pipeline["actions"].values())
    assert summary["host"]["queue_invocations"] >= 1 and summary["host"]["queue_poisoned"] == 0
