"""In-process CPU measurement of a design (the engine's functions, or the naive one) on a workload.

Each trigger batch is built as the Functions host builds it (``devhost.functions_host.bindings``)
and decoded by the azure.functions converters as the worker decodes it
(``devhost.functions_host.worker.decode_inputs``); that
decode is timed on its own (``worker_decode``), then the function itself is called and timed:
the real ``DurableOrchestrationClient`` signals through the SDK's request function, answered 202
in-process (``devhost.durable.protocol.client_transport``: no HTTP, which ``signal_http_cpu_us`` prices
separately). The captured signals are grouped into entity batches as the Durable extension would
for the workload, handed to the entity function as the extension's batch JSON
(``devhost.durable.protocol.entity_batch_json``) through the SDK's entity protocol, and the state it
returns is stored and sent back with the entity's next batch, exactly as returned.

Faked, because it is I/O and not CPU of the functions: Cosmos DB (``ActionStore`` runs for real
on an in-memory client: ``FakeCosmos``); the Durable webhook; the host and the extension
themselves (building the batches, storing states). Telemetry runs on the OpenTelemetry SDK (the
devhost's in-memory metric reader, a tracer provider without an exporter), as in Azure minus the
export. All figures are process CPU time (``time.process_time``: every thread of the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import cProfile
import gc
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from azure.cosmos import exceptions as cosmos_errors

from devhost.durable import history, protocol
from devhost.durable.client import as_sent
from devhost.functions_host import bindings, worker
from devhost.functions_host.indexing import AppIndex, FunctionSpec, index_app
from scripts.bench_workloads import Batch, Source, Workload

HUB = "player-events"
GROUP = "$Default"
TASK_HUB = "benchhub"
BASE = "http://127.0.0.1:7071"
ENTITY_LAG_MS = 30
START_MARK = protocol.WEBHOOK_PATH + "orchestrators/"
SAMPLE_SIGNALS = 2000  # the trigger returned -> the entity batch runs
ENV = {
    # A Cosmos account that is never contacted (the store's client is FakeCosmos).
    "COSMOS_ENDPOINT": "https://bench.invalid.documents.azure.com:443/",
    "COSMOS_DATABASE": "interventions",
    "EVENTHUB_NAME": HUB,
    "EVENTHUB_CONSUMER_GROUP": GROUP,
    "DURABLE_TASK_HUB": TASK_HUB,
    "OUTBOX_REMINDER_QUEUE": "outbox-reminders",
    "TELEMETRY_HASH_PLAYER_ID": "true",
}

cpu = time.process_time


# -- the Cosmos seam -----------------------------------------------------------------------------
class _FakeContainer:
    """The ContainerProxy calls ActionStore makes, in memory; errors as the SDK raises them."""

    def __init__(self) -> None:
        self.docs: dict[tuple[Any, str], dict[str, Any]] = {}
        self.writes = 0

    @staticmethod
    def _pk(body: dict[str, Any]) -> Any:
        return body.get("playerId", body.get("playerKey", body.get("day")))

    def create_item(self, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        key = (self._pk(body), str(body["id"]))
        if key in self.docs:
            raise cosmos_errors.CosmosResourceExistsError(status_code=409, message="Conflict")
        self.writes += 1
        self.docs[key] = body
        return body

    def upsert_item(self, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.writes += 1
        self.docs[(self._pk(body), str(body["id"]))] = body
        return body

    def read_item(self, item: str, partition_key: Any, **_: Any) -> dict[str, Any]:
        try:
            return self.docs[(partition_key, item)]
        except KeyError:
            raise cosmos_errors.CosmosResourceNotFoundError(status_code=404, message="NotFound") from None

    def replace_item(self, item: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.writes += 1
        self.docs[(self._pk(body), item)] = body
        return body

    def delete_item(self, item: str, partition_key: Any, **_: Any) -> None:
        if self.docs.pop((partition_key, item), None) is None:
            raise cosmos_errors.CosmosResourceNotFoundError(status_code=404, message="NotFound")

    def query_items(self, *_: Any, **__: Any) -> list[Any]:
        return []


class _FakeDatabase:
    def __init__(self) -> None:
        self.containers: dict[str, _FakeContainer] = {}

    def get_container_client(self, name: str) -> _FakeContainer:
        return self.containers.setdefault(name, _FakeContainer())


class FakeCosmos:
    """A CosmosClient stand-in for ``ActionStore(settings, client=...)``: no I/O, no SDK CPU."""

    def __init__(self) -> None:
        self.db = _FakeDatabase()

    def get_database_client(self, name: str) -> _FakeDatabase:
        return self.db

    @property
    def writes(self) -> int:
        return sum(c.writes for c in self.db.containers.values())


class Clock:
    """The handlers' clock (``shared.runtime.clock``): the workload's time, set per invocation."""

    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Process:
    """What the benchmark process installs once: settings, the fake store, telemetry, the clock."""

    clock: Clock
    cosmos: FakeCosmos
    meter: Any
    injected: Any = None


def setup_process() -> Process:
    os.environ.update(ENV)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from devhost import metrics
    from shared import runtime, store

    runtime.reset()
    meter = metrics.install()  # the SDK MeterProvider, as in Azure (minus the exporter)
    trace.set_tracer_provider(TracerProvider())  # spans are made and ended; no exporter
    cosmos = FakeCosmos()
    # The seam: the process-wide store every function gets from shared.store.get_store.
    store._store = store.ActionStore(runtime.settings().cosmos, client=cosmos)  # type: ignore[arg-type]
    clock = Clock()
    # Entered for the life of the process (Process keeps it: a collected one would restore the wall clock).
    injected = runtime.clock(clock)
    injected.__enter__()
    return Process(clock, cosmos, meter, injected)


@contextlib.contextmanager
def challenger(path: str) -> Iterator[None]:
    """The app with ``CHALLENGER_MODEL`` set to ``path`` (the settings re-read, the fake store kept):
    every trigger is scored by a second model in shadow (shared.entity.shadow)."""
    from shared import runtime, store

    fake, saved = store._store, os.environ.get("CHALLENGER_MODEL")
    os.environ["CHALLENGER_MODEL"] = path
    runtime.reset()
    store._store = fake
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CHALLENGER_MODEL", None)
        else:
            os.environ["CHALLENGER_MODEL"] = saved
        runtime.reset()
        store._store = fake


# -- designs ---------------------------------------------------------------------------------------
@dataclass
class Design:
    name: str
    ingest: FunctionSpec
    entity: FunctionSpec
    entity_name: str
    client_args: dict[str, str]
    orchestrators: dict[str, FunctionSpec] = field(default_factory=dict)


def design(name: str, app: Any) -> Design:
    index: AppIndex = index_app(app, dict(os.environ))
    ingests = index.by_trigger("eventHubTrigger")
    entities = index.by_trigger("entityTrigger")
    if len(ingests) != 1 or len(entities) != 1:
        raise RuntimeError(f"{name}: expected one Event Hubs trigger and one entity")
    ingest, entity = ingests[0], entities[0]
    binding = protocol.client_binding_json(BASE, TASK_HUB)
    return Design(
        name,
        ingest,
        entity,
        str(entity.trigger.get("entityName", entity.name)),
        {arg: binding for arg in ingest.client_args},
        {
            str(f.trigger.get("orchestration") or f.name).lower(): f
            for f in index.by_trigger("orchestrationTrigger")
        },
    )


def engine() -> Design:
    import function_app

    return design("engine", function_app.app)


def naive() -> Design:
    from scripts import bench_naive

    return design("naive", bench_naive.app)


def floor() -> Design:
    from scripts import bench_floor

    return design("platform", bench_floor.app)


def _binding_key(d: Design) -> tuple[str, tuple[tuple[str, str], ...]]:
    return str(d.ingest.trigger["name"]), tuple(sorted(d.client_args.items()))


def with_webhook(d: Design, base: str) -> Design:
    """The same design with its durable client bound to another webhook (the full path's)."""
    binding = protocol.client_binding_json(base, TASK_HUB)
    return replace(d, client_args={arg: binding for arg in d.client_args})


def invocation(d: Design, batch: Batch) -> worker.Invocation:
    """The trigger's input as the host sends it (built once per batch: the host's work, not timed)."""
    key = _binding_key(d)
    inv = batch.invocations.get(key)
    if inv is None:
        inv = batch.invocations[key] = bindings.eventhub_invocation(
            d.ingest.trigger,
            batch.events,
            partition=batch.partition,
            hub=HUB,
            consumer_group=GROUP,
            client_args=d.client_args,
            retry=worker.RetryContext(0, -1),
        )
    return inv  # type: ignore[no-any-return]


def decoded_args(d: Design, batch: Batch) -> tuple[worker.Invocation, dict[str, Any]]:
    """The function's arguments as the worker decodes them (azure.functions' converters), decoded
    once per batch with the CPU it took kept on the batch (``worker_decode``); every run gets fresh
    shallow copies of the ``EventHubEvent`` objects, so each decodes its metadata lazily itself."""
    key = _binding_key(d)
    inv = invocation(d, batch)
    if key not in batch.decoded:
        c0 = cpu()
        args = worker.decode_inputs(d.ingest.fn, inv)
        batch.decode_s[key] = cpu() - c0
        batch.decoded[key] = args
    return inv, {
        k: [copy.copy(e) for e in v] if isinstance(v, list) else v for k, v in batch.decoded[key].items()
    }


def worker_decode_s(d: Design, batches: list[Batch]) -> float:
    key = _binding_key(d)
    return sum(b.decode_s.get(key, 0.0) for b in batches)


# -- one run ---------------------------------------------------------------------------------------
class _Capture:
    """The extension's webhook, in-process: records each signal, answers 202 (no HTTP). With
    ``forward`` (the full path) it records and then posts through the SDK's own aiohttp request
    function to a real webhook in another process, so the client's HTTP CPU is in the measure."""

    def __init__(self, forward: Callable[..., Any] | None = None) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.forward = forward

    async def post(self, url: str, data: Any = None, *args: Any, **kwargs: Any) -> list[Any]:
        self.posts.append((url, data))
        if self.forward is not None:
            return await self.forward(url, data, *args, **kwargs)  # type: ignore[no-any-return]
        if START_MARK in url:  # the start of an orchestration answers its management payload
            return [202, {"id": url.split("?", 1)[0].rsplit("/", 1)[1]}]
        return [202, ""]


@dataclass
class RunStats:
    design: str
    workload: str
    events: int = 0
    ingest_s: float = 0.0
    deliver_s: float = 0.0  # the delivery orchestrations' episodes (SIGNAL_PATH=orchestration)
    entity_s: float = 0.0
    decode_s: float = 0.0  # the worker's trigger decode (charged in the full path)
    trigger_batches: int = 0
    signals: int = 0
    operations: int = 0
    entity_batches: int = 0
    errors: int = 0
    first_error: str | None = None
    states: dict[str, str | None] = field(default_factory=dict)
    # The first signals as captured (entity key, the JSON text the client posted).
    sample: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def function_s(self) -> float:
        return self.ingest_s + self.deliver_s + self.entity_s


class Runner:
    """Runs one design over a stream of trigger batches; entity states carried between batches."""

    def __init__(
        self,
        d: Design,
        proc: Process,
        *,
        grouping: str,
        round_batches: int,
        max_entity_batch: int,
        initial: Callable[[str], str | None],
        stats: RunStats,
        profile: cProfile.Profile | None = None,
        http: bool = False,
    ) -> None:
        self.d, self.proc = d, proc
        self.http = http
        self.profile = profile
        self.grouping, self.round_batches, self.max_entity_batch = grouping, round_batches, max_entity_batch
        self.initial = initial
        self.stats = stats
        forward = sys.modules[protocol.CLIENT_MODULE].post_async_request if http else None
        self.capture = _Capture(forward)
        self.pending: dict[str, list[tuple[str, str | None]]] = {}

    async def ingest(self, batch: Batch) -> None:
        fn = self.d.ingest.fn
        self.proc.clock.now_ms = batch.now_ms
        inv, args = decoded_args(self.d, batch)
        if self.http:
            self.stats.decode_s += batch.decode_s[_binding_key(self.d)]
        if fn.requires_context:
            args["context"] = worker.Context(fn.name, fn.directory, inv.invocation_id, inv.retry)
        c2 = cpu()
        if self.profile is not None:
            self.profile.enable()
        await fn.func(**args)
        if self.profile is not None:
            self.profile.disable()
        c3 = cpu()
        s = self.stats
        s.ingest_s += c3 - c2
        s.events += len(batch.events)
        s.trigger_batches += 1
        posts, self.capture.posts = self.capture.posts, []
        for url, data in posts:
            if START_MARK in url:
                for key, op, payload in await self.deliver(url, data, batch.now_ms):
                    self.signal(key, op, payload)
                continue
            req = protocol.parse_entity_url(as_sent(url))
            if req is None or req.op is None:
                raise RuntimeError(f"{self.d.name}: not an entity signal: {url}")
            self.signal(req.key, req.op, data)

    def signal(self, key: str, op: str, data: str | None) -> None:
        s = self.stats
        s.signals += 1
        self.pending.setdefault(key, []).append((op, data))
        if len(s.sample) < SAMPLE_SIGNALS:
            s.sample.append((key, data))

    async def deliver(self, url: str, posted: Any, now_ms: int) -> list[tuple[str, str, str | None]]:
        """A delivery orchestration's first (and only) episode, as the extension runs it: the
        trigger payload built (not timed: the extension's work), the real orchestrator function
        through the worker path (timed), its SignalEntity actions read back."""
        name, _, instance_id = url.split("?", 1)[0].split(START_MARK, 1)[1].partition("/")
        spec = self.d.orchestrators[name.lower()]
        at = datetime.fromtimestamp(now_ms / 1000, UTC)
        raw = history.first_episode_json(name, instance_id, history.compact(posted), at)
        inv = worker.Invocation(inputs={str(spec.trigger["name"]): worker.Datum(raw, "string")})
        c0 = cpu()
        if self.profile is not None:
            self.profile.enable()
        out = await spec.invoke(inv)
        if self.profile is not None:
            self.profile.disable()
        self.stats.deliver_s += cpu() - c0
        state = json.loads(out.value)
        if not state.get("isDone"):
            raise RuntimeError(f"{self.d.name}: delivery {instance_id} did not finish in one episode")
        return [(key, op, inp) for _, key, op, inp in history.signal_actions(state)]

    def entity(self, key: str, ops: list[tuple[str, str | None]]) -> None:
        spec = self.d.entity
        fn = spec.fn
        s = self.stats
        state = s.states[key] if key in s.states else self.initial(key)
        raw = protocol.entity_batch_json(self.d.entity_name, key, state, ops)
        inv = bindings.entity_invocation(spec.trigger, raw)
        args = worker.decode_inputs(fn, inv)
        c0 = cpu()
        if self.profile is not None:
            self.profile.enable()
        result = fn.func(**args)
        if self.profile is not None:
            self.profile.disable()
        c1 = cpu()
        s.entity_s += c1 - c0
        assert fn.return_type is not None
        datum = worker.get_binding(fn.return_type.binding).encode(result, expected_type=fn.return_type.pytype)
        reply = protocol.parse_entity_response(datum.value)
        s.states[key] = reply.state
        s.operations += len(ops)
        s.entity_batches += 1
        for r in reply.results:
            if r.get("isError"):
                s.errors += 1
                s.first_error = s.first_error or str(r.get("result"))[:300]

    def flush(self, now_ms: int) -> None:
        self.proc.clock.now_ms = now_ms + ENTITY_LAG_MS
        pending, self.pending = self.pending, {}
        for key, ops in pending.items():
            for i in range(0, len(ops), self.max_entity_batch):
                self.entity(key, ops[i : i + self.max_entity_batch])

    async def run(self, batches: list[Batch]) -> RunStats:
        try:
            with protocol.client_transport(self.capture.post):
                for i, batch in enumerate(batches):
                    await self.ingest(batch)
                    per_round = self.round_batches if self.grouping == "backlog" else 1
                    if (i + 1) % per_round == 0 or i == len(batches) - 1:
                        self.flush(batch.now_ms)
        finally:
            if self.http:  # the SDK's module-level aiohttp session belongs to this event loop
                await close_sdk_session()
        return self.stats


def run(
    d: Design,
    proc: Process,
    batches: list[Batch],
    *,
    workload: str,
    grouping: str,
    round_batches: int,
    max_entity_batch: int,
    initial: Callable[[str], str | None],
    profile: cProfile.Profile | None = None,
    http: bool = False,
) -> RunStats:
    stats = RunStats(d.name, workload)
    runner = Runner(
        d,
        proc,
        grouping=grouping,
        round_batches=round_batches,
        max_entity_batch=max_entity_batch,
        initial=initial,
        stats=stats,
        profile=profile,
        http=http,
    )
    gc.collect()
    gc.freeze()  # the benchmark's own data (workloads, templates) is not the functions' garbage
    try:
        asyncio.run(runner.run(batches))
    finally:
        gc.unfreeze()
    if stats.errors:
        raise RuntimeError(
            f"{d.name} on {workload}: {stats.errors} entity operation(s) failed, first: {stats.first_error}"
        )
    return stats


def run_workload(
    d: Design, proc: Process, w: Workload, templates: dict[int, str | None], max_entity_batch: int, **kw: Any
) -> RunStats:
    """One run of a design over a workload, warm states from ``templates``."""

    def initial(key: str) -> str | None:
        j = w.player_journey.get(key)
        return templates.get(j) if j is not None else None

    return run(
        d,
        proc,
        w.batches,
        workload=w.name,
        grouping=w.grouping,
        round_batches=w.round_batches,
        max_entity_batch=max_entity_batch,
        initial=initial,
        **kw,
    )


# -- the full path --------------------------------------------------------------------------------
async def close_sdk_session() -> None:
    """Close the Durable SDK's module-level aiohttp session (it is bound to the loop that made it)."""
    mod: Any = sys.modules.get("azure.durable_functions.models.utils.http_utils")
    if mod is not None:
        await mod._close_session()
        mod._session_lock = asyncio.Lock()


class CosmosWrites:
    """Counts the Cosmos DB requests that write (POST/PUT/PATCH/DELETE under ``/docs``) at the
    HTTP transport every azure-cosmos client sends through; reads and metadata are not writes."""

    WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[CosmosWrites]:
        from azure.core.pipeline.transport import RequestsTransport

        original = RequestsTransport.send
        counter = self

        def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            if request.method in counter.WRITE and "/docs" in request.url:
                if not request.headers.get("x-ms-documentdb-isquery"):
                    counter.count += 1
            return original(transport, request, **kwargs)

        RequestsTransport.send = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            RequestsTransport.send = original  # type: ignore[method-assign]


@dataclass
class FullPath:
    base: str  # the loopback webhook (another process)
    writes: CosmosWrites


@contextlib.contextmanager
def full_path(proc: Process) -> Iterator[FullPath]:
    """What the functions pay in Azure besides their logic: the store's real Cosmos client against a
    local Cosmos DB server (another process), and a webhook in another process answering signals."""
    from devhost.functions_host.settings import emulator_key
    from devhost.servers.node import CosmosServer
    from scripts import bench_e2e
    from shared import runtime, store

    server = CosmosServer()
    saved_env = {k: os.environ.get(k) for k in ("COSMOS_ENDPOINT", "COSMOS_KEY")}
    saved_store = store._store
    try:
        os.environ["COSMOS_ENDPOINT"] = server.start()
        os.environ["COSMOS_KEY"] = emulator_key()
        runtime.reset()
        cs = runtime.settings().cosmos
        store.ensure_containers(store.make_client(cs), cs)
        store._store = None  # get_store builds the app's own client, as in Azure
        writes = CosmosWrites()
        with bench_e2e.webhook_server() as base, writes.counting():
            yield FullPath(base, writes)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        runtime.reset()  # forgets the store too: the in-memory one is put back after it
        store._store = saved_store
        server.stop()


# -- warm states -----------------------------------------------------------------------------------
def engine_templates(
    d: Design, proc: Process, source: Source, max_entity_batch: int
) -> dict[int, str | None]:
    """Each journey's state after its warm-up history, run through the engine (unmeasured)."""
    stats = run(
        d,
        proc,
        source.history,
        workload="warm-up",
        grouping="backlog",
        round_batches=32,
        max_entity_batch=max_entity_batch,
        initial=lambda key: None,
    )
    index = {jr.player_id: j for j, jr in enumerate(source.journeys)}
    return {index[k]: v for k, v in stats.states.items() if k in index}


def naive_templates(d: Design, proc: Process, source: Source) -> dict[int, str | None]:
    """The naive state after the same history: the list built directly, stored through the SDK
    (one ``load`` operation each, so the stored text is exactly what ``set_state`` writes)."""
    import json

    from scripts import bench_naive

    used = bench_naive.used_types()
    records: dict[str, list[dict[str, Any]]] = {}
    for b in source.history:
        for e in b.events:
            ev = json.loads(e.body)
            if ev.get("type") in used:
                records.setdefault(ev["subject"], []).append(
                    bench_naive.record(ev, b.partition, e.sequence, e.enqueued_ms)
                )
    stats = RunStats(d.name, "warm-up")
    runner = Runner(
        d, proc, grouping="backlog", round_batches=1, max_entity_batch=1, initial=lambda k: None, stats=stats
    )
    for key, recs in records.items():
        runner.entity(key, [("load", json.dumps(bench_naive.warm_state(recs)))])
    index = {jr.player_id: j for j, jr in enumerate(source.journeys)}
    return {index[k]: v for k, v in stats.states.items() if k in index}


# -- profile ---------------------------------------------------------------------------------------
AREAS: tuple[tuple[str, str], ...] = (
    ("onnxruntime", "ONNX runtime"),
    ("numpy", "numpy"),
    ("shared/model", "model prep (shared.model)"),
    ("shared/features", "features"),
    ("shared/entity/", "entity core (shared.entity)"),
    ("shared/state", "entity core (shared.state)"),
    ("shared/player", "entity shell (shared.player)"),
    ("shared/policy", "policy"),
    ("shared/signals", "signal codec"),
    ("shared/events", "parse + validate (shared.events)"),
    ("shared/eventtypes", "parse + validate (shared.events)"),
    ("shared/routing", "routing"),
    ("shared/tracing", "tracing"),
    ("shared/telemetry", "telemetry"),
    ("shared/store", "store (shared.store)"),
    ("scripts/bench_cpu", "stand-ins (Cosmos client, webhook)"),
    ("opentelemetry", "OpenTelemetry SDK"),
    ("azure/durable_functions", "Durable SDK (client, entity protocol)"),
    ("azure/functions", "azure.functions (event objects, metadata)"),
    ("functions/", "function shells (functions/)"),
    ("json/", "json (stdlib)"),
    ("_json", "json (stdlib)"),
    ("msgspec", "msgspec"),
    ("asyncio", "asyncio"),
    ("base64", "base64"),
    ("binascii", "base64"),
    ("hashlib", "hashing"),
    ("datetime", "datetime"),
    ("pathlib", "pathlib / os (paths)"),
    ("posixpath", "pathlib / os (paths)"),
    ("posix.", "pathlib / os (paths)"),
    ("logging", "logging"),
    ("threading", "threading"),
    ("uuid", "uuid"),
)


# Generic code (builtins, the stdlib's plumbing) is charged to whoever called it.
_GENERIC = (
    "~",
    "<frozen",
    "/typing.py",
    "/abc.py",
    "/enum.py",
    "/functools.py",
    "/contextlib.py",
    "/copy.py",
    "/re/",
)


def _area(filename: str, name: str) -> str | None:
    key = f"{filename}:{name}".replace("\\", "/")
    for needle, label in AREAS:
        if needle in key:
            return label
    return None


def profile_areas(prof: cProfile.Profile, top: int = 15) -> dict[str, Any]:
    """Own time per area (module families; builtins and stdlib plumbing charged to their
    callers' areas) and the top functions by own time, as shares of the profiled total."""
    st = pstats.Stats(prof)
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0

    def area(func: tuple[str, int, str], depth: int = 0) -> dict[str, float]:
        """Shares of this function's own time per area (through its callers when generic)."""
        filename, _, name = func
        found = _area(filename, name)
        if found is not None:
            return {found: 1.0}
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        if depth < 3 and callers and any(g in filename for g in _GENERIC):
            weight = sum(v[2] for v in callers.values()) or float(len(callers))
            out: dict[str, float] = {}
            for caller, v in callers.items():
                share = (v[2] or weight / len(callers)) / weight
                for a, x in area(caller, depth + 1).items():
                    out[a] = out.get(a, 0.0) + share * x
            return out
        return {"other": 1.0}

    areas: dict[str, float] = {}
    funcs = []
    for func, (_, _, tottime, _, _) in raw.items():
        for a, x in area(func).items():
            areas[a] = areas.get(a, 0.0) + x * tottime
        filename, line, name = func
        funcs.append((tottime, f"{filename}:{line}({name})" if line else name))
    funcs.sort(reverse=True)
    root = os.getcwd() + os.sep
    return {
        "areas": {k: round(v / total, 3) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])},
        "top_functions": [
            {"share": round(t / total, 3), "function": w.replace(root, "").split("site-packages/")[-1]}
            for t, w in funcs[:top]
        ],
    }
