"""Read the app's own OpenTelemetry instruments (shared.telemetry) through an in-memory reader.

The devhost installs an SDK MeterProvider with an InMemoryMetricReader before
the app records anything and rebinds the app's instruments to it, so the
summary shows exactly what Application Insights would receive. The global
MeterProvider can be set once per process, so the provider is a process-wide
singleton and each run reports the difference between two snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from shared import telemetry

# Event-to-action latency spans milliseconds (a hot pipeline) to minutes (a backlog).
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1,
    2,
    5,
    10,
    20,
    35,
    50,
    75,
    100,
    150,
    200,
    300,
    400,
    500,
    650,
    800,
    1000,
    1250,
    1500,
    1750,
    2000,
    2500,
    3000,
    4000,
    5000,
    6500,
    8000,
    10000,
    15000,
    20000,
    30000,
    45000,
    60000,
    120000,
    300000,
)

Attrs = frozenset[tuple[str, Any]]


@dataclass
class Histogram:
    count: int
    total: float
    bounds: tuple[float, ...]
    buckets: list[int]
    max: float = 0.0

    def minus(self, other: Histogram | None) -> Histogram:
        if other is None:
            return self
        return Histogram(
            self.count - other.count,
            self.total - other.total,
            self.bounds,
            [a - b for a, b in zip(self.buckets, other.buckets, strict=True)],
            self.max,
        )

    def add(self, other: Histogram) -> Histogram:
        return Histogram(
            self.count + other.count,
            self.total + other.total,
            self.bounds,
            [a + b for a, b in zip(self.buckets, other.buckets, strict=True)],
            max(self.max, other.max),
        )

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation."""
        if self.count <= 0:
            return None
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                lo = self.bounds[i - 1] if i > 0 else 0.0
                hi = self.bounds[i] if i < len(self.bounds) else max(self.max, lo)
                return lo + (hi - lo) * max(0.0, rank - seen) / n
            seen += n
        return self.max


@dataclass
class Snapshot:
    """Cumulative values of every pipeline instrument, per attribute set."""

    sums: dict[str, dict[Attrs, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Attrs, Histogram]] = field(default_factory=dict)

    def minus(self, base: Snapshot) -> Snapshot:
        out = Snapshot()
        for name, points in self.sums.items():
            before = base.sums.get(name, {})
            out.sums[name] = {a: v - before.get(a, 0.0) for a, v in points.items()}
        for name, hpoints in self.histograms.items():
            hbefore = base.histograms.get(name, {})
            out.histograms[name] = {a: h.minus(hbefore.get(a)) for a, h in hpoints.items()}
        return out

    def total(self, name: str) -> int:
        return int(sum(self.sums.get(name, {}).values()))

    def by(self, name: str, key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for attrs, v in self.sums.get(name, {}).items():
            label = str(dict(attrs).get(key, "-"))
            out[label] = out.get(label, 0) + int(v)
        return {k: v for k, v in sorted(out.items()) if v}

    def histogram(self, name: str) -> Histogram | None:
        merged: Histogram | None = None
        for h in self.histograms.get(name, {}).values():
            merged = h if merged is None else merged.add(h)
        return merged


class Metrics:
    """The process-wide in-memory reader of the app's meter."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.reader = reader

    def snapshot(self) -> Snapshot:
        snap = Snapshot()
        telemetry.tally.flush()  # the counts the app summed in process since the last flush
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                if sm.scope.name != telemetry.METER_NAME:
                    continue
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        attrs: Attrs = frozenset((point.attributes or {}).items())
                        if isinstance(point, NumberDataPoint):
                            snap.sums.setdefault(metric.name, {})[attrs] = float(point.value)
                        elif isinstance(point, HistogramDataPoint):
                            snap.histograms.setdefault(metric.name, {})[attrs] = Histogram(
                                point.count,
                                point.sum,
                                tuple(point.explicit_bounds),
                                list(point.bucket_counts),
                                float(point.max) if point.count else 0.0,
                            )
        return snap


_metrics: Metrics | None = None


def install() -> Metrics:
    """Install the devhost's MeterProvider (once per process) and rebind the app's instruments."""
    global _metrics
    if _metrics is None:
        current = metrics.get_meter_provider()
        if isinstance(current, MeterProvider):
            raise RuntimeError(
                "an OpenTelemetry MeterProvider is already installed in this process; the devhost must "
                "install its own before the app records (is APPLICATIONINSIGHTS_CONNECTION_STRING set?)"
            )
        reader = InMemoryMetricReader()
        view = View(
            instrument_name=telemetry.ACTION_LATENCY,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BOUNDS_MS),
        )
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader], views=[view]))
        _metrics = Metrics(reader)
    telemetry.rebind()
    return _metrics


def counts_table(snap: Snapshot) -> Mapping[str, Any]:
    """The pipeline's figures for the summary, all read from the instruments."""
    latency = snap.histogram(telemetry.ACTION_LATENCY)
    return {
        "events_in": snap.total(telemetry.EVENTS_IN),
        "dropped": snap.by(telemetry.EVENTS_DROPPED, "type"),
        "dead_lettered": snap.by(telemetry.EVENTS_DEADLETTERED, "reason"),
        "signals": snap.total(telemetry.SIGNALS),
        "entity_operations": snap.total(telemetry.ENTITY_OPERATIONS),
        "duplicates": snap.total(telemetry.EVENTS_DUPLICATE),
        "scored": snap.total(telemetry.SCORES),
        "actions": snap.by(telemetry.ACTIONS, "type"),
        "suppressed": snap.by(telemetry.ACTIONS_SUPPRESSED, "type"),
        "outcomes": snap.by(telemetry.OUTCOMES, "result"),
        "rejections": snap.by(telemetry.REJECTIONS, "rule"),
        "write_failures": snap.total(telemetry.ACTION_WRITE_FAILURES),
        "batches_parked": snap.total(telemetry.BATCHES_PARKED),
        "latency_ms": {
            "count": latency.count if latency else 0,
            "p50": latency.quantile(0.5) if latency else None,
            "p99": latency.quantile(0.99) if latency else None,
        },
    }
