"""Start and stop a local @vercel/cosmosdb-server (from node_modules) on a free loopback port."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path

from devhost.settings import ROOT

NODE_BIN = ROOT / "node_modules" / ".bin"


class CosmosServerError(RuntimeError):
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


class CosmosServer:
    """An in-memory Cosmos DB server: what it stores lives as long as this process."""

    def __init__(self, exe: Path | None = None) -> None:
        self.exe = exe or NODE_BIN / "cosmosdb-server"
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self, timeout: float = 30.0) -> str:
        if not self.exe.exists():
            raise CosmosServerError(f"{self.exe} is missing: run `make setup` (npm ci) first")
        port = free_port()
        self.proc = subprocess.Popen(
            [str(self.exe), "--port", str(port), "--host", "127.0.0.1", "--no-ssl"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CosmosServerError(f"cosmosdb-server exited early with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    self.endpoint = f"http://127.0.0.1:{port}"
                    return self.endpoint
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise CosmosServerError(f"cosmosdb-server did not listen on port {port} within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
