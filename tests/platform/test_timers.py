"""Conformance: the timer trigger as the Functions host's timer extension runs it (devhost/storage/timers.py).

Upstream sources:
- TMR: Azure/azure-webjobs-sdk-extensions, src/WebJobs.Extensions/Extensions/Timers/
  (TimerSchedule.Create, CronSchedule.TryCreate with IncludingSeconds, Listener/TimerListener.cs
  StartAsync/InvokeJobFunction, ScheduleMonitor.CheckPastDueAsync, TimerInfo);
- NCrontab (atifaziz/NCrontab) CrontabSchedule.GetNextOccurrence: strictly after the base time,
  day-of-month AND day-of-week;
- AF: azure-functions 1.26.0 azure/functions/timer.py TimerRequestConverter.decode (IsPastDue,
  ScheduleStatus, Schedule) and decorators timer_trigger (schedule, runOnStartup, useMonitor).

Time is a virtual clock: nothing here reads the wall clock or the machine's time zone.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from devhost.functions_host.indexing import index_app
from devhost.functions_host.worker import Invocation
from devhost.storage.timers import (
    ConstantSchedule,
    CronSchedule,
    ScheduleError,
    ScheduleStatus,
    StatusStore,
    TimerListener,
    monitor_enabled,
    parse_schedule,
    timer_payload,
)

T0 = datetime(2030, 3, 14, 23, 59, 58, tzinfo=UTC)  # a Thursday

app = func.FunctionApp()
SEEN: list[func.TimerRequest] = []


@app.timer_trigger(schedule="0 30 0 * * *", arg_name="timer", use_monitor=True)
def daily(timer: func.TimerRequest) -> None:
    SEEN.append(timer)


@app.timer_trigger(schedule="*/20 * * * * *", arg_name="timer", run_on_startup=True)
def often(timer: func.TimerRequest) -> None:
    SEEN.append(timer)
    if len(SEEN) == 2:
        raise RuntimeError("a failing run is logged, not retried")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_ncrontab_six_fields_next_occurrence_is_strictly_after_and_day_and_weekday_both_match() -> None:
    s = CronSchedule.parse("0 30 0 * * *")
    assert s.next_after(utc(2030, 3, 14, 12, 0, 0)) == utc(2030, 3, 15, 0, 30, 0)
    assert s.next_after(utc(2030, 3, 15, 0, 30, 0)) == utc(2030, 3, 16, 0, 30, 0)  # strictly after
    assert CronSchedule.parse("*/15 * * * * *").next_after(utc(2030, 1, 1, 0, 0, 7)) == utc(
        2030, 1, 1, 0, 0, 15
    )
    # day 13 AND Friday (NCrontab), not "13th or any Friday" (Vixie cron): the next Friday the 13th
    assert CronSchedule.parse("0 0 9 13 * fri").next_after(utc(2030, 1, 1)) == utc(2030, 9, 13, 9, 0, 0)
    assert CronSchedule.parse("0 0 9 * * 0").next_after(utc(2030, 3, 14)) == utc(
        2030, 3, 17, 9, 0, 0
    )  # Sunday 0
    assert CronSchedule.parse("0 0 0 1 jan,jul *").next_after(utc(2030, 2, 1)) == utc(2030, 7, 1)
    assert CronSchedule.parse("0 0 0 29 2 *").next_after(utc(2030, 3, 1)) == utc(2032, 2, 29)
    for bad in ("0 30 0 * *", "61 * * * * *", "0 0 25 * * *", "x * * * * *", "0 0 0 * * 7"):
        with pytest.raises(ScheduleError):
            CronSchedule.parse(bad)


def test_a_timespan_schedule_is_a_constant_interval_and_anything_else_is_refused() -> None:
    s = parse_schedule("01:30:00")
    assert isinstance(s, ConstantSchedule) and s.interval == timedelta(hours=1, minutes=30)
    assert parse_schedule("1.00:00:00") == ConstantSchedule(timedelta(days=1))
    with pytest.raises(ScheduleError, match="not recognized"):
        parse_schedule("every day")


def test_the_monitor_is_off_for_schedules_firing_more_than_once_a_minute() -> None:
    """TimerSchedule.Create: more than one occurrence in the next minute (or a TimeSpan under a minute)
    turns useMonitor off."""
    assert monitor_enabled(CronSchedule.parse("0 30 0 * * *"), True, T0)
    assert not monitor_enabled(CronSchedule.parse("*/20 * * * * *"), True, T0)
    assert not monitor_enabled(ConstantSchedule(timedelta(seconds=30)), True, T0)
    assert not monitor_enabled(CronSchedule.parse("0 30 0 * * *"), False, T0)


def test_the_hosts_timer_info_is_decoded_by_the_library_converter() -> None:
    """TMR TimerInfo (Schedule, ScheduleStatus with Last/Next/LastUpdated, IsPastDue) as Json.NET JSON;
    AF TimerRequestConverter: past_due, schedule_status, schedule. A null status (monitor off) is {}."""
    from azure.functions.timer import TimerRequestConverter

    status = ScheduleStatus(utc(2030, 3, 14, 0, 30), utc(2030, 3, 15, 0, 30), utc(2030, 3, 14, 0, 30))
    req = TimerRequestConverter.decode(timer_payload(status, True), trigger_metadata={})  # type: ignore[arg-type]
    assert req.past_due is True
    assert req.schedule_status == {
        "Last": "2030-03-14T00:30:00+00:00",
        "Next": "2030-03-15T00:30:00+00:00",
        "LastUpdated": "2030-03-14T00:30:00+00:00",
    }
    assert req.schedule == {"AdjustForDST": True}
    off = TimerRequestConverter.decode(timer_payload(None, False), trigger_metadata={})  # type: ignore[arg-type]
    assert off.past_due is False and off.schedule_status == {}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


def _listener(name: str, clock: Clock, store: StatusStore) -> TimerListener:
    spec = index_app(app, {}).functions[name]
    return TimerListener(spec, store, clock=clock.now, sleep=clock.sleep)


async def _run_until(listener: TimerListener, count: int) -> None:
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(5):
            while len(SEEN) < count:
                await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_daily_schedule_fires_at_its_time_with_the_status_recorded_before_the_run() -> None:
    """TimerListener: the first start records Next and fires nothing; each run gets the status
    recorded before it (Last = the previous run, Next = this run), then Last/Next are updated."""
    SEEN.clear()
    clock, store = Clock(T0), StatusStore()
    asyncio.run(_run_until(_listener("daily", clock, store), 2))
    first, second = SEEN
    assert not first.past_due
    assert first.schedule_status["Next"] == "2030-03-15T00:30:00+00:00"
    assert first.schedule_status["Last"].startswith("0001-01-01")
    assert second.schedule_status["Last"] == "2030-03-15T00:30:00+00:00"
    assert second.schedule_status["Next"] == "2030-03-16T00:30:00+00:00"
    saved = store.load("daily")
    assert saved is not None and saved.next >= utc(2030, 3, 16, 0, 30)  # recorded after each run


def test_a_missed_occurrence_fires_once_at_start_with_past_due() -> None:
    """ScheduleMonitor.CheckPastDueAsync: a recorded Next in the past is a missed occurrence; it
    fires at once with IsPastDue, once, then the schedule goes on from now."""
    SEEN.clear()
    store = StatusStore()
    store.save(
        "daily", ScheduleStatus(utc(2030, 3, 10, 0, 30), utc(2030, 3, 11, 0, 30), utc(2030, 3, 10, 0, 30))
    )
    clock = Clock(utc(2030, 3, 14, 12, 0))  # three occurrences were missed while the host was down
    asyncio.run(_run_until(_listener("daily", clock, store), 2))
    assert [t.past_due for t in SEEN] == [True, False]
    assert SEEN[1].schedule_status["Last"].startswith("2030-03-14T12:00:00")
    assert SEEN[1].schedule_status["Next"] == "2030-03-15T00:30:00+00:00"


def test_run_on_startup_fires_at_start_and_a_failure_is_not_retried() -> None:
    """runOnStartup: an immediate run at start (not past due); with the monitor off (sub-minute
    schedule) the status is null. A failing invocation is logged, never retried (InvokeJobFunction)."""
    SEEN.clear()
    clock = Clock(utc(2030, 3, 14, 12, 0, 5))
    listener = _listener("often", clock, StatusStore())
    asyncio.run(_run_until(listener, 3))
    assert [t.schedule_status for t in SEEN] == [{}, {}, {}]
    assert listener.stats.failures == 1 and listener.stats.invocations == 3
    assert clock.now() == utc(2030, 3, 14, 12, 0, 40)  # start-up, :20, :40 (the failed :20 not re-run)


def test_the_trigger_binding_is_indexed_with_the_decorators_fields() -> None:
    """AF decorators timer_trigger: type timerTrigger, schedule, runOnStartup, useMonitor, name."""
    spec: Any = index_app(app, {}).functions["daily"]
    assert spec.trigger["type"] == "timerTrigger"
    assert spec.trigger["schedule"] == "0 30 0 * * *" and spec.trigger["useMonitor"] is True
    assert isinstance(SEEN, list)
    assert Invocation  # the listener builds worker Invocations (devhost.functions_host.worker)
