"""Language worker processes: the app in several OS processes, as ``FUNCTIONS_WORKER_PROCESS_COUNT`` runs it.

What the platform does (Azure/azure-functions-host; pinned by ``tests/platform/test_worker_processes.py``):

- ``RpcWorkerConfigFactory.GetWorkerProcessCount`` (``WorkerConfigurationHelper`` in newer hosts) reads
  ``FUNCTIONS_WORKER_PROCESS_COUNT`` with ``int.Parse`` (not an integer: the host fails to start), takes
  any value below 2 as 1, and refuses a value above ``MaxProcessCount`` (10, ``WorkerProcessCountOptions``).
  Unset, ``ProcessCount`` is 1.
- ``RpcFunctionInvocationDispatcherLoadBalancer.GetLanguageWorkerChannel`` spreads invocations over the
  initialized worker channels round robin (``Interlocked.Increment(ref _counter) % count``: the first
  invocation goes to the second channel), whatever the function or trigger.
- Each Python worker process loads the app itself (its own module state: its own ONNX session, Cosmos
  client, caches and telemetry), runs async functions on its event loop and sync ones in its own thread
  pool (``PYTHON_THREADPOOL_THREAD_COUNT``), and answers each ``InvocationRequest`` with an
  ``InvocationResponse``; a function that raised crosses the process boundary as an ``RpcException``:
  ``f"{type(exc).__name__}: {exc}"`` and the formatted traceback (worker ``dispatcher.py``
  ``_serialize_exception``).
- The Durable extension runs one entity's batches one at a time whichever worker runs them: that is the
  devhost's entity scheduler, on the host side, unchanged.

The devhost's worker processes run the same worker path as the embedded mode (``worker.load`` at
indexing, ``worker.invoke``: the azure.functions converters decode every input, trigger metadata
included); only the ``Datum`` objects travel, pickled, over a pipe instead of gRPC ``TypedData``. The
Durable client inside a worker reaches the host as the SDK reaches the extension: with
``--transport http`` over real HTTP to the devhost's webhook server, in process (the default) through the
worker's pipe to the host's in-process transport, which parses the URL the SDK built exactly as it does
for the embedded mode.

Deviations, named: the host starts the extra workers ``ProcessStartupInterval`` (10 s) apart and
dispatches to the ones already initialized; the devhost starts them together and waits for all before
the first invocation. A worker that exits is not restarted: its invocations fail (and are retried or
redelivered as any failed invocation) and the others carry on; with none left the run stops.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib
import logging
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.functions_host.settings import SettingsError
from devhost.functions_host.worker import Datum, Invocation

log = logging.getLogger(__name__)

SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"
MAX_PROCESS_COUNT = 10  # WorkerProcessCountOptions.MaxProcessCount
THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
ROOT = Path(__file__).resolve().parents[2]
STARTUP_LIMIT_S = 120.0
STOP_LIMIT_S = 10.0
_HEADER = struct.Struct(">I")


def worker_process_count(raw: str | None) -> int | None:
    """``FUNCTIONS_WORKER_PROCESS_COUNT`` as the host reads it; None when it is not set.

    ``int.Parse`` (leading and trailing white space and a sign allowed, nothing else): anything else
    stops the host; below 2 is 1; above ``MaxProcessCount`` (10) is refused.
    """
    if raw is None or raw == "":
        return None
    text = raw.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        raise SettingsError(
            f"{SETTING} must be a whole number (the host parses it with int.Parse), not {raw!r}"
        )
    count = max(1, int(text))
    if count > MAX_PROCESS_COUNT:
        raise SettingsError(
            f"{SETTING} is {count}: ProcessCount must not be greater than MaxProcessCount "
            f"({MAX_PROCESS_COUNT})"
        )
    return count


def thread_count(raw: str | None) -> int | None:
    """``PYTHON_THREADPOOL_THREAD_COUNT`` (1-32); None: the worker's default for Python 3.9+, which
    leaves the thread pool's size to ``ThreadPoolExecutor`` (min(32, cores + 4))."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{THREAD_COUNT_SETTING} must be a whole number, not {raw!r}") from None
    if not 1 <= value <= 32:
        raise SettingsError(f"{THREAD_COUNT_SETTING} must be between 1 and 32, not {value}")
    return value


