"""``make reliability``: break the pipeline on purpose, on the devhost, and count what was lost or doubled.

Every scenario runs the real function app through the devhost against one real Cosmos DB server
that outlives the devhost (so actions written before a kill are still there) and a fresh
database per scenario. The expected actions come from an uninterrupted run of the same seeded
workload (``baseline``); a scenario *loses* an action when an expected id is missing, and
*doubles* one when two documents exist for the same (player, trigger event, action type).

    python -m scripts.reliability [--quick] [--out reports]

Writes ``reliability.json`` (figures per scenario and totals), ``reliability.png`` (a timeline
of the outage scenarios: actions written, write failures, the fault window) and prints a
summary. Loopback only; bounded in time. ``--quick`` is the size ``make test`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from devhost.db import DevDB
from devhost.functions_host.settings import ROOT
from devhost.host import Host, RunConfig, RunResult
from devhost.servers.faultproxy import FaultProxy
from devhost.servers.node import CosmosServer
from shared.config import CosmosSettings
from shared.entity import load_state
from shared.store import ActionStore

KEY = "cmVsaWFiaWxpdHk="  # any base64: cosmosdb-server checks no signatures


@dataclass(frozen=True)
class Size:
    players: int
    duration_s: float
    partitions: int
    kills: int
    fuzz_cases: int
    hostile_events: int
    outage_s: float  # the Cosmos process stopped
    blackhole_s: float  # every request swallowed: longer than the store's retries (4 x 5 s read timeout)


FULL = Size(
    players=100,
    duration_s=2 * 86400,
    partitions=8,
    kills=10,
    fuzz_cases=10_000,
    hostile_events=100_000,
    outage_s=12.0,
    blackhole_s=28.0,
)
QUICK = Size(
    players=25,
    duration_s=86400,
    partitions=4,
    kills=2,
    fuzz_cases=400,
    hostile_events=5_000,
    outage_s=3.0,
    blackhole_s=6.0,
)
SEED = 29  # not a seed the tests use


@dataclass
class Scenario:
    name: str
    passed: bool = False
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lab:
    """The shared Cosmos server, the workload and the expected actions."""

    size: Size
    work: Path
    cosmos: CosmosServer
    start_ms: int
    expected: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # baseline: events applied per player
    faults: dict[str, int] = field(default_factory=dict)
    timelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: int = 0
    crashes: int = 0
    replays: int = 0
    dead_lettered: int = 0
    parked: int = 0

    @property
    def endpoint(self) -> str:
        return self.cosmos.endpoint

    def settings_file(self, name: str, endpoint: str | None = None, **values: str) -> Path:
        path = self.work / f"{name}.settings.json"
        base = {
            "COSMOS_ENDPOINT": endpoint or self.endpoint,
            "COSMOS_KEY": KEY,
            "COSMOS_DATABASE": name,
            "OUTBOX_REMINDER_SECONDS": "1",
            **values,
        }
        path.write_text(json.dumps({"IsEncrypted": False, "Values": base}), encoding="utf-8")
        return path

    def config(self, name: str, **overrides: Any) -> RunConfig:
        return RunConfig(
            players=self.size.players,
            duration_s=self.size.duration_s,
            seed=SEED,
            start_ms=self.start_ms,
            partitions=self.size.partitions,
            state_dir=self.work / name,
            fresh=overrides.pop("fresh", True),
            report_dir=None,
            settings_path=overrides.pop("settings_path", None) or self.settings_file(name),
            progress=False,
            bad_share=0.002,
            **overrides,
        )

    def run(self, name: str, **overrides: Any) -> RunResult:
        result = Host(self.config(name, **overrides)).run()
        self.events += int(result.summary["events_processed"])
        self.dead_lettered += sum(result.summary["pipeline"]["dead_lettered"].values())
        self.parked += int(result.summary["pipeline"].get("batches_parked", 0))
        return result

    def store(self, name: str) -> ActionStore:
        return ActionStore(CosmosSettings(endpoint=self.endpoint, database=name, key=KEY))

    def actions(self, name: str) -> list[dict[str, Any]]:
        """The actions sent. Suppressed-decision records are analytics, bounded while Cosmos is down
        (MAX_SUPPRESSED_PENDING), so they are not part of the no-loss guarantee."""
        query = "SELECT * FROM c WHERE c.status != 'suppressed'"
        return list(self.store(name).actions.query_items(query, enable_cross_partition_query=True))

    def applied(self, name: str) -> dict[str, int]:
        """Events each player's entity has applied (its lifetime counter), from the devhost state."""
        db = DevDB(self.work / name)
        try:
            out = {}
            for key, raw in db.entity_states("player").items():
                out[key] = load_state(json.loads(raw)).agg.events
            return out
        finally:
            db.close()

    def compare(self, name: str, scenario: Scenario) -> None:
        """Lost and duplicated actions against the baseline, and players whose entity applied a
        different number of events than in the baseline (an event applied twice, or missed)."""
        applied = self.applied(name)
        off = sorted(p for p in set(self.counts) | set(applied) if self.counts.get(p) != applied.get(p))
        rows = self.actions(name)
        found = {r["id"] for r in rows}
        keys: dict[tuple[str, str, str], int] = {}
        for r in rows:
            k = (r["playerId"], r["triggerEventId"], r["type"])
            keys[k] = keys.get(k, 0) + 1
        lost = sorted(set(self.expected) - found)
        scenario.figures.update(
            expected=len(self.expected),
            written=len(found),
            lost=len(lost),
            duplicated=sum(n - 1 for n in keys.values() if n > 1),
            unexpected=len(found - set(self.expected)),
            players_with_events_applied_twice_or_missed=len(off),
        )
        scenario.passed = not lost and scenario.figures["duplicated"] == 0 and not off


