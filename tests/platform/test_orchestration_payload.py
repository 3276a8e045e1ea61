"""The orchestrationTrigger payload is ``JObject.ToString()``: indented JSON (extension
``OutOfProcOrchestrationShim`` / ``OrchestrationContextToString``). The devhost writes it with msgspec's
C encoder; the text must be what ``json.dumps(indent=2, ensure_ascii=False)`` writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.durable.history import EventType, execution_started, history_event, indented, trigger_json

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(), st.floats(allow_nan=False)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_indented_writes_what_json_writes(value: object) -> None:
    assert indented(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_an_episode_payload_is_the_indented_json_of_its_history() -> None:
    started = execution_started(
        NOW, "inst-é☃", "exec", "deliver_signals", json.dumps('[["p1", {"a": 1}]]'), None, 0
    )
    events = [
        history_event(EventType.ORCHESTRATOR_STARTED, at=NOW),
        started,
        history_event(
            EventType.EVENT_SENT, 0, at=NOW, InstanceId="@player@p1", Name="op", Input='{"op":"x"}'
        ),
        history_event(EventType.ORCHESTRATOR_COMPLETED, at=NOW),
    ]
    text = trigger_json("inst-é☃", started, None, events)
    assert json.loads(text)["history"] == json.loads(json.dumps(events))
    payload = json.loads(text)
    assert text == json.dumps(payload, indent=2, ensure_ascii=False)
