"""Process-wide, lazily built dependencies of the function handlers.

Created on first use and reused for the life of the worker: the
settings, the Cosmos store and the ONNX model. Nothing here runs at import
time, so indexing the app never needs a setting or a network.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared import config
from shared.policy import Rules


@functools.cache
def settings() -> config.Settings:
    return config.load()


@functools.cache
def rules() -> Rules:
    s = settings()
    held = any(share > 0 for share in s.holdout_share.values())
    if held and s.holdout_salt == config.DEFAULT_HOLDOUT_SALT and config.hosted_in_azure():
        # The default key is public (this repository): anyone can compute who is held out when.
        logging.getLogger(__name__).warning(
            "HOLDOUT_SALT is the public default: set a private value so that the holdout groups "
            "cannot be computed from outside (changing it re-draws every group)"
        )
    return Rules(
        daily_cap=s.daily_action_cap,
        disabled=s.disabled_action_types,
        stale_after_ms=int(s.stale_after_seconds * 1000),
        holdout_share=s.holdout_share,
        holdout_key=s.holdout_salt,
    )


def reset() -> None:
    """Forget cached dependencies (tests and the devhost change the environment)."""
    settings.cache_clear()
    rules.cache_clear()
    from shared import parking, reminders, store

    store.reset_store()
    parking.reset()
    reminders.reset()


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


_clock: Callable[[], int] = _wall_clock_ms


def now_ms() -> int:
    """The handlers' one clock (epoch milliseconds, UTC): the wall clock unless a test injects one."""
    return _clock()


@contextmanager
def clock(fn: Callable[[], int]) -> Iterator[None]:
    """Run the handlers on an injected clock (tests: a fixed instant, so no result depends on today)."""
    global _clock
    saved, _clock = _clock, fn
    try:
        yield
    finally:
        _clock = saved
