"""Send seeded synthetic player journeys to an Event Hub as CloudEvents, at a target rate.

Used for load tests and demos against a real Event Hub (``--namespace`` with
``az login`` / DefaultAzureCredential) or the Event Hubs emulator
(``--connection-string`` or ``EVENTHUB_CONNECTION_STRING``).

Why it is built this way:

- The partition key is the player id, so one player's events land on one
  partition in order; the Functions trigger and the player entity rely on that.
  Events are therefore grouped per player and packed into ``EventDataBatch``es
  created with ``partition_key=`` (the service hashes the key; the batch is one
  AMQP message, so all its events share the key).
- Batches are filled with ``batch.add()`` until it raises ``ValueError`` (the
  SDK's own size accounting, including the key annotation) and then sent; we
  never estimate AMQP overhead ourselves.
- Retries are the client's (``retry_total``, ``retry_backoff_factor``,
  ``retry_mode='exponential'``). We only *count* them (from the SDK's retry log
  record) and count throttling (server-busy / timeouts) that survived them, so
  the summary tells whether the namespace's throughput units were the limit.
- Before the client is built, one TCP connect to the endpoint's host and port
  (``probe``, 3 s): a refused or unresolvable endpoint (the emulator not started,
  a mistyped namespace) is one line and exit 1 at once, instead of the client's
  retries on every link it opens (about 50 s with the defaults). A probe rather
  than a short retry policy on the first send: the client's retry options are
  fixed when it is built and are meant for throttling under load, and a probe
  names the host and port that did not answer. Anything past the TCP connect
  (TLS, AMQP, authorisation) still goes through the client and its retries.
- Pacing is a token bucket over events (``Pacer``) with an injectable clock and
  sleep, and the core (``pack``, ``Producer``) takes the batch factory and the
  send call as arguments, so tests drive real batches without a broker.

Run ``python -m scripts.send_events --help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlparse

import msgspec
from azure.core.utils import parse_connection_string
from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError, OperationTimeoutError

from shared.journeys import generate, interleave

log = logging.getLogger("scripts.send_events")

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
DEFAULT_EVENTHUB = "player-events"
CONNECTION_STRING_ENV = "EVENTHUB_CONNECTION_STRING"
# The SDK's default batch limit when no link is open (dry runs): 1 MiB, the Standard tier's message size.
DRY_RUN_MAX_BATCH_BYTES = 1024 * 1024
# The logger whose INFO record "... has an exception (...). Retrying..." marks one built-in retry.
SDK_RETRY_LOGGER = "azure.eventhub._client_base"
_THROTTLE_MARKERS = ("server-busy", "serverbusy", "throttl")
# Where the client's AMQP connection goes (azure-eventhub 5.15, _pyamqp/_connection.py): TLS on 5671
# (the endpoint's own port is ignored), or, with UseDevelopmentEmulator=true (TLS off,
# _client_base.py), the endpoint's port or 5672.
AMQPS_PORT = 5671
AMQP_PORT = 5672
PROBE_TIMEOUT_S = 3.0

MakeBatch = Callable[[str, int | None], EventDataBatch]
SendBatch = Callable[[EventDataBatch], None]


class Progress(Protocol):
    def update(self, n: int) -> Any: ...


def encode(event: dict[str, Any]) -> bytes:
    """Structured-mode CloudEvent JSON, compact (the body is what the trigger parses)."""
    return msgspec.json.encode(event)


def to_event_data(body: bytes) -> EventData:
    event = EventData(body)
    event.content_type = CONTENT_TYPE
    return event


def is_throttle(exc: BaseException) -> bool:
    """Server busy (the namespace is over its throughput units) or a send that timed out under load."""
    if isinstance(exc, OperationTimeoutError):
        return True
    text = f"{exc!r} {exc}".lower()
    return any(marker in text for marker in _THROTTLE_MARKERS)


@dataclass
class Packed:
    """One ready batch and the bodies in it (the batch itself does not expose its events)."""

    partition_key: str
    batch: EventDataBatch
    bodies: list[bytes]


def pack(
    events: Iterable[dict[str, Any]], make_batch: MakeBatch, max_size_in_bytes: int | None = None
) -> list[Packed]:
    """Group CloudEvents by player (``subject``) and pack each group into size-limited batches.

    Players keep first-seen order and each player's events keep stream order, so
    sending the result in list order preserves per-player order. Raises
    ValueError for a single event larger than the batch limit: it could never be sent.
    """
    groups: dict[str, list[bytes]] = {}
    for event in events:
        groups.setdefault(str(event["subject"]), []).append(encode(event))
    out: list[Packed] = []
    for key, bodies in groups.items():
        batch = make_batch(key, max_size_in_bytes)
        current: list[bytes] = []
        for body in bodies:
            try:
                batch.add(to_event_data(body))
            except ValueError:
                if not current:
                    raise _too_large(key, body, batch) from None
                out.append(Packed(key, batch, current))
                batch, current = make_batch(key, max_size_in_bytes), []
                try:
                    batch.add(to_event_data(body))
                except ValueError:
                    raise _too_large(key, body, batch) from None
            current.append(body)
        if current:
            out.append(Packed(key, batch, current))
    return out


def _too_large(key: str, body: bytes, batch: EventDataBatch) -> ValueError:
    return ValueError(
        f"event of {len(body)} bytes for {key} does not fit an empty batch "
        f"(limit {batch.max_size_in_bytes} bytes)"
    )


class Pacer:
    """Token bucket over events: the k-th event is due at ``start + k / rate``.

    Sleeping until a batch's first event is due keeps the achieved rate at the
    target however long each send takes. After a stall (a slow or throttled
    send) at most ``max_burst_s`` worth of events is caught up at once, so the
    generator does not flood a namespace that just told it to slow down.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_burst_s: float = 1.0,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        self.rate, self.clock, self.sleep, self.max_burst_s = rate, clock, sleep, max_burst_s
        self.start: float | None = None
        self.issued = 0
        self.slept = 0.0

    def wait(self, n: int) -> float:
        """Block until the next ``n`` events may go out; returns the seconds slept."""
        now = self.clock()
        if self.start is None:
            self.start = now
        due = self.start + self.issued / self.rate
        slept = 0.0
        if due > now:
            slept = due - now
            self.sleep(slept)
        elif now - due > self.max_burst_s:
            self.start += (now - due) - self.max_burst_s  # forgive the stall beyond one burst
        self.issued += n
        self.slept += slept
        return slept

    def finish(self) -> float:
        """Wait out the last batch's share of time, so elapsed time matches events / rate."""
        return self.wait(0)


