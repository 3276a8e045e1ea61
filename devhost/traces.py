"""Show one event's trace as text: what an operator would see in Application Insights.

``--show-trace`` installs an SDK TracerProvider with an in-memory exporter
before the run, then prints the span tree of one event that led to an action
(from the producer's traceparent down to the Cosmos write), with durations.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ATTRS_SHOWN = {
    "cloudevents.event_type": "type",
    "messaging.destination.partition.id": "partition",
    "messaging.eventhubs.sequence_number": "seq",
    "pi.model.version": "model",
    "pi.policy.outcome": "outcome",
    "pi.policy.rejected_by": "rejected_by",
    "pi.action.id": "action",
}


def install() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


WRITE_SPAN = "cosmos.create action"  # shared/tracing.py: every outbox write, whatever it holds
# What a write holds, by its document id's prefix (shared/entity: ``act-`` an action,
# ``sup-`` the hour's aggregate of suppressed decisions), and the name it is shown under.
WRITTEN = {"act-": ("cosmos.create action", "action"), "sup-": ("cosmos.create suppressed", "suppressed")}


def _written(span: ReadableSpan) -> tuple[str, str]:
    doc_id = str((span.attributes or {}).get("pi.action.id", ""))
    return next(
        (shown for prefix, shown in WRITTEN.items() if doc_id.startswith(prefix)), (span.name, "action")
    )


def action_trace(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans of a trace that began at a producer and reaches a Cosmos write: the first whose
    write is an action, else the first whose write is a suppressed decision."""
    by_trace: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        if s.context is not None:
            by_trace.setdefault(s.context.trace_id, []).append(s)
    fallback: list[ReadableSpan] = []
    for members in by_trace.values():
        writes = [s for s in members if s.name == WRITE_SPAN]
        ingest = [s for s in members if s.name == "ingest.event"]
        if not writes or not ingest or ingest[0].parent is None:
            continue
        if any(_written(w)[1] == "action" for w in writes):
            return members
        fallback = fallback or members
    return fallback


def _value(value: object) -> str:
    """An attribute as text: a sequence (the rules that said no) as a comma list, not a tuple."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def render(members: Sequence[ReadableSpan]) -> str:
    if not members:
        return "  (no action in this run had a traceparent on its trigger event)"
    ids = {s.context.span_id for s in members if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in members:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)
    first = members[0]
    assert first.context is not None
    lines = [f"  trace {first.context.trace_id:032x}"]
    root_parent = next((s.parent for s in members if s.name == "ingest.event" and s.parent), None)
    if root_parent is not None:
        lines.append(f"  (producer span {root_parent.span_id:016x})")

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x.start_time or 0):
            ms = ((s.end_time or 0) - (s.start_time or 0)) / 1e6
            name, held = _written(s) if s.name == WRITE_SPAN else (s.name, "action")
            attrs = ", ".join(
                (held if key == "pi.action.id" else label) + "=" + _value(s.attributes[key])
                for key, label in ATTRS_SHOWN.items()
                if s.attributes and key in s.attributes
            )
            lines.append(f"  {'  ' * depth}{name:<{28 - 2 * depth}} {ms:9.2f} ms  {attrs}")
            assert s.context is not None
            walk(s.context.span_id, depth + 1)

    walk(None, 1)
    return "\n".join(lines)