def _timeline(result: RunResult) -> list[dict[str, Any]]:
    from devhost import report

    return report.timeseries(result.samples, result.backlog)


# -- scenarios ---------------------------------------------------------------------------------------
def baseline(lab: Lab) -> Scenario:
    s = Scenario("baseline")
    result = lab.run("baseline")
    lab.expected = {r["id"]: (r["playerId"], r["triggerEventId"], r["type"]) for r in lab.actions("baseline")}
    lab.counts = lab.applied("baseline")
    s.figures = {"events": result.summary["events_processed"], "actions": len(lab.expected)}
    s.passed = len(lab.expected) > 0
    return s


def kills(lab: Lab) -> Scenario:
    """SIGKILL the devhost at random points of one run, resume each time, until it completes."""
    s = Scenario("sigkill")
    name = "kills"
    settings = lab.settings_file(name)
    args = [
        sys.executable,
        "-m",
        "devhost",
        "run",
        "--players",
        str(lab.size.players),
        "--duration",
        str(int(lab.size.duration_s)),
        "--seed",
        str(SEED),
        "--start",
        _iso(lab.start_ms),
        "--partitions",
        str(lab.size.partitions),
        "--bad-share",
        "0.002",
        "--state-dir",
        str(lab.work / name),
        "--settings",
        str(settings),
        "--no-report",
        "--no-progress",
        "--rate",
        "4000",
    ]
    rng = random.Random(SEED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([*args, "--fresh", "--duration", "1"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    killed = 0
    first = True
    while killed < lab.size.kills:
        proc = subprocess.Popen(
            [*args, *(["--fresh"] if first else [])],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        first = False
        time.sleep(rng.uniform(1.5, 4.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed += 1
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lab.crashes += killed
    lab.compare(name, s)
    s.figures.update(kills=killed, final_exit=done.returncode)
    s.passed = s.passed and done.returncode == 0 and killed >= min(lab.size.kills, 1)
    return s


def replay(lab: Lab) -> Scenario:
    """Run, then reset every checkpoint and run again: the whole log is delivered twice."""
    s = Scenario("full replay")
    lab.run("replay")
    db = DevDB(lab.work / "replay")
    with db._tx():
        db.conn.execute("DELETE FROM checkpoints")
    db.close()
    again = lab.run("replay", fresh=False)
    lab.replays += 1
    lab.compare("replay", s)
    s.figures["replayed_events"] = again.summary["events_processed"]
    s.figures["duplicates_ignored"] = again.summary["pipeline"]["duplicates"]
    return s


def _during(action: Callable[[], None], after_s: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(after_s), action()), daemon=True)
    t.start()
    return t


def outage_stopped(lab: Lab) -> Scenario:
    """The Cosmos server process is stopped (SIGSTOP) mid-run, then resumed."""
    s = Scenario("cosmos outage: process stopped")
    pid = lab.cosmos.proc.pid if lab.cosmos.proc else 0
    window: list[float] = []

    def outage() -> None:
        window.append(time.monotonic())
        os.kill(pid, signal.SIGSTOP)
        time.sleep(lab.size.outage_s)
        os.kill(pid, signal.SIGCONT)
        window.append(time.monotonic())

    t = _during(outage, 2.0)
    result = lab.run("outage_stop", rate=3000, drain_reminders_s=180)
    t.join()
    lab.faults["process_stopped_s"] = lab.faults.get("process_stopped_s", 0) + int(lab.size.outage_s)
    lab.compare("outage_stop", s)
    window = [round(w - result.started_monotonic, 2) for w in window]  # on the samples' clock
    s.figures.update(
        outage_s=lab.size.outage_s, write_failures=result.summary["pipeline"]["write_failures"], window=window
    )
    lab.timelines["outage_stop"] = _timeline(result) + [{"window": window}]
    return s


@contextlib.contextmanager
def _proxy(lab: Lab, **kw: Any) -> Iterator[FaultProxy]:
    with FaultProxy(urlparse(lab.endpoint).port or 0, status=503, failures=0, **kw) as proxy:
        yield proxy


def outage_blackhole(lab: Lab) -> Scenario:
    """A proxy in front of Cosmos swallows every request (no answer) for a while."""
    s = Scenario("cosmos outage: blackhole")
    with _proxy(lab) as proxy:
        window: list[float] = []

        def outage() -> None:
            window.append(time.monotonic())
            proxy.blackhole.set()
            time.sleep(lab.size.blackhole_s)
            proxy.blackhole.clear()
            window.append(time.monotonic())

        settings = lab.settings_file("outage_hole", endpoint=f"http://127.0.0.1:{proxy.port}")
        t = _during(outage, 2.0)
        result = lab.run("outage_hole", rate=3000, drain_reminders_s=180, settings_path=settings)
        t.join()
    lab.faults["blackhole_s"] = lab.faults.get("blackhole_s", 0) + int(lab.size.blackhole_s)
    lab.compare("outage_hole", s)
    window = [round(w - result.started_monotonic, 2) for w in window]  # on the samples' clock
    s.figures.update(write_failures=result.summary["pipeline"]["write_failures"], window=window)
    lab.timelines["outage_hole"] = _timeline(result) + [{"window": window}]
    return s


def fault_mix(lab: Lab) -> Scenario:
    """35% throttling (429 with a retry-after), 5% 503 and 5% dropped connections on every write."""
    s = Scenario("faults 35% 429 / 5% 503 / 5% resets")
    with _proxy(lab, mix={429: 0.35, 503: 0.05, 0: 0.05}, seed=SEED, retry_after_ms=5) as proxy:
        settings = lab.settings_file("faults", endpoint=f"http://127.0.0.1:{proxy.port}")
        result = lab.run("faults", drain_reminders_s=300, settings_path=settings)
        by_status = dict(proxy.faults_by_status)
    for status, n in by_status.items():
        kind = {429: "throttled_429", 503: "unavailable_503", 0: "connection_reset"}[status]
        lab.faults[kind] = lab.faults.get(kind, 0) + n
    lab.compare("faults", s)
    s.figures.update(faults=by_status, write_failures=result.summary["pipeline"]["write_failures"])
    return s


def parked(lab: Lab) -> Scenario:
    """Every Cosmos write fails for a while: a batch is parked, the partition moves on; re-injected
    after the outage, everything is written."""
    s = Scenario("deterministic failure: parked and re-injected")
    from devhost.storage.parked import reinject

    with _proxy(lab, retry_after_ms=1) as proxy:
        proxy.failures_left = 10**9
        settings = lab.settings_file(
            "parked", endpoint=f"http://127.0.0.1:{proxy.port}", INGEST_PARK_AFTER_RETRIES="2"
        )
        first = lab.run("parked", retry_delay_scale=0.001, settings_path=settings)
    back = reinject(lab.work / "parked")
    second = lab.run("parked", fresh=False, drain_reminders_s=300)
    lab.compare("parked", s)
    s.figures.update(
        parked=first.summary["pipeline"]["batches_parked"],
        reinjected_batches=back.batches,
        reinjected_events=back.events,
        after=second.summary["pipeline"]["batches_parked"],
    )
    s.passed = s.passed and s.figures["parked"] > 0 and back.batches == s.figures["parked"]
    return s


def erasure(lab: Lab) -> Scenario:
    """Erase players while a full replay is in flight; afterwards nothing of theirs is anywhere."""
    s = Scenario("erasure during traffic, then replay")
    lab.run("erasure")
    store = lab.store("erasure")
    players = sorted({r["playerId"] for r in lab.actions("erasure")})[:3]
    db = DevDB(lab.work / "erasure")
    with db._tx():
        db.conn.execute("DELETE FROM checkpoints")
    db.close()

    def erase() -> None:
        db2 = DevDB(lab.work / "erasure")
        for p in players:  # what DELETE /api/players/{id} enqueues: an erase operation on the entity
            db2.enqueue("player", p, "erase", json.dumps({"requested": True}), int(time.time() * 1000))
        db2.close()

    t = _during(erase, 0.5)
    lab.run("erasure", fresh=False, drain_reminders_s=60)
    t.join()
    lab.replays += 1
    left: dict[str, int] = {}
    for p in players:
        actions = store.player_actions(p)
        dls = list(
            store.deadletters.query_items(
                "SELECT c.id FROM c WHERE CONTAINS(c.rawPreview, @p)",
                parameters=[{"name": "@p", "value": p}],
                enable_cross_partition_query=True,
            )
        )
        own = list(
            store.deadletters.query_items(
                "SELECT c.id FROM c WHERE c.playerId = @p",
                parameters=[{"name": "@p", "value": p}],
                partition_key=p,
            )
        )
        left[p] = len(actions) + len(dls) + len(own)
    s.figures = {"erased_players": len(players), "documents_left": sum(left.values())}
    s.passed = bool(players) and sum(left.values()) == 0
    return s


def poison(lab: Lab) -> Scenario:
    """Hypothesis-generated bodies and CloudEvent fields through the real ingest, beside valid events."""
    s = Scenario("poison input (hypothesis)")
    from scripts.reliability_cases import fuzz_ingest

    figures = fuzz_ingest(lab.endpoint, KEY, "poison", lab.size.fuzz_cases)
    s.figures = figures
    s.passed = (
        figures["raised"] == 0 and figures["neighbours_lost"] == 0 and figures["bad_not_dead_lettered"] == 0
    )
    lab.dead_lettered += figures["dead_lettered"]
    return s


def hostile(lab: Lab) -> Scenario:
    """One player sends a flood: the state stays bounded, the per-event time stays flat."""
    s = Scenario("hostile player")
    from scripts.reliability_cases import flood_one_player

    s.figures = flood_one_player(lab.size.hostile_events)
    s.passed = s.figures["state_bytes_max"] <= 16_384 and s.figures["cpu_ratio_last_to_first"] <= 2.0
    return s


SCENARIOS: list[Callable[[Lab], Scenario]] = [
    baseline,
    kills,
    replay,
    outage_stopped,
    outage_blackhole,
    fault_mix,
    parked,
    erasure,
    poison,
    hostile,
]


def _iso(ms: int) -> str:
    from shared.timeutil import iso_ms

    return iso_ms(ms)


def plot(lab: Lab, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("outage_stop", "outage_hole") if n in lab.timelines]
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(10, 3.5 * max(1, len(names))), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=False):
        rows = [r for r in lab.timelines[name] if "t" in r]
        window = next((r["window"] for r in lab.timelines[name] if "window" in r), [])
        t = [r["t"] for r in rows]
        ax.plot(t, [sum(r["actions_per_s"].values()) for r in rows], label="actions decided / s")
        ax.plot(t, [r["events_per_s"] / 100 for r in rows], label="events in / s (÷100)")
        ax.plot(t, [r["queued_operations"] or 0 for r in rows], label="entity queue")
        if len(window) == 2:
            ax.axvspan(window[0], window[1], color="red", alpha=0.15, label="fault")
        ax.set_title(name)
        ax.legend(loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the run started")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.reliability", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the small size make test runs")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where reliability.json/.png go")
    p.add_argument("--only", nargs="*", default=None, help="run only these scenarios (function names)")
    args = p.parse_args(argv)
    size = QUICK if args.quick else FULL
    scenarios = [f for f in SCENARIOS if args.only is None or f.__name__ in args.only or f is baseline]
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        cosmos = CosmosServer()
        cosmos.start()
        try:
            start_ms = int(time.time() * 1000) - int(size.duration_s * 1000) - 60_000
            lab = Lab(size, Path(tmp), cosmos, start_ms)
            results = []
            for fn in scenarios:
                began = time.monotonic()
                sc = fn(lab)
                sc.figures["seconds"] = round(time.monotonic() - began, 1)
                print(f"  {'PASS' if sc.passed else 'FAIL'}  {sc.name}: {sc.figures}", flush=True)
                results.append(sc)
        finally:
            cosmos.stop()
    report = {
        "size": "quick" if args.quick else "full",
        "seed": SEED,
        "events": lab.events,
        "crashes": lab.crashes,
        "replays": lab.replays,
        "faults": lab.faults,
        "fuzz_cases": next((s.figures.get("cases", 0) for s in results if s.name.startswith("poison")), 0),
        "dead_lettered": lab.dead_lettered,
        "parked": lab.parked,
        "lost": sum(int(s.figures.get("lost", 0)) for s in results),
        "duplicated": sum(int(s.figures.get("duplicated", 0)) for s in results),
        "scenarios": [{"name": s.name, "passed": s.passed, "figures": s.figures} for s in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reliability.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot(lab, args.out / "reliability.png")
    ok = all(s.passed for s in results)
    print(
        f"\n  events {report['events']:,}, crashes {report['crashes']}, replays {report['replays']}, "
        f"faults {report['faults']}, fuzz cases {report['fuzz_cases']:,}, "
        f"dead-lettered {report['dead_lettered']:,}, "
        f"parked {report['parked']}, lost {report['lost']}, duplicated {report['duplicated']}"
    )
    print(
        f"  {sum(s.passed for s in results)} passed, {sum(not s.passed for s in results)} failed"
        f"  ->  {args.out / 'reliability.json'}, {args.out / 'reliability.png'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
