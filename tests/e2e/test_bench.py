"""``make bench`` at the tiny size: the harness runs end to end and writes every key and the chart.

Only that it works: the tiny figures mean nothing, and timed assertions would flake on a shared
machine. The full size is ``make bench`` (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devhost.functions_host.settings import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.cosmos, pytest.mark.timeout(240)]

PER_WORKLOAD = (
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
)
SCALARS = (
    "signal_http_cpu_us",
    "onnx_us_per_inference",
    "state_bytes_mean",
    "state_bytes_max",
    "e2e_events_per_s",
    "paced_rate",
    "latency_ms_p50",
    "latency_ms_p99",
    "latency_ms_p99_low_rate",
    "rss_mb_start",
    "rss_mb_end",
)


def test_the_benchmark_runs_at_the_tiny_size_and_writes_every_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--tiny", "--no-progress", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    keys = report["keys"]
    for key in PER_WORKLOAD:
        assert set(keys[key]) == {"backlog", "steady", "reference"}, key
        assert all(isinstance(v, float) and v > 0 for v in keys[key].values()), (key, keys[key])
    for key in SCALARS:
        assert isinstance(keys[key], int | float) and keys[key] > 0, (key, keys[key])
    assert {t["key"] for t in report["targets"]} >= {
        "path_cpu_us_per_event",
        "cosmos_writes_per_action",
        "function_cpu_us_per_event",
        "speedup_vs_naive",
    }
    # The full path is the sum of its parts, and it includes the worker decode the functions exclude.
    for name, path in keys["path_cpu_us_per_event"].items():
        parts = sum(keys[f"path_{p}_us_per_event"][name] for p in ("decode", "ingest", "deliver", "entity"))
        assert path == pytest.approx(parts) and path > keys["path_decode_us_per_event"][name] > 0
    # Every path run wrote to the real Cosmos server (actions, suppressed decisions, dead letters).
    assert all(w["cosmos_writes"] > 0 for w in report["workloads"].values())
    assert all(t["met"] in (True, False) for t in report["targets"]), report["targets"]
    steady = report["workloads"]["steady"]
    from scripts import bench_workloads as bw

    expected, arithmetic = bw.HostBatching.read(ROOT / "host.json").steady_batch(
        bw.REFERENCE_EPS, bw.PARTITIONS
    )
    assert steady["batch_size"] == expected and report["batching"]["steady_batch_arithmetic"] == arithmetic
    assert "minEventBatchSize" in arithmetic and "maxWaitTime" in arithmetic
    assert steady["ops_per_entity_batch"] == 1.0
    assert report["workloads"]["reference"]["noise_events"] > report["workloads"]["reference"]["used_events"]
    assert report["machine"]["cores"] and report["machine"]["python"]
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "targets (issue 10)" in proc.stdout and "targets (issue 17)" in proc.stdout
    # The challenger in shadow (issue 18; the champion's own file): a figure per workload, scored at
    # every trigger the champion scored, and in agreement with itself every time.
    assert set(keys["challenger_cpu_us_per_event"]) == {"backlog", "steady", "reference"}
    for w in report["workloads"].values():
        assert w["challenger_scores_per_event"] == w["scores_per_event"] > 0
        assert w["challenger_agreement"] == 1.0
    assert "challenger in shadow" in proc.stdout
