"""``make bench``: what an event costs, on the full path and in the functions alone, against the
targets of issues 17 (the full path a worker pays) and 10 (the functions), in one run.

Per-event figures are process CPU time (``time.process_time``), measured in this one process on
fixed, seeded workloads (scripts/bench_workloads.py), the engine and the naive design
(scripts/bench_naive.py) alternated over ``--repeats`` runs and reported as medians. The method,
the workloads, every key and how to read the report: docs/performance.md.

    python -m scripts.bench [--tiny] [--soak] [--out reports] [--repeats 3] [--no-e2e] [--no-profile]

Writes ``bench.json`` and ``bench.png`` to ``--out`` and prints a table. ``--soak`` (``make bench
SOAK=1``) paces the devhost for 5 minutes to measure memory growth; ``--tiny`` is the size the
tests run (seconds, not minutes; its figures prove the harness works, they mean nothing).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from scripts import bench_cpu, bench_e2e
from scripts import bench_workloads as bw

ROOT = Path(__file__).resolve().parent.parent
HOST_JSON = ROOT / "host.json"
STATE_BUDGET_BYTES = 16_384
PACED_TOLERANCE = 0.97  # "sustained": at least 97% of the paced rate over the whole run
PROFILE_SHARE = 3  # the profile runs the first third of a workload's batches
# challenger_cpu_us_per_event: the engine run again with CHALLENGER_MODEL set to the champion's own file
# (a challenger the champion's size, the usual case: a retrained model of the same family).
CHALLENGER = "engine+challenger"
CHALLENGER_MODEL = ROOT / "shared" / "models" / "player_intervention.onnx"

LOW_RATE_EPS = 400.0  # the low-load latency check (issue 17): no event may wait for a batch to fill

# (issue, key, workload or None, comparison, target). Issue 17 (item 4) is the product's: the
# full path a worker process pays in Azure. Issue 10's function-level targets stay beside them.
TARGETS: tuple[tuple[int, str, str | None, str, float], ...] = (
    (17, "path_cpu_us_per_event", "reference", "<=", 150),
    (17, "path_cpu_us_per_event", "backlog", "<=", 300),
    (17, "path_cpu_us_per_event", "steady", "<=", 300),
    (17, "worker_decode_us_per_event", "reference", "<=", 10),
    (17, "worker_decode_us_per_event", "backlog", "<=", 10),
    (17, "worker_decode_us_per_event", "steady", "<=", 10),
    (17, "cosmos_writes_per_action", "reference", "<=", 2),
    (17, "cosmos_writes_per_action", "backlog", "<=", 2),
    (17, "cosmos_writes_per_action", "steady", "<=", 2),
    (17, "e2e_events_per_s", None, ">=", 7_500),
    (17, "paced_rate", None, ">=", 3_600),
    (17, "latency_ms_p99", None, "<=", 1_000),
    (17, "latency_ms_p99_low_rate", None, "<=", 300),
    (17, "state_bytes_max", None, "<=", STATE_BUDGET_BYTES),
    (17, "rss_growth_pct", None, "<=", 5),
    (10, "function_cpu_us_per_event", "backlog", "<=", 25),
    (10, "function_cpu_us_per_event", "steady", "<=", 60),
    (10, "function_cpu_us_per_event", "reference", "<=", 20),
    (10, "speedup_vs_naive", "backlog", ">=", 5),
    (10, "speedup_vs_naive", "steady", ">=", 5),
    (10, "ratio_to_floor", "backlog", "<=", 15),
)


@dataclass(frozen=True)
class E2ESize:
    unpaced_events: int
    paced_seconds: float
    low_rate_seconds: float


E2E_FULL = E2ESize(unpaced_events=120_000, paced_seconds=60.0, low_rate_seconds=30.0)
E2E_SOAK = E2ESize(unpaced_events=120_000, paced_seconds=300.0, low_rate_seconds=30.0)
E2E_TINY = E2ESize(unpaced_events=3_000, paced_seconds=3.0, low_rate_seconds=10.0)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _us(seconds: float, n: int) -> float:
    return seconds / max(1, n) * 1e6


# -- the floor -------------------------------------------------------------------------------------
def floor_decode(bodies: list[bytes], repeats: int) -> float:
    """CPU per event of decoding the same bytes with msgspec into a struct: the least any design
    that reads every event could spend."""
    import msgspec

    class FloorEvent(msgspec.Struct):
        id: str
        type: str
        subject: str
        time: datetime
        source: str = ""
        data: dict[str, Any] = {}

    decode = msgspec.json.Decoder(FloorEvent).decode
    runs = []
    for _ in range(repeats):
        c0 = time.process_time()
        for b in bodies:
            decode(b)
        runs.append(time.process_time() - c0)
    return _us(_median(runs), len(bodies))


def onnx_cost(samples: int, repeats: int) -> dict[str, float]:
    """CPU per call of ``shared.model.get_model().score`` on real features, and of the ONNX
    session's ``run`` alone (the rest of ``score`` is its input prep and top features)."""
    from scripts import bench_naive

    dom = bench_naive.domain()
    events = [
        {
            "id": f"e{i}",
            "type": "round.completed",
            "t": 1_700_000_000_000 + i * 15_000,
            "data": {"stake": 1.0},
        }
        for i in range(40)
    ]
    feats = dom.features(events, [], events[-1]["t"])
    model = dom.model
    runs = []
    for _ in range(repeats):
        c0 = time.process_time()
        for _ in range(samples):
            model.score(feats)
        runs.append(time.process_time() - c0)
    out = {"score_us": _us(_median(runs), samples)}
    session, inp, outp = (getattr(model, a, None) for a in ("_session", "_input", "_output"))
    if session is not None and inp and outp:
        import numpy as np

        row = np.zeros((1, len(model.features)), dtype=np.float32)
        runs = []
        for _ in range(repeats):
            c0 = time.process_time()
            for _ in range(samples):
                session.run([outp], {inp: row})
            runs.append(time.process_time() - c0)
        out["session_run_us"] = _us(_median(runs), samples)
    return out