class RetryCounter(logging.Handler):
    """Counts the client's built-in retries from the records it logs around them.

    The SDK retries inside ``send_batch`` and exposes no counter, but logs one
    INFO record "... has an exception (...). Retrying..." per failed attempt
    (also for the last one) and one "exhausted retry" / "returns an exception"
    record when it gives up; retries are the difference. Counting them keeps the
    retrying the SDK's own (no hand-written retry loop) while still reporting it.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.failed_attempts = 0
        self.gave_up = 0
        self.throttled_attempts = 0
        self.throttled_gave_up = 0
        self._lock = threading.Lock()
        self._saved_level: int | None = None

    @property
    def retries(self) -> int:
        return self.failed_attempts - self.gave_up

    @property
    def throttled_retries(self) -> int:
        return self.throttled_attempts - self.throttled_gave_up

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        throttled = any(marker in message.lower() for marker in _THROTTLE_MARKERS)
        with self._lock:
            if message.endswith("Retrying..."):
                self.failed_attempts += 1
                self.throttled_attempts += throttled
            elif "has exhausted retry" in message or " returns an exception " in message:
                self.gave_up += 1
                self.throttled_gave_up += throttled

    def install(self, logger_name: str = SDK_RETRY_LOGGER) -> RetryCounter:
        sdk_logger = logging.getLogger(logger_name)
        if sdk_logger.getEffectiveLevel() > logging.INFO:
            self._saved_level = sdk_logger.level
            sdk_logger.setLevel(logging.INFO)
        sdk_logger.addHandler(self)
        return self

    def uninstall(self, logger_name: str = SDK_RETRY_LOGGER) -> None:
        sdk_logger = logging.getLogger(logger_name)
        sdk_logger.removeHandler(self)
        if self._saved_level is not None:
            sdk_logger.setLevel(self._saved_level)
            self._saved_level = None


@dataclass
class Summary:
    events: int = 0
    batches: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    retries: int = 0
    throttled_retries: int = 0
    throttled_batches: int = 0
    failed_events: int = 0
    target_events: int = 0
    exhausted: bool = False
    dry_run: bool = False

    @property
    def rate(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        verb = "built (dry run, not sent)" if self.dry_run else "sent"
        lines = [
            f"events {verb}: {self.events} of {self.target_events} targeted in {self.batches} batches, "
            f"{self.bytes} body bytes",
            f"elapsed {self.elapsed_s:.1f}s, achieved {self.rate:.1f} events/s",
            f"retries by the client: {self.retries} ({self.throttled_retries} throttled); "
            f"batches failed after retries on throttling/timeouts: {self.throttled_batches} "
            f"({self.failed_events} events not sent)",
        ]
        if self.exhausted:
            lines.append("the journeys ran out before the duration: raise --players or --window-hours")
        return "\n".join(lines)


class Producer:
    """Paces, packs and sends a CloudEvent stream; the network is only behind ``send_batch``."""

    def __init__(
        self,
        send_batch: SendBatch,
        make_batch: MakeBatch,
        *,
        rate: float,
        max_size_in_bytes: int | None = None,
        group_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retry_counter: RetryCounter | None = None,
        progress: Progress | None = None,
        dry_run: bool = False,
    ) -> None:
        self.send_batch, self.make_batch = send_batch, make_batch
        self.max_size_in_bytes = max_size_in_bytes
        self.pacer = Pacer(rate, clock=clock, sleep=sleep)
        self.clock = clock
        # Events grouped per flush: more gives fuller per-player batches, less gives smoother pacing.
        self.chunk = max(1, round(rate * group_seconds))
        self.retry_counter = retry_counter
        self.progress = progress
        self.dry_run = dry_run

    def run(self, events: Iterable[dict[str, Any]], limit: int) -> Summary:
        """Send up to ``limit`` events of the stream; throttled batches are counted, other errors raise."""
        summary = Summary(target_events=limit, dry_run=self.dry_run)
        retries_before = self._retries()
        stream: Iterator[dict[str, Any]] = iter(events)
        remaining = limit
        while remaining > 0:
            chunk = list(islice(stream, min(self.chunk, remaining)))
            if not chunk:
                summary.exhausted = True
                break
            remaining -= len(chunk)
            for packed in pack(chunk, self.make_batch, self.max_size_in_bytes):
                self.pacer.wait(len(packed.bodies))
                try:
                    self.send_batch(packed.batch)
                except EventHubError as exc:
                    if not is_throttle(exc):
                        raise
                    log.warning("batch for %s not sent after retries: %s", packed.partition_key, exc)
                    summary.throttled_batches += 1
                    summary.failed_events += len(packed.bodies)
                else:
                    summary.events += len(packed.bodies)
                    summary.batches += 1
                    summary.bytes += sum(len(b) for b in packed.bodies)
                if self.progress is not None:
                    self.progress.update(len(packed.bodies))
        self.pacer.finish()
        if self.pacer.start is not None:
            summary.elapsed_s = self.clock() - self.pacer.start
        after = self._retries()
        summary.retries = after[0] - retries_before[0]
        summary.throttled_retries = after[1] - retries_before[1]
        return summary

    def _retries(self) -> tuple[int, int]:
        if self.retry_counter is None:
            return (0, 0)
        return (self.retry_counter.retries, self.retry_counter.throttled_retries)


def journey_stream(
    players: int, seed: int, window: timedelta, now: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """All players' events in time order over a window that ends now.

    The window ends at the current time because the trigger rejects events
    dated more than a few minutes in the future.
    """
    end = now or datetime.now(UTC)
    return interleave(generate(players, seed, end - window, window))


class EndpointUnreachable(Exception):
    """The endpoint's host and port do not accept a TCP connection (nothing to retry against)."""


