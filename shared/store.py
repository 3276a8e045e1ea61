"""Cosmos DB access: the actions container and the dead-letter container.

One client per process, created lazily and reused. In Azure the app
authenticates with its managed identity; a key is accepted only for a local
emulator (enforced in ``shared.config``). Retries are the SDK's own: throttling
(429) is retried honouring the service's ``x-ms-retry-after-ms``, 503 and
timeouts by the SDK's service-unavailable and failover policies, and writes may
be retried because every write here has a deterministic id (actions are created once,
dead letters upserted).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey, exceptions
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from shared import erasure, runtime
from shared.breaker import Breaker, CircuitOpen
from shared.config import CosmosSettings, is_local_endpoint
from shared.entity.model import (
    HOUR_MS,
    ActionRecord,
    OutcomeMet,
    OutcomeRecord,
    ShadowAggregate,
    SuppressedAggregate,
)
from shared.entity.shadow import matrix_counts
from shared.erasure import ErasureIndex
from shared.outcomes import OUTCOMES
from shared.policy import ACTION_TYPES
from shared.timeutil import DAY_MS, iso_ms, parse_iso_ms, utc_day

log = logging.getLogger(__name__)

RAW_PREVIEW_BYTES = 2048
RETRY_KWARGS: dict[str, Any] = {
    "retry_throttle_total": 9,  # 429s, each after the service's retry-after
    "retry_throttle_backoff_max": 30,  # seconds of throttling waited at most per request
    "retry_write": 3,  # safe: a retried create of a deterministic id ends in 409, read as "written"
    # Bound every request: an unanswered socket must not hold an entity batch for minutes.
    "connection_timeout": 3,
    "read_timeout": 5,
    "timeout": 15,
}
# Dead letters without a (valid) player id spread over this many logical partitions.
UNKNOWN_PLAYER_BUCKETS = 32
MENTIONS_QUERY = "SELECT c.id, c.rawPreview FROM c WHERE c.playerId = @b AND CONTAINS(c.rawPreview, @p)"
# The SDK fails over on 503 only between regions; a single-region account needs a
# retry of its own. Bounded: the outbox retries later what still fails.
TRANSIENT_STATUS = frozenset({408, 449, 503})
TRANSIENT_ATTEMPTS = 4
# Refusals of one request that no retry can cure: a malformed or oversized document. (403 is
# not among them: a missing role assignment or firewall rule is fixed by an operator, and the
# write must then succeed, so it is retried like an outage.)
PERMANENT_STATUS = frozenset({400, 413})
# A player's outbox is written in one request per this many documents (a transactional batch takes
# at most 100 operations) where the service supports it, else this many writes at a time.
BATCH_MAX_OPERATIONS = 100
WRITE_CONCURRENCY = 8
# The pool is shared by the entity threads (PYTHON_THREADPOOL_THREAD_COUNT) each writing up to
# WRITE_CONCURRENCY documents at once: sized so that a request never waits for a connection.
HTTP_POOL_SIZE = 32
# Proxy variables the requests library would read per request when trusting the environment: with
# none of them set at start, the session does not look (a quarter of the client's CPU per write).
PROXY_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# CA bundles requests would read per request too: read once, at start, into the session.
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# Write kinds counted by ActionStore.write_counts(): "action" includes holdout decisions, "outcome"
# the outcomes met (outcome.metAt) as well as the responses, "shadow" the challenger's aggregates.
WRITE_KINDS = ("action", "suppressed", "outcome", "shadow", "deadletter", "erasure")


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying at once: a transient status, or a connection that failed or dropped.

    Retrying a create is safe: every document id is deterministic, so a create whose first
    attempt did reach the service ends in 409, which counts as written."""
    if isinstance(exc, exceptions.CosmosHttpResponseError):
        return exc.status_code in TRANSIENT_STATUS
    return isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError))


def failure_kind(exc: BaseException) -> str:
    """The breaker's kind for a failure that says the service is not serving."""
    if isinstance(exc, exceptions.CosmosHttpResponseError):
        return "throttled" if exc.status_code == 429 else "unavailable"
    return "unreachable"


