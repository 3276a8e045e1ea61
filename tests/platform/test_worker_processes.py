"""FUNCTIONS_WORKER_PROCESS_COUNT: the app in several language worker processes, as the host runs it.

Sources (Azure/azure-functions-host, Azure/azure-functions-python-worker):
- ``src/WebJobs.Script/Workers/Rpc/Configuration/RpcWorkerConfigFactory.cs`` ``GetWorkerProcessCount``
  and ``src/WebJobs.Script/Workers/ProcessManagement/WorkerProcessCountOptions.cs``: the setting is
  ``int.Parse``d, below 2 is 1, above ``MaxProcessCount`` (10) is refused; unset, 1.
- ``src/WebJobs.Script/Workers/Rpc/FunctionRegistration/RpcFunctionInvocationDispatcherLoadBalancer.cs``:
  invocations go round robin over the channels, ``Interlocked.Increment(ref _counter) % count``.
- python worker ``azure_functions_worker/dispatcher.py``: each process loads the app itself; a function
  that raised reaches the host as an ``RpcException`` (``_serialize_exception``: ``Type: message`` and
  the traceback).
- Durable extension ``TaskEntityShim`` / the entity scheduler: one entity's batches run one at a time,
  whichever worker runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from devhost.db import DevDB
from devhost.durable.client import INPROC_BASE_URL, InProcTransport
from devhost.durable.entities import EntityScheduler
from devhost.durable.history import activity_failure, worker_failure
from devhost.durable.protocol import client_binding_json
from devhost.functions_host import bindings
from devhost.functions_host.indexing import AppIndex, index_app
from devhost.functions_host.processes import (
    MAX_PROCESS_COUNT,
    RpcException,
    WorkerPool,
    worker_process_count,
)
from devhost.functions_host.settings import SettingsError
from devhost.pipeline import entity_runner

pytestmark = [pytest.mark.timeout(120)]

APP = "tests.platform.workers_app"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def test_the_setting_is_read_as_the_host_reads_it() -> None:
    assert worker_process_count(None) is None and worker_process_count("") is None  # unset
    assert worker_process_count("2") == 2 and worker_process_count(" 4 ") == 4
    assert worker_process_count("+3") == 3
    assert worker_process_count("1") == 1
    assert worker_process_count("0") == 1 and worker_process_count("-5") == 1  # below 2 is 1
    assert worker_process_count(str(MAX_PROCESS_COUNT)) == MAX_PROCESS_COUNT == 10
    with pytest.raises(SettingsError, match="MaxProcessCount"):
        worker_process_count("11")
    for bad in ("two", "2.0", "1_0", "0x2", "٢"):  # int.Parse: ASCII digits and a sign only
        with pytest.raises(SettingsError, match="whole number"):
            worker_process_count(bad)


def _app() -> AppIndex:
    import importlib

    return index_app(importlib.import_module(APP).app, {})


async def _get(index: AppIndex, name: str) -> bindings.HttpReply:
    spec = index.functions[name]
    inv = bindings.http_invocation(
        spec.trigger,
        method="GET",
        url=f"{INPROC_BASE_URL}/api/{name}",
        headers={},
        query={},
        route_params={},
        body=b"",
        client_args={},
    )
    return bindings.http_reply(await spec.invoke(inv))


def test_invocations_go_round_robin_and_each_process_has_its_own_module_state() -> None:
    index = _app()

    async def go() -> tuple[list[tuple[int, int]], list[int]]:
        pool = WorkerPool(2, app_module=APP)
        await pool.start()
        index.dispatch_to(pool.invoke)
        try:
            replies = [await _get(index, "who") for _ in range(6)]
            return [tuple(map(int, r.body.split())) for r in replies], pool.pids  # type: ignore[misc]
        finally:
            index.dispatch_to(None)
            await pool.stop()

    answers, pids = asyncio.run(go())
    first, second = pids
    assert first != second != os.getpid()
    # Interlocked.Increment before the modulo: the first invocation goes to the second channel.
    assert [pid for pid, _ in answers] == [second, first] * 3
    # Module state is per process: each counts only its own invocations.
    assert [n for _, n in answers] == [1, 1, 2, 2, 3, 3]
    assert not any(_alive(p) for p in pids)  # stopped: no process left behind


def test_one_process_takes_every_invocation() -> None:
    index = _app()

    async def go() -> list[int]:
        pool = WorkerPool(1, app_module=APP)
        await pool.start()
        index.dispatch_to(pool.invoke)
        try:
            return [int((await _get(index, "who")).body.split()[0]) for _ in range(3)]
        finally:
            index.dispatch_to(None)
            await pool.stop()

    answers = asyncio.run(go())
    assert len(set(answers)) == 1 and answers[0] != os.getpid()


def test_a_function_that_raised_reaches_the_host_as_the_workers_rpc_exception() -> None:
    index = _app()

    async def go() -> BaseException:
        pool = WorkerPool(1, app_module=APP)
        await pool.start()
        index.dispatch_to(pool.invoke)
        try:
            with pytest.raises(RpcException) as caught:
                await _get(index, "boom")
            return caught.value
        finally:
            index.dispatch_to(None)
            await pool.stop()

    exc = asyncio.run(go())
    message, stack = worker_failure(exc)
    assert message == "ValueError: boom from the worker"
    assert "workers_app.py" in stack and "raise ValueError" in stack
    # The Durable parts format it as they format an exception raised in process.
    try:
        raise ValueError("boom from the worker")
    except ValueError as local:
        assert worker_failure(local)[0] == message
        assert activity_failure("a", local, stack)[0] == activity_failure("a", exc, stack)[0]


def test_entity_batches_run_one_at_a_time_per_entity_whichever_worker_runs_them(tmp_path: Path) -> None:
    """Clients in both workers signal one entity through the host; its batches run in both workers,
    never two at once."""
    index = _app()
    db = DevDB(tmp_path)

    async def go() -> tuple[list[Any], list[int], set[int]]:
        entity = index.entity("Recorder")
        scheduler = EntityScheduler(db, {"Recorder": entity_runner(entity)}, max_batch=1, workers=4)
        transport = InProcTransport(scheduler)
        pool = WorkerPool(2, app_module=APP, client=(transport.post, transport.get))
        await pool.start()
        index.dispatch_to(pool.invoke)
        runner = asyncio.create_task(scheduler.run())
        try:
            spec = index.functions["signal"]
            binding = client_binding_json(INPROC_BASE_URL, "hub")
            senders: set[int] = set()
            for _ in range(12):
                inv = bindings.http_invocation(
                    spec.trigger,
                    method="POST",
                    url=f"{INPROC_BASE_URL}/api/signal/one",
                    headers={},
                    query={},
                    route_params={"key": "one"},
                    body=b"",
                    client_args={"client": binding},
                )
                reply = bindings.http_reply(await spec.invoke(inv))
                assert reply.status == 202
                senders.add(int(reply.body))
            await scheduler.drained()
            state = scheduler.read_state("recorder", "one")
            return json.loads(state) if isinstance(state, str) else state, pool.pids, senders
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            index.dispatch_to(None)
            await pool.stop()

    try:
        records, pids, senders = asyncio.run(go())
    finally:
        db.close()
    assert senders == set(pids)  # both workers' clients reached the host's entity queue
    assert len(records) == 12 and {pid for pid, _, _ in records} == set(pids)
    spans = sorted((start, end) for _, start, end in records)
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False))


def test_a_worker_that_cannot_load_the_app_stops_the_start_and_leaves_no_process() -> None:
    async def go() -> list[int]:
        pool = WorkerPool(2, app_module="tests.platform.no_such_app")
        with pytest.raises(RuntimeError, match="No module named"):
            await pool.start(limit_s=60)
        return pool.pids

    pids = asyncio.run(go())
    assert not any(_alive(p) for p in pids)
