"""Conformance: the worker's Event Hubs trigger decode, and the app's guarded fast path for it.

Sources: azure.functions 1.26.0 ``meta.py`` (``_BaseConverter._parse_datetime``: 12 UTC ``strptime``
formats tried before the 4 local ones; fractions past 6 digits stripped) and ``eventhub.py``
(``EventHubTriggerConverter.decode_multiple_events`` parses each ``SystemPropertiesArray[i]
.EnqueuedTimeUtc`` with ``cls._parse_datetime``); the host writes that time zone-less with trailing
fraction zeros trimmed (azure-sdk-for-net ``EventHubTriggerBindingStrategy.cs`` sets
``EnqueuedTime.DateTime``; azure-functions-host ``GrpcMessageConversionExtensions.cs`` serialises it
with Json.NET's defaults). The worker takes the converter from the imported ``azure.functions``
(azure-functions-python-worker ``bindings/meta.py`` ``get_binding_registry``), so a class attribute
installed by the app is what the worker calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter
from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.functions_host import bindings
from devhost.functions_host.bindings import HubEvent
from functions import fastdecode

# The library's own parser, whatever is installed: the classmethod the converter inherits from
# meta._BaseConverter, bound to the converter (function_app may have installed the fast path).
LIBRARY = meta._BaseConverter.__dict__["_parse_datetime"].__get__(None, EventHubTriggerConverter)


@pytest.fixture
def fast() -> Iterator[fastdecode.Status]:
    fastdecode.uninstall()
    status = fastdecode.install({})
    try:
        yield status
    finally:
        fastdecode.uninstall()
        fastdecode.install({})  # the app installs it at import; leave the process as the app left it


@pytest.fixture
def library_only() -> Iterator[None]:
    fastdecode.uninstall()
    try:
        yield
    finally:
        fastdecode.install({})


def _host_string(dt: datetime, digits: int) -> str:
    """As Json.NET writes a DateTime: up to 7 fraction digits, trailing zeros trimmed."""
    ticks = f"{dt.microsecond:06d}0"[:digits].rstrip("0")
    return dt.replace(microsecond=0).isoformat() + (f".{ticks}" if ticks else "")


def test_the_library_parses_the_host_time_into_a_naive_datetime_after_failing_the_utc_formats(
    library_only: None,
) -> None:
    """meta.py: no UTC format matches a zone-less string; the local format gives a naive datetime."""
    got = EventHubTriggerConverter._parse_datetime("2026-12-04T16:54:42.1234567")
    assert got == datetime(2026, 12, 4, 16, 54, 42, 123456) and got.tzinfo is None
    assert EventHubTriggerConverter._parse_datetime("2026-12-04T16:54:42Z").tzinfo is UTC


def test_the_app_installs_the_fast_path_at_import_and_the_worker_registry_returns_it() -> None:
    import function_app  # noqa: F401 - the import is what installs it

    assert fastdecode.status().installed, fastdecode.status().reason
    assert func.get_binding_registry().get("eventHubTrigger") is EventHubTriggerConverter
    assert EventHubTriggerConverter._parse_datetime is not LIBRARY


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.integers(min_value=0, max_value=7),
)
def test_the_fast_path_equals_the_library_on_every_host_shaped_time(dt: datetime, digits: int) -> None:
    fastdecode.uninstall()
    fastdecode.install({})
    try:
        s = _host_string(dt, digits)
        assert EventHubTriggerConverter._parse_datetime(s) == LIBRARY(s)
        assert EventHubTriggerConverter._parse_datetime(s).tzinfo is None
    finally:
        fastdecode.uninstall()
        fastdecode.install({})


@pytest.mark.parametrize("value", fastdecode.refused_corpus())
def test_other_shapes_go_to_the_library_with_its_result_or_its_error(
    fast: fastdecode.Status, value: str
) -> None:
    try:
        want: object = LIBRARY(value)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            EventHubTriggerConverter._parse_datetime(value)
        return
    got = EventHubTriggerConverter._parse_datetime(value)
    assert got == want and getattr(got, "tzinfo", None) == getattr(want, "tzinfo", None)


def test_refused_strings_are_counted_as_fallbacks(fast: fastdecode.Status) -> None:
    before = fastdecode.status().fallbacks
    EventHubTriggerConverter._parse_datetime("2026-12-04T16:54:42Z")
    EventHubTriggerConverter._parse_datetime("2026-12-04T16:54:42.5")
    assert fastdecode.status().fallbacks == before + 1


def test_a_whole_host_batch_decodes_to_the_same_events_and_costs_a_fraction_of_the_cpu(
    fast: fastdecode.Status,
) -> None:
    """The decode the worker runs before the function, on a host-shaped 256-event batch."""
    base = int(datetime(2026, 12, 4, 16, 0, tzinfo=UTC).timestamp() * 1000)
    events: list[HubEvent] = [
        HubEvent(b'{"x": %d}' % i, 100 + i, str(100 + i), base + 7 * i, None) for i in range(256)
    ]
    meta = bindings.eventhub_metadata(events, partition="1", hub="h", consumer_group="c", namespace="n")
    data = bindings.eventhub_data(events, "binary")

    def decode() -> tuple[list[func.EventHubEvent], float]:
        c0 = time.process_time()
        out = EventHubTriggerConverter.decode(data, trigger_metadata=meta)
        return out, time.process_time() - c0

    fast_events, fast_s = decode()
    fastdecode.uninstall()
    slow_events, slow_s = decode()
    fastdecode.install({})
    assert [e.enqueued_time for e in fast_events] == [e.enqueued_time for e in slow_events]
    assert [e.sequence_number for e in fast_events] == [e.sequence_number for e in slow_events]
    assert fast_events[3].enqueued_time == datetime(2026, 12, 4, 16, 0) + timedelta(milliseconds=21)
    # A ratio in one run, not a timed threshold: the fast decode is several times cheaper.
    assert fast_s * 3 < slow_s, (fast_s, slow_s)


def test_a_setting_turns_it_off(caplog: pytest.LogCaptureFixture) -> None:
    fastdecode.uninstall()
    try:
        with caplog.at_level(logging.INFO, logger="functions.fastdecode"):
            status = fastdecode.install({fastdecode.SETTING: "false"})
        assert not status.installed and fastdecode.SETTING in status.reason
        assert EventHubTriggerConverter._parse_datetime == LIBRARY
        assert "off" in caplog.text
    finally:
        fastdecode.uninstall()
        fastdecode.install({})


def test_it_stays_off_when_the_library_internals_moved(caplog: pytest.LogCaptureFixture) -> None:
    class Moved:  # a converter whose parse is no longer an inherited classmethod
        @staticmethod
        def _parse_datetime(value: str) -> datetime:
            return datetime.fromisoformat(value)

    class Gone:
        pass

    for converter in (Moved, Gone):
        fastdecode.uninstall()
        with caplog.at_level(logging.WARNING, logger="functions.fastdecode"):
            status = fastdecode.install({}, converter)
        assert not status.installed and "internals moved" in status.reason
    assert "internals moved" in caplog.text
    fastdecode.uninstall()
    fastdecode.install({})


def test_it_stays_off_when_it_would_disagree_with_the_library(caplog: pytest.LogCaptureFixture) -> None:
    class Drifted:
        """A library whose parse means something else now (here: the time is read as UTC-aware)."""

        @classmethod
        def _parse_datetime(cls, value: str | None) -> datetime | None:
            return None if not value else LIBRARY(value).replace(tzinfo=UTC)

    fastdecode.uninstall()
    with caplog.at_level(logging.WARNING, logger="functions.fastdecode"):
        status = fastdecode.install({}, Drifted)
    assert not status.installed and "disagrees with the library" in status.reason
    assert Drifted.__dict__["_parse_datetime"].__func__.__name__ == "_parse_datetime"
    fastdecode.uninstall()
    fastdecode.install({})