class RpcException(Exception):  # noqa: N818 - the worker's own name for it
    """A function that raised in a worker process, as the host receives it: the message the worker
    formatted (``TypeName: text``) and the formatted traceback."""

    def __init__(self, message: str, stack_trace: str = "") -> None:
        super().__init__(message)
        self.message, self.stack_trace = message, stack_trace

    def __reduce__(self) -> tuple[Any, ...]:
        return (RpcException, (self.message, self.stack_trace))


class WorkerExited(RuntimeError):
    """The worker process running an invocation exited before it answered."""


def serialize_exception(exc: BaseException) -> RpcException:
    """The worker's ``_serialize_exception``: the message and the traceback entries."""
    return RpcException(f"{type(exc).__name__}: {exc}", "".join(traceback.format_tb(exc.__traceback__)))


# -- framing: a length and a pickle, both ways -----------------------------------------------------
def _frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def _read(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    try:
        head = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(head)
        data = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message: tuple[Any, ...] = pickle.loads(data)
    return message


# -- the host side -----------------------------------------------------------------------------------
PostGet = tuple[Callable[..., Awaitable[list[Any]]], Callable[..., Awaitable[list[Any]]]]


@dataclass
class _Channel:
    """One worker process and its pipe (the host's ``RpcWorkerChannel``)."""

    index: int
    proc: asyncio.subprocess.Process
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    alive: bool = True
    ready: asyncio.Future[int] | None = None
    reader_task: asyncio.Task[None] | None = None
    invocations: int = 0

    def send(self, message: tuple[Any, ...]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(_frame(message))


class WorkerPool:
    """N language worker processes and the host's round-robin dispatch over them.

    ``start`` spawns them and waits until each has loaded the app; ``invoke`` runs one function
    invocation in the next worker; ``stop`` ends them all (on every exit path: a stop message, then
    SIGKILL after ``STOP_LIMIT_S``; a worker whose host died sees its pipe close and exits, and on
    Linux the kernel signals it too).
    """

    def __init__(
        self,
        count: int,
        *,
        app_module: str = "function_app",
        client: PostGet | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one process")
        self.count, self.app_module, self.client = count, app_module, client
        self.env = dict(os.environ if env is None else env)
        self.channels: list[_Channel] = []
        self._counter = 0
        self._ids = 0
        self.snapshots: dict[int, Any] = {}

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.channels]

    async def start(self, limit_s: float = STARTUP_LIMIT_S) -> None:
        try:
            for i in range(self.count):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "devhost.functions_host.processes",
                    self.app_module,
                    str(i),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=ROOT,
                    env=self.env,
                    limit=2**26,
                )
                channel = _Channel(i, proc, ready=asyncio.get_running_loop().create_future())
                channel.reader_task = asyncio.create_task(self._read_loop(channel), name=f"worker {i}")
                self.channels.append(channel)
            deadline = time.monotonic() + limit_s
            for channel in self.channels:
                assert channel.ready is not None
                while not channel.ready.done():  # polled: a timed wait overruns under a shifted clock
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"worker process {channel.index} did not load the app in {limit_s:.0f} s"
                        )
                    await asyncio.sleep(0.05)
                channel.ready.result()
        except BaseException:
            await self.stop()
            raise
        atexit.register(self.kill_all)  # an exit that never reached stop() still ends them
        log.info("%d worker processes: %s", self.count, ", ".join(map(str, self.pids)))

    def _next(self) -> _Channel:
        live = [c for c in self.channels if c.alive]
        if not live:
            raise WorkerExited("no worker process is running")
        if len(live) == 1:
            return live[0]
        self._counter += 1  # Interlocked.Increment(ref _counter) % currentNumberOfWorkers
        return live[self._counter % len(live)]

    async def invoke(self, function_name: str, inv: Invocation) -> Datum | None:
        channel = self._next()
        self._ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        channel.pending[self._ids] = future
        channel.invocations += 1
        channel.send(("invoke", self._ids, function_name, inv))
        result: Datum | None = await future
        return result

    async def refresh_metrics(self) -> list[Any]:
        """Each live worker's snapshot of the app's instruments (cumulative since it started)."""
        waits = []
        for channel in self.channels:
            if channel.alive:
                self._ids += 1
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                channel.pending[self._ids] = future
                channel.send(("metrics", self._ids))
                waits.append((channel.index, future))
        for index, future in waits:
            with contextlib.suppress(WorkerExited):
                self.snapshots[index] = await future
        return list(self.snapshots.values())

    async def _read_loop(self, channel: _Channel) -> None:
        assert channel.proc.stdout is not None
        reader = channel.proc.stdout
        try:
            while True:
                message = await _read(reader)
                if message is None:
                    break
                kind = message[0]
                if kind == "result":
                    _, mid, ok, value = message
                    future = channel.pending.pop(mid, None)
                    if future is not None and not future.done():
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
                elif kind == "call":
                    asyncio.create_task(self._answer(channel, message))
                elif kind == "ready":
                    if channel.ready is not None and not channel.ready.done():
                        channel.ready.set_result(int(message[1]))
                elif kind == "failed":  # the app did not load
                    if channel.ready is not None and not channel.ready.done():
                        channel.ready.set_exception(
                            RuntimeError(f"worker process {channel.index}: {message[1]}")
                        )
        except Exception:
            log.exception("worker process %d: its pipe gave a message the host cannot read", channel.index)
            with contextlib.suppress(ProcessLookupError):
                channel.proc.kill()
        finally:
            channel.alive = False
            if channel.ready is not None and not channel.ready.done():
                channel.ready.set_exception(
                    RuntimeError(f"worker process {channel.index} exited while starting")
                )
            for future in channel.pending.values():
                if not future.done():
                    future.set_exception(WorkerExited(f"worker process {channel.proc.pid} exited"))
            channel.pending.clear()

    async def _answer(self, channel: _Channel, message: tuple[Any, ...]) -> None:
        """A Durable client request from a worker, answered by the host's in-process transport."""
        _, mid, method, url, args, kwargs = message
        try:
            if self.client is None:
                raise RuntimeError("the host serves no in-process Durable client to worker processes")
            post, get = self.client
            reply: Any = await (post if method == "post" else get)(url, *args, **kwargs)
            ok = True
        except Exception as exc:  # noqa: BLE001 - the worker's request raises it
            reply, ok = serialize_exception(exc), False
        if channel.alive:
            channel.send(("reply", mid, ok, reply))

    async def stop(self) -> None:
        for channel in self.channels:
            if channel.alive and channel.proc.returncode is None:
                with contextlib.suppress(Exception):
                    channel.send(("stop",))
                    assert channel.proc.stdin is not None
                    channel.proc.stdin.close()
        deadline = time.monotonic() + STOP_LIMIT_S
        for channel in self.channels:
            while channel.proc.returncode is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if channel.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    channel.proc.kill()
                with contextlib.suppress(Exception):
                    await channel.proc.wait()
            if channel.reader_task is not None:
                channel.reader_task.cancel()
                await asyncio.gather(channel.reader_task, return_exceptions=True)
        self.channels = [c for c in self.channels if c.proc.returncode is None]
        if not self.channels:
            atexit.unregister(self.kill_all)

    def kill_all(self) -> None:
        """Synchronous last resort (an exit path that cannot await)."""
        for channel in self.channels:
            if channel.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(channel.proc.pid, signal.SIGKILL)


