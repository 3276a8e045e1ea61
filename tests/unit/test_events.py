"""CloudEvents parsing: valid events route, unused types drop, bad input gets a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events import DATA_SCHEMAS, Dropped, PlayerEvent, Rejected, is_valid_player_id, parse
from shared.eventtypes import SPECS, EventType
from shared.signals import SignalEvent
from tests.helpers import NOW_MS, T0_MS, body, cloud_event


def test_valid_round_event_is_routed_with_metadata() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    result = parse(body(cloud_event(traceparent=tp)), now_ms=NOW_MS, partition="3", sequence=17)
    assert isinstance(result, PlayerEvent)
    assert result.player_id == "player-00042"
    assert result.time_ms == T0_MS
    assert (result.kind, result.type) == (EventType.ROUND, "round.completed")
    assert (result.a, result.b, result.ref) == (2.5, 0.0, None)  # stake, payout (shared.eventtypes)
    assert result.to_signal() == SignalEvent(
        id="e-1", kind=EventType.ROUND, t=T0_MS, a=2.5, b=0.0, tp=tp, p="3", s=17, src="/games/demo"
    )


def test_a_response_carries_its_action_id_and_whether_it_was_accepted() -> None:
    accepted = cloud_event(
        "action.responded", data={"actionId": "act-1", "response": "accepted"}, event_id="r-1"
    )
    dismissed = cloud_event(
        "action.responded", data={"actionId": "act-2", "response": "dismissed"}, event_id="r-2"
    )
    one, two = (parse(body(e), now_ms=NOW_MS) for e in (accepted, dismissed))
    assert isinstance(one, PlayerEvent) and isinstance(two, PlayerEvent)
    assert (one.kind, one.a, one.ref) == (EventType.RESPONDED, 1.0, "act-1")
    assert (two.a, two.ref) == (0.0, "act-2")


def test_every_event_type_has_one_spec_and_a_schema_the_parser_uses() -> None:
    assert sorted(s.code for s in SPECS) == list(EventType)
    assert set(DATA_SCHEMAS) == {s.name for s in SPECS}


@pytest.mark.parametrize("event_type", ["page.viewed", "heartbeat"])
def test_unused_types_are_dropped_not_rejected(event_type: str) -> None:
    assert parse(body(cloud_event(event_type, data={})), now_ms=NOW_MS) == Dropped(event_type)


def _reason(raw: bytes, **kw: int) -> str:
    result = parse(raw, now_ms=NOW_MS, **kw)
    assert isinstance(result, Rejected), result
    return result.reason


def test_malformed_json() -> None:
    assert _reason(b'{"specversion": "1.0", ') == "malformed_json"


def test_not_utf8() -> None:
    raw = body(cloud_event()).replace(b"slots", b"sl\xffts")
    assert _reason(raw) == "not_utf8"


def test_missing_field() -> None:
    ev = cloud_event()
    del ev["source"]
    assert _reason(body(ev)) == "missing_field"


def test_wrong_type_in_data() -> None:
    ev = cloud_event(data={"game": "slots", "stake": "lots", "payout": 0})
    assert _reason(body(ev)) == "invalid_data"


def test_negative_amount_is_invalid() -> None:
    assert _reason(body(cloud_event("deposit.made", data={"amount": -5}))) == "invalid_data"


def test_bad_response_value() -> None:
    ev = cloud_event("action.responded", data={"actionId": "a", "response": "maybe"})
    assert _reason(body(ev)) == "invalid_data"


def test_wrong_specversion() -> None:
    ev = cloud_event()
    ev["specversion"] = "0.3"
    assert _reason(body(ev)) == "invalid_envelope"


def test_time_without_zone() -> None:
    ev = cloud_event()
    ev["time"] = "2026-11-21T10:00:00"
    assert _reason(body(ev)) == "invalid_time"


@pytest.mark.parametrize(
    "player", ["", "a" * 129, "player/1", "player 1", "p?x=1", "spieler-ü", "p#1", "p1\n", "p1\r\n", "\np1"]
)
def test_invalid_player_ids(player: str) -> None:
    assert _reason(body(cloud_event(player=player))) == "invalid_player_id"


def test_oversized() -> None:
    ev = cloud_event(data={"game": "x" * 200, "stake": 1, "payout": 0})
    assert _reason(body(ev), max_bytes=100) == "oversized"


def test_far_future_time() -> None:
    ev = cloud_event(at_ms=NOW_MS + 3600_000)
    result = parse(body(ev), now_ms=NOW_MS)
    assert isinstance(result, Rejected) and result.reason == "future_time"
    assert result.player_id == "player-00042" and result.event_id == "e-1"


def test_small_clock_skew_is_accepted() -> None:
    assert isinstance(parse(body(cloud_event(at_ms=NOW_MS + 60_000)), now_ms=NOW_MS), PlayerEvent)


def test_a_malformed_traceparent_is_ignored_not_fatal() -> None:
    """W3C Trace Context: a traceparent that does not parse is ignored; the event starts a new trace."""
    ev = cloud_event()
    ev["traceparent"] = "not-a-traceparent"
    result = parse(body(ev), now_ms=NOW_MS)
    assert isinstance(result, PlayerEvent) and result.traceparent is None


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"]
)
def test_json_content_types_with_parameters_are_valid(content_type: str) -> None:
    ev = cloud_event()
    ev["datacontenttype"] = content_type
    assert isinstance(parse(body(ev), now_ms=NOW_MS), PlayerEvent)


@pytest.mark.parametrize("content_type", ["text/plain", "application/jsonx", "application/xml"])
def test_non_json_content_types_are_rejected(content_type: str) -> None:
    ev = cloud_event()
    ev["datacontenttype"] = content_type
    assert _reason(body(ev)) == "invalid_envelope"


def test_an_optout_with_null_data_is_an_optout() -> None:
    ev = cloud_event("player.optout", data={})
    ev["data"] = None
    result = parse(body(ev), now_ms=NOW_MS)
    assert isinstance(result, PlayerEvent) and result.type == "player.optout"


def test_a_trailing_newline_is_refused_everywhere_a_player_id_or_traceparent_is_checked() -> None:
    """Python's ``$`` matches before a final newline: the patterns end in ``\\Z``."""
    assert not is_valid_player_id("p1\n") and is_valid_player_id("p1")
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    ok = parse(body(cloud_event(traceparent=tp)), now_ms=NOW_MS)
    bad = parse(body(cloud_event(traceparent=tp + "\n")), now_ms=NOW_MS)
    assert not isinstance(ok, Rejected) and not isinstance(bad, Rejected)
    assert ok.traceparent == tp and bad.traceparent is None


