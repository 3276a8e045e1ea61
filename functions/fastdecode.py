"""A guarded fast path for the worker's Event Hubs trigger decode (docs/platform.md, "Trigger decode").

Before the ingest function runs, the Python worker decodes the trigger batch with azure.functions'
``EventHubTriggerConverter``. For every event it parses ``SystemPropertiesArray[i].EnqueuedTimeUtc``
with ``_BaseConverter._parse_datetime``, and the host writes that time without a zone
(``yyyy-MM-ddTHH:mm:ss[.FFFFFFF]``), so the library fails 12 UTC ``strptime`` formats before a local
one matches: 150-240 µs of CPU per event, most of what an event costs on the whole path.
``datetime.fromisoformat`` returns the same naive datetime (7-digit fractions truncated to 6, as the
library truncates them) in about 0.1 µs.

The app installs the fast path at import (``function_app.py``). Both the real worker and the devhost
take the converter registry from the imported ``azure.functions`` module, so replacing the class
attribute is seen by both. The guard:

- it answers only the shape the host writes (ASCII digits, 0-7 fraction digits, no zone); any other
  string, and any string ``fromisoformat`` refuses, goes to the library's own parser (same result,
  same exception);
- at install it checks itself against the library's parser on a corpus of host-shaped strings and
  stays off, logged, if they ever disagree, or if the library's internals it relies on moved;
- ``WORKER_FAST_DECODE=false`` turns it off.

``status()`` says whether it is on and why not (the health endpoint and the bench report it).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

SETTING = "WORKER_FAST_DECODE"
# What the host writes: Json.NET's default DateTime format for a DateTimeKind.Utc value stripped of
# its kind (EventHubTriggerBindingStrategy sets EnqueuedTime.DateTime), trailing fraction zeros trimmed.
HOST_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,7})?", re.ASCII)
_ISO_PREFIX = 26  # "YYYY-MM-DDTHH:MM:SS." + 6 digits: the library keeps 6 fraction digits

Parser = Callable[[Any], Any]


@dataclass
class Status:
    installed: bool = False
    reason: str = "not installed"
    checked: int = 0  # corpus strings compared with the library at install
    fallbacks: int = 0  # calls answered by the library's parser since install


_status = Status()
_original: Any = None  # the converter class's own attribute before install (a classmethod)
_target: type | None = None  # the converter it is installed on


def status() -> Status:
    return _status


def _off(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("0", "false", "no", "off")


def host_corpus() -> list[str]:
    """Host-shaped ``EnqueuedTimeUtc`` strings: every fraction length 0-7 with the host's trailing
    zeros trimmed, around edges (epoch, leap day, year and month ends, midnight, far years)."""
    bases = [
        datetime(1970, 1, 1, 0, 0, 0),
        datetime(2000, 2, 29, 23, 59, 59),
        datetime(2024, 12, 31, 23, 59, 59),
        datetime(2026, 3, 1, 0, 0, 0),
        datetime(2026, 12, 4, 16, 54, 42),
        datetime(1, 1, 1, 0, 0, 0),
        datetime(9999, 12, 31, 23, 59, 59),
    ]
    fractions = ["", "1", "05", "123", "4567", "00001", "999999", "1234567", "9999999", "0000001", "5"]
    out: list[str] = []
    for i, base in enumerate(bases):
        for j, frac in enumerate(fractions):
            t = base + timedelta(minutes=(i * 7 + j) % 3) if base.year < 9999 else base
            out.append(t.isoformat(timespec="seconds") + (f".{frac}" if frac else ""))
    return out


def refused_corpus() -> list[Any]:
    """Strings the fast path must hand to the library (other shapes, zones, bad dates)."""
    return [
        "2026-12-04T16:54:42Z",
        "2026-12-04T16:54:42.123Z",
        "2026-12-04T16:54:42+00:00",
        "2026-12-04T16:54:42.5-00:00",
        "12/04/2026 16:54:42Z",
        "12/04/2026T16:54:42",
        "2026-02-30T00:00:00",
        "2026-12-04T24:00:00",
        "2026-12-04T16:54:42.12345678",
        "2026-12-04 16:54:42",
        "２０２６-12-04T16:54:42",
        "",
        None,
    ]


def _compare(fast: Parser, slow: Parser, strings: Iterable[Any]) -> tuple[int, str | None]:
    """How many strings agree; the first disagreement, described, or None."""
    n = 0
    for s in strings:
        n += 1
        try:
            want: Any = slow(s)
        except Exception as exc:  # the library's error is part of its answer
            want = type(exc)
        try:
            got: Any = fast(s)
        except Exception as exc:
            got = type(exc)
        same = type(want) is type(got) and want == got
        if same and isinstance(want, datetime):
            same = want.tzinfo == got.tzinfo
        if not same:
            return n, f"{s!r}: library {want!r}, fast path {got!r}"
    return n, None


def _make_fast(library: Parser) -> Parser:
    match = HOST_TIME.fullmatch
    parse = datetime.fromisoformat
    st = _status

    def fast(value: Any) -> Any:
        if type(value) is str and match(value):
            try:
                return parse(value[:_ISO_PREFIX])
            except ValueError:
                pass  # e.g. 2026-02-30: the library raises its own error
        st.fallbacks += 1
        return library(value)

    return fast


def install(env: Mapping[str, str] | None = None, converter: type | None = None) -> Status:
    """Install the fast path on the Event Hubs trigger converter (idempotent); returns the status."""
    global _original, _status, _target
    env = os.environ if env is None else env
    if converter is None:
        from azure.functions.eventhub import EventHubTriggerConverter

        converter = EventHubTriggerConverter
    if _status.installed:
        return _status
    if _off(env.get(SETTING)):
        _status = Status(False, f"turned off by {SETTING}")
        log.info("worker decode fast path off: %s", _status.reason)
        return _status
    library = getattr(converter, "_parse_datetime", None)
    own = converter.__dict__.get("_parse_datetime")
    # What it relies on: the converter parses each EnqueuedTimeUtc through one classmethod
    # `_parse_datetime(str)` that it inherits (azure/functions/meta.py, eventhub.py
    # decode_multiple_events); if that moved, replacing it would change nothing or the wrong thing.
    if library is None or not callable(library) or (own is not None and not isinstance(own, classmethod)):
        _status = Status(False, "azure.functions internals moved: no inherited _parse_datetime classmethod")
        log.warning("worker decode fast path off: %s", _status.reason)
        return _status
    candidate = Status(True, "installed")
    _status = candidate
    fast = _make_fast(library)
    checked, disagreement = _compare(fast, library, host_corpus() + refused_corpus())
    if disagreement is not None:
        _status = Status(False, f"disagrees with the library: {disagreement}", checked)
        log.warning("worker decode fast path off: %s", _status.reason)
        return _status
    candidate.checked, candidate.fallbacks = checked, 0
    _original, _target = own, converter
    converter._parse_datetime = classmethod(lambda cls, value: fast(value))  # type: ignore[attr-defined]
    log.info("worker decode fast path on (checked against the library on %d strings)", checked)
    return _status


def uninstall() -> None:
    """Put the library's parser back on the converter it was installed on (tests)."""
    global _original, _status, _target
    if _status.installed and _target is not None:
        if _original is None:
            delattr(_target, "_parse_datetime")
        else:
            _target._parse_datetime = _original  # type: ignore[attr-defined]
    _original, _target = None, None
    _status = Status()