def merge_snapshots(snapshots: list[Any]) -> Any:
    """The app's instruments over every process: sums added, histograms merged."""
    from devhost.metrics import Snapshot

    out = Snapshot()
    for snap in snapshots:
        for name, points in snap.sums.items():
            target = out.sums.setdefault(name, {})
            for attrs, value in points.items():
                target[attrs] = target.get(attrs, 0.0) + value
        for name, hpoints in snap.histograms.items():
            htarget = out.histograms.setdefault(name, {})
            for attrs, hist in hpoints.items():
                htarget[attrs] = hist if attrs not in htarget else htarget[attrs].add(hist)
    return out


class PooledMetrics:
    """The devhost's reader of the app's instruments when the app runs in worker processes: the host
    process's own snapshot plus the workers' latest (``refresh`` asks them)."""

    def __init__(self, local: Any, pool: WorkerPool) -> None:
        self.local, self.pool = local, pool

    async def refresh(self) -> None:
        await self.pool.refresh_metrics()

    def snapshot(self) -> Any:
        return merge_snapshots([self.local.snapshot(), *self.pool.snapshots.values()])


# -- the worker process ------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the process that started it dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class _WorkerSide:
    def __init__(self, reader: asyncio.StreamReader, out: Any) -> None:
        self.reader, self.out = reader, out
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = 0

    def send(self, message: tuple[Any, ...]) -> None:
        self.out.write(_frame(message))

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        """The SDK's ``post_async_request``/``get_async_request``, answered by the host."""
        self.ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.ids] = future
        self.send(("call", self.ids, method, url, args, kwargs))
        reply: list[Any] = await future
        return reply


