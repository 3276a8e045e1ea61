"""The run's summary table (stdout), and its report: JSON + a PNG of actions/s and latency over time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devhost.metrics import Snapshot
from shared import telemetry


def timeseries(
    samples: Sequence[tuple[float, Snapshot]], backlog: Sequence[tuple[int, int]] = ()
) -> list[dict[str, Any]]:
    """Per sampling interval: events/s, dead letters/s, actions/s by type, latency p50/p99 of the
    actions written in it, and the backlog at its end (events not yet checkpointed, entity
    operations queued)."""
    rows = []
    for i, ((t0, a), (t1, b)) in enumerate(zip(samples, samples[1:], strict=False)):
        dt = t1 - t0
        if dt <= 0:
            continue
        d = b.minus(a)
        lat = d.histogram(telemetry.ACTION_LATENCY)
        rows.append(
            {
                "t": round(t1, 3),
                "events_per_s": round(d.total(telemetry.EVENTS_IN) / dt, 2),
                "deadletters_per_s": round(d.total(telemetry.EVENTS_DEADLETTERED) / dt, 2),
                "backlog_events": backlog[i + 1][0] if i + 1 < len(backlog) else None,
                "queued_operations": backlog[i + 1][1] if i + 1 < len(backlog) else None,
                "actions_per_s": {k: round(v / dt, 3) for k, v in d.by(telemetry.ACTIONS, "type").items()},
                "latency_p50_ms": lat.quantile(0.5) if lat and lat.count else None,
                "latency_p99_ms": lat.quantile(0.99) if lat and lat.count else None,
            }
        )
    return rows


def _fmt_ms(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def table(summary: dict[str, Any]) -> str:
    p = summary["pipeline"]
    h = summary["host"]
    lines = [("events in", f"{p['events_in']:,}")]
    lines.append(("dropped by the funnel", f"{sum(p['dropped'].values()):,}  {_kv(p['dropped'])}"))
    lines.append(("dead-lettered", f"{sum(p['dead_lettered'].values()):,}  {_kv(p['dead_lettered'])}"))
    listed = Path(summary.get("deadletters_file") or "")
    if listed.name and listed.is_file() and listed.stat().st_size > 0:  # not for an empty file
        lines.append(("dead letters listed in", str(listed)))
    lines.append(("signals", f"{p['signals']:,}"))
    lines.append(("entity operations", f"{p['entity_operations']:,}  (in {h['entity_batches']:,} batches)"))
    lines.append(("duplicate events", f"{p['duplicates']:,}"))
    lines.append(("scored", f"{p['scored']:,}"))
    lines.append(("actions", f"{sum(p['actions'].values()):,}  {_kv(p['actions'])}"))
    lines.append(("rejections by rule", _kv(p["rejections"]) or "-"))
    lat = p["latency_ms"]
    lines.append(
        (
            "event-to-action latency",
            f"p50 {_fmt_ms(lat['p50'])}, p99 {_fmt_ms(lat['p99'])} ({lat['count']:,} actions written)",
        )
    )
    lines.append(("action write failures", f"{p['write_failures']:,}"))
    lines.append(
        (
            "trigger batches",
            f"{h['batches']:,} ({h['retries']} retries, {p.get('batches_parked', 0)} parked, "
            f"{h['failed_batches']} failed, {h.get('redelivered_events', 0):,} events redelivered)",
        )
    )
    if h.get("entity_batch_failures"):
        lines.append(("entity batch failures", f"{h['entity_batch_failures']:,} (each delivered again)"))
    lines.append(
        (
            "events/s achieved",
            f"{summary['events_per_second']:,.0f} "
            f"({summary['events_processed']:,} events in {summary['wall_seconds']:.1f} s)",
        )
    )
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in lines)


def _kv(d: dict[str, int]) -> str:
    return ", ".join(f"{k}={v:,}" for k, v in d.items())


def write(
    report_dir: Path,
    summary: dict[str, Any],
    samples: Sequence[tuple[float, Snapshot]],
    backlog: Sequence[tuple[int, int]] = (),
    deadletters: Sequence[dict[str, Any]] = (),
) -> tuple[Path, Path, Path]:
    """The JSON report, the PNG, and every dead letter (reason, position, preview) as JSONL."""
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    series = timeseries(samples, backlog)
    dl_path = report_dir / f"deadletters-{stamp}.jsonl"
    dl_path.write_text("".join(json.dumps(row) + "\n" for row in deadletters), encoding="utf-8")
    json_path = report_dir / f"devhost-{stamp}.json"
    body = {**summary, "deadletters_file": str(dl_path), "timeseries": series}
    json_path.write_text(json.dumps(body, indent=2), encoding="utf-8")
    png_path = report_dir / f"devhost-{stamp}.png"
    _plot(series, png_path, summary)
    return json_path, png_path, dl_path


def _plot(series: list[dict[str, Any]], path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    t = [r["t"] for r in series]
    ax0.plot(t, [r["events_per_s"] for r in series], label="events in / s")
    ax0.plot(t, [r["deadletters_per_s"] for r in series], label="dead letters / s")
    ax0.set_ylabel("events / s")
    ax0.set_title(
        f"devhost run: {summary['events_processed']:,} events, {summary['events_per_second']:,.0f} events/s"
    )
    ax0.legend(loc="upper left")
    backlog = [
        (r["t"], r["backlog_events"], r["queued_operations"])
        for r in series
        if r["backlog_events"] is not None
    ]
    if backlog:
        ax0b = ax0.twinx()
        ax0b.plot([b[0] for b in backlog], [b[1] for b in backlog], "k--", label="backlog (events)")
        ax0b.plot([b[0] for b in backlog], [b[2] for b in backlog], "k:", label="entity queue (operations)")
        ax0b.set_ylabel("backlog")
        ax0b.legend(loc="upper right")
    types = sorted({k for r in series for k in r["actions_per_s"]})
    for atype in types:
        ax1.plot(t, [r["actions_per_s"].get(atype, 0.0) for r in series], label=atype)
    ax1.set_ylabel("actions / s")
    if types:
        ax1.legend(loc="upper right")
    for key, label in (("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")):
        pts = [(r["t"], r[key]) for r in series if r[key] is not None]
        if pts:
            ax2.plot([x for x, _ in pts], [y for _, y in pts], marker=".", label=label)
    ax2.set_ylabel("enqueued-to-action latency (ms)")
    ax2.set_xlabel("seconds since start")
    if ax2.get_lines():
        ax2.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
