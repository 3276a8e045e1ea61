"""Timer triggers, run the way the Functions host's timer extension runs them.

Sources (Azure/azure-webjobs-sdk-extensions, ``src/WebJobs.Extensions/Extensions/Timers/``):

- ``TimerSchedule.Create``: the ``schedule`` is a 6-field NCRONTAB expression
  (``{second} {minute} {hour} {day} {month} {day-of-week}``, parsed by NCrontab with
  ``IncludingSeconds``), else a TimeSpan (a constant interval, ``ConstantSchedule``); more than one
  occurrence a minute turns the schedule monitor off.
- NCrontab (atifaziz/NCrontab ``CrontabSchedule.GetNextOccurrence``): the next occurrence is
  strictly after the base time; day-of-month and day-of-week must *both* match (not cron's "or");
  day-of-week 0-6 is Sunday-Saturday; names (``jan``, ``mon``) are accepted.
- ``TimerListener``: on start, with the monitor on (``useMonitor``, default true), a recorded
  ``Next`` in the past means a missed occurrence, which fires at once with ``IsPastDue``
  (``ScheduleMonitor.CheckPastDueAsync``); else ``runOnStartup`` fires at once; then the schedule.
  Each invocation gets ``TimerInfo{Schedule, ScheduleStatus (the status recorded before this
  run, null when the monitor is off), IsPastDue}``; afterwards ``Last``/``Next``/``LastUpdated``
  are recorded. A failed invocation is logged and never retried; the schedule goes on.
- The host sends ``TimerInfo`` to an out-of-process worker as JSON (Json.NET: ``Schedule``
  ``{"AdjustForDST": true}``, ``ScheduleStatus`` times with their offset, ``IsPastDue``), which
  azure.functions' ``TimerRequestConverter`` reads into ``TimerRequest``.

The devhost's clock is injected (``clock``, ``sleep``), so tests run schedules on virtual time;
the schedule status is kept in the devhost's SQLite ``meta`` table (the host keeps it in a blob),
so a restarted devhost sees what it missed. Times are UTC (the platform's default time zone).
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devhost.functions_host.worker import Datum, Invocation

log = logging.getLogger(__name__)

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name.lower(): (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}  # Mon=1 ... Sun=0
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")
MIN_VALUE = datetime(1, 1, 1, tzinfo=UTC)  # ScheduleMonitor.DefaultDateTime (DateTime.MinValue)


class ScheduleError(ValueError):
    """ "The schedule expression was not recognized as a valid cron expression or timespan string." """


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()

    def number(tok: str) -> int:
        tok = tok.lower()
        if tok in names:
            return names[tok]
        if not tok.isdigit():
            raise ScheduleError(f"{name}: not a number: {tok!r}")
        value = int(tok)
        if not low <= value <= high:
            raise ScheduleError(f"{name}: {value} is outside {low}-{high}")
        return value

    for part in text.split(","):
        step = 1
        if "/" in part:
            part, raw_step = part.split("/", 1)
            if not raw_step.isdigit() or int(raw_step) == 0:
                raise ScheduleError(f"{name}: bad step {raw_step!r}")
            step = int(raw_step)
        if part == "*":
            first, last = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            first, last = number(a), number(b)
        else:
            first = number(part)
            last = high if step > 1 else first
        if first > last:
            raise ScheduleError(f"{name}: range {first}-{last} is reversed")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A 6-field NCRONTAB schedule (seconds first)."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(f"{expression!r}: an NCRONTAB schedule has 6 fields, seconds first")
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        return cls(expression, *sets)

    def next_after(self, now: datetime) -> datetime:
        """The first occurrence strictly after ``now`` (UTC)."""
        t = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
                continue
            # NCrontab: day-of-month AND day-of-week (.NET DayOfWeek: Sunday 0).
            if t.day not in self.days or (t.isoweekday() % 7) not in self.weekdays:
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t += timedelta(seconds=1)
                continue
            return t
        raise ScheduleError(f"{self.expression!r} has no occurrence within five years")


@dataclass(frozen=True)
class ConstantSchedule:
    """A TimeSpan schedule (``hh:mm:ss``): every interval."""

    interval: timedelta

    def next_after(self, now: datetime) -> datetime:
        return now.astimezone(UTC) + self.interval


Schedule = CronSchedule | ConstantSchedule


def parse_schedule(expression: str) -> Schedule:
    """``TimerSchedule.Create``: a cron expression, else a TimeSpan, else an error."""
    try:
        return CronSchedule.parse(expression)
    except ScheduleError as cron_error:
        m = _TIMESPAN.match(expression.strip())
        if not m:
            raise ScheduleError(
                f"The schedule expression {expression!r} was not recognized as a valid cron expression or "
                f"timespan string ({cron_error})"
            ) from cron_error
        d, h, mi, s, frac = m.groups()
        interval = timedelta(
            days=int(d or 0), hours=int(h), minutes=int(mi), seconds=int(s or 0) + float(f"0.{frac or 0}")
        )
        if interval <= timedelta(0):
            raise ScheduleError(f"{expression!r}: the interval must be positive") from cron_error
        return ConstantSchedule(interval)


def monitor_enabled(schedule: Schedule, use_monitor: bool, now: datetime) -> bool:
    """``useMonitor``, switched off for schedules that fire more than once a minute."""
    if not use_monitor:
        return False
    if isinstance(schedule, ConstantSchedule):
        return schedule.interval >= timedelta(minutes=1)
    first = schedule.next_after(now)
    return schedule.next_after(first) > now + timedelta(minutes=1)


def dotnet_offset_time(dt: datetime) -> str:
    """A DateTime of Kind Local (UTC here) as Json.NET writes it: up to 7 fraction digits, ``+00:00``."""
    if dt <= MIN_VALUE:
        return "0001-01-01T00:00:00+00:00"
    dt = dt.astimezone(UTC)
    fraction = f"{dt.microsecond:06d}0".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "+00:00"


@dataclass
class ScheduleStatus:
    last: datetime
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "Last": dotnet_offset_time(self.last),
            "Next": dotnet_offset_time(self.next),
            "LastUpdated": dotnet_offset_time(self.last_updated),
        }

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> ScheduleStatus:
        def parse(text: str) -> datetime:
            if text.startswith("0001-01-01"):
                return MIN_VALUE
            return datetime.fromisoformat(text).astimezone(UTC)

        return cls(parse(raw["Last"]), parse(raw["Next"]), parse(raw["LastUpdated"]))


def timer_payload(status: ScheduleStatus | None, past_due: bool) -> Datum:
    """What the host sends for a timer trigger: ``TimerInfo`` as JSON."""
    return Datum(
        json.dumps(
            {
                "Schedule": {"AdjustForDST": True},
                "ScheduleStatus": status.to_json() if status is not None else None,
                "IsPastDue": past_due,
            }
        ),
        "json",
    )


@dataclass
class TimerStats:
    invocations: int = 0
    failures: int = 0
    past_due: int = 0


class StatusStore:
    """Where schedule statuses live (the devhost's SQLite meta table, or memory in tests)."""

    def __init__(
        self, get: Callable[[str], Any] | None = None, put: Callable[[str, Any], None] | None = None
    ):
        self._mem: dict[str, Any] = {}
        self._get = get or self._mem.get
        self._put = put or self._mem.__setitem__

    def load(self, name: str) -> ScheduleStatus | None:
        raw = self._get(f"timer:{name}")
        return ScheduleStatus.from_json(raw) if raw else None

    def save(self, name: str, status: ScheduleStatus) -> None:
        self._put(f"timer:{name}", status.to_json())


Invoke = Callable[[Invocation], Awaitable[Any]]


class TimerListener:
    """One timer-triggered function: start-up (past due, runOnStartup), then the schedule."""

    def __init__(
        self,
        spec: Any,
        statuses: StatusStore,
        *,
        client_args: dict[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        stats: TimerStats | None = None,
    ) -> None:
        self.spec = spec
        self.name = str(spec.name)
        trigger = spec.trigger
        self.schedule = parse_schedule(str(trigger["schedule"]))
        self.run_on_startup = bool(trigger.get("runOnStartup", False))
        self.use_monitor = bool(trigger.get("useMonitor", True))
        self.statuses = statuses
        self.client_args = client_args or {}
        self.clock = clock
        self.sleep = sleep
        self.stats = stats or TimerStats()
        self.status: ScheduleStatus | None = None

    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the timer clock must return an aware datetime")
        return now.astimezone(UTC)

    def _check_past_due(self, now: datetime) -> bool:
        """``ScheduleMonitor.CheckPastDueAsync``."""
        last = self.statuses.load(self.name)
        if last is None:
            self.status = ScheduleStatus(MIN_VALUE, self.schedule.next_after(now), now)
            self.statuses.save(self.name, self.status)
            return False
        threshold = MIN_VALUE.replace(year=2)
        if last.last > threshold:
            expected, updated = self.schedule.next_after(last.last), last.last
        elif last.last_updated > threshold:
            expected, updated = self.schedule.next_after(last.last_updated), last.last_updated
        else:
            expected, updated = self.schedule.next_after(now), now
        if last.next != expected:  # the schedule changed since the status was recorded
            if now > expected:
                expected, updated = self.schedule.next_after(now), now
            last = ScheduleStatus(MIN_VALUE, expected, updated)
            self.statuses.save(self.name, last)
        self.status = last
        return now > last.next

    async def run(self) -> None:
        now = self.now()
        monitor = monitor_enabled(self.schedule, self.use_monitor, now)
        past_due = self._check_past_due(now) if monitor else False
        if self.status is None:
            self.status = ScheduleStatus(MIN_VALUE, self.schedule.next_after(now), MIN_VALUE)
        if past_due:
            await self.fire(monitor, past_due=True)
        elif self.run_on_startup:
            await self.fire(monitor, startup=True)
        while True:
            assert self.status is not None
            wait = (self.status.next - self.now()).total_seconds()
            if wait > 0:
                await self.sleep(wait)
                continue  # a virtual or early wake-up: check again
            await self.fire(monitor)

    async def fire(self, monitor: bool, *, past_due: bool = False, startup: bool = False) -> None:
        """``TimerListener.InvokeJobFunction``: invoke, never retry, then record the new status."""
        assert self.status is not None
        invoked_at = self.now()
        from devhost.functions_host import bindings

        inputs = {str(self.spec.trigger["name"]): timer_payload(self.status if monitor else None, past_due)}
        inputs.update({arg: bindings.client_datum(b) for arg, b in self.client_args.items()})
        self.stats.invocations += 1
        self.stats.past_due += 1 if past_due else 0
        try:
            await self.spec.invoke(Invocation(inputs=inputs))
        except Exception:  # logged, never retried: the schedule goes on (InvokeJobFunction)
            self.stats.failures += 1
            log.exception("timer function %s failed", self.name)
        adjusted = invoked_at
        if not past_due and not startup and self.status.next > invoked_at:
            adjusted = self.status.next
        self.status = ScheduleStatus(adjusted, self.schedule.next_after(adjusted), adjusted)
        if monitor:
            self.statuses.save(self.name, self.status)
