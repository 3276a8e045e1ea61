"""Index a FunctionApp the way the Python worker does: functions, binding metadata, settings.

The worker walks ``app.get_functions()``, reads each function's
``get_function_json()`` and its settings (``get_settings_dict("retry_policy")``)
and loads ``get_user_function()`` through its load-time checks
(``devhost.functions_host.worker.load``). The devhost does the same and refuses, with the
worker's own error, a function the worker would refuse, and with a message
naming the function, any binding it cannot emulate.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from devhost.functions_host import worker
from devhost.functions_host.settings import _timespan_seconds, resolve

TRIGGERS = frozenset(
    {
        "eventHubTrigger",
        "entityTrigger",
        "httpTrigger",
        "queueTrigger",
        "orchestrationTrigger",  # devhost/durable/engine.py
        "activityTrigger",
        "timerTrigger",  # devhost/storage/timers.py
    }
)
SUPPORTED = TRIGGERS | {"durableClient", "http"}


class UnsupportedBinding(RuntimeError):
    """The app uses a binding the devhost cannot run."""


@dataclass(frozen=True)
class RetryPolicy:
    """A function-level retry policy (``@app.retry``), as the host applies it to triggers."""

    strategy: str
    max_retry_count: int
    delay_s: float = 0.0
    minimum_s: float = 0.0
    maximum_s: float = 0.0

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any] | None) -> RetryPolicy | None:
        if not raw:
            return None
        strategy = str(raw.get("strategy", ""))
        count = int(raw.get("max_retry_count", 0))
        if count < -1:
            raise UnsupportedBinding(f"retry policy max_retry_count must be >= -1, got {count}")
        if strategy == "fixed_delay":
            return cls(strategy, count, delay_s=_timespan_seconds(str(raw["delay_interval"])))
        if strategy == "exponential_backoff":
            return cls(
                strategy,
                count,
                minimum_s=_timespan_seconds(str(raw["minimum_interval"])),
                maximum_s=_timespan_seconds(str(raw["maximum_interval"])),
            )
        raise UnsupportedBinding(f"unknown retry strategy {strategy!r}")

    def delays(self) -> Iterator[float]:
        """Seconds to wait before each retry; endless for an unlimited count (-1), as in the host.

        Exponential back-off as webjobs-sdk ``RandomizedExponentialBackoffStrategy``: the first
        retry waits the minimum, retry n >= 2 waits ``min + U(0.8, 1.2) * 2**(n-2) * min``, and
        once that reaches the maximum every later retry waits the maximum.
        """
        attempt = 0
        capped = False
        while self.max_retry_count < 0 or attempt < self.max_retry_count:
            attempt += 1
            if self.strategy == "fixed_delay":
                yield self.delay_s
            elif attempt == 1:
                yield min(self.minimum_s, self.maximum_s)
            elif capped:
                yield self.maximum_s
            else:
                delay = self.minimum_s + random.uniform(0.8, 1.2) * 2 ** (attempt - 2) * self.minimum_s
                capped = delay >= self.maximum_s
                yield min(delay, self.maximum_s)


@dataclass
class FunctionSpec:
    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    fn: worker.LoadedFunction
    retry: RetryPolicy | None = None
    client_args: list[str] = field(default_factory=list)
    # Set when the app runs in worker processes: the host's dispatch of one invocation to them.
    remote: Callable[[str, worker.Invocation], Awaitable[worker.Datum | None]] | None = None

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    async def invoke(self, inv: worker.Invocation, executor: Executor | None = None) -> worker.Datum | None:
        """Run the function the way the worker does (decode, context, call, encode): in this process,
        or in the next worker process when the app runs in several (``devhost.functions_host.processes``)."""
        if self.remote is not None:
            return await self.remote(self.name, inv)
        return await worker.invoke(self.fn, inv, executor)


@dataclass
class AppIndex:
    functions: dict[str, FunctionSpec]

    def dispatch_to(
        self, remote: Callable[[str, worker.Invocation], Awaitable[worker.Datum | None]] | None
    ) -> None:
        """Run every function through ``remote`` (worker processes), or in this process (None)."""
        for spec in self.functions.values():
            spec.remote = remote

    def by_trigger(self, trigger_type: str) -> list[FunctionSpec]:
        return [f for f in self.functions.values() if f.trigger_type == trigger_type]

    def entity(self, name: str) -> FunctionSpec:
        for f in self.by_trigger("entityTrigger"):
            if str(f.trigger.get("entityName", f.name)).lower() == name.lower():
                return f
        raise KeyError(f"no entity function named {name!r}")


def _get_functions(app: Any) -> list[Any]:
    """``app.get_functions()``, callable more than once per process.

    The worker calls it once; a second call re-validates the names against the
    names the first call recorded (``functions_bindings``) and fails. The
    devhost (and a test session) may index the same app several times, so the
    call gets a clean slate and the app's record is put back afterwards.
    """
    saved = getattr(app, "functions_bindings", None)
    app.functions_bindings = None
    try:
        return list(app.get_functions())
    finally:
        app.functions_bindings = saved


def index_app(app: Any, settings: Mapping[str, str]) -> AppIndex:
    """Index ``app`` (an ``azure.functions.FunctionApp``), resolving ``%Setting%`` expressions."""
    functions: dict[str, FunctionSpec] = {}
    for fn in _get_functions(app):
        name = fn.get_function_name()
        raw_bindings = json.loads(fn.get_function_json())["bindings"]
        bindings = []
        for b in raw_bindings:
            btype = b.get("type")
            if btype not in SUPPORTED:
                raise UnsupportedBinding(
                    f"function {name!r}: binding type {btype!r} is not supported by the devhost "
                    f"(supported: {', '.join(sorted(SUPPORTED))}); run it with `func start` instead"
                )
            bindings.append(
                {
                    k: resolve(v, settings, f"function {name!r} binding {b.get('name')!r}")
                    for k, v in b.items()
                }
            )
        triggers = [b for b in bindings if b["type"] in TRIGGERS]
        if len(triggers) != 1:
            raise UnsupportedBinding(f"function {name!r} must have exactly one trigger, has {len(triggers)}")
        trigger = triggers[0]
        if trigger["type"] == "eventHubTrigger" and str(trigger.get("cardinality", "ONE")).upper() != "MANY":
            raise UnsupportedBinding(
                f"function {name!r}: the devhost runs Event Hubs triggers with cardinality MANY only"
            )
        functions[name] = FunctionSpec(
            name=name,
            trigger=trigger,
            bindings=bindings,
            # The worker's load-time checks: a function it would refuse is refused here too.
            fn=worker.load(name, fn.get_user_function(), bindings),
            retry=RetryPolicy.from_settings(fn.get_settings_dict("retry_policy")),
            client_args=[b["name"] for b in bindings if b["type"] == "durableClient"],
        )
    return AppIndex(functions)
