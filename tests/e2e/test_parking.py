"""A batch that keeps failing is parked, the partition moves on, and re-injection processes it.

Real: the devhost's hosting path (worker checks, host-built trigger data, the
host's retry context), the Cosmos DB server, a loopback fault proxy in front
of it that refuses every document write with 503 (an outage), and Azurite as
the host storage account where the app parks the batch. The retry waits are
scaled down (``retry_delay_scale``); the policy itself is the app's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devhost.cli import main as devhost_main
from devhost.host import Host, RunConfig
from devhost.servers.faultproxy import behind_proxy
from devhost.storage.parked import list_parked, reinject
from shared.config import CosmosSettings
from shared.store import ActionStore
from tests.e2e.test_devhost_e2e import settings_file
from tests.helpers import body, cloud_event

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(180)]


def _events_file(tmp: Path, now_ms: int) -> Path:
    lines = [body(cloud_event(player=f"p{i}", event_id=f"ok-{i}", at_ms=now_ms - 60_000)) for i in range(5)]
    lines.insert(2, b"{not json")
    path = tmp / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _run(tmp: Path, cosmos: CosmosSettings, events: Path, *, fresh: bool) -> dict:
    settings = settings_file(tmp, cosmos, INGEST_PARK_AFTER_RETRIES="2")
    cfg = RunConfig(
        source="jsonl",
        file=events,
        partitions=1,
        state_dir=tmp / "state",
        fresh=fresh,
        report_dir=None,
        settings_path=settings,
        progress=False,
        retry_delay_scale=0.001,
    )
    return Host(cfg).run().summary


def test_an_outage_parks_the_batch_moves_on_and_reinjection_completes_it(
    tmp_path: Path, cosmos_settings: CosmosSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    events = _events_file(tmp_path, int(time.time() * 1000))
    with behind_proxy(cosmos_settings, status=503, failures=10**6, retry_after_ms=1) as (proxy, down):
        summary = _run(tmp_path, down, events, fresh=True)
    # Three attempts (the first + 2 retries) failed on the dead letter's write, then the app parked
    # the batch: the host saw success, checkpointed, and nothing was lost or retried for ever.
    assert summary["pipeline"]["batches_parked"] == 1
    assert summary["host"]["retries"] == 2 and summary["host"]["failed_batches"] == 0
    assert summary["events_processed"] == 6 and proxy.faults_served >= 3
    [line] = list_parked(tmp_path / "state")
    assert "events=6 attempts=3" in line and ("503" in line or "CircuitOpen" in line)

    assert devhost_main(["parked", "list", "--state-dir", str(tmp_path / "state")]) == 0
    assert "events=6" in capsys.readouterr().out

    # Cosmos is back: re-inject, resume the same run, and the dead letter is written once.
    done = reinject(tmp_path / "state")
    assert (done.batches, done.events) == (1, 6)
    assert list_parked(tmp_path / "state") == []
    again = _run(tmp_path, cosmos_settings, events, fresh=False)
    assert again["pipeline"]["batches_parked"] == 0 and again["events_processed"] == 6
    # The five valid events had been signalled before the batch was parked: re-injected with their
    # first position, the entities recognise every one of them (by sequence number, not by luck).
    assert again["pipeline"]["duplicates"] == 5 and again["pipeline"]["signals"] == 5
    store = ActionStore(cosmos_settings)
    rows = list(store.deadletters.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert [r["reason"] for r in rows] == ["malformed_json"]
