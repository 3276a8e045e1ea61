"""The circuit breaker: per failure kind, half-open, bursts counted once, only the probe ends a probe."""

from __future__ import annotations

import pytest

from shared.breaker import Backoff, Breaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make() -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker({"unavailable": Backoff(1.0, 30.0), "throttled": Backoff(0.5, 5.0)}, clock), clock


def test_a_failure_opens_briefly_then_one_probe_closes_it() -> None:
    b, clock = make()
    b.failure(b.before(), "unavailable")
    with pytest.raises(CircuitOpen):
        b.before()
    clock.t += 1.0
    probe = b.before()
    assert probe.probe
    with pytest.raises(CircuitOpen):  # one probe at a time
        b.before()
    b.success(probe)
    assert b.open_kinds == [] and not b.before().probe


def test_a_failed_probe_doubles_the_wait_up_to_the_cap() -> None:
    b, clock = make()
    b.failure(b.before(), "unavailable")
    waits = []
    for _ in range(8):
        start = clock.t
        while True:
            try:
                probe = b.before()
                break
            except CircuitOpen:
                clock.t += 0.25
        waits.append(clock.t - start)
        b.failure(probe, "unavailable")
    assert waits[:3] == [1.0, 2.0, 4.0] and max(waits) == 30.0


def test_calls_in_flight_when_it_opened_do_not_lengthen_the_wait() -> None:
    b, clock = make()
    tickets = [b.before() for _ in range(8)]  # eight concurrent calls, all about to fail
    for t in tickets:
        b.failure(t, "unavailable")
    clock.t += 1.0
    assert b.before().probe  # still the first (1 s) wait, not 2**7 s


def test_only_the_probe_ends_the_probe() -> None:
    b, clock = make()
    straggler = b.before()
    b.failure(b.before(), "unavailable")
    clock.t += 1.0
    probe = b.before()
    b.release(straggler)  # a 400 of a call from before: says nothing, and must not let a 2nd probe in
    with pytest.raises(CircuitOpen):
        b.before()
    b.success(probe)


def test_throttling_waits_less_than_unavailability() -> None:
    b, clock = make()
    b.failure(b.before(), "throttled")
    clock.t += 0.5
    assert b.before().probe


def test_the_erasure_index_keeps_its_keys_when_a_refresh_fails() -> None:
    from shared.erasure import REFRESH_S, ErasureIndex, erased_key, mentions

    clock = Clock()
    loads = [[erased_key("eve")]]

    def load() -> list[str]:
        if not loads:
            raise ConnectionError("cosmos down")
        return loads.pop()

    index = ErasureIndex(load, clock)
    assert index.concerns_erased("eve", b"") and not index.concerns_erased("bob", b'{"x": "bob"}')
    clock.t += REFRESH_S
    assert index.concerns_erased(None, b'{"subject": "eve", "oops": ')  # stale keys, not an exception
    assert not mentions(b'{"amount": 42}', "42") and mentions(b'{"subject": "42"}', "42")
    with pytest.raises(ConnectionError):
        ErasureIndex(load, clock).keys()  # never loaded: the batch must retry


def test_erasure_keys_are_their_own_and_do_not_follow_the_telemetry_key(monkeypatch) -> None:
    from shared import telemetry
    from shared.erasure import erased_key

    monkeypatch.delenv("ERASURE_HASH_KEY", raising=False)
    plain = erased_key("eve")
    telemetry.set_hash_key("rotated-telemetry-key")
    try:
        assert erased_key("eve") == plain  # a telemetry key rotation leaves erasure records matching
    finally:
        telemetry.set_hash_key(None)
    monkeypatch.setenv("ERASURE_HASH_KEY", "k1")
    assert erased_key("eve") != plain and "eve" not in erased_key("eve")
