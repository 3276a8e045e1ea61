"""One trace per event, from the producer to the Cosmos write.

A CloudEvent's W3C ``traceparent`` is the parent of the ``ingest.event`` span;
the player's ``signal`` span is a child of its newest event's ingest span; the
entity's ``entity.event`` span (per trigger) is a child of whichever of those the
signal event names in ``tc``; ``model.score`` runs inside it, and the
``cosmos.upsert`` of a resulting action continues it from the outbox. Without
an OpenTelemetry SDK configured all of this is the API's no-op tracer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import telemetry
from shared.state import Scorer, TriggerHook

_PROPAGATOR = TraceContextTextMapPropagator()

# Span attribute names (semantic-convention style, project namespace).
PLAYER = "pi.player"
PARTITION = "messaging.destination.partition.id"
SEQUENCE = "messaging.eventhubs.sequence_number"
EVENT_ID = "cloudevents.event_id"
EVENT_TYPE = "cloudevents.event_type"
MODEL_VERSION = "pi.model.version"
OUTCOME = "pi.policy.outcome"
REJECTED_BY = "pi.policy.rejected_by"
ACTION_ID = "pi.action.id"


def context_from(traceparent: str | None) -> otel_context.Context | None:
    """The parent context a W3C traceparent names (None: start a new trace)."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def traceparent_of(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def event_attributes(ev: Mapping[str, Any], player: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {PLAYER: player, EVENT_ID: str(ev.get("id")), EVENT_TYPE: str(ev.get("type"))}
    if ev.get("p") is not None:
        attrs[PARTITION] = str(ev["p"])
    if ev.get("s") is not None:
        attrs[SEQUENCE] = int(ev["s"])
    return attrs


class IngestSpans:
    """Spans of one trigger batch: one per routed event, one per player's signal."""

    def __init__(self, signals: Mapping[str, list[dict[str, Any]]], start_ns: int, hash_ids: bool) -> None:
        self._tracer = telemetry.tracer()
        self._hash = hash_ids
        self._spans: list[Span] = []
        self._last: dict[str, Span] = {}
        for player_id, events in signals.items():
            ref = telemetry.player_ref(player_id, hash_ids)
            for ev in events:
                span = self._tracer.start_span(
                    "ingest.event",
                    context=context_from(ev.get("tp")),
                    kind=SpanKind.CONSUMER,
                    start_time=start_ns,
                    attributes=event_attributes(ev, ref),
                )
                tc = traceparent_of(span)
                if tc:
                    ev["tc"] = tc
                self._spans.append(span)
                self._last[player_id] = span

    @contextmanager
    def signal(self, player_id: str, events: list[dict[str, Any]]) -> Iterator[None]:
        """Span the signal to one entity; the player's newest event continues through it."""
        parent = self._last.get(player_id)
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        ref = telemetry.player_ref(player_id, self._hash)
        with self._tracer.start_as_current_span(
            "signal Player",
            context=ctx,
            kind=SpanKind.PRODUCER,
            attributes={PLAYER: ref, "pi.signal.events": len(events)},
        ) as span:
            tc = traceparent_of(span)
            if tc and events:
                events[-1]["tc"] = tc
            yield

    def end(self) -> None:
        for span in self._spans:
            span.end()


class _TriggerSpan:
    def __init__(self, span: Span) -> None:
        self._span = span
        self.traceparent = traceparent_of(span)

    def outcome(self, action_type: str | None, rejections: Mapping[str, int]) -> None:
        self._span.set_attribute(OUTCOME, action_type or "none")
        if rejections:
            self._span.set_attribute(REJECTED_BY, sorted(rejections))


def trigger_hook(player_ref: str, model_version: str) -> TriggerHook:
    """A span around each trigger: its parent is the event's ingest or signal span."""
    tracer = telemetry.tracer()

    @contextmanager
    def hook(ev: Mapping[str, Any]) -> Iterator[_TriggerSpan]:
        attrs = event_attributes(ev, player_ref)
        attrs[MODEL_VERSION] = model_version
        with tracer.start_as_current_span(
            "entity.event", context=context_from(ev.get("tc") or ev.get("tp")), attributes=attrs
        ) as span:
            yield _TriggerSpan(span)

    return hook


def traced_scorer(scorer: Scorer, model_version: str) -> Scorer:
    tracer = telemetry.tracer()

    def score(vector: list[float]) -> tuple[Mapping[str, float], list[str]]:
        with tracer.start_as_current_span("model.score", attributes={MODEL_VERSION: model_version}):
            return scorer(vector)

    return score


@contextmanager
def write_span(traceparent: str | None, action_id: str, player_ref: str) -> Iterator[Span]:
    with telemetry.tracer().start_as_current_span(
        "cosmos.upsert action",
        context=context_from(traceparent),
        kind=SpanKind.CLIENT,
        attributes={ACTION_ID: action_id, PLAYER: player_ref, "db.system": "cosmosdb"},
    ) as span:
        yield span


WriteFn = Callable[[dict[str, Any]], None]
