"""One trace per event, from the producer to the Cosmos write.

A CloudEvent's W3C ``traceparent`` is the parent of the ``ingest.event`` span;
the player's ``signal`` span is a child of its newest event's ingest span; the
entity's ``entity.event`` span (per trigger) is a child of whichever of those the
signal event names in ``tc``; ``model.score`` runs inside it, and the
``cosmos.create`` of a resulting action continues it from the outbox. Without
an OpenTelemetry SDK configured all of this is the API's no-op tracer.

Only events that arrive with a ``traceparent`` are traced: the producer decides
(and samples) what is worth following, and the other ~95% of events cost no
span, no context injection and no extra bytes in the signal. Metrics count all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import telemetry
from shared.entity.decide import Scored, Scorer, TriggerHook
from shared.eventtypes import name_of
from shared.features import Features
from shared.signals import SignalEvent

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


def event_attributes(ev: SignalEvent, player: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {PLAYER: player, EVENT_ID: ev.id, EVENT_TYPE: _type_name(ev.kind)}
    if ev.p is not None:
        attrs[PARTITION] = ev.p
    if ev.s is not None:
        attrs[SEQUENCE] = ev.s
    return attrs


def _type_name(kind: int) -> str:
    try:
        return name_of(kind)
    except KeyError:
        return str(kind)


class IngestSpans:
    """Spans of one trigger batch: one per routed traced event, one per player's signal.

    The signal events are never edited: ``signal`` yields the player's events with ``tc`` (the
    span the entity continues) set on the traced ones, for the caller to encode inside the span.
    """

    def __init__(self, signals: Mapping[str, list[SignalEvent]], start_ns: int, hash_ids: bool) -> None:
        self._tracer = telemetry.tracer()
        self._hash = hash_ids
        self._spans: list[Span] = []
        # Per player: (index in its events, trace context to continue) of each traced event.
        self._traced: dict[str, list[tuple[int, str | None]]] = {}
        self._last: dict[str, Span] = {}
        for player_id, events in signals.items():
            ref: str | None = None
            for i, ev in enumerate(events):
                if not ev.tp:
                    continue
                ref = ref or telemetry.player_ref(player_id, hash_ids)
                span = self._tracer.start_span(
                    "ingest.event",
                    context=context_from(ev.tp),
                    kind=SpanKind.CONSUMER,
                    start_time=start_ns,
                    attributes=event_attributes(ev, ref),
                )
                self._traced.setdefault(player_id, []).append((i, traceparent_of(span)))
                self._spans.append(span)
                self._last[player_id] = span

    @contextmanager
    def signal(self, player_id: str, events: list[SignalEvent]) -> Iterator[list[SignalEvent]]:
        """Span the signal to one entity; the player's newest traced event continues through it."""
        traced = self._traced.get(player_id)
        if not traced:
            yield events
            return
        out = list(events)
        for i, tc in traced:
            out[i] = msgspec.structs.replace(out[i], tc=tc)
        with self._tracer.start_as_current_span(
            "signal Player",
            context=trace.set_span_in_context(self._last[player_id]),
            kind=SpanKind.PRODUCER,
            attributes={PLAYER: telemetry.player_ref(player_id, self._hash), "pi.signal.events": len(events)},
        ) as span:
            tc = traceparent_of(span)
            if tc:
                last = traced[-1][0]
                out[last] = msgspec.structs.replace(out[last], tc=tc)
            yield out

    def end(self) -> None:
        for span in self._spans:
            span.end()


class _TriggerSpan:
    def __init__(self, span: Span | None) -> None:
        self._span = span
        self.traceparent = traceparent_of(span) if span is not None else None

    def outcome(self, action_type: str | None, rejections: Mapping[str, int]) -> None:
        if self._span is None:
            return
        self._span.set_attribute(OUTCOME, action_type or "none")
        if rejections:
            self._span.set_attribute(REJECTED_BY, sorted(rejections))


_UNTRACED = _TriggerSpan(None)


@contextmanager
def _trigger_span(
    ev: SignalEvent, player_ref: Callable[[], str], model_version: str
) -> Iterator[_TriggerSpan]:
    parent = ev.tc or ev.tp
    if not parent:
        yield _UNTRACED
        return
    attrs = event_attributes(ev, player_ref())
    attrs[MODEL_VERSION] = model_version
    with telemetry.tracer().start_as_current_span(
        "entity.event", context=context_from(parent), attributes=attrs
    ) as span:
        yield _TriggerSpan(span)


def trigger_hook(player_ref: Callable[[], str], model_version: str) -> TriggerHook:
    """A span around each trigger of a traced event: its parent is the ingest or signal span.
    (A partial of one module-level context manager: nothing is decorated per operation.)"""
    return functools.partial(_trigger_span, player_ref=player_ref, model_version=model_version)


def traced_scorer(scorer: Scorer, model_version: str) -> Scorer:
    """Scoring as a child span, only inside a traced trigger."""
    tracer = telemetry.tracer()

    def score(features: Features) -> Scored:
        if not trace.get_current_span().is_recording():
            return scorer(features)
        with tracer.start_as_current_span("model.score", attributes={MODEL_VERSION: model_version}):
            return scorer(features)

    return score


@contextmanager
def write_span(traceparent: str | None, action_id: str, player_ref: Callable[[], str]) -> Iterator[Span]:
    """The action's write, continuing its decision's trace (a no-op span for untraced actions)."""
    if not traceparent:
        yield trace.INVALID_SPAN
        return
    with telemetry.tracer().start_as_current_span(
        "cosmos.create action",
        context=context_from(traceparent),
        kind=SpanKind.CLIENT,
        attributes={ACTION_ID: action_id, PLAYER: player_ref(), "db.system": "cosmosdb"},
    ) as span:
        yield span
