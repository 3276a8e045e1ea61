"""The real app in several worker processes (FUNCTIONS_WORKER_PROCESS_COUNT), end to end.

The same workload gives the same decisions in Cosmos as the pure logic (the oracle), the summary
reads the workers' instruments, and no worker process outlives the devhost, whether the run ends,
fails to start, or the devhost is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devhost.host import Host, RunConfig, RunError
from shared.config import CosmosSettings
from tests.conftest import ROOT
from tests.e2e.test_devhost_e2e import (
    DAY_S,
    START_MS,
    buffers,
    cosmos_actions,
    oracle,
    settings_file,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(180)]

WORKER_MODULE = "devhost.functions_host.processes"


def _workers_of(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in kids:
        try:
            if WORKER_MODULE in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _config(tmp: Path, cosmos: CosmosSettings, name: str, players: int = 30, **settings: str) -> RunConfig:
    return RunConfig(
        players=players,
        duration_s=2 * DAY_S,
        seed=5,
        start_ms=START_MS,
        partitions=8,
        state_dir=tmp / name,
        fresh=True,
        report_dir=None,
        settings_path=settings_file(tmp, cosmos, **settings),
        progress=False,
    )


def test_two_worker_processes_decide_what_the_pure_logic_decides(
    tmp_path: Path, cosmos_settings: CosmosSettings, app_env: dict[str, str]
) -> None:
    """Client signals (one per player, awaited in order), so each player's events reach its entity in
    partition order, as the oracle applies them. (The delivery orchestration's episodes for two
    batches of one partition may finish in either order, here as in Azure; with several workers they
    often do, and a player's signals then arrive out of order.)"""
    cfg = RunConfig(
        players=30,
        duration_s=2 * DAY_S,
        seed=5,
        start_ms=START_MS,
        partitions=8,
        state_dir=tmp_path / "workers",
        fresh=True,
        report_dir=None,
        settings_path=settings_file(
            tmp_path, cosmos_settings, FUNCTIONS_WORKER_PROCESS_COUNT="2", SIGNAL_PATH="client"
        ),
        progress=False,
    )
    result = Host(cfg).run()
    assert result.summary["host"]["worker_processes"] == 2
    found = cosmos_actions(cosmos_settings)
    expected = oracle(tmp_path / "workers")
    assert len(expected) >= 20 and found == expected
    assert len({a[0] for a in found}) == len(found)
    # The summary's figures come from the workers' own instruments.
    pipeline = result.summary["pipeline"]
    assert pipeline["events_in"] == result.summary["events_processed"] > 0
    assert sum(pipeline["actions"].values()) == len([a for a in expected if a[4] == "pending"])
    assert pipeline["latency_ms"]["count"] == sum(pipeline["actions"].values())
    assert pipeline["entity_operations"] == pipeline["signals"] > 0
    assert result.summary["host"]["queued_operations_left"] == 0
    assert not _workers_of(os.getpid())  # the run ended: its workers with it


def test_worker_processes_over_http_give_the_entities_the_embedded_run_gives(
    tmp_path: Path, cosmos_settings: CosmosSettings, app_env: dict[str, str]
) -> None:
    """The workers' Durable clients over real HTTP to the devhost's webhooks (``--transport http``),
    and the default signal path (a delivery orchestration per batch) through three workers."""
    Host(_config(tmp_path, cosmos_settings, "embedded", players=15, SIGNAL_PATH="client")).run()
    embedded = buffers(tmp_path / "embedded")
    cfg = _config(tmp_path, cosmos_settings, "http", players=15, SIGNAL_PATH="client")
    cfg.transport, cfg.worker_processes = "http", 3
    Host(cfg).run()
    assert embedded and buffers(tmp_path / "http") == embedded
    cfg = _config(tmp_path, cosmos_settings, "orchestrated", players=15)
    cfg.worker_processes = 3
    result = Host(cfg).run()
    host, pipeline = result.summary["host"], result.summary["pipeline"]
    assert host["orchestrations_completed"] == host["batches"] > 0 and host["orchestrations_failed"] == 0
    assert pipeline["entity_operations"] == pipeline["signals"] > 0 and host["queued_operations_left"] == 0
    # Every event reached its entity once, whatever the order: the same buffers' contents.
    assert {k: sorted(map(str, v)) for k, v in buffers(tmp_path / "orchestrated").items()} == {
        k: sorted(map(str, v)) for k, v in embedded.items()
    }


def test_a_bad_setting_stops_the_run_before_any_worker_starts(
    tmp_path: Path, cosmos_settings: CosmosSettings
) -> None:
    cfg = RunConfig(
        players=5,
        duration_s=3600,
        start_ms=START_MS,
        partitions=2,
        state_dir=tmp_path / "bad",
        fresh=True,
        report_dir=None,
        settings_path=settings_file(tmp_path, cosmos_settings, FUNCTIONS_WORKER_PROCESS_COUNT="11"),
        progress=False,
    )
    with pytest.raises(RunError, match="MaxProcessCount"):
        Host(cfg).run()
    assert not _workers_of(os.getpid())


def test_killing_the_devhost_leaves_no_worker_process(
    tmp_path: Path, cosmos_settings: CosmosSettings
) -> None:
    settings = settings_file(tmp_path, cosmos_settings, FUNCTIONS_WORKER_PROCESS_COUNT="2")
    cmd = [
        sys.executable,
        "-m",
        "devhost",
        "run",
        "--players",
        "400",
        "--duration",
        "2d",
        "--partitions",
        "4",
        "--fresh",
        "--state-dir",
        str(tmp_path / "killed"),
        "--settings",
        str(settings),
        "--report-dir",
        str(tmp_path / "reports"),
        "--progress-every",
        "0.5",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:  # polled: timed waits overrun under a shifted clock
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the worker processes did not start"
            time.sleep(0.2)
            workers = _workers_of(proc.pid)
        time.sleep(1.0)  # invocations in flight
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while any(_running(w) for w in workers):
            assert time.monotonic() < deadline, f"orphaned workers: {[w.pid for w in workers if _running(w)]}"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if _running(w):
                w.kill()
        if proc.stderr is not None:
            proc.stderr.close()
    assert json.dumps([w.pid for w in workers])  # two were seen, and none is left
