"""host.json's Durable settings hold the decision and the arithmetic of docs/capacity.md.

The section "Durable concurrency on one instance" is the source: its decision table
must equal host.json, and the relations it argues (Little's law, the thread budget,
the batch-time bound, the polling ceiling, the bundle floor for the Durable Task
Scheduler) must hold. Every failure names that section.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = ROOT / "host.json"
CAPACITY_MD = ROOT / "docs" / "capacity.md"
SECTION = "Durable concurrency on one instance"
WHERE = f"docs/capacity.md, section '{SECTION}'"

# Inputs of the section's arithmetic.
BATCHES_PER_S = 300  # A9: operations/s per 2,048 MB instance; one operation per batch at steady state
BUSY_SLOT_TIME_S = 0.050  # time a work item holds a slot on Azure Storage, busy periods
COSMOS_WRITE_S = 0.040  # one action write
MAX_BATCH_S = 2.0  # worst-case entity batch: every operation writes
DTS_BUNDLE_FLOOR = (4, 32, 0)  # first v4 bundle with the azureManaged provider for non-.NET apps

DECIDED = (
    "maxConcurrentOrchestratorFunctions",
    "maxConcurrentEntityFunctions",
    "maxConcurrentActivityFunctions",
    "maxEntityOperationBatchSize",
    "storageProvider.maxQueuePollingInterval",
    "storageProvider.partitionCount",
    "extendedSessionsEnabled",
)

# .NET TimeSpan, invariant "c" format as host.json writes it: [-][d.]hh:mm:ss[.fffffff]
_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> timedelta:
    m = _TIMESPAN.match(text)
    if not m:
        raise ValueError(f"not a TimeSpan: {text!r}")
    sign, days, hours, minutes, seconds, fraction = m.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
        raise ValueError(f"TimeSpan field out of range: {text!r}")
    value = timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )
    return -value if sign else value


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("."))


@cache
def host() -> dict[str, Any]:
    return json.loads(HOST_JSON.read_text(encoding="utf-8"))


def durable() -> dict[str, Any]:
    return host()["extensions"]["durableTask"]


def setting(dotted: str) -> Any:
    node: Any = durable()
    for key in dotted.split("."):
        assert isinstance(node, dict) and key in node, f"host.json durableTask lacks {dotted}; see {WHERE}"
        node = node[key]
    return node


@cache
def section() -> str:
    text = CAPACITY_MD.read_text(encoding="utf-8")
    start = text.find(f"\n## {SECTION}\n")
    assert start >= 0, f"{WHERE} is missing"
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def subsection(title: str) -> str:
    text = section()
    start = text.find(f"\n### {title}\n")
    assert start >= 0, f"{WHERE} lacks its '### {title}' part"
    end = text.find("\n### ", start + 1)
    return text[start : end if end >= 0 else len(text)]


@cache
def decision() -> dict[str, str]:
    """The decision table: `setting` | `value` | why."""
    rows = re.findall(r"^\| `([A-Za-z.]+)` \| `([^`]+)` \|", subsection("Decision"), flags=re.MULTILINE)
    return dict(rows)


def doc_value(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    if raw.isdigit():
        return int(raw)
    return raw


def thread_pool_size() -> int:
    m = re.search(r"`PYTHON_THREADPOOL_THREAD_COUNT=(\d+)`", subsection("Settings to apply"))
    assert m, f"{WHERE}: 'Settings to apply' must recommend `PYTHON_THREADPOOL_THREAD_COUNT=<n>`"
    return int(m.group(1))


def polling_ceiling() -> timedelta:
    m = re.search(r"`maxQueuePollingInterval`: ceiling `([^`]+)`", section())
    assert m, f"{WHERE} must state the `maxQueuePollingInterval` ceiling"
    return parse_timespan(m.group(1))


def test_the_decision_table_covers_every_chosen_setting() -> None:
    missing = [name for name in DECIDED if name not in decision()]
    assert not missing, f"{WHERE}: the decision table lacks {missing}"


@pytest.mark.parametrize("name", DECIDED)
def test_host_json_holds_the_decided_value(name: str) -> None:
    assert name in decision(), f"{WHERE}: the decision table lacks {name}"
    assert setting(name) == doc_value(decision()[name]), (
        f"host.json durableTask.{name} = {setting(name)!r} but {WHERE} decides {decision()[name]!r}"
    )


def test_orchestrator_slots_cover_littles_law() -> None:
    needed = math.ceil(BATCHES_PER_S * BUSY_SLOT_TIME_S)
    assert setting("maxConcurrentOrchestratorFunctions") >= needed, (
        f"{WHERE}: {BATCHES_PER_S} batches/s x {BUSY_SLOT_TIME_S * 1000:.0f} ms needs {needed} slots"
    )


def test_entity_cap_is_the_same_on_both_backends() -> None:
    assert setting("maxConcurrentEntityFunctions") == setting("maxConcurrentOrchestratorFunctions"), (
        f"{WHERE}: entities run under maxConcurrentOrchestratorFunctions on Azure Storage and "
        "under maxConcurrentEntityFunctions on the Durable Task Scheduler; keep them equal"
    )


def test_the_thread_pool_holds_every_invocation_the_host_may_start() -> None:
    threads = thread_pool_size()
    orchestrators = setting("maxConcurrentOrchestratorFunctions")
    entities = setting("maxConcurrentEntityFunctions")
    activities = setting("maxConcurrentActivityFunctions")
    assert orchestrators <= threads, (
        f"{WHERE}: maxConcurrentOrchestratorFunctions {orchestrators} > PYTHON_THREADPOOL_THREAD_COUNT "
        f"{threads}: the excess would only queue inside the worker"
    )
    assert orchestrators + activities <= threads, (
        f"{WHERE}: the Azure Storage budget {orchestrators}+{activities} exceeds {threads} threads"
    )
    assert orchestrators + entities + activities <= threads, (
        f"{WHERE}: the Durable Task Scheduler budget {orchestrators}+{entities}+{activities} "
        f"exceeds {threads} threads"
    )


def test_entity_batches_are_on_and_bounded_in_time() -> None:
    size = setting("maxEntityOperationBatchSize")
    assert size >= 2, f"{WHERE}: batching must stay on (1 disables it)"
    assert size * COSMOS_WRITE_S <= MAX_BATCH_S, (
        f"{WHERE}: a batch of {size} that writes on every operation takes {size * COSMOS_WRITE_S:.1f} s "
        f"> {MAX_BATCH_S} s"
    )


def test_queue_polling_interval_is_a_timespan_within_the_stated_ceiling() -> None:
    raw = setting("storageProvider.maxQueuePollingInterval")
    try:
        interval = parse_timespan(raw)
    except ValueError as exc:
        pytest.fail(f"{WHERE}: maxQueuePollingInterval {raw!r} is not a TimeSpan: {exc}")
    assert timedelta(0) < interval <= polling_ceiling(), (
        f"{WHERE}: maxQueuePollingInterval {raw} must be positive and at most the ceiling"
    )
    assert polling_ceiling() < timedelta(seconds=30), f"{WHERE}: the ceiling should beat the 30 s default"


def test_partition_count_is_within_the_provider_range() -> None:
    assert 1 <= setting("storageProvider.partitionCount") <= 16, f"{WHERE}: partitionCount must be 1-16"


def test_azure_storage_is_the_host_json_backend() -> None:
    assert setting("storageProvider.type") == "AzureStorage", (
        f"{WHERE}: the Bicep selects the Durable Task Scheduler by app setting; host.json stays AzureStorage"
    )


def test_extended_sessions_stay_off() -> None:
    assert setting("extendedSessionsEnabled") is False, f"{WHERE}: not supported for Python"


def test_extension_bundle_admits_the_durable_task_scheduler() -> None:
    bundle = host()["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle", f"{WHERE}: the v4 bundle"
    m = re.fullmatch(r"\[([\d.]+),\s*([\d.]+)\)", bundle["version"])
    assert m, f"{WHERE}: extensionBundle.version must be a range '[low, high)', got {bundle['version']!r}"
    low, high = parse_version(m.group(1)), parse_version(m.group(2))
    assert low >= DTS_BUNDLE_FLOOR, (
        f"{WHERE}: extensionBundle lower bound {m.group(1)} < 4.32.0, the first bundle with the "
        "Durable Task Scheduler provider for non-.NET apps"
    )
    assert low < high <= (5, 0, 0), f"{WHERE}: stay on bundle v4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:02", timedelta(seconds=2)),
        ("00:00:30", timedelta(seconds=30)),
        ("1.02:03:04.5", timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
        ("-00:01:00", -timedelta(minutes=1)),
    ],
)
def test_timespan_parser(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


@pytest.mark.parametrize("text", ["2s", "00:00", "00:60:00", "24:00:00", "00:00:02.12345678", ""])
def test_timespan_parser_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timespan(text)