@pytest.mark.parametrize("player", [".", "..", "...", "_", "-", ":", "._-:"])
def test_player_ids_without_a_letter_or_digit_are_rejected(player: str) -> None:
    """The Durable client's HTTP client normalises '.' and '..' out of the entity URL."""
    assert _reason(body(cloud_event(player=player))) == "invalid_player_id"


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_deeply_nested_json_is_a_dead_letter_not_an_exception(depth: int) -> None:
    ev = body(cloud_event())
    nested = ev[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    result = parse(nested, now_ms=NOW_MS, max_bytes=10 * depth + len(ev) + 100)
    assert isinstance(result, Rejected) and result.reason in ("unparseable", "malformed_json")


@given(
    st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=128).filter(lambda p: any(c.isalnum() for c in p))
)
def test_any_allowed_player_id_is_accepted(player: str) -> None:
    assert isinstance(parse(body(cloud_event(player=player)), now_ms=NOW_MS), PlayerEvent)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse(raw, now_ms=NOW_MS), Rejected | Dropped | PlayerEvent)


def test_json_array_is_rejected() -> None:
    assert _reason(json.dumps([cloud_event()]).encode()) == "invalid_envelope"


def test_a_batch_with_reinjected_events_claims_only_the_runs_it_holds() -> None:
    """Re-injected parked events are read at their first position: the batch's runs must not span
    the sequence numbers between them and the batch's own (those may be parked still)."""
    from shared.routing import Message, route

    msgs = [Message(body(cloud_event(event_id=f"n{i}")), "3", 5000 + i) for i in range(3)]
    msgs += [Message(body(cloud_event(event_id=f"o{i}")), "3", 100 + i) for i in range(2)]
    msgs += [Message(body(cloud_event(event_id="x")), "7", 42)]
    assert route(msgs, now_ms=NOW_MS).ranges() == [("3", 100, 101), ("3", 5000, 5002), ("7", 42, 42)]