async def _serve(app_module: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out_file = os.fdopen(_PROTOCOL_FD, "wb", buffering=0)
    transport, protocol_ = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out_file)
    writer = asyncio.StreamWriter(transport, protocol_, None, loop)
    side = _WorkerSide(reader, writer)
    try:
        from devhost import metrics
        from devhost.durable import protocol
        from devhost.functions_host.indexing import index_app
        from shared import runtime

        meter = metrics.install()  # before the app records anything, as in the host process
        runtime.reset()
        module = importlib.import_module(app_module)
        index = index_app(module.app, dict(os.environ))
        executor = ThreadPoolExecutor(
            max_workers=thread_count(os.environ.get(THREAD_COUNT_SETTING)), thread_name_prefix="worker"
        )
    except Exception as exc:  # noqa: BLE001 - the host reports it and stops
        side.send(("failed", f"{type(exc).__name__}: {exc}"))
        await writer.drain()
        return

    # The binding's in-process base URL means "the host, through this pipe"; any other URL (the
    # webhook server of ``--transport http``) is reached over HTTP by the SDK's own functions.
    from devhost.durable.client import INPROC_BASE_URL

    sdk: Any = sys.modules[protocol.CLIENT_MODULE]
    sdk_post, sdk_get = sdk.post_async_request, sdk.get_async_request

    async def post(url: str, *args: Any, **kwargs: Any) -> list[Any]:
        if not url.startswith(INPROC_BASE_URL):
            return list(await sdk_post(url, *args, **kwargs))
        return await side.request("post", url, *args, **kwargs)

    async def get(url: str, *args: Any, **kwargs: Any) -> list[Any]:
        if not url.startswith(INPROC_BASE_URL):
            return list(await sdk_get(url, *args, **kwargs))
        return await side.request("get", url, *args, **kwargs)

    async def run(mid: int, name: str, inv: Invocation) -> None:
        try:
            value = await index.functions[name].invoke(inv, executor)
            payload: tuple[Any, ...] = ("result", mid, True, value)
            data = _frame(payload)
        except Exception as exc:  # noqa: BLE001 - the worker answers every invocation
            data = _frame(("result", mid, False, serialize_exception(exc)))
        except BaseException as exc:  # SystemExit, CancelledError from app code: answer, then go on up
            writer.write(_frame(("result", mid, False, serialize_exception(exc))))
            raise
        writer.write(data)

    tasks: set[asyncio.Task[None]] = set()
    with protocol.client_transport(post, get):
        side.send(("ready", os.getpid()))
        while True:
            message = await _read(reader)
            if message is None or message[0] == "stop":
                break
            kind = message[0]
            if kind == "invoke":
                task = asyncio.create_task(run(message[1], message[2], message[3]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif kind == "reply":
                _, mid, ok, value = message
                future = side.pending.pop(mid, None)
                if future is not None and not future.done():
                    (future.set_result if ok else future.set_exception)(value)
            elif kind == "metrics":
                writer.write(_frame(("result", message[1], True, meter.snapshot())))
            await writer.drain()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    executor.shutdown(wait=False, cancel_futures=True)


_PROTOCOL_FD = -1


def main(argv: list[str]) -> int:
    """``python -m devhost.functions_host.processes APP_MODULE INDEX``: one worker process."""
    global _PROTOCOL_FD
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the host, which stops the workers
    # The protocol keeps the pipe the host reads; whatever the app prints goes to stderr.
    _PROTOCOL_FD = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(
        level=logging.WARNING,
        format=f"[worker {argv[1] if len(argv) > 1 else 0}] %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(argv[0]))
    return 0


if __name__ == "__main__":
    # Run as the module's importable name, so that what the worker pickles (RpcException) is the
    # class the host unpickles, not ``__main__``'s copy.
    from devhost.functions_host.processes import main as _main

    sys.exit(_main(sys.argv[1:]))
