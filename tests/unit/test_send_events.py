"""Tests of the Event Hubs load producer (scripts/send_events.py).

What is real: the journeys (shared.journeys), the CloudEvent bodies and their
parsing (shared.events.parse), and the azure-eventhub ``EventDataBatch`` objects
with the SDK's own size accounting. What is replaced, and why: no Event Hubs
broker can run here, so the send call is a capturing callable. The batches are
built with the public ``EventDataBatch(max_size_in_bytes=, partition_key=)``
constructor, which is what ``EventHubProducerClient.create_batch`` returns, because
``create_batch`` opens a link to read the maximum message size and fails offline
(checked with azure-eventhub 5.15.1). The retry counter is checked against a real
``EventHubProducerClient`` whose connection is refused on loopback. Pacing runs
on an injected clock, never on wall-time sleeps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError, OperationTimeoutError

from scripts import send_events as se
from shared.events import Dropped, PlayerEvent, Rejected, parse
from shared.journeys import generate, interleave

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 21, tzinfo=UTC)
REFUSED = "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=x;SharedAccessKey=eA==;EntityPath=player-events"


def real_batch(key: str, max_size: int | None) -> EventDataBatch:
    return EventDataBatch(max_size_in_bytes=max_size, partition_key=key)


class FakeClock:
    """Monotonic time that only moves when slept on (or when a test moves it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Capture:
    """The send call: records each real batch; optionally fails given batch numbers."""

    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.batches: list[EventDataBatch] = []
        self.fail = fail or {}
        self.calls = 0

    def __call__(self, batch: EventDataBatch) -> None:
        self.calls += 1
        if self.calls in self.fail:
            raise self.fail[self.calls]
        self.batches.append(batch)


def batch_events(batch: EventDataBatch) -> list[Any]:
    # EventDataBatch has no public accessor for its events; reading them back proves
    # the real batch (not only our bookkeeping) holds what we think it holds.
    return list(batch._internal_events)


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return list(interleave(generate(25, seed=11, start=START, duration=timedelta(hours=8))))


def test_pack_sends_every_event_once_in_player_order_within_size(stream: list[dict[str, Any]]) -> None:
    limit = 2048
    packed = se.pack(stream, real_batch, limit)

    sent: list[bytes] = []
    per_player: dict[str, list[str]] = defaultdict(list)
    for p in packed:
        events = batch_events(p.batch)
        assert len(p.batch) == len(events) == len(p.bodies) > 0
        assert p.batch.size_in_bytes <= limit
        assert [b"".join(e.body) for e in events] == p.bodies
        assert {e.partition_key for e in events} == {p.partition_key}
        assert {e.content_type for e in events} == {se.CONTENT_TYPE}
        for body in p.bodies:
            doc = json.loads(body)
            assert doc["subject"] == p.partition_key
            per_player[p.partition_key].append(doc["id"])
        sent.extend(p.bodies)

    assert Counter(sent) == Counter(se.encode(e) for e in stream)
    assert len(sent) == len(stream)
    expected: dict[str, list[str]] = defaultdict(list)
    for e in stream:
        expected[e["subject"]].append(e["id"])
    assert per_player == expected
    # The small limit forces several batches for busy players: the split path is exercised.
    assert len(packed) > len(expected)
    assert max(len(p.bodies) for p in packed) > 1


def test_bodies_are_valid_cloudevents(stream: list[dict[str, Any]]) -> None:
    now_ms = int((START + timedelta(days=1)).timestamp() * 1000)
    kinds: Counter[str] = Counter()
    for p in se.pack(stream[:400], real_batch):
        for body in p.bodies:
            result = parse(body, now_ms=now_ms)
            assert not isinstance(result, Rejected), result
            if isinstance(result, PlayerEvent):
                assert result.player_id == p.partition_key
            kinds[type(result).__name__] += 1
    assert kinds[PlayerEvent.__name__] > 0
    assert set(kinds) <= {PlayerEvent.__name__, Dropped.__name__}


def test_event_larger_than_an_empty_batch_is_refused(stream: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="does not fit an empty batch"):
        se.pack(stream[:1], real_batch, 100)


def test_pacer_sleeps_to_the_target_rate_and_bounds_bursts() -> None:
    clock = FakeClock()
    pacer = se.Pacer(100.0, clock=clock, sleep=clock.sleep, max_burst_s=0.5)
    for _ in range(5):
        pacer.wait(10)
    # First batch is due at once; each further 10 events are due 0.1 s later.
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1, 0.1])
    pacer.finish()
    assert clock.now - 1000.0 == pytest.approx(50 / 100.0)

    # A send that stalls 3 s: at most 0.5 s (50 events) is caught up without sleeping.
    clock.now += 3.0
    slept_before = len(clock.sleeps)
    caught_up = 0
    while pacer.wait(10) == 0.0:
        caught_up += 10
    assert caught_up == 60  # the 50-event burst allowance, plus the 10 due at the stall's end
    assert len(clock.sleeps) == slept_before + 1


