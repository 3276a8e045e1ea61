"""Benchmarks of the hot paths, against the reference load.

Prints a table and writes ``reports/bench.json``. Figures, not pass/fail
tests: a timed assertion flakes on a shared 2-core machine, a report does not.
Targets come from the reference load (docs/capacity.md): 3,700 events/s into ingest,
~1,000 events/s reaching the actors, entity state well under 16 KB.

    python -m scripts.bench [--players 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from shared import journeys
from shared import state as st
from shared.events import PlayerEvent, parse
from shared.model import get_model
from shared.policy import Rules
from shared.routing import Message, route

REFERENCE_INGEST_EPS = 3700
REFERENCE_ACTOR_EPS = 1000
STATE_BUDGET_BYTES = 16 * 1024


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def workload(players: int, seed: int) -> tuple[list[bytes], int]:
    end = datetime.now(UTC) - timedelta(minutes=10)
    js = journeys.generate(players, seed, end - timedelta(days=2), timedelta(days=2))
    bodies = [json.dumps(ev).encode() for ev in journeys.interleave(js)]
    return bodies, int(time.time() * 1000)


def bench(players: int, seed: int, repeat: int) -> dict[str, Any]:
    bodies, now_ms = workload(players, seed)
    n = len(bodies)
    results: dict[str, Any] = {"events": n, "players": players}

    parse_s = timed(lambda: [parse(b, now_ms=now_ms) for b in bodies], repeat)
    results["parse_events_per_s"] = n / statistics.median(parse_s)

    messages = [Message(b, str(i % 32), i) for i, b in enumerate(bodies)]
    batches = [messages[i : i + 256] for i in range(0, n, 256)]
    route_s = timed(lambda: [route(b, now_ms=now_ms) for b in batches], repeat)
    results["route_events_per_s"] = n / statistics.median(route_s)

    by_player: dict[str, list[dict[str, Any]]] = {}
    for i, b in enumerate(bodies):
        ev = parse(b, now_ms=now_ms, partition=str(i % 32), sequence=i)
        if isinstance(ev, PlayerEvent):
            by_player.setdefault(ev.player_id, []).append(ev.to_signal())
    routed = sum(len(v) for v in by_player.values())
    model = get_model()
    rules = Rules()

    def entity_run() -> list[st.PlayerState]:
        states = []
        for pid, evs in by_player.items():
            s = st.PlayerState()
            # One operation per 8 events: the order of magnitude of one signal per batch.
            for k in range(0, len(evs), 8):
                st.apply(
                    s, pid, "events", {"events": evs[k : k + 8]}, now_ms, model.score, rules, model.version
                )
            states.append(s)
        return states

    entity_s = timed(entity_run, max(1, repeat // 2))
    results["entity_events_per_s"] = routed / statistics.median(entity_s)
    states = entity_run()
    sizes = sorted(len(msgspec.json.encode(s)) for s in states)
    results["state_bytes_p50"] = sizes[len(sizes) // 2]
    results["state_bytes_max"] = sizes[-1]

    vec = [0.0] * len(model.features)
    score_s = timed(lambda: [model.score(vec) for _ in range(2000)], repeat)
    results["score_us"] = statistics.median(score_s) / 2000 * 1e6

    tracemalloc.start()
    entity_run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["entity_peak_mib_per_1k_players"] = peak / 2**20 / players * 1000
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    args = ap.parse_args(argv)

    r = bench(args.players, args.seed, args.repeat)
    rows = [
        ("events in workload", f"{r['events']:,}", ""),
        (
            "parse + validate (1 core)",
            f"{r['parse_events_per_s']:,.0f} events/s",
            f"{r['parse_events_per_s'] / REFERENCE_INGEST_EPS:.1f}x reference ingest",
        ),
        (
            "route a 256-event batch (1 core)",
            f"{r['route_events_per_s']:,.0f} events/s",
            f"{r['route_events_per_s'] / REFERENCE_INGEST_EPS:.1f}x reference ingest",
        ),
        (
            "entity logic + ONNX (1 core)",
            f"{r['entity_events_per_s']:,.0f} events/s",
            f"{r['entity_events_per_s'] / REFERENCE_ACTOR_EPS:.1f}x reference actor load",
        ),
        ("one ONNX score", f"{r['score_us']:.1f} us", ""),
        (
            "entity state p50 / max",
            f"{r['state_bytes_p50']:,} / {r['state_bytes_max']:,} bytes",
            f"budget {STATE_BUDGET_BYTES:,}",
        ),
        ("entity peak memory", f"{r['entity_peak_mib_per_1k_players']:.1f} MiB per 1k players", ""),
    ]
    width = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:>26}  {c}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "results": r,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "at": datetime.now(UTC).isoformat(),
        "args": vars(args) | {"out": str(args.out)},
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