class Endpoint(NamedTuple):
    host: str
    port: int
    emulator: bool = False


def endpoint_of(connection_string: str | None, namespace: str | None) -> Endpoint:
    """The host and port the producer client will open its AMQP connection to."""
    if connection_string:
        settings = parse_connection_string(connection_string, case_sensitive_keys=False)
        parsed = urlparse(str(settings.get("endpoint") or settings.get("hostname") or ""))
        if not parsed.hostname:  # the client refuses it too ("Invalid Endpoint")
            raise ValueError("Endpoint must be sb://<host>[:<port>]")
        if str(settings.get("usedevelopmentemulator", "")).lower() == "true":
            return Endpoint(parsed.hostname, parsed.port or AMQP_PORT, emulator=True)
        return Endpoint(parsed.hostname, AMQPS_PORT)
    if not namespace:
        raise ValueError("no connection string and no namespace")
    return Endpoint(namespace if "." in namespace else f"{namespace}.servicebus.windows.net", AMQPS_PORT)


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One TCP connect to ``host:port``; raises EndpointUnreachable with the reason when it fails."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except ConnectionRefusedError:
        reason = "connection refused: nothing is listening there"
    except socket.gaierror as exc:
        reason = f"the host name does not resolve ({exc.strerror or exc})"
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise EndpointUnreachable(f"{host}:{port}: {reason}")


