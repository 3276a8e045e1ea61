"""A circuit breaker per failure kind, half-open: a probe after a short, growing wait.

One failed request must not make every write fail fast for half a minute (a 12 s
outage became 30 s of refused writes), and a throttled request says nothing about
whether the service is reachable. So each failure kind has its own wait, which
starts short and doubles while failures continue; when it has passed, exactly one
call is let through as a probe: its success closes every kind, its failure opens
that kind again with a longer wait. Meanwhile the other callers fail fast.

Calls that were already in flight when the breaker opened report their failures
too; they keep it open but do not lengthen the wait (only a failure of a call
that started after the last change does), so a burst of concurrent failures
counts as one. Only the probe itself ends the probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class CircuitOpen(RuntimeError):
    """The service failed moments ago and the probe is not due: not tried now."""


@dataclass(frozen=True)
class Backoff:
    first_s: float
    max_s: float


# unreachable: connection refused/reset, timeouts; unavailable: 5xx; throttled: 429s the SDK's
# own retries could not ride out.
KINDS: dict[str, Backoff] = {
    "unreachable": Backoff(1.0, 30.0),
    "unavailable": Backoff(1.0, 30.0),
    "throttled": Backoff(0.5, 5.0),
}


@dataclass(frozen=True)
class Ticket:
    """What ``before`` hands a call: the breaker's generation then, and whether it is the probe."""

    generation: int
    probe: bool


@dataclass
class _Kind:
    failures: int = 0
    open_until: float = 0.0


class Breaker:
    def __init__(
        self, kinds: dict[str, Backoff] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kinds = dict(KINDS if kinds is None else kinds)
        self._state = {k: _Kind() for k in self.kinds}
        self._clock = clock
        self._lock = threading.Lock()
        self._probing = False
        self._generation = 0

    @property
    def open_kinds(self) -> list[str]:
        return [k for k, s in self._state.items() if s.failures]

    def before(self) -> Ticket:
        """Raise CircuitOpen, or let the call through (as the half-open probe when one is due)."""
        with self._lock:
            failing = [s for s in self._state.values() if s.failures]
            if not failing:
                return Ticket(self._generation, probe=False)
            if self._probing or self._clock() < max(s.open_until for s in failing):
                raise CircuitOpen("the service failed moments ago; the next probe is not due yet")
            self._probing = True
            return Ticket(self._generation, probe=True)

    def success(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.probe:
                self._probing = False
            if any(s.failures for s in self._state.values()):
                self._generation += 1
            for s in self._state.values():
                s.failures, s.open_until = 0, 0.0

    def failure(self, ticket: Ticket, kind: str) -> None:
        with self._lock:
            if ticket.probe:
                self._probing = False
            s = self._state[kind]
            if ticket.generation != self._generation and s.failures:
                return  # started before the breaker opened: already counted
            self._generation += 1
            s.failures += 1
            backoff = self.kinds[kind]
            s.open_until = self._clock() + min(backoff.max_s, backoff.first_s * 2 ** (s.failures - 1))

    def release(self, ticket: Ticket) -> None:
        """The call ended without telling anything about the service (e.g. a refusal of one request)."""
        with self._lock:
            if ticket.probe:
                self._probing = False