def test_pacer_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        se.Pacer(0)


def test_producer_paces_sends_and_summarises(stream: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    send = Capture()
    rate, limit = 200.0, 600
    producer = se.Producer(
        send, real_batch, rate=rate, group_seconds=0.5, clock=clock, sleep=clock.sleep, max_size_in_bytes=4096
    )
    summary = producer.run(stream, limit)

    bodies = [b"".join(e.body) for b in send.batches for e in batch_events(b)]
    assert bodies == [b for chunk in _chunks(stream[:limit], 100) for b in _grouped(chunk)]
    assert summary.events == limit and summary.target_events == limit
    assert summary.batches == len(send.batches)
    assert summary.bytes == sum(len(b) for b in bodies)
    assert summary.elapsed_s == pytest.approx(limit / rate)
    assert summary.rate == pytest.approx(rate)
    assert (summary.throttled_batches, summary.failed_events, summary.exhausted) == (0, 0, False)
    assert "achieved 200.0 events/s" in summary.render()


def test_producer_counts_throttled_batches_and_goes_on(stream: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    busy = EventHubError(
        "The request was terminated because the entity is being throttled (com.microsoft:server-busy)"
    )
    send = Capture(fail={2: busy, 4: OperationTimeoutError("send timed out")})
    producer = se.Producer(send, real_batch, rate=1000.0, clock=clock, sleep=clock.sleep)
    summary = producer.run(stream, 300)

    delivered = sum(len(b) for b in send.batches)
    assert summary.throttled_batches == 2
    assert summary.events == delivered
    assert summary.failed_events == 300 - delivered > 0
    assert summary.batches == send.calls - 2
    assert "batches failed after retries on throttling/timeouts: 2" in summary.render()


def test_producer_raises_errors_that_are_not_throttling(stream: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    send = Capture(fail={1: EventHubError("Unauthorized access. 'Send' claim(s) are required")})
    with pytest.raises(EventHubError, match="Unauthorized"):
        se.Producer(send, real_batch, rate=1000.0, clock=clock, sleep=clock.sleep).run(stream, 50)


def test_producer_reports_exhausted_journeys(stream: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    summary = se.Producer(Capture(), real_batch, rate=1e6, clock=clock, sleep=clock.sleep).run(
        stream[:40], 1000
    )
    assert summary.events == 40 and summary.exhausted
    assert "ran out" in summary.render()


def test_retry_counter_counts_the_clients_own_retries() -> None:
    """A real producer client against a refused loopback port retries with our options."""
    counter = se.RetryCounter().install()
    client = EventHubProducerClient.from_connection_string(
        REFUSED, retry_total=2, retry_backoff_factor=0.01, retry_mode="exponential"
    )
    clock = FakeClock()
    try:
        producer = se.Producer(
            client.send_batch, real_batch, rate=1e6, clock=clock, sleep=clock.sleep, retry_counter=counter
        )
        with pytest.raises(EventHubError):
            producer.run(generate(1, seed=1, start=START, duration=timedelta(hours=2))[0].events, 1)
    finally:
        counter.uninstall()
        client.close()
    assert counter.gave_up >= 1
    # Every operation the client gave up on was tried 1 + retry_total times.
    assert counter.retries == 2 * counter.gave_up
    assert counter.throttled_retries == 0


def test_throttle_classification() -> None:
    assert se.is_throttle(OperationTimeoutError("timed out"))
    assert se.is_throttle(EventHubError("com.microsoft:server-busy: ServerBusy"))
    assert not se.is_throttle(EventHubError("amqp:unauthorized-access"))


def test_cli_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    code = se.main(["--dry-run", "--players", "20", "--rate", "400", "--duration", "0.25", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "events built (dry run, not sent): 100 of 100 targeted" in out


def test_cli_requires_a_target_unless_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(se.CONNECTION_STRING_ENV, raising=False)
    with pytest.raises(SystemExit):
        se.parse_args(["--rate", "10"])
    monkeypatch.setenv(se.CONNECTION_STRING_ENV, "Endpoint=sb://localhost;UseDevelopmentEmulator=true")
    assert se.parse_args([]).connection_string.startswith("Endpoint=sb://localhost")


def _chunks(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _grouped(chunk: list[dict[str, Any]]) -> list[bytes]:
    """The order the producer must send a chunk in: players by first appearance, each in stream order."""
    groups: dict[str, list[bytes]] = {}
    for e in chunk:
        groups.setdefault(e["subject"], []).append(se.encode(e))
    return [b for bodies in groups.values() for b in bodies]


def _free_loopback_port() -> int:
    """A loopback port with nothing listening: bound to find a free number, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _emulator(port: int) -> str:
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


def test_endpoint_is_where_the_client_connects() -> None:
    # azure-eventhub 5.15: TLS (5671, the endpoint's port ignored) unless UseDevelopmentEmulator=true.
    assert se.endpoint_of(_emulator(5999), None) == ("127.0.0.1", 5999, True)
    readme = "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"
    assert se.endpoint_of(readme, None) == ("localhost", 5672, True)
    assert se.endpoint_of(REFUSED, None) == ("127.0.0.1", 5671, False)
    assert se.endpoint_of(None, "ns1") == ("ns1.servicebus.windows.net", 5671, False)
    assert se.endpoint_of(None, "ns1.servicebus.windows.net") == ("ns1.servicebus.windows.net", 5671, False)
    with pytest.raises(ValueError):
        se.endpoint_of("not a connection string", None)


def test_probe_passes_a_listening_port_and_names_a_refused_one() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        se.probe("127.0.0.1", server.getsockname()[1])  # no exception: something answers
    port = _free_loopback_port()
    with pytest.raises(se.EndpointUnreachable, match=f"127.0.0.1:{port}: connection refused"):
        se.probe("127.0.0.1", port)


def test_cli_fails_fast_in_one_line_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The emulator's connection string with no emulator: exit 1 at once, not after the client's retries."""
    monkeypatch.delenv(se.CONNECTION_STRING_ENV, raising=False)
    port = _free_loopback_port()
    started = time.monotonic()
    code = se.main(["--connection-string", _emulator(port), "--duration", "5", "--no-progress"])
    took = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1
    assert took < 5.0, f"took {took:.1f} s"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert f"127.0.0.1:{port}" in lines[0] and "connection refused" in lines[0]
    assert "emulator" in lines[0]
    assert captured.out == ""


def test_cli_process_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    """The same as a user runs it (python -m scripts.send_events), bounded by a timeout."""
    port = _free_loopback_port()
    env = {k: v for k, v in os.environ.items() if k != se.CONNECTION_STRING_ENV}
    env[se.CONNECTION_STRING_ENV] = _emulator(port)
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.send_events", "--duration", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # the import alone takes a few seconds on a busy machine; the retries took ~50 s
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"send_events: cannot reach the Event Hubs endpoint 127.0.0.1:{port}: connection refused: "
        "nothing is listening there (is the Event Hubs emulator running?)"
    ]


def test_cli_refuses_a_malformed_connection_string(capsys: pytest.CaptureFixture[str]) -> None:
    assert se.main(["--connection-string", "Endpoint=nonsense", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("send_events: unusable connection string")
