"""The benchmark's measurements across processes: one signal over real HTTP, and devhost runs.

- ``signal_http``: the Durable SDK's own aiohttp client (``DurableOrchestrationClient.signal_entity``)
  posting to a loopback aiohttp server in *another process* that answers 202 as the extension's
  webhook does; the CPU counted is this process's only, the client side of each signal.
- ``devhost``: ``python -m devhost run --source jsonl`` in a subprocess (real SQLite log and
  queues, a real Cosmos DB server, Azurite), unpaced or paced, its JSON report read back, and
  its resident memory sampled from outside (``psutil``), aligned to the run's own progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_SERVER = """
import sys
from aiohttp import web

async def accepted(request):
    await request.read()
    return web.Response(status=202)

async def started(request):
    await request.read()
    return web.json_response({"id": request.match_info["id"]}, status=202)

app = web.Application()
app.router.add_post("/runtime/webhooks/durabletask/entities/{name}/{key}", accepted)
app.router.add_post("/runtime/webhooks/durabletask/orchestrators/{name}/{id}", started)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def webhook_server() -> Iterator[str]:
    """A loopback aiohttp server in its own process that answers every entity signal and every
    orchestration start 202, as the extension's webhook does."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the loopback webhook server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _signal_all(base: str, signals: list[tuple[str, Any]], concurrency: int) -> float:
    import azure.durable_functions as df

    from devhost.durable import protocol

    client = df.DurableOrchestrationClient(protocol.client_binding_json(base, "benchhub"))
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str, payload: Any) -> None:
        async with gate:
            await client.signal_entity(df.EntityId("Player", key), "events", payload)

    await asyncio.gather(*(one(k, p) for k, p in signals[:50]))  # the session and its connections
    c0 = time.process_time()
    await asyncio.gather(*(one(k, p) for k, p in signals))
    return time.process_time() - c0


async def _close_sdk_session() -> None:
    mod: Any = sys.modules.get("azure.durable_functions.models.utils.http_utils")
    if mod is not None:
        await mod._close_session()
        mod._session_lock = asyncio.Lock()


def signal_http(signals: list[tuple[str, Any]], concurrency: int = 32) -> dict[str, Any]:
    """CPU of this process per signal through the SDK's aiohttp client to a loopback webhook.
    ``signals``: (entity key, the input object) as the ingest function signalled them."""

    async def go(base: str) -> float:
        try:
            return await _signal_all(base, signals, concurrency)
        finally:
            await _close_sdk_session()

    with webhook_server() as base:
        spent = asyncio.run(go(base))
    return {
        "signals": len(signals),
        "concurrency": concurrency,
        "cpu_us_per_signal": spent / max(1, len(signals)) * 1e6,
    }


# -- the devhost -----------------------------------------------------------------------------------
_PROGRESS = re.compile(rb"(\d+)/(\d+) \[")
WORKER_MODULE = "devhost.functions_host.processes"


@dataclass
class DevhostRun:
    summary: dict[str, Any]
    report: Path
    # (seconds since the subprocess started, RSS MB of the devhost process and its worker processes,
    # events checkpointed)
    rss: list[tuple[float, float, int]] = field(default_factory=list)
    # (seconds, CPU s of the main thread (the event loop), of its other threads (entity workers
    # and helpers), of its child processes (the Cosmos DB server, Azurite)), per sample
    cpu: list[tuple[float, float, float, float]] = field(default_factory=list)
    # (seconds, CPU s of the worker processes together), per sample
    worker_cpu: list[tuple[float, float]] = field(default_factory=list)
    total: int = 0
    wall_s: float = 0.0
    window: tuple[float, float] | None = None  # the seconds rss_window measured between


# The devhost's worker processes in the bench (FUNCTIONS_WORKER_PROCESS_COUNT): two, on the 2-core
# reference machine (docs/performance.md, "The devhost"); None runs the app in the devhost's process.
BENCH_WORKER_PROCESSES = 2


def host_entity_concurrency(host_json: Path = ROOT / "host.json") -> int:
    """Entity batches at once on one instance: on the Azure Storage backend a Python entity batch is an
    orchestration work item, capped by host.json's ``maxConcurrentOrchestratorFunctions``
    (docs/platform.md). The bench gives the devhost that, not its own default of 4."""
    durable = json.loads(host_json.read_text(encoding="utf-8"))["extensions"]["durableTask"]
    return int(durable.get("maxConcurrentOrchestratorFunctions", 4))


def devhost(
    jsonl: Path,
    workdir: Path,
    *,
    rate: float = 0.0,
    timeout_s: float = 3600.0,
    sample_s: float = 0.5,
    workers: int | None = BENCH_WORKER_PROCESSES,
    entity_workers: int | None = None,
) -> DevhostRun:
    """``python -m devhost run --source jsonl --file JSONL --fresh`` (paced when ``rate``), with
    its resident memory sampled every ``sample_s`` next to the run's progress, and the app in
    ``workers`` worker processes (``FUNCTIONS_WORKER_PROCESS_COUNT``)."""
    import psutil

    state, reports = workdir / "state", workdir / "report"
    cmd = [
        sys.executable,
        "-m",
        "devhost",
        "run",
        "--source",
        "jsonl",
        "--file",
        str(jsonl),
        "--fresh",
        "--state-dir",
        str(state),
        "--report-dir",
        str(reports),
        "--no-local-settings",
        "--progress-every",  # stderr is a pipe: plain progress lines, as often as the samples
        "0.25",
    ]
    if rate:
        cmd += ["--rate", f"{rate:g}"]
    if entity_workers is None and workers is not None:
        entity_workers = host_entity_concurrency()
    if entity_workers is not None:
        cmd += ["--entity-workers", str(entity_workers)]
    workdir.mkdir(parents=True, exist_ok=True)
    out = (workdir / "stdout.txt").open("wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="100")
    env.pop("FUNCTIONS_WORKER_PROCESS_COUNT", None)
    if workers is not None:
        env["FUNCTIONS_WORKER_PROCESS_COUNT"] = str(workers)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, env=env)
    progress = [0, 0]
    tail = bytearray()

    def read_stderr() -> None:
        assert proc.stderr is not None
        while True:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                return
            tail.extend(chunk)
            found = _PROGRESS.findall(bytes(tail[-4096:]))
            if found:
                progress[0], progress[1] = int(found[-1][0]), int(found[-1][1])
            del tail[:-8192]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    run = DevhostRun({}, reports)
    ps = psutil.Process(proc.pid)
    try:
        while proc.poll() is None:
            if time.monotonic() - started > timeout_s:
                proc.terminate()
                raise RuntimeError(f"the devhost run took longer than {timeout_s:.0f} s")
            with contextlib.suppress(psutil.Error):
                now = time.monotonic() - started
                rss = ps.memory_info().rss
                threads = ps.threads()
                main = sum(t.user_time + t.system_time for t in threads if t.id == proc.pid)
                rest = sum(t.user_time + t.system_time for t in threads if t.id != proc.pid)
                kids = 0.0
                workers_cpu = 0.0
                for c in ps.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        spent = sum(c.cpu_times()[:2])
                        if WORKER_MODULE in " ".join(c.cmdline()):
                            workers_cpu += spent
                            rss += c.memory_info().rss  # the app's memory is in its workers
                        else:
                            kids += spent
                run.rss.append((now, rss / 2**20, progress[0]))
                run.cpu.append((now, main, rest, kids))
                run.worker_cpu.append((now, workers_cpu))
            time.sleep(sample_s)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
        out.close()
    run.wall_s = time.monotonic() - started
    run.total = progress[1]
    if proc.returncode != 0:
        raise RuntimeError(
            f"devhost exited with {proc.returncode}: {bytes(tail[-2000:]).decode(errors='replace')}"
        )
    found = sorted(reports.glob("devhost-*.json"))
    if not found:
        raise RuntimeError(f"the devhost wrote no report in {reports}")
    run.report = found[-1]
    run.summary = json.loads(run.report.read_text())
    return run


def rss_window(run: DevhostRun, total: int) -> tuple[float | None, float | None, str]:
    """RSS (MB) once 10% of the events were checkpointed (warmed up: the app loaded, the caches
    filled) and at the last sample before all were (before the report's plotting loads matplotlib)."""
    during = [(t, mb, n) for t, mb, n in run.rss if 0 < n < total]
    start = next(((t, mb) for t, mb, n in during if n >= 0.1 * total), None)
    if start is None or not during:
        return None, None, "too few samples while the events were processed"
    end = during[-1]
    run.window = (start[0], end[0])
    return start[1], end[1], f"from {start[0]:.0f} s to {end[0]:.0f} s after the devhost started"


def cpu_split(run: DevhostRun, total: int) -> dict[str, Any]:
    """Where the devhost's CPU went while it processed the middle of the run (10% to the last
    sample before all events were checkpointed): cores used by its event-loop thread, by its
    other threads, and by the servers it started. A loop thread near 1.0 bounds the run."""
    marks = [(t, n) for t, _, n in run.rss]
    lo = next((t for t, n in marks if n >= 0.1 * total), None)
    hi = max((t for t, n in marks if 0 < n < total), default=None)
    at = {round(c[0], 3): c for c in run.cpu}
    if lo is None or hi is None or hi <= lo:
        return {}
    a, b = at.get(round(lo, 3)), at.get(round(hi, 3))
    if a is None or b is None:
        return {}
    wall = b[0] - a[0]
    done = {round(t, 3): n for t, _, n in run.rss}
    events = done[round(hi, 3)] - done[round(lo, 3)]
    wk = {round(t, 3): s for t, s in run.worker_cpu}
    workers_s = wk.get(round(hi, 3), 0.0) - wk.get(round(lo, 3), 0.0)
    return {
        "seconds": round(wall, 1),
        "events": events,
        # The devhost process's CPU (every thread: host, hub, queues, worker, functions) per event.
        "process_cpu_us_per_event": round((b[1] + b[2] - a[1] - a[2]) / max(1, events) * 1e6, 1),
        "loop_thread_cores": round((b[1] - a[1]) / wall, 2),
        "other_threads_cores": round((b[2] - a[2]) / wall, 2),
        "servers_cores": round((b[3] - a[3]) / wall, 2),
        # The worker processes (FUNCTIONS_WORKER_PROCESS_COUNT) together, and host + workers per event.
        "worker_processes_cores": round(workers_s / wall, 2),
        "host_and_workers_cpu_us_per_event": round(
            (b[1] + b[2] - a[1] - a[2] + workers_s) / max(1, events) * 1e6, 1
        ),
    }


def paced_figures(summary: dict[str, Any], rate: float) -> dict[str, Any]:
    """The achieved rate and the backlog from the devhost's report (its 1 s timeseries)."""
    series = summary.get("timeseries", [])
    backlog = [r["backlog_events"] for r in series if r.get("backlog_events") is not None]
    return {
        "target_rate": rate,
        "achieved_rate": summary.get("events_per_second"),
        "events": summary.get("events_processed"),
        "wall_seconds": summary.get("wall_seconds"),
        "max_backlog_events": max(backlog, default=None),
        "latency_ms": summary.get("pipeline", {}).get("latency_ms"),
    }


# -- the e2e part alone: ``python -m scripts.bench_e2e`` ---------------------------------------------
def run_devhost_e2e(
    *,
    unpaced_events: int = 120_000,
    paced_seconds: float = 60.0,
    low_seconds: float = 30.0,
    runs: tuple[str, ...] = ("unpaced", "paced", "low"),
    seed: int = 11,
    journeys: int = 1000,
    workdir: Path | None = None,
    workers: int | None = BENCH_WORKER_PROCESSES,
    entity_workers: int | None = None,
) -> dict[str, Any]:
    """The devhost runs of ``make bench`` (the reference mix unpaced, paced at the reference rate,
    paced at 400 events/s) on the same workload, without the CPU part: their figures."""
    import tempfile

    from scripts import bench_workloads as bw

    low_rate = 400.0
    source = bw.make_source(journeys, seed)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-devhost-") as tmp:
        work = workdir or Path(tmp)
        now_ms = int(time.time() * 1000) - 60_000
        plan = {
            "unpaced": (unpaced_events, 0.0),
            "paced": (int(bw.REFERENCE_EPS * paced_seconds), float(bw.REFERENCE_EPS)),
            "low": (int(low_rate * low_seconds), low_rate),
        }
        for name in runs:
            events, rate = plan[name]
            jsonl = work / f"{name}.jsonl"
            bw.write_jsonl(source, jsonl, events, now_ms)
            run = devhost(jsonl, work / name, rate=rate, workers=workers, entity_workers=entity_workers)
            figures = paced_figures(run.summary, rate) if rate else {}
            lat = run.summary.get("pipeline", {}).get("latency_ms") or {}
            out[name] = {
                "events_per_second": run.summary.get("events_per_second"),
                "events": run.summary.get("events_processed"),
                "wall_seconds": run.summary.get("wall_seconds"),
                "latency_ms_p50": lat.get("p50"),
                "latency_ms_p99": lat.get("p99"),
                "latency_count": lat.get("count"),
                "max_backlog_events": figures.get("max_backlog_events"),
                "workers": run.summary.get("host", {}).get("worker_processes"),
                "cpu": cpu_split(run, run.total),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        description="The devhost part of make bench alone: the reference mix unpaced, paced at "
        "3,700 events/s and at 400 events/s; prints the figures as JSON."
    )
    ap.add_argument("--unpaced-events", type=int, default=120_000)
    ap.add_argument("--paced-seconds", type=float, default=60.0)
    ap.add_argument("--low-seconds", type=float, default=30.0)
    ap.add_argument(
        "--only", action="append", choices=("unpaced", "paced", "low"), help="run only these (repeatable)"
    )
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--workers",
        type=int,
        default=BENCH_WORKER_PROCESSES,
        help="FUNCTIONS_WORKER_PROCESS_COUNT for the devhost; 0: the app in the devhost's own process",
    )
    ap.add_argument(
        "--entity-workers",
        type=int,
        help="the devhost's --entity-workers (default: host.json's maxConcurrentOrchestratorFunctions)",
    )
    ap.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    figures = run_devhost_e2e(
        unpaced_events=args.unpaced_events,
        paced_seconds=args.paced_seconds,
        low_seconds=args.low_seconds,
        runs=tuple(args.only or ("unpaced", "paced", "low")),
        seed=args.seed,
        workers=args.workers or None,
        entity_workers=args.entity_workers,
    )
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