def make_client(args: argparse.Namespace) -> EventHubProducerClient:
    retry: dict[str, Any] = {
        "retry_total": args.retry_total,
        "retry_backoff_factor": args.retry_backoff_factor,
        "retry_backoff_max": args.retry_backoff_max,
        "retry_mode": "exponential",
    }
    if args.connection_string:
        return EventHubProducerClient.from_connection_string(
            args.connection_string, eventhub_name=args.eventhub, **retry
        )
    from azure.identity import DefaultAzureCredential

    namespace = args.namespace if "." in args.namespace else f"{args.namespace}.servicebus.windows.net"
    return EventHubProducerClient(
        fully_qualified_namespace=namespace,
        eventhub_name=args.eventhub,
        credential=DefaultAzureCredential(),
        **retry,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.send_events", description=__doc__.split("\n\n")[0])
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--namespace",
        help="Event Hubs namespace FQDN (<name>.servicebus.windows.net); uses "
        "DefaultAzureCredential (az login, managed identity)",
    )
    auth.add_argument(
        "--connection-string",
        default=os.environ.get(CONNECTION_STRING_ENV),
        help=f"connection string, for the emulator (default: ${CONNECTION_STRING_ENV})",
    )
    p.add_argument("--eventhub", default=DEFAULT_EVENTHUB, help="event hub name (default: %(default)s)")
    p.add_argument("--players", type=int, default=1000, help="simulated players (default: %(default)s)")
    p.add_argument("--rate", type=float, default=100.0, help="target events/s (default: %(default)s)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to send for (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="journey seed (default: %(default)s)")
    p.add_argument(
        "--window-hours",
        type=float,
        default=24.0,
        help="simulated hours of journeys, ending now (default: %(default)s)",
    )
    p.add_argument(
        "--group-seconds",
        type=float,
        default=1.0,
        help="seconds of events grouped per player before packing (default: %(default)s)",
    )
    p.add_argument(
        "--max-batch-bytes",
        type=int,
        default=None,
        help="batch size limit (default: the link's maximum message size)",
    )
    p.add_argument("--retry-total", type=int, default=5)
    p.add_argument("--retry-backoff-factor", type=float, default=0.8)
    p.add_argument("--retry-backoff-max", type=float, default=30.0)
    p.add_argument("--dry-run", action="store_true", help="build and pace batches, do not send")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.dry_run and not (args.namespace or args.connection_string):
        p.error(f"give --namespace, --connection-string or ${CONNECTION_STRING_ENV} (or --dry-run)")
    for name in ("players", "rate", "duration", "window_hours", "group_seconds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Our retry counter needs the SDK's INFO records; keep them out of the console unless -v.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.dry_run:  # fail fast, in one line, when nothing can be sent
        try:
            endpoint = endpoint_of(args.connection_string, args.namespace)
            probe(endpoint.host, endpoint.port)
        except ValueError as exc:
            print(f"send_events: unusable connection string: {exc}", file=sys.stderr)
            return 2
        except EndpointUnreachable as exc:
            hint = " (is the Event Hubs emulator running?)" if endpoint.emulator else ""
            print(f"send_events: cannot reach the Event Hubs endpoint {exc}{hint}", file=sys.stderr)
            return 1
    from tqdm import tqdm

    limit = int(args.rate * args.duration)
    events = journey_stream(args.players, args.seed, timedelta(hours=args.window_hours))
    counter = RetryCounter().install()
    client: EventHubProducerClient | None = None
    send: SendBatch
    if args.dry_run:
        size = args.max_batch_bytes or DRY_RUN_MAX_BATCH_BYTES

        def make_batch(key: str, max_size: int | None) -> EventDataBatch:
            return EventDataBatch(max_size_in_bytes=max_size or size, partition_key=key)

        def send_nothing(batch: EventDataBatch) -> None:
            return None

        send = send_nothing
    else:
        client = make_client(args)
        live = client

        def make_batch(key: str, max_size: int | None) -> EventDataBatch:
            return live.create_batch(partition_key=key, max_size_in_bytes=max_size)

        send = live.send_batch
    bar = tqdm(total=limit, unit="ev", disable=args.no_progress, file=sys.stderr)
    try:
        producer = Producer(
            send,
            make_batch,
            rate=args.rate,
            max_size_in_bytes=args.max_batch_bytes,
            group_seconds=args.group_seconds,
            retry_counter=counter,
            progress=bar,
            dry_run=args.dry_run,
        )
        summary = producer.run(events, limit)
    except EventHubError as exc:
        print(f"send failed after the client's retries: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        counter.uninstall()
        if client is not None:
            client.close()
    print(summary.render())
    return 0 if summary.failed_events == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
