"""The local servers the devhost starts from node_modules, each on a free loopback port.

- ``CosmosServer``: @vercel/cosmosdb-server (in memory: what it stores lives as long as it runs).
- ``AzuriteBlob``: Azurite's blob service, the host storage account (``AzureWebJobsStorage``)
  where parked trigger batches go; it keeps its data in the state dir, so parked
  batches outlive the devhost.

Both die with the devhost, even when it is killed (no orphans).
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path

from devhost.settings import ROOT

NODE_BIN = ROOT / "node_modules" / ".bin"


class ServerError(RuntimeError):
    """A local server is missing or did not start; the message says what to do."""


CosmosServerError = ServerError


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

    def start(self, timeout: float = 30.0) -> int:
        if not self.exe.exists():
            raise ServerError(f"{self.exe} is missing: run `make setup` (npm ci) first")
        port = free_port()
        self.proc = subprocess.Popen(
            self.command(port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited early with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    self.port = port
                    return port
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ServerError(f"{self.name} did not listen on port {port} within {timeout}s")

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

    def start(self, timeout: float = 30.0) -> str:  # type: ignore[override]
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

    def start_connection_string(self, timeout: float = 30.0) -> str:
        port = self.start(timeout)
        _wait_for(self.queue_port, timeout)
        return azurite_connection_string(
            f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
            f"http://127.0.0.1:{self.queue_port}/{AZURITE_ACCOUNT}",
        )


def _wait_for(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServerError(f"azurite did not listen on port {port} within {timeout}s")


def azurite_connection_string(
    blob_endpoint: str = "http://127.0.0.1:10000/devstoreaccount1", queue_endpoint: str | None = None
) -> str:
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint={blob_endpoint};"
    )
    return conn + (f"QueueEndpoint={queue_endpoint};" if queue_endpoint else "")
