"""The local servers the devhost starts from node_modules, each on a free loopback port.

- ``CosmosServer``: @vercel/cosmosdb-server (in memory: what it stores lives as long as it runs).
- ``AzuriteBlob``: Azurite's blob service, the host storage account (``AzureWebJobsStorage``)
  where parked trigger batches go; it keeps its data in the state dir, so parked
  batches outlive the devhost.

Both die with the devhost, even when it is killed (no orphans).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_not_exception_type,
    stop_before_delay,
    wait_exponential,
)

from devhost.functions_host.settings import ROOT

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long start-up waits for a server (a node server to listen, Cosmos to create its
# containers) before it gives up with a clear error. A loaded 2-core machine can take tens
# of seconds; a server that never answers must still end the wait.
STARTUP_LIMIT_S = 120.0
QUIET_S = 5.0  # retries before this are logged at INFO, later ones at WARNING
POLL_S = 0.02  # how often a start-up attempt is looked at

NODE_BIN = ROOT / "node_modules" / ".bin"


class ServerError(RuntimeError):
    """A local server is missing or did not start; the message says what to do."""


CosmosServerError = ServerError


def wait_ready(what: str, probe: Callable[[], T], *, limit_s: float = STARTUP_LIMIT_S) -> T:
    """``probe()``'s result once it returns without raising, retried with back-off for at most
    ``limit_s`` seconds. Each retry is logged (attempt, limit, elapsed, the error); after the
    bound a ``ServerError`` names what did not answer. A probe that hangs is abandoned at the
    bound (it runs in a daemon thread), so the wait never outlives ``limit_s``. A
    ``ServerError`` raised by the probe is final (e.g. the server process exited)."""
    started = time.monotonic()
    deadline = started + limit_s

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        elapsed = time.monotonic() - started
        # A server usually needs a second or two to listen: say so quietly at first, loudly later.
        log.log(
            logging.WARNING if elapsed >= QUIET_S else logging.INFO,
            "%s not ready (attempt %d, limit %.0fs, %.1fs elapsed): %s; retrying in %.1fs",
            what,
            state.attempt_number,
            limit_s,
            elapsed,
            _one_line(exc),
            state.upcoming_sleep,
        )

    retrying = Retrying(
        stop=stop_before_delay(limit_s),
        wait=wait_exponential(multiplier=0.1, max=5.0),
        retry=retry_if_not_exception_type(ServerError),
        before_sleep=log_retry,
        reraise=False,
    )
    try:
        return retrying(_bounded, probe, deadline, what)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise ServerError(
            f"{what} did not answer within {limit_s:.0f}s "
            f"({exc.last_attempt.attempt_number} attempts; last: {_one_line(last)})"
        ) from last


def _one_line(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "no error"
    return text.splitlines()[0][:200] if text else text


def _bounded(probe: Callable[[], T], deadline: float, what: str) -> T:
    """Run one attempt, giving up on it (not on the thread) at the deadline."""
    box: dict[str, object] = {}

    def attempt() -> None:
        try:
            box["value"] = probe()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=attempt, name=f"wait-ready {what}", daemon=True)
    thread.start()
    # Polled, not thread.join(timeout): a timed lock wait takes an absolute deadline that a
    # shifted clock (libfaketime, as `make test` runs the suite a second time) never reaches.
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if thread.is_alive():
        raise TimeoutError(f"no answer before the start-up limit ({what})")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the devhost dies, even by SIGKILL (no orphans)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class NodeServer:
    """A server from node_modules/.bin on a free loopback port, stopped with the devhost."""

    name = "server"

    def __init__(self, exe: Path) -> None:
        self.exe = exe
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = STARTUP_LIMIT_S) -> int:
        if not self.exe.exists():
            raise ServerError(f"{self.exe} is missing: run `make setup` (npm ci) first")
        port = free_port()
        proc = self.proc = subprocess.Popen(
            self.command(port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
        )

        def listens() -> None:
            if proc.poll() is not None:
                raise ServerError(f"{self.name} exited early with {proc.returncode}")
            _connect(port)

        try:
            wait_ready(f"{self.name} on port {port}", listens, limit_s=timeout)
        except ServerError:
            self.stop()
            raise
        self.port = port
        return port

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class CosmosServer(NodeServer):
    """An in-memory Cosmos DB server: what it stores lives as long as this process."""

    name = "cosmosdb-server"

    def __init__(self, exe: Path | None = None) -> None:
        super().__init__(exe or NODE_BIN / "cosmosdb-server")
        self.endpoint = ""

    def command(self, port: int) -> list[str]:
        return [str(self.exe), "--port", str(port), "--host", "127.0.0.1", "--no-ssl"]

    def start(self, timeout: float = STARTUP_LIMIT_S) -> str:  # type: ignore[override]
        self.endpoint = f"http://127.0.0.1:{super().start(timeout)}"
        return self.endpoint


# The well-known Azurite development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class Azurite(NodeServer):
    """Azurite's blob and queue services (and table, which it always starts), persisting under
    ``location``: the host storage account (parked batches, outbox reminders)."""

    name = "azurite"

    def __init__(self, location: Path, exe: Path | None = None) -> None:
        super().__init__(exe or NODE_BIN / "azurite")
        self.location = location
        self.queue_port = 0
        self.table_port = 0

    def command(self, port: int) -> list[str]:
        self.location.mkdir(parents=True, exist_ok=True)
        self.queue_port, self.table_port = free_port(), free_port()
        return [
            str(self.exe),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--location",
            str(self.location),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.table_port),
        ]

    def start_connection_string(self, timeout: float = STARTUP_LIMIT_S) -> str:
        port = self.start(timeout)
        queue_port = self.queue_port
        what = f"azurite's queue service on port {queue_port}"
        wait_ready(what, lambda: _connect(queue_port), limit_s=timeout)
        return azurite_connection_string(
            f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
            f"http://127.0.0.1:{self.queue_port}/{AZURITE_ACCOUNT}",
        )


def azurite_connection_string(
    blob_endpoint: str = "http://127.0.0.1:10000/devstoreaccount1", queue_endpoint: str | None = None
) -> str:
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint={blob_endpoint};"
    )
    return conn + (f"QueueEndpoint={queue_endpoint};" if queue_endpoint else "")
