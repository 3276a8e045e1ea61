"""Dedupe keyed on CloudEvents source + id (state version 3), and version 2 states still read.

CloudEvents: ``source`` + ``id`` identify an event. A producer that rebuilds an event on retry
re-stamps its ``time``; the re-send must be applied once, while the same id from another source is
another event. A state stored by the version 2 code (32-bit CRC-32 hashes of the id alone, matched
at the same event time) must still load and dedupe what it had seen.
"""

from __future__ import annotations

import base64
import zlib

import msgspec

from shared import entity as st
from shared import signals
from shared.entity import codec
from shared.entity.dedupe import LEGACY_LIMIT, id_hash
from shared.entity.model import EVICTED_ID_RING, STATE_VERSION
from shared.eventtypes import EventType
from shared.policy import ACTION_TYPES, Rules
from tests.helpers import T0_MS

RULES = Rules()


def never(_features: object) -> st.Scored:
    """Scores nothing: these tests are about which events are applied, not what is decided."""
    return st.Scored(dict.fromkeys(ACTION_TYPES, 0.0), [], [])


def ev(
    event_id: str, t: int, source: str | None = "/games/demo", seq: int | None = None
) -> signals.SignalEvent:
    return signals.SignalEvent(
        event_id, EventType.ROUND, t, 2, 0, p=None if seq is None else "0", s=seq, src=source
    )


def apply(state: st.PlayerState, *events: signals.SignalEvent) -> st.Effects:
    payload = signals.encode(signals.Signal(list(events)))
    return st.apply(state, "p1", "events", payload, T0_MS + 3600_000, never, RULES, "m-test")


def test_a_re_sent_event_with_a_re_stamped_time_is_applied_once() -> None:
    state = st.PlayerState()
    assert apply(state, ev("e-1", T0_MS)).accepted == 1
    # The producer rebuilt the event on retry: new time (later and earlier), no sequence overlap.
    again = apply(state, ev("e-1", T0_MS + 7_000, seq=500), ev("e-1", T0_MS - 3_000, seq=501))
    assert (again.accepted, again.duplicates) == (0, 2)
    assert state.agg.events == 1 and len(state.buf) == 1


def test_the_same_id_from_another_source_is_another_event() -> None:
    state = st.PlayerState()
    eff = apply(state, ev("e-1", T0_MS, "/games/a"), ev("e-1", T0_MS, "/games/b"))
    assert (eff.accepted, eff.duplicates) == (2, 0)
    assert id_hash("e-1", "/games/a") != id_hash("e-1", "/games/b")
    # The key is length-prefixed: moving characters between source and id makes another key.
    assert id_hash("b/e-1", "/games/a") != id_hash("e-1", "/games/a/b")


def test_a_re_stamped_re_send_of_an_evicted_event_is_a_duplicate_while_in_the_ring() -> None:
    state = st.PlayerState()
    apply(state, *(ev(f"e{i}", T0_MS + i * 1000) for i in range(st.MAX_BUFFER_EVENTS + 5)))
    assert len(state.buf) == st.MAX_BUFFER_EVENTS and len(state.evicted) == 5
    eff = apply(state, ev("e0", T0_MS + 999_000_000 % st.MAX_BUFFER_AGE_MS))
    assert eff.duplicates == 1 and eff.accepted == 0


def test_keys_are_64_bit_and_never_read_as_a_version_2_hash() -> None:
    keys = {id_hash(f"e{i}", "/s") for i in range(2000)}
    assert len(keys) == 2000
    assert all(LEGACY_LIMIT <= k < 2**64 for k in keys)
    assert max(keys) >= 2**63  # the whole 64-bit range is used, not 32 bits
    assert id_hash("e-1") == id_hash("e-1", "")  # an event without a source (a v1 signal)


def _version_2_state() -> str:
    """What the version 2 code stored for a player who had seen e-1 at T0 and e-2 at T0+1 s, and
    evicted e-0: its own encoding (msgpack of the fields, ids as CRC-32), not this code's encoder."""
    stored = {
        "v": 2,
        "buf": [
            [T0_MS, int(EventType.ROUND), 2, 0, zlib.crc32(b"e-1")],
            [T0_MS + 1000, int(EventType.ROUND), 2, 0, zlib.crc32(b"e-2")],
        ],
        "seen": {"0": [[1, 3]]},
        "qhi": {"0": T0_MS + 1500},
        "evicted": [zlib.crc32(b"e-0")],
        "agg": {"first_ms": T0_MS - 1000, "events": 3},
        "newest_ms": T0_MS + 1000,
    }
    return "p2:" + base64.b64encode(msgspec.msgpack.encode(stored)).decode("ascii")


def test_a_version_2_state_still_loads_and_dedupes_what_it_had_seen() -> None:
    state = codec.decode(_version_2_state())
    assert state.v == STATE_VERSION and [e.h for e in state.buf] == [zlib.crc32(b"e-1"), zlib.crc32(b"e-2")]
    assert state.v2_keys and not st.PlayerState().v2_keys
    # The version 2 rule still holds for its entries: same id, same time -> a duplicate, whatever
    # the source (version 2 did not keep it); the evicted id at the buffer's oldest instant too.
    eff = apply(state, ev("e-1", T0_MS), ev("e-2", T0_MS + 1000, None), ev("e-0", T0_MS))
    assert (eff.accepted, eff.duplicates) == (0, 3)
    # New events are applied and get 64-bit keys next to the old ones; the state stores as v3.
    eff = apply(state, ev("e-3", T0_MS + 2000), ev("e-3", T0_MS + 9000))
    assert (eff.accepted, eff.duplicates) == (1, 1)
    assert state.buf[-1].h == id_hash("e-3", "/games/demo") >= LEGACY_LIMIT
    reloaded = codec.decode(codec.encode(state))
    assert reloaded == state and reloaded.v == STATE_VERSION
    # ... and after the reload the old entries still dedupe by the old rule, the new by the new.
    eff = apply(reloaded, ev("e-2", T0_MS + 1000), ev("e-3", T0_MS + 60_000))
    assert (eff.accepted, eff.duplicates) == (0, 2)


def test_a_state_from_a_newer_version_is_refused_not_misread() -> None:
    newer = st.PlayerState(v=STATE_VERSION + 1)
    raw = "p2:" + base64.b64encode(msgspec.msgpack.encode(newer)).decode("ascii")
    try:
        codec.decode(raw)
    except codec.StateError as exc:
        assert "newer" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a state of a newer version was read")


def test_the_version_2_rule_stops_once_its_entries_are_gone() -> None:
    state = codec.decode(_version_2_state())
    later = T0_MS + st.MAX_BUFFER_AGE_MS + 60_000  # both old entries fall out of the 6 h buffer
    apply(state, *(ev(f"n{i}", later + i) for i in range(st.MAX_BUFFER_EVENTS + EVICTED_ID_RING + 1)))
    assert all(e.h >= LEGACY_LIMIT for e in state.buf) and all(k >= LEGACY_LIMIT for k in state.evicted)
    apply(state, ev("next", later + 10_000))
    assert not state.v2_keys  # a version 3 state from here on: the old rule is not even looked at
    assert "v2_keys" not in msgspec.msgpack.decode(base64.b64decode(codec.encode(state)[3:]))
