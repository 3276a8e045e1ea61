"""A loopback HTTP proxy in front of the Cosmos DB server that injects faults into document writes.

Modes (combinable): the first ``failures`` document writes answered with ``status``
(0: the connection is dropped without an answer); a random ``mix`` of faults per
write (e.g. 35% 429 with ``x-ms-retry-after-ms``, 5% 503, 5% resets), seeded; a
``blackhole`` switch under which every request (reads too) hangs unanswered until
switched off or the client gives up; a ``hold_writes`` switch under which every write
(POST, PUT, DELETE: creating a database or a container too) waits until switched off and
is then forwarded (a slow server: the client may have timed out meanwhile); and a
``write_delay_s`` per write (a service's latency). Used by the tests and by
``make reliability`` (loopback only).
"""

from __future__ import annotations

import dataclasses
import http.client
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        status: int,
        failures: int,
        retry_after_ms: int = 50,
        write_delay_s: float = 0.0,
        mix: dict[int, float] | None = None,
        seed: int = 0,
    ) -> None:
        self.upstream_port = upstream_port
        # status -> probability per document write (0 means a dropped connection).
        self.mix = dict(mix or {})
        self._rng = random.Random(seed)
        self.faults_by_status: dict[int, int] = {}
        self.blackhole = threading.Event()  # set: every request hangs unanswered
        self.hold_writes = threading.Event()  # set: writes wait, then are forwarded
        # Each document write waits this long first (a service's write latency, e.g. ~40 ms in Azure).
        self.write_delay_s = write_delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.status = status
        self.failures_left = failures
        self.retry_after_ms = retry_after_ms
        self.faults_served = 0
        self._closing = False
        self.writes_seen = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                is_query = (self.headers.get("x-ms-documentdb-isquery") or "").lower() == "true" or (
                    "query+json" in (self.headers.get("Content-Type") or "")
                )
                is_doc_write = self.command in ("POST", "PUT") and "/docs" in self.path and not is_query
                if proxy.blackhole.is_set():
                    while proxy.blackhole.is_set() and not proxy._closing:
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                while proxy.hold_writes.is_set() and self.command != "GET" and not proxy._closing:
                    time.sleep(0.05)
                status = proxy.status
                if is_doc_write:
                    with proxy._lock:
                        proxy.writes_seen += 1
                        fail = proxy.failures_left > 0
                        if fail:
                            proxy.failures_left -= 1
                        elif proxy.mix:
                            roll, acc = proxy._rng.random(), 0.0
                            for code, share in proxy.mix.items():
                                acc += share
                                if roll < acc:
                                    fail, status = True, code
                                    break
                        if fail:
                            proxy.faults_served += 1
                            proxy.faults_by_status[status] = proxy.faults_by_status.get(status, 0) + 1
                    if fail and status == 0:  # a dropped connection: no response at all
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if fail:
                        body = b'{"code":"TooManyRequests","message":"injected"}'
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("x-ms-retry-after-ms", str(proxy.retry_after_ms))
                        self.send_header("x-ms-substatus", "3200" if status == 429 else "0")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                if is_doc_write and proxy.write_delay_s:
                    with proxy._lock:
                        proxy.in_flight += 1
                        proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    time.sleep(proxy.write_delay_s)
                    with proxy._lock:
                        proxy.in_flight -= 1
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        self.blackhole.clear()
        self.hold_writes.clear()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def behind_proxy(settings: Any, **proxy: Any) -> Iterator[tuple[FaultProxy, Any]]:
    """The same Cosmos settings, reached through a FaultProxy in front of the real server."""
    upstream = urlparse(settings.endpoint).port
    assert upstream, settings.endpoint
    with FaultProxy(upstream, **proxy) as fault:
        yield fault, dataclasses.replace(settings, endpoint=f"http://127.0.0.1:{fault.port}")