# -- the in-process part -----------------------------------------------------------------------------
def measure_workloads(
    proc: bench_cpu.Process,
    source: bw.Source,
    workloads: list[bw.Workload],
    host: bw.HostBatching,
    repeats: int,
    profile: bool,
    progress: Any,
    path: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per workload: the engine, the naive design and the platform's share, in a rotating order,
    ``repeats`` times each; medians."""
    from scripts import bench_naive

    t0 = time.monotonic()
    engine, naive, platform_floor = bench_cpu.engine(), bench_cpu.naive(), bench_cpu.floor()
    templates = {
        "engine": bench_cpu.engine_templates(engine, proc, source, host.max_entity_batch),
        "naive": bench_cpu.naive_templates(naive, proc, source),
    }
    templates["platform"] = templates["engine"]  # the same bytes cross the protocol
    warm = {
        "journeys": len(source.journeys),
        "warm_up_events": sum(len(b.events) for b in source.history),
        "seconds": round(time.monotonic() - t0, 1),
        "engine_state_bytes_mean": statistics.fmean(len(v or "") for v in templates["engine"].values()),
        "naive_state_bytes_mean": statistics.fmean(len(v or "") for v in templates["naive"].values()),
    }
    results: dict[str, Any] = {}
    for w in workloads:
        runs: dict[str, list[bench_cpu.RunStats]] = {
            "engine": [],
            "naive": [],
            "platform": [],
            CHALLENGER: [],
        }
        counts: list[dict[str, Any]] = []
        counts_naive: dict[str, int] = {}
        shadow: dict[str, int] = {}
        for rep in range(repeats):
            designs = (
                (engine, "engine"),
                (naive, "naive"),
                (platform_floor, "platform"),
                (engine, CHALLENGER),
            )
            for d, label in designs[rep % 4 :] + designs[: rep % 4]:
                progress.set_description(f"{w.name}: {label} {rep + 1}/{repeats}")
                before = proc.meter.snapshot()
                bench_naive.stats.scored = bench_naive.stats.actions = 0
                if label == CHALLENGER:  # the engine again, a second model scoring in shadow
                    with bench_cpu.challenger(str(CHALLENGER_MODEL)):
                        stats = bench_cpu.run_workload(d, proc, w, templates["engine"], host.max_entity_batch)
                    shadow = proc.meter.snapshot().minus(before).by("pi.shadow.decisions", "result")
                    runs[label].append(stats)
                    progress.update(1)
                    continue
                stats = bench_cpu.run_workload(d, proc, w, templates[d.name], host.max_entity_batch)
                if d is engine:
                    delta = proc.meter.snapshot().minus(before)
                    counts.append(
                        {
                            "scored": delta.total("pi.scores"),
                            "actions": delta.total("pi.actions"),
                            "duplicates": delta.total("pi.events.duplicate"),
                            "dropped": delta.total("pi.events.dropped"),
                            "entity_operations": delta.total("pi.entity.operations"),
                            "rejections": delta.by("pi.rejections", "rule"),
                        }
                    )
                elif d is naive:
                    counts_naive = {"scored": bench_naive.stats.scored, "actions": bench_naive.stats.actions}
                runs[d.name].append(stats)
                progress.update(1)
        decode_s = bench_cpu.worker_decode_s(engine, w.batches)
        results[w.name] = _workload_figures(w, runs, counts, counts_naive, repeats, decode_s)
        results[w.name].update(_challenger_figures(w, runs, shadow))
        if profile:
            progress.set_description(f"{w.name}: profile")
            prof = cProfile.Profile()
            part = max(1, len(w.batches) // PROFILE_SHARE)
            bench_cpu.run(
                engine,
                proc,
                w.batches[:part],
                workload=w.name,
                grouping=w.grouping,
                round_batches=w.round_batches,
                max_entity_batch=host.max_entity_batch,
                initial=lambda key, w=w: templates["engine"].get(w.player_journey.get(key, -1)),
                profile=prof,
            )
            results[w.name]["profile"] = {"batches": part, **bench_cpu.profile_areas(prof)}
        if path:
            progress.set_description(f"{w.name}: full path")
            results[w.name].update(measure_path(engine, proc, w, templates["engine"], host))
            progress.set_description(f"{w.name}: full path, client signals")
            client = measure_path(engine, proc, w, templates["engine"], host, signal_path="client")
            results[w.name]["path_cpu_us_per_event_client_signals"] = client["path_cpu_us_per_event"]
            results[w.name]["path_ingest_us_per_event_client_signals"] = client["path_ingest_us_per_event"]
        progress.set_description(f"{w.name}: floor")
        results[w.name]["floor_decode_us_per_event"] = floor_decode(list(w.bodies()), repeats)
        e = results[w.name]
        e["ratio_to_floor"] = e["function_cpu_us_per_event"] / e["floor_decode_us_per_event"]
        results[w.name]["_signals"] = runs["engine"][-1].sample
    return results, warm


def measure_path(
    engine: bench_cpu.Design,
    proc: bench_cpu.Process,
    w: bw.Workload,
    templates: dict[int, str | None],
    host: bw.HostBatching,
    signal_path: str = "orchestration",
) -> dict[str, Any]:
    """The product's figure: everything a worker process spends per event in Azure. The worker's
    trigger decode of the host-shaped batches, the ingest function with the Durable SDK's real
    aiohttp client posting every signal to a webhook in another process, the entity through the
    SDK's batch protocol, and the store's real Cosmos client writing to a local Cosmos DB server
    (another process). Not included: the host and the Durable extension themselves (building the
    batches, queues, storing states), the servers' own CPU. One run per workload on a fresh server
    (a second run would find its actions already written). ``signal_path``: the app's
    SIGNAL_PATH (one delivery orchestration per batch, or one client signal per player)."""
    saved = os.environ.get("SIGNAL_PATH")
    os.environ["SIGNAL_PATH"] = signal_path
    try:
        return _path_run(engine, proc, w, templates, host)
    finally:
        if saved is None:
            os.environ.pop("SIGNAL_PATH", None)
        else:
            os.environ["SIGNAL_PATH"] = saved
        bench_runtime_reset()


def bench_runtime_reset() -> None:
    from shared import runtime, store

    fake = store._store
    runtime.reset()
    store._store = fake


def _path_run(
    engine: bench_cpu.Design,
    proc: bench_cpu.Process,
    w: bw.Workload,
    templates: dict[int, str | None],
    host: bw.HostBatching,
) -> dict[str, Any]:
    with bench_cpu.full_path(proc) as fp:
        before = proc.meter.snapshot()
        stats = bench_cpu.run_workload(
            bench_cpu.with_webhook(engine, fp.base), proc, w, templates, host.max_entity_batch, http=True
        )
        delta = proc.meter.snapshot().minus(before)
        writes = fp.writes.count
    n = w.events
    # Decisions written as documents: sent actions and holdout decisions (each one create).
    actions = delta.total("pi.actions") + delta.total("pi.actions.holdout")
    return {
        "path_cpu_us_per_event": _us(stats.decode_s + stats.function_s, n),
        "path_decode_us_per_event": _us(stats.decode_s, n),
        "path_ingest_us_per_event": _us(stats.ingest_s, n),
        "path_deliver_us_per_event": _us(stats.deliver_s, n),
        "path_entity_us_per_event": _us(stats.entity_s, n),
        "path_signals": stats.signals,
        "path_actions": actions,
        "cosmos_writes": writes,
        "cosmos_writes_per_event": writes / n,
        "cosmos_writes_per_action": writes / actions if actions else None,
    }


def _workload_figures(
    w: bw.Workload,
    runs: dict[str, list[bench_cpu.RunStats]],
    counts: list[dict[str, Any]],
    counts_naive: dict[str, int],
    repeats: int,
    decode_s: float,
) -> dict[str, Any]:
    eng, nai = runs["engine"], runs["naive"]
    n = w.events
    fn = [_us(r.function_s, n) for r in eng]
    naive_fn = [_us(r.function_s, n) for r in nai]
    last = eng[-1]
    sizes = [len(s.encode()) for s in last.states.values() if s is not None]
    naive_sizes = [len(s.encode()) for s in nai[-1].states.values() if s is not None]
    c = counts[-1]
    return {
        **w.summary(),
        "function_cpu_us_per_event": _median(fn),
        "function_cpu_us_per_event_runs": [round(x, 2) for x in fn],
        "ingest_cpu_us_per_event": _median([_us(r.ingest_s, n) for r in eng]),
        "deliver_cpu_us_per_event": _median([_us(r.deliver_s, n) for r in eng]),
        "entity_cpu_us_per_event": _median([_us(r.entity_s, n) for r in eng]),
        "entity_cpu_us_per_operation": _median([_us(r.entity_s, r.operations) for r in eng]),
        "worker_decode_us_per_event": _us(decode_s, n),
        "signals_per_event": last.signals / n,
        "entity_ops_per_event": last.operations / n,
        "ops_per_entity_batch": last.operations / max(1, last.entity_batches),
        "entity_batches": last.entity_batches,
        "scores_per_event": c["scored"] / n,
        "actions": c["actions"],
        "rejections": c["rejections"],
        "duplicates": c["duplicates"],
        "state_bytes_mean": statistics.fmean(sizes) if sizes else 0.0,
        "state_bytes_max": max(sizes, default=0),
        "naive_cpu_us_per_event": _median(naive_fn),
        "naive_cpu_us_per_event_runs": [round(x, 2) for x in naive_fn],
        "naive_ingest_cpu_us_per_event": _median([_us(r.ingest_s, n) for r in nai]),
        "naive_entity_cpu_us_per_event": _median([_us(r.entity_s, n) for r in nai]),
        "naive_signals_per_event": nai[-1].signals / n,
        "naive_ops_per_entity_batch": nai[-1].operations / max(1, nai[-1].entity_batches),
        "naive_scores_per_event": counts_naive["scored"] / n,
        "naive_actions": counts_naive["actions"],
        "naive_state_bytes_mean": statistics.fmean(naive_sizes) if naive_sizes else 0.0,
        "naive_state_bytes_max": max(naive_sizes, default=0),
        "speedup_vs_naive": _median(naive_fn) / _median(fn),
        "platform_cpu_us_per_event": _median([_us(r.function_s, n) for r in runs["platform"]]),
        "platform_cpu_us_per_event_runs": [round(_us(r.function_s, n), 2) for r in runs["platform"]],
        "platform_ingest_cpu_us_per_event": _median([_us(r.ingest_s, n) for r in runs["platform"]]),
        "platform_entity_cpu_us_per_operation": _median(
            [_us(r.entity_s, r.operations) for r in runs["platform"]]
        ),
        # The speedup a design with no logic at all would reach: the naive design / the platform's share.
        "speedup_ceiling": _median(naive_fn) / _median([_us(r.function_s, n) for r in runs["platform"]]),
        "repeats": repeats,
    }


def _challenger_figures(
    w: bw.Workload, runs: dict[str, list[bench_cpu.RunStats]], shadow: dict[str, int]
) -> dict[str, Any]:
    """What the challenger in shadow adds: the entity's CPU per event with it minus without it
    (medians of the interleaved runs; ingest does not change), and how often it agreed."""
    n = w.events
    with_it = _median([_us(r.entity_s, n) for r in runs[CHALLENGER]])
    without = _median([_us(r.entity_s, n) for r in runs["engine"]])
    scored = sum(shadow.values())
    return {
        "challenger_cpu_us_per_event": with_it - without,
        "challenger_entity_cpu_us_per_event": with_it,
        "challenger_scores_per_event": scored / n,
        "challenger_agreement": shadow.get("agree", 0) / scored if scored else None,
    }


# -- machine ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu_model = platform.processor()
    versions = {}
    for pkg in (
        "azure-functions",
        "azure-functions-durable",
        "msgspec",
        "onnxruntime",
        "numpy",
        "opentelemetry-sdk",
        "aiohttp",
        "azure-cosmos",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "commit": commit + ("+uncommitted" if dirty else ""),
    }


# -- targets, table, chart -----------------------------------------------------------------------------
def evaluate(keys: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for issue, key, workload, op, target in TARGETS:
        value = keys.get(key)
        if workload is not None and isinstance(value, dict):
            value = value.get(workload)
        met = None
        if isinstance(value, int | float) and value == value:
            met = value <= target if op == "<=" else value >= target
        out.append(
            {
                "issue": issue,
                "key": key,
                "workload": workload,
                "target": f"{op} {target:g}",
                "value": value,
                "met": met,
            }
        )
    return out


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(report: dict[str, Any]) -> str:
    k = report["keys"]
    names = list(report["workloads"])
    lines = [
        f"bench ({report['size']}, {report['repeats']} interleaved repeats, medians; CPU = process time)"
    ]
    head = f"  {'per event (us CPU)':<34}" + "".join(f"{report['workloads'][n]['title']:>20}" for n in names)
    lines.append(head)

    def row(label: str, key: str, digits: int = 1) -> None:
        lines.append(
            f"  {label:<34}" + "".join(f"{_fmt(report['workloads'][n].get(key), digits):>20}" for n in names)
        )

    row("FULL PATH (what a worker pays)", "path_cpu_us_per_event")
    row("  worker decode", "path_decode_us_per_event")
    row("  ingest + Durable client (HTTP)", "path_ingest_us_per_event")
    row("  delivery orchestration", "path_deliver_us_per_event")
    row("  entity + Cosmos client", "path_entity_us_per_event")
    row("  same, one client signal each", "path_cpu_us_per_event_client_signals")
    row("    its ingest + Durable client", "path_ingest_us_per_event_client_signals")
    row("Cosmos writes per action", "cosmos_writes_per_action", 2)
    row("Cosmos writes per event", "cosmos_writes_per_event", 4)
    row("function CPU (no HTTP, no Cosmos)", "function_cpu_us_per_event")
    row("  ingest", "ingest_cpu_us_per_event")
    row("  delivery orchestration", "deliver_cpu_us_per_event")
    row("  entity", "entity_cpu_us_per_event")
    row("  entity per operation", "entity_cpu_us_per_operation")
    row("challenger in shadow (entity, added)", "challenger_cpu_us_per_event", 2)
    row("  its agreement with the champion", "challenger_agreement", 3)
    row("worker decode (outside the function)", "worker_decode_us_per_event")
    row("floor: msgspec decode", "floor_decode_us_per_event", 2)
    row("ratio to floor", "ratio_to_floor")
    row("platform share (SDK path, no logic)", "platform_cpu_us_per_event")
    row("  its entity per operation", "platform_entity_cpu_us_per_operation")
    row("naive design", "naive_cpu_us_per_event")
    row("speedup vs naive", "speedup_vs_naive", 2)
    row("  ceiling (naive / platform share)", "speedup_ceiling", 2)
    row("signals per event", "signals_per_event", 3)
    row("entity ops per event", "entity_ops_per_event", 3)
    row("ops per entity batch", "ops_per_entity_batch", 2)
    row("scores per event (naive)", "naive_scores_per_event", 3)
    row("scores per event", "scores_per_event", 3)
    row("events", "events", 0)
    row("players with events", "players_with_events", 0)
    row("trigger batch size", "batch_size", 0)
    lines.append("")
    for label, key, unit in (
        ("signal over HTTP (client CPU)", "signal_http_cpu_us", "us"),
        ("ONNX score (shared.model)", "onnx_us_per_inference", "us"),
        ("entity state mean / max", None, ""),
        ("devhost unpaced", "e2e_events_per_s", "events/s"),
        ("devhost paced", "paced_rate", "events/s"),
        ("action latency p50 / p99 (paced)", None, ""),
        ("latency p50 / p99 at 400 events/s", None, ""),
        ("devhost RSS start / end", None, ""),
    ):
        if key is not None:
            value = f"{_fmt(k.get(key))} {unit}"
            run = report["e2e"].get({"e2e_events_per_s": "unpaced", "paced_rate": "paced"}.get(key, ""), {})
            if run.get("cpu"):
                c = run["cpu"]
                value += (
                    f"  ({_fmt(c.get('process_cpu_us_per_event'), 0)} us CPU per event in the devhost; "
                    f"cores: event loop {c['loop_thread_cores']}, other threads {c['other_threads_cores']}, "
                    f"Cosmos + Azurite {c['servers_cores']})"
                )
        elif label.startswith("entity state"):
            value = f"{_fmt(k.get('state_bytes_mean'), 0)} / {_fmt(k.get('state_bytes_max'))} bytes"
        elif label.startswith("action latency"):
            value = f"{_fmt(k.get('latency_ms_p50'), 0)} / {_fmt(k.get('latency_ms_p99'), 0)} ms"
        elif label.startswith("latency p50"):
            low = (k.get("latency_ms_p50_low_rate"), k.get("latency_ms_p99_low_rate"))
            value = f"{_fmt(low[0], 0)} / {_fmt(low[1], 0)} ms"
        else:
            rss = f"{_fmt(k.get('rss_mb_start'))} / {_fmt(k.get('rss_mb_end'))} MB"
            value = f"{rss} ({report['rss']['note']})"
        lines.append(f"  {label:<34}  {value}")
    for issue in sorted({t.get("issue", 10) for t in report["targets"]}, reverse=True):
        lines.append("")
        lines.append(f"  targets (issue {issue}):")
        for t in (t for t in report["targets"] if t.get("issue", 10) == issue):
            lines.append(_target_line(t))
    return "\n".join(lines)


def _target_line(t: dict[str, Any]) -> str:
    where = f" ({t['workload']})" if t["workload"] else ""
    verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
    return f"    {t['key'] + where:<44} {_fmt(t['value'], 2):>14}  {t['target']:<12} {verdict}"


def plot(report: dict[str, Any], path: Path, paced: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = list(report["workloads"])
    ws = report["workloads"]
    titles = [ws[n]["title"] for n in names]
    x = range(len(names))
    ax = axes[0][0]
    ingest = [ws[n]["ingest_cpu_us_per_event"] for n in names]
    entity = [ws[n]["entity_cpu_us_per_event"] for n in names]
    ax.bar([i - 0.3 for i in x], ingest, 0.3, label="engine: ingest")
    ax.bar([i - 0.3 for i in x], entity, 0.3, bottom=ingest, label="engine: entity")
    ax.bar(list(x), [ws[n]["naive_cpu_us_per_event"] for n in names], 0.3, label="naive design")
    ax.bar(
        [i + 0.3 for i in x], [ws[n]["worker_decode_us_per_event"] for n in names], 0.3, label="worker decode"
    )
    for i, n in enumerate(names):
        target = next(
            (t for t in report["targets"] if t["key"] == "function_cpu_us_per_event" and t["workload"] == n),
            None,
        )
        if target is not None:
            ax.hlines(float(target["target"].split()[1]), i - 0.45, i - 0.15, colors="k", linestyles="--")
    shares = [ws[n].get("platform_cpu_us_per_event") for n in names]
    if all(v is not None for v in shares):
        ax.scatter(
            [i - 0.3 for i in x], shares, color="k", marker="_", s=300, zorder=3, label="platform share"
        )
    ax.set_xticks(list(x), titles)
    ax.set_ylabel("µs CPU per event")
    ax.set_title("function CPU per event (dashed: target)")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    profile = ws.get("steady", {}).get("profile") or next(
        (ws[n].get("profile") for n in names if ws[n].get("profile")), None
    )
    if profile:
        areas = list(profile["areas"].items())[:12][::-1]
        ax.barh([a for a, _ in areas], [100 * v for _, v in areas])
        ax.set_xlabel("% of the engine's function CPU (cProfile own time)")
        ax.set_title("where the time goes: (b) steady")
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.axis("off")
    ax = axes[1][0]
    if paced and paced.get("timeseries"):
        series = paced["timeseries"]
        t = [r["t"] for r in series]
        ax.plot(t, [r["events_per_s"] for r in series], label="events/s")
        ax.axhline(bw.REFERENCE_EPS, color="k", linestyle="--", linewidth=0.8)
        ax.set_ylabel("events / s")
        ax.set_xlabel("seconds")
        ax2 = ax.twinx()
        for key, label in (("latency_p50_ms", "latency p50"), ("latency_p99_ms", "latency p99")):
            pts = [(r["t"], r[key]) for r in series if r.get(key) is not None]
            if pts:
                ax2.plot([a for a, _ in pts], [b for _, b in pts], ".", label=label)
        ax2.set_ylabel("action latency (ms)")
        ax2.legend(loc="lower right", fontsize=8)
        ax.set_title(f"devhost paced at {bw.REFERENCE_EPS:,} events/s")
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.axis("off")
    ax = axes[1][1]
    rss = report.get("rss", {}).get("samples") or []
    if rss:
        ax.plot([r[0] for r in rss], [r[1] for r in rss])
        for edge in report["rss"].get("window_seconds") or ():
            ax.axvline(edge, color="k", linestyle=":", linewidth=0.8)
        ax.set_xlabel("seconds since the devhost started (dotted: rss_mb_start, rss_mb_end)")
        ax.set_ylabel("RSS (MB)")
        ax.set_title("devhost memory, paced run")
    else:
        ax.axis("off")
    fig.suptitle(f"make bench ({report['size']}) — {report['machine']['cores']} cores, {report['at'][:19]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the test size: seconds, figures meaningless")
    ap.add_argument("--soak", action="store_true", help="pace the devhost for 5 minutes (memory growth)")
    ap.add_argument("--out", type=Path, default=Path("reports"), help="where bench.json and bench.png go")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per design and workload")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-e2e", action="store_true", help="skip the devhost runs and the HTTP signal")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile pass per workload")
    ap.add_argument(
        "--no-path", action="store_true", help="skip the full-path runs (real HTTP signals, real Cosmos)"
    )
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--table", type=Path, metavar="BENCH_JSON", help="print the table of an existing report and exit"
    )
    args = ap.parse_args(argv)
    if args.table is not None:
        print(table(json.loads(args.table.read_text(encoding="utf-8"))))
        return 0

    from tqdm import tqdm

    started = time.monotonic()
    sizes = bw.TINY if args.tiny else bw.FULL
    e2e_size = E2E_TINY if args.tiny else (E2E_SOAK if args.soak else E2E_FULL)
    host = bw.HostBatching.read(HOST_JSON)
    proc = bench_cpu.setup_process()
    steps = 3 * 4 * args.repeats  # workloads x (engine, naive, platform, engine+challenger) x repeats
    progress = tqdm(total=steps, unit="run", disable=args.no_progress, dynamic_ncols=True)
    progress.set_description("workloads")
    source = bw.make_source(sizes.journeys, args.seed)
    workloads = bw.workloads(source, sizes, host)
    results, warm = measure_workloads(
        proc, source, workloads, host, args.repeats, not args.no_profile, progress, not args.no_path
    )
    signals = results["steady"].pop("_signals")
    for r in results.values():
        r.pop("_signals", None)
    progress.set_description("ONNX")
    onnx = onnx_cost(300 if args.tiny else 3000, args.repeats)
    keys: dict[str, Any] = {
        k: {n: results[n][k] for n in results}
        for k in (
            "function_cpu_us_per_event",
            "signals_per_event",
            "entity_ops_per_event",
            "ops_per_entity_batch",
            "floor_decode_us_per_event",
            "ratio_to_floor",
            "naive_cpu_us_per_event",
            "speedup_vs_naive",
            "worker_decode_us_per_event",
            "path_cpu_us_per_event",
            "path_decode_us_per_event",
            "path_ingest_us_per_event",
            "path_deliver_us_per_event",
            "path_entity_us_per_event",
            "path_cpu_us_per_event_client_signals",
            "cosmos_writes_per_action",
            "cosmos_writes_per_event",
            "challenger_cpu_us_per_event",
        )
        if all(k in results[n] for n in results)
    }
    keys["onnx_us_per_inference"] = onnx["score_us"]
    keys["onnx_session_run_us"] = onnx.get("session_run_us")
    all_sizes = [
        (r["state_bytes_mean"], r["state_bytes_max"], r["players_with_events"]) for r in results.values()
    ]
    keys["state_bytes_mean"] = sum(m * n for m, _, n in all_sizes) / max(1, sum(n for _, _, n in all_sizes))
    keys["state_bytes_max"] = max(x for _, x, _ in all_sizes)
    e2e: dict[str, Any] = {}
    rss: dict[str, Any] = {"note": "not measured (--no-e2e)", "samples": []}
    paced_summary = None
    if not args.no_e2e:
        progress.set_description("signal over HTTP")
        payloads = [(key, json.loads(data) if data is not None else None) for key, data in signals]
        e2e["signal_http"] = bench_e2e.signal_http(payloads[: 300 if args.tiny else 2000])
        keys["signal_http_cpu_us"] = e2e["signal_http"]["cpu_us_per_signal"]
        with tempfile.TemporaryDirectory(prefix="bench-devhost-") as tmp:
            work = Path(tmp)
            now_ms = int(time.time() * 1000) - 60_000
            paced_events = int(bw.REFERENCE_EPS * e2e_size.paced_seconds)
            progress.set_description("devhost: writing the reference mix")
            unpaced_file, paced_file = work / "unpaced.jsonl", work / "paced.jsonl"
            bw.write_jsonl(source, unpaced_file, e2e_size.unpaced_events, now_ms)
            bw.write_jsonl(source, paced_file, paced_events, now_ms)
            progress.set_description("devhost: unpaced")
            unpaced = bench_e2e.devhost(unpaced_file, work / "unpaced")
            keys["e2e_events_per_s"] = unpaced.summary["events_per_second"]
            e2e["unpaced"] = {
                **_devhost_figures(unpaced.summary),
                "cpu": bench_e2e.cpu_split(unpaced, unpaced.total),
            }
            progress.set_description(f"devhost: paced {e2e_size.paced_seconds:.0f} s")
            paced = bench_e2e.devhost(
                paced_file, work / "paced", rate=bw.REFERENCE_EPS, sample_s=0.25 if args.tiny else 0.5
            )
            paced_summary = paced.summary
            figures = bench_e2e.paced_figures(paced.summary, bw.REFERENCE_EPS)
            e2e["paced"] = {
                **figures,
                **_devhost_figures(paced.summary),
                "cpu": bench_e2e.cpu_split(paced, paced.total),
            }
            keys["paced_rate"] = figures["achieved_rate"]
            lat = figures["latency_ms"] or {}
            keys["latency_ms_p50"], keys["latency_ms_p99"] = lat.get("p50"), lat.get("p99")
            progress.set_description(f"devhost: paced at {LOW_RATE_EPS:.0f}/s")
            low_file = work / "low.jsonl"
            bw.write_jsonl(source, low_file, int(LOW_RATE_EPS * e2e_size.low_rate_seconds), now_ms)
            low = bench_e2e.devhost(low_file, work / "low", rate=LOW_RATE_EPS)
            low_figures = bench_e2e.paced_figures(low.summary, LOW_RATE_EPS)
            e2e["paced_low_rate"] = {**low_figures, **_devhost_figures(low.summary)}
            low_lat = low_figures["latency_ms"] or {}
            keys["latency_ms_p50_low_rate"] = low_lat.get("p50")
            keys["latency_ms_p99_low_rate"] = low_lat.get("p99")
            start, end, window = bench_e2e.rss_window(paced, paced.total or paced_events)
            keys["rss_mb_start"], keys["rss_mb_end"] = start, end
            keys["rss_growth_pct"] = (end - start) / start * 100 if start and end else None
            soak = "a soak of" if args.soak else "not a soak (make bench SOAK=1 runs 5 minutes): the"
            rss = {
                "note": f"{soak} {e2e_size.paced_seconds:.0f} s paced run, {window}",
                "samples": [[round(t, 2), round(mb, 1), n] for t, mb, n in paced.rss],
                "window_seconds": paced.window,
            }
    progress.close()
    report: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "size": "tiny" if args.tiny else ("full + soak" if args.soak else "full"),
        "repeats": args.repeats,
        "seed": args.seed,
        "keys": keys,
        "targets": [],
        "workloads": results,
        "warm_start": warm,
        "onnx": onnx,
        "e2e": e2e,
        "rss": rss,
        "machine": machine(),
        "batching": {
            "host_json": vars(host),
            "steady_batch_arithmetic": host.steady_batch(bw.REFERENCE_EPS, bw.PARTITIONS)[1],
        },
        "method": {
            "cpu": "time.process_time (all threads of the process), per call of the function, summed",
            "path": "path_*: one run per workload with nothing of the worker faked: the worker decode, "
            "the SDK's aiohttp client posting each signal to a webhook in another process, the store's "
            "real Cosmos client against a local Cosmos DB server; excluded: the host's and the Durable "
            "extension's own work and the servers' CPU",
            "faked (function_* and naive_* keys only)": [
                "Cosmos DB: ActionStore runs on an in-memory client (I/O is not CPU of the function)",
                "the Durable webhook: signals answered 202 in-process (their HTTP cost: signal_http_cpu_us)",
                "the Functions host and the Durable extension: the harness builds batches, stores states",
                "telemetry export: OpenTelemetry SDK instruments and spans are recorded, nothing is exported",
            ],
            "worker_decode": "azure.functions' EventHubTriggerConverter decoding the host's payload, "
            "timed apart: CPU on the instance, outside the function",
        },
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    report["targets"] = evaluate(keys)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    plot(report, args.out / "bench.png", paced_summary)
    print(table(report))
    print(f"\n  report: {args.out / 'bench.json'}, {args.out / 'bench.png'} ({report['wall_seconds']:.0f} s)")
    return 0


def _devhost_figures(summary: dict[str, Any]) -> dict[str, Any]:
    p = summary.get("pipeline", {})
    return {
        "events_per_second": summary.get("events_per_second"),
        "events": summary.get("events_processed"),
        "wall_seconds": summary.get("wall_seconds"),
        "signals": p.get("signals"),
        "entity_operations": p.get("entity_operations"),
        "entity_batches": summary.get("host", {}).get("entity_batches"),
        "actions": sum((p.get("actions") or {}).values()),
        "latency_ms": p.get("latency_ms"),
    }


if __name__ == "__main__":
    sys.exit(main())