class _WaitRetryAfter(wait_base):
    """Wait what the service asked for (x-ms-retry-after-ms / Retry-After), else back off."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        for name, scale in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            if value:
                try:
                    return min(float(value) * scale, 10.0)
                except ValueError:
                    break
        return float(self.fallback(retry_state))


# One Retrying object for every call (its per-call state is thread-local): decorating per call
# rebuilt a wrapper (functools.update_wrapper) on every Cosmos request.
transient_retry = Retrying(
    retry=retry_if_exception(_is_transient),
    wait=_WaitRetryAfter(wait_random_exponential(multiplier=0.1, max=2.0)),
    stop=stop_after_attempt(TRANSIENT_ATTEMPTS),
    reraise=True,
)


class WriteFailed(RuntimeError):
    """A write did not succeed after the SDK's retries."""


class PermanentWriteFailure(WriteFailed):
    """The service refused this document for good (400, 413): retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class WriteReport:
    """What a run of writes did: written (or already there), refused for good, failed."""

    written: set[str] = field(default_factory=set)
    refused: dict[str, int] = field(default_factory=dict)  # id -> HTTP status
    failed: dict[str, str] = field(default_factory=dict)  # id -> error

    def merge(self, other: WriteReport) -> None:
        self.written |= other.written
        self.refused.update(other.refused)
        self.failed.update(other.failed)


@dataclass(frozen=True)
class Write:
    """One outbox document to write: ``create`` (an action or a holdout decision: written once, a
    repeat is a no-op) or ``upsert`` (a suppressed or shadow aggregate: the whole document replaced,
    the same content on a re-run)."""

    op: str  # "create" | "upsert"
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        if self.op == "create":
            return "action"
        return "shadow" if self.doc.get("kind") == "shadow" else "suppressed"


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


class ActionStore:
    """Actions (pk /playerId) and dead letters (pk /playerId) in one database."""

    def __init__(self, settings: CosmosSettings, client: CosmosClient | None = None) -> None:
        self.settings = settings
        self._client = client
        self._containers: tuple[ContainerProxy, ContainerProxy, ContainerProxy] | None = None
        self.erased = ErasureIndex(self._erased_keys)
        self._lock = threading.Lock()
        self.breaker = Breaker()
        self._writes: Counter[str] = Counter()
        self._writes_lock = threading.Lock()
        # Whether the service runs transactional batches: None until asked (once, see supports_batch).
        self._batch: bool | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- counting writes (make bench: cosmos_writes_per_action) ------------------------------------
    def _count(self, kind: str, n: int = 1) -> None:
        with self._writes_lock:
            self._writes[kind] += n

    def write_counts(self) -> dict[str, int]:
        """Documents written (created, upserted or replaced) by this store, by kind (``WRITE_KINDS``):
        what a document-per-decision design would multiply. A create that found its document already
        there is not counted."""
        with self._writes_lock:
            return {k: self._writes.get(k, 0) for k in WRITE_KINDS}

    def writes_per_action(self) -> float | None:
        """Cosmos writes of the decision path (actions, suppressed aggregates, outcomes) per action
        created; None before the first action."""
        c = self.write_counts()
        return round((c["action"] + c["suppressed"] + c["outcome"]) / c["action"], 3) if c["action"] else None

    def reset_write_counts(self) -> None:
        with self._writes_lock:
            self._writes.clear()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request through the breaker and the transient retry; errors come out classified.

        Raises CircuitOpen (not tried), PermanentWriteFailure (this document is refused for good),
        WriteFailed (the service failed: the breaker opens for that kind of failure); a 409 (the
        document exists), a 404 and a 412 (an ETag condition) pass through as the SDK's exceptions.
        """
        ticket = self.breaker.before()
        try:
            result = transient_retry(fn, *args, **kwargs)
        except (
            exceptions.CosmosResourceExistsError,
            exceptions.CosmosResourceNotFoundError,
            exceptions.CosmosAccessConditionFailedError,
        ):
            self.breaker.success(ticket)
            raise
        except exceptions.CosmosHttpResponseError as exc:
            if exc.status_code in PERMANENT_STATUS:
                self.breaker.release(ticket)
                raise PermanentWriteFailure(f"{what} refused: {exc.status_code}", exc.status_code) from exc
            self.breaker.failure(ticket, failure_kind(exc))
            raise WriteFailed(f"{what} failed: {exc.status_code}") from exc
        except (AzureError, OSError) as exc:
            self.breaker.failure(ticket, failure_kind(exc))
            raise WriteFailed(f"{what} failed: {type(exc).__name__}") from exc
        except BaseException:
            self.breaker.release(ticket)
            raise
        self.breaker.success(ticket)
        return result

    def _connect(self) -> tuple[ContainerProxy, ContainerProxy, ContainerProxy]:
        """Connect on first use: the client reads the account when built, which may fail."""
        if self._containers is None:
            with self._lock:
                if self._containers is None:
                    client = self._client or make_client(self.settings)
                    db = client.get_database_client(self.settings.database)
                    self._containers = (
                        db.get_container_client(self.settings.actions_container),
                        db.get_container_client(self.settings.deadletters_container),
                        db.get_container_client(self.settings.erasures_container),
                    )
                    self._client = client
        return self._containers

    @property
    def actions(self) -> ContainerProxy:
        return self._connect()[0]

    @property
    def deadletters(self) -> ContainerProxy:
        return self._connect()[1]

    @property
    def erasures(self) -> ContainerProxy:
        return self._connect()[2]

    # -- erasure ---------------------------------------------------------------
    def record_erasure(self, player_id: str, erased_ms: int) -> None:
        """The erasure record (a hash of the id) that keeps the player's dead letters from coming back."""
        key = erasure.erased_key(player_id)
        doc = {"id": key, "playerKey": key, "erasedAt": iso_ms(erased_ms), "ttl": erasure.RECORD_TTL_S}
        self._call("erasure record", self.erasures.upsert_item, doc)
        self._count("erasure")
        self.erased.add(player_id)

    def _erased_keys(self) -> list[str]:
        query = "SELECT VALUE c.id FROM c"
        return list(
            self._call(
                "erasure records",
                lambda: list(self.erasures.query_items(query, enable_cross_partition_query=True)),
            )
        )

    def delete_player_deadletters(self, player_id: str) -> int:
        """The player's dead letters only (its partition and the unknown buckets that mention it)."""
        return self._delete_partition(self.deadletters, player_id) + self.delete_deadletters_mentioning(
            player_id
        )

    def delete_deadletters_mentioning(self, player_id: str) -> int:
        """Dead letters without a player (``unknown-NN``) whose raw bytes carry the player id."""
        deleted = 0
        params: list[dict[str, object]] = [{"name": "@p", "value": player_id}]
        for n in range(UNKNOWN_PLAYER_BUCKETS):
            bucket = f"unknown-{n:02d}"

            def rows(bucket: str = bucket) -> list[dict[str, Any]]:
                return list(
                    self.deadletters.query_items(
                        MENTIONS_QUERY,
                        parameters=[*params, {"name": "@b", "value": bucket}],
                        partition_key=bucket,
                        enable_scan_in_query=True,  # rawPreview is not indexed: a scan of one partition
                    )
                )

            for row in self._call("dead-letter scan", rows):
                if not erasure.mentions(str(row.get("rawPreview", "")).encode(), player_id):
                    continue
                try:
                    self._call("delete", self.deadletters.delete_item, row["id"], partition_key=bucket)
                    deleted += 1
                except exceptions.CosmosResourceNotFoundError:
                    pass
        return deleted

    # -- actions -------------------------------------------------------------
    def create_action(self, doc: dict[str, Any]) -> bool:
        """Write the action once; True if this call created it, False if it already existed.

        A create, not an upsert: a replayed decision must not put an action the
        delivery service already handled back to ``pending``.
        """
        body = dict(doc)
        body.setdefault("ttl", self.settings.action_ttl_seconds)
        try:
            self._call(f"write of action {doc.get('id')}", self.actions.create_item, body)
        except exceptions.CosmosResourceExistsError:
            return False
        self._count("action")
        return True

    def upsert_suppressed(self, doc: dict[str, Any]) -> None:
        """Replace a suppressed (or shadow) aggregate with its current content (shared.entity.outbox)."""
        body = dict(doc)
        body.setdefault("ttl", self.settings.action_ttl_seconds)
        kind = "shadow" if doc.get("kind") == "shadow" else "suppressed"
        self._call(f"write of {kind} aggregate {doc.get('id')}", self.actions.upsert_item, body)
        self._count(kind)

    def create_actions(self, docs: Iterable[dict[str, Any]]) -> WriteReport:
        """Write each doc (existing ones count as written). Never raises.

        A document the service refuses for good is reported as refused, and the next one is
        tried; any other failure stops the run: when Cosmos is down, one failure is enough to
        know, and the rest stay in the outbox.
        """
        report = WriteReport()
        pending = list(docs)
        for i, doc in enumerate(pending):
            try:
                self.create_action(doc)
                report.written.add(doc["id"])
            except PermanentWriteFailure as exc:
                log.error("action refused by Cosmos DB for good", extra={"action_id": doc.get("id")})
                report.refused[doc["id"]] = exc.status
            except (WriteFailed, CircuitOpen, AzureError, OSError) as exc:
                log.warning("action write failed, kept in outbox: %s", exc, extra={"action_id": doc["id"]})
                for rest in pending[i:]:
                    report.failed[rest["id"]] = str(exc)
                break
        return report

    # -- a player's outbox -----------------------------------------------------------------------
    def write_outbox(self, player_id: str, writes: list[Write]) -> WriteReport:
        """A player's pending documents (one partition) in as few round trips as the service allows.

        Never raises. Where the service runs transactional batches (``supports_batch``), one request
        per ``BATCH_MAX_OPERATIONS`` documents: a batch is atomic, so one that fails on a document
        (an action that already exists after a replay, a refused document) is written again document
        by document, where a 409 counts as written and a refusal is reported for that document only.
        Otherwise (the local server) up to ``WRITE_CONCURRENCY`` writes at a time. A document whose
        write fails is reported as failed and stays in the outbox.
        """
        report = WriteReport()
        if len(writes) > 1 and self.supports_batch():
            one_by_one: list[Write] = []
            for start in range(0, len(writes), BATCH_MAX_OPERATIONS):
                chunk = writes[start : start + BATCH_MAX_OPERATIONS]
                done = self._write_batch(player_id, chunk)
                if done is None:
                    one_by_one.extend(chunk)
                else:
                    report.merge(done)
            writes = one_by_one
        if writes:
            report.merge(self._write_each(writes))
        return report

    def supports_batch(self) -> bool:
        """Whether the service runs transactional batches, asked once and remembered: a batch of one
        read in a partition no document uses. Azure Cosmos DB runs it (the read finds nothing: a
        ``CosmosBatchOperationError``); @vercel/cosmosdb-server answers 500 "Failed to parse
        x-ms-documentdb-partitionkey headers" and writes nothing. A throttled, unavailable or
        unreachable service answers nothing about batches: not remembered, asked again next time."""
        if self._batch is not None:
            return self._batch
        try:
            container = self.actions  # builds the client on first use, which may fail
        except (AzureError, OSError):
            return False
        if not hasattr(container, "execute_item_batch"):
            self._batch = False
            return False
        try:
            container.execute_item_batch([("read", ("batch-probe",))], partition_key="batch-probe")
            self._batch = True
        except exceptions.CosmosBatchOperationError:
            self._batch = True
        except exceptions.CosmosHttpResponseError as exc:
            if exc.status_code in TRANSIENT_STATUS or exc.status_code == 429:
                return False
            self._batch = False
        except (AzureError, OSError):
            return False
        log.info(
            "Cosmos DB transactional batches %s: a player's outbox is written %s",
            "supported" if self._batch else "not supported",
            "in one batch per partition" if self._batch else f"{WRITE_CONCURRENCY} documents at a time",
        )
        return self._batch

    def _write_batch(self, player_id: str, chunk: list[Write]) -> WriteReport | None:
        """One transactional batch; None when the service refused it as a whole for one of its
        documents (nothing was written: write them one by one)."""
        report = WriteReport()
        operations = [(w.op, (self._body(w.doc),)) for w in chunk]

        def run() -> Any:
            try:
                return self.actions.execute_item_batch(operations, partition_key=player_id)
            except exceptions.CosmosBatchOperationError as exc:
                return exc

        try:
            result = self._call(f"batch of {len(chunk)} documents", run)
        except (WriteFailed, CircuitOpen, AzureError, OSError) as exc:
            log.warning("outbox batch failed, kept in outbox: %s", exc)
            report.failed.update((w.doc["id"], str(exc)) for w in chunk)
            return report
        if isinstance(result, exceptions.CosmosBatchOperationError):
            return None
        for w in chunk:
            report.written.add(w.doc["id"])
            self._count(w.kind)
        return report

    def _write_each(self, writes: list[Write]) -> WriteReport:
        report = WriteReport()
        if len(writes) == 1:
            results = [self._write_one(writes[0])]
        else:  # the rest concurrently, the first on this thread meanwhile (one hand-off fewer)
            rest = [self._executor().submit(self._write_one, w) for w in writes[1:]]
            results = [self._write_one(writes[0]), *(f.result() for f in rest)]
        for w, (outcome, detail) in zip(writes, results, strict=True):
            doc_id = w.doc["id"]
            if outcome == "written":
                report.written.add(doc_id)
            elif outcome == "refused":
                report.refused[doc_id] = int(detail)
            else:
                report.failed[doc_id] = str(detail)
        return report

    def _write_one(self, w: Write) -> tuple[str, Any]:
        try:
            if w.op == "create":
                self.create_action(w.doc)
            else:
                self.upsert_suppressed(w.doc)
        except PermanentWriteFailure as exc:
            log.error("document refused by Cosmos DB for good", extra={"action_id": w.doc.get("id")})
            return "refused", exc.status
        except (WriteFailed, CircuitOpen, AzureError, OSError) as exc:
            log.warning("write failed, kept in outbox: %s", exc, extra={"action_id": w.doc.get("id")})
            return "failed", exc
        return "written", None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(WRITE_CONCURRENCY, thread_name_prefix="cosmos-write")
        return self._pool

    def _body(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(doc)
        body.setdefault("ttl", self.settings.action_ttl_seconds)
        return body

    def record_outcome(self, player_id: str, outcome: OutcomeRecord) -> str:
        """Record a player's response on its action document, once; returns what happened.

        ``recorded``: the document now says accepted/dismissed, when, and after how long;
        ``already``: it had a response (the first one stands, so a replay changes nothing);
        ``unknown``: no such sent action in this player's partition (never sent, suppressed, held
        out, expired, or erased). A read and a conditional replace (``If-Match`` on the ETag): a
        concurrent writer makes the replace fail with 412, and the read is done again.
        """
        for _ in range(3):
            doc = self._read_action(player_id, outcome.action_id)
            if doc is None:
                return "unknown"
            if doc.get("status") in NOT_SENT or doc.get("playerId") != player_id:
                return "unknown"
            if doc.get("status") in RESPONSES:
                return "already"
            body = {k: v for k, v in doc.items() if not k.startswith("_")}
            body["status"] = outcome.response
            body["respondedAt"] = iso_ms(outcome.t)
            try:
                body["responseLatencyMs"] = max(0, outcome.t - parse_iso_ms(doc["eventTime"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # a document edited by hand without a readable eventTime: no latency
            result = self._replace_unchanged(f"outcome of action {outcome.action_id}", doc, body)
            if result != "changed":
                return result
        raise WriteFailed(f"outcome of action {outcome.action_id}: the document kept changing")

    def _replace_unchanged(self, what: str, doc: Mapping[str, Any], body: dict[str, Any]) -> str:
        """Replace ``doc`` by ``body`` if nobody changed it since it was read (``If-Match`` on its
        ETag): ``recorded``, ``changed`` (412: read it again) or ``unknown`` (it is gone)."""
        try:
            self._call(
                what,
                self.actions.replace_item,
                doc["id"],
                body,
                etag=doc.get("_etag"),
                match_condition=MatchConditions.IfNotModified,
            )
        except exceptions.CosmosAccessConditionFailedError:
            return "changed"
        except exceptions.CosmosResourceNotFoundError:
            return "unknown"
        self._count("outcome")
        return "recorded"

    def _read_action(self, player_id: str, action_id: str) -> dict[str, Any] | None:
        # A single-partition query rather than a point read: the same answer in Azure (a few RU
        # more, on paths as rare as responses and outcomes), and the local Cosmos server answers a
        # point read of a missing document with a 500 instead of a 404.
        found = self._call(
            f"read of action {action_id}",
            lambda: list(
                self.actions.query_items(
                    "SELECT * FROM c WHERE c.playerId = @p AND c.id = @id",
                    parameters=[{"name": "@p", "value": player_id}, {"name": "@id", "value": action_id}],
                    partition_key=player_id,
                )
            ),
        )
        return found[0] if found else None

    def record_outcome_met(self, player_id: str, met: OutcomeMet) -> str:
        """Record that a decision's outcome was met (``outcome.metAt``, ``outcome.eventId``), once.

        ``recorded``: written now; ``already``: the document has a ``metAt`` (the first stands: a
        replay changes nothing); ``unknown``: no sent or held-out decision with an outcome under that
        id (expired, erased, or decided before outcomes were tracked). A read and a conditional
        replace, as ``record_outcome``."""
        for _ in range(3):
            doc = self._read_action(player_id, met.action_id)
            if doc is None or doc.get("playerId") != player_id or doc.get("status") == "suppressed":
                return "unknown"
            outcome = doc.get("outcome")
            if not isinstance(outcome, dict):
                return "unknown"
            if outcome.get("metAt"):
                return "already"
            body = {k: v for k, v in doc.items() if not k.startswith("_")}
            body["outcome"] = {**outcome, "metAt": iso_ms(met.t), "eventId": met.event_id}
            result = self._replace_unchanged(f"outcome met of {met.action_id}", doc, body)
            if result != "changed":
                return result
        raise WriteFailed(f"outcome met of {met.action_id}: the document kept changing")

    def player_actions(self, player_id: str) -> list[dict[str, Any]]:
        return list(
            self.actions.query_items(
                "SELECT * FROM c WHERE c.playerId = @p",
                parameters=[{"name": "@p", "value": player_id}],
                partition_key=player_id,
            )
        )

    def delete_player_data(self, player_id: str) -> int:
        """Erase one player's actions and dead letters: its own partitions (/playerId), and the
        dead letters without a player whose raw bytes carry its id."""
        own = sum(self._delete_partition(c, player_id) for c in (self.actions, self.deadletters))
        return own + self.delete_deadletters_mentioning(player_id)

    def _delete_partition(self, container: ContainerProxy, player_id: str) -> int:
        """Single-partition query + deletes (the local emulator has no delete-by-partition)."""

        def ids() -> list[str]:
            query = "SELECT c.id FROM c WHERE c.playerId = @p"
            params: list[dict[str, object]] = [{"name": "@p", "value": player_id}]
            return [r["id"] for r in container.query_items(query, parameters=params, partition_key=player_id)]

        found = self._call("query of a player's documents", ids)
        for item_id in found:
            try:
                self._call("delete", container.delete_item, item_id, partition_key=player_id)
            except exceptions.CosmosResourceNotFoundError:
                pass
        return len(found)

    # -- dead letters ----------------------------------------------------------
    def write_deadletter(
        self,
        *,
        reason: str,
        detail: str,
        raw: bytes,
        partition: str | None,
        sequence: int | None,
        player_id: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        doc = deadletter_doc(
            reason=reason,
            detail=detail,
            raw=raw,
            partition=partition,
            sequence=sequence,
            player_id=player_id,
            event_id=event_id,
            ttl=self.settings.deadletter_ttl_seconds,
        )
        self._call("dead-letter write", self.deadletters.upsert_item, doc)
        self._count("deadletter")
        return doc


RESPONSES = ("accepted", "dismissed")
# Decisions that were never delivered: a response naming one is "unknown".
NOT_SENT = ("suppressed", "holdout")
SENT_STATUSES = ("pending", *RESPONSES)


def action_document(player_id: str, rec: ActionRecord) -> dict[str, Any]:
    """The Cosmos document of a decision (docs/contracts.md, "Action documents").

    It keeps what the decision saw (model version, every score, the feature row in the
    model card's order) so an outcome can be joined to its inputs later; ``day`` and
    ``hour`` (UTC, of the trigger's event time) let the daily summary read a day."""
    doc: dict[str, Any] = {
        "id": rec.id,
        "playerId": player_id,
        "type": rec.type,
        "status": rec.status,
        "score": rec.score,
        "scores": dict(zip(ACTION_TYPES, rec.scores, strict=False)),
        "modelVersion": rec.model,
        "features": rec.features,
        "triggerEventId": rec.trigger,
        "eventTime": iso_ms(rec.t),
        "day": utc_day(rec.t),
        "hour": (rec.t % DAY_MS) // 3_600_000,
        "decidedAt": iso_ms(rec.decided_ms),
        "reasons": rec.reasons,
    }
    if rec.rejected_by is not None:
        doc["rejectedBy"] = rec.rejected_by
    if rec.tp:
        doc["traceparent"] = rec.tp
    if rec.status == "holdout" or rec.status in SENT_STATUSES:
        # Both groups carry the outcome the entity watches for (shared.entity.watch): the entity
        # adds metAt / eventId when an event meets it inside the window.
        doc["group"] = "holdout" if rec.status == "holdout" else "treated"
        outcome = OUTCOMES.get(rec.type)
        if outcome is not None:
            doc["outcome"] = {"name": outcome.name, "windowEnd": iso_ms(rec.t + outcome.window_ms)}
    return doc


def shadow_document(player_id: str, agg: ShadowAggregate) -> dict[str, Any]:
    """The Cosmos document of the challenger's aggregate for one player and UTC hour
    (docs/contracts.md, "Shadow aggregates"): how often the two models decided alike, the
    champion-by-challenger decision matrix, score sums for a correlation per type, and the rule
    behind each difference. Built once per operation that scores: what depends on the hour only
    is computed once per hour (``_hour_fields``)."""
    day, hour, start = _hour_fields(agg.hour_ms)
    return {
        "id": agg.id,
        "playerId": player_id,
        "kind": "shadow",
        "status": "shadow",
        "day": day,
        "hour": hour,
        "modelVersion": agg.model,
        "challengerVersion": agg.challenger,
        "count": agg.count,
        "agree": agg.agree,
        "matrix": matrix_counts(agg),
        "scores": {
            atype: {
                "n": int(row[0]),
                "sx": round(row[1], 9),
                "sy": round(row[2], 9),
                "sxx": round(row[3], 9),
                "syy": round(row[4], 9),
                "sxy": round(row[5], 9),
            }
            for atype, row in zip(ACTION_TYPES, agg.sums, strict=False)
        },
        "differByRule": dict(agg.differ),
        "firstEventTime": start + _ms_in_hour(agg.first_ms - agg.hour_ms),
        "lastEventTime": start + _ms_in_hour(agg.last_ms - agg.hour_ms),
        "decidedAt": iso_ms(agg.decided_ms),
    }


@functools.lru_cache(maxsize=64)
def _hour_fields(hour_ms: int) -> tuple[str, int, str]:
    """The UTC day, the hour, and the ISO text of the hour up to its minutes (``...T10:``)."""
    return utc_day(hour_ms), (hour_ms % DAY_MS) // HOUR_MS, iso_ms(hour_ms)[:14]


def _ms_in_hour(offset_ms: int) -> str:
    """``MM:SS.mmmZ`` of an offset within the hour (0 <= offset < 1 h)."""
    minutes, rest = divmod(offset_ms, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def suppressed_document(player_id: str, agg: SuppressedAggregate) -> dict[str, Any]:
    """The Cosmos document of a suppressed aggregate (docs/contracts.md, "Suppressed decisions"):
    every candidate of one type one rule stopped in one UTC hour, counted, with the first few as
    examples. ``status`` and ``rejectedBy`` read as on the per-decision documents it replaces."""
    return {
        "id": agg.id,
        "playerId": player_id,
        "kind": "suppressed",
        "type": agg.type,
        "status": "suppressed",
        "rejectedBy": agg.rule,
        "count": agg.count,
        "day": utc_day(agg.hour_ms),
        "hour": (agg.hour_ms % DAY_MS) // HOUR_MS,
        "firstEventTime": iso_ms(agg.first_ms),
        "lastEventTime": iso_ms(agg.last_ms),
        "modelVersion": agg.model,
        "decidedAt": iso_ms(agg.decided_ms),
        "examples": [
            {"triggerEventId": e.trigger, "eventTime": iso_ms(e.t), "score": e.score, "features": e.features}
            for e in agg.examples
        ],
    }


def deadletter_doc(
    *,
    reason: str,
    detail: str,
    raw: bytes,
    partition: str | None,
    sequence: int | None,
    player_id: str | None,
    event_id: str | None,
    ttl: int,
) -> dict[str, Any]:
    """A dead-letter record; its id is stable per message so a redelivery upserts it again."""
    if partition is not None and sequence is not None:
        key = f"eh:{partition}:{sequence}"
    else:
        key = "raw:" + hashlib.sha256(raw).hexdigest()
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    return {
        "id": "dl-" + key_hash[:32],
        "playerId": player_id or f"unknown-{int(key_hash[:8], 16) % UNKNOWN_PLAYER_BUCKETS:02d}",
        "reason": reason,
        "detail": detail[:1000],
        "eventId": event_id,
        "partition": partition,
        "sequenceNumber": sequence,
        "rawPreview": raw[:RAW_PREVIEW_BYTES].decode("utf-8", errors="backslashreplace"),
        "rawBytes": len(raw),
        "receivedAt": iso_ms(runtime.now_ms()),
        "ttl": ttl,
    }


def make_client(settings: CosmosSettings) -> CosmosClient:
    local = is_local_endpoint(settings.endpoint)
    credential: Any
    if settings.key:
        credential = settings.key
    else:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        credential = (
            ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
            if settings.managed_identity_client_id
            else DefaultAzureCredential()
        )
    # A local emulator advertises "https://localhost" as its write region; endpoint
    # discovery would make the SDK leave the URL it was given.
    return CosmosClient(
        settings.endpoint,
        credential=credential,
        enable_endpoint_discovery=not local,
        transport=make_transport(),
        **RETRY_KWARGS,
    )


def make_transport(env: Mapping[str, str] | None = None, pool_size: int = HTTP_POOL_SIZE) -> Any:
    """The SDK's requests transport on a session of our own, sized for the concurrent writes.

    requests re-reads the proxy, CA-bundle and netrc settings from the environment on every request
    while ``trust_env`` is on (about a quarter of the Cosmos client's CPU per write here). With no proxy
    variable (``PROXY_SETTINGS``) set when the client is built, the session does not look: a CA bundle
    variable is read once, here, and a ``.netrc`` is never read (the SDK signs every request itself).
    With a proxy variable set it trusts the environment as the SDK's default session does."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    env = os.environ if env is None else env
    values = {k.upper(): v for k, v in env.items() if v}
    session = requests.Session()
    session.trust_env = any(name in values for name in PROXY_SETTINGS)
    if not session.trust_env:
        bundle = next((values[n] for n in CA_BUNDLE_SETTINGS if n in values), None)
        if bundle:
            session.verify = bundle  # what requests would have read from the environment per request
    # Retries are the SDK's and ours (transient_retry), never urllib3's: as the SDK's own session.
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=pool_size,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True)


def ensure_containers(client: CosmosClient, settings: CosmosSettings) -> None:
    """Create the database and containers (local emulators only; Bicep owns Azure)."""
    db = client.create_database_if_not_exists(settings.database)
    for name, pk in (
        (settings.actions_container, "/playerId"),
        (settings.deadletters_container, "/playerId"),
        (settings.summaries_container, "/day"),
        (settings.erasures_container, "/playerKey"),
    ):
        db.create_container_if_not_exists(name, partition_key=PartitionKey(pk), default_ttl=-1)


_lock = threading.Lock()
_store: ActionStore | None = None


def get_store(settings: CosmosSettings | None = None) -> ActionStore:
    """The process-wide store, built on first use from the environment."""
    global _store
    if _store is None:
        with _lock:
            if _store is None:
                if settings is None:
                    from shared import config

                    settings = config.load().cosmos
                _store = ActionStore(settings)
    return _store


def reset_store() -> None:
    """Forget the process-wide store (tests, devhost restarts)."""
    global _store
    with _lock:
        _store = None
