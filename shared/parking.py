"""Parked trigger batches: kept in Blob Storage when every bounded retry failed, re-injected later.

Why Blob Storage: a batch is parked because Cosmos DB or the Durable backend
kept failing, so the parking place must depend on neither. The host's own
storage account (``AzureWebJobsStorage``) is that place: the Event Hubs
trigger keeps its checkpoints there, so while it is down the host cannot move
the partition on anyway, and nothing is lost by waiting for it.

A parked batch is one JSON blob, named by hub, consumer group, partition and
sequence range, so parking the same batch twice (a redelivery after a crash)
writes the same blob again. It holds the raw bodies byte for byte (base64),
each event's sequence number, offset, enqueued time and partition key, the
error and how many attempts failed. ``python -m scripts.parked`` lists them
and re-injects them (docs/parking.md).

An erasure reaches parked batches: the erasure's sweep (shared.player) takes
every event that carries the erased player's id out of every parked blob
(``ParkingLot.erase``), rewriting the blob, or deleting it when nothing is left
(docs/privacy.md). Each rewrite is conditional on the blob's ETag, so a batch
parked again or re-injected meanwhile is read again, never overwritten with
stale content.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from shared import erasure, hoststorage

log = logging.getLogger(__name__)

DEFAULT_CONTAINER = "parked-batches"


# Application properties a re-injected event carries: where it was first read. Ingest takes its
# partition, sequence number and enqueued time from them, so the entities recognise events they
# had already applied (by sequence range), dead letters keep their ids, and the tombstone of a
# player erased since still drops them (enqueued before the erasure).
ORIGIN_PARTITION = "pi-origin-partition"
ORIGIN_SEQUENCE = "pi-origin-sequence"
ORIGIN_ENQUEUED_MS = "pi-origin-enqueued-ms"


def origin_properties(batch: ParkedBatch, event: ParkedEvent) -> dict[str, str | int]:
    props: dict[str, str | int] = {ORIGIN_PARTITION: batch.partition, ORIGIN_SEQUENCE: event.sequence}
    if event.enqueued_ms is not None:
        props[ORIGIN_ENQUEUED_MS] = event.enqueued_ms
    return props


def origin(props: object) -> tuple[str, int, int | None] | None:
    """(partition, sequence, enqueued ms) of a re-injected event, or None for an ordinary one."""
    if not isinstance(props, dict):
        return None
    part, seq, enq = props.get(ORIGIN_PARTITION), props.get(ORIGIN_SEQUENCE), props.get(ORIGIN_ENQUEUED_MS)
    try:
        if part is None or seq is None:
            return None
        return str(part), int(str(seq)), (int(str(enq)) if enq is not None else None)
    except ValueError:
        return None


class ParkingError(RuntimeError):
    """Parking is not configured or the storage account refused; the message says which."""


class ParkedEvent(msgspec.Struct, frozen=True):
    sequence: int
    offset: str | None
    enqueued_ms: int | None
    partition_key: str | None
    body: bytes  # base64 in JSON


class ParkedBatch(msgspec.Struct, frozen=True):
    event_hub: str
    consumer_group: str
    partition: str
    first_sequence: int
    last_sequence: int
    attempts: int
    error: str
    parked_ms: int
    events: list[ParkedEvent]
    version: int = 1
    # Events an erasure took out of this batch (their player was erased): counted, never kept.
    erased: int = 0

    @property
    def blob_name(self) -> str:
        return blob_name(
            self.event_hub, self.consumer_group, self.partition, self.first_sequence, self.last_sequence
        )


def blob_name(hub: str, group: str, partition: str, first: int, last: int) -> str:
    # '$Default' is a valid blob name segment; sequence numbers are zero-padded so names sort in order.
    return f"{hub}/{group}/{partition}/{first:020d}-{last:020d}.json"


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ParkedBatch)


def encode(batch: ParkedBatch) -> bytes:
    return _ENCODER.encode(batch)


def decode(raw: bytes) -> ParkedBatch:
    return _DECODER.decode(raw)


class _Raced(RuntimeError):
    """A parked blob changed between its read and its rewrite."""


class ParkingLot:
    """The parked-batches container (azure-storage-blob), created on first use."""

    def __init__(self, container_client: object) -> None:
        self._container = container_client
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        from azure.core.exceptions import ResourceExistsError

        try:
            self._container.create_container()  # type: ignore[attr-defined]
        except ResourceExistsError:
            pass
        self._ready = True

    def park(self, batch: ParkedBatch) -> str:
        """Write (or overwrite) the batch's blob; raises when storage refuses, so the batch is retried."""
        self._ensure()
        self._container.upload_blob(batch.blob_name, encode(batch), overwrite=True)  # type: ignore[attr-defined]
        return batch.blob_name

    def names(self, prefix: str | None = None) -> Iterator[str]:
        self._ensure()
        for item in self._container.list_blobs(name_starts_with=prefix):  # type: ignore[attr-defined]
            yield str(item.name)

    def load(self, name: str) -> ParkedBatch:
        return decode(self._container.download_blob(name).readall())  # type: ignore[attr-defined]

    def remove(self, name: str) -> None:
        self._container.delete_blob(name)  # type: ignore[attr-defined]

    def erase(self, concerns: Callable[[ParkedEvent], bool], redact: str | None = None) -> ErasedFromParked:
        """Take every event ``concerns`` picks out of every parked blob: the blob is rewritten
        without them (their number added to ``erased``), or deleted when none is left; ``redact``
        (the erased id) is also blanked from the recorded error text. Raises when storage
        refuses (the sweep is retried); a blob re-injected meanwhile is skipped."""
        report = ErasedFromParked()
        for name in list(self.names()):
            removed = self._erase_one(name, concerns, redact)
            report.blobs_scanned += 1
            if removed is not None:
                report.events += removed[0]
                report.blobs_deleted += removed[1]
                report.blobs_rewritten += 1 - removed[1]
        return report

    @retry(
        retry=retry_if_exception_type(_Raced),
        stop=stop_after_attempt(5),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )
    def _erase_one(
        self, name: str, concerns: Callable[[ParkedEvent], bool], redact: str | None
    ) -> tuple[int, int] | None:
        """(events removed, 1 if the blob was deleted else 0), or None when nothing changed."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            downloader = self._container.download_blob(name)  # type: ignore[attr-defined]
            raw = downloader.readall()
        except ResourceNotFoundError:
            return None  # re-injected (and removed) meanwhile
        etag = downloader.properties.etag
        batch = decode(raw)
        kept = [e for e in batch.events if not concerns(e)]
        error = batch.error.replace(redact, "[erased]") if redact else batch.error
        if len(kept) == len(batch.events) and error == batch.error:
            return None
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            if not kept:
                self._container.delete_blob(name, **condition)  # type: ignore[attr-defined]
            else:
                rest = msgspec.structs.replace(
                    batch, events=kept, error=error, erased=batch.erased + len(batch.events) - len(kept)
                )
                self._container.upload_blob(name, encode(rest), overwrite=True, **condition)  # type: ignore[attr-defined]
        except ResourceModifiedError as exc:
            raise _Raced(name) from exc  # parked again meanwhile: read it again
        except ResourceNotFoundError:
            return None
        return len(batch.events) - len(kept), int(not kept)


@dataclass
class ErasedFromParked:
    blobs_scanned: int = 0
    blobs_rewritten: int = 0
    blobs_deleted: int = 0
    events: int = 0


def concerns_player(player_id: str, erased_ms: int) -> Callable[[ParkedEvent], bool]:
    """A parked event is the erased player's when its raw body carries the id as a JSON string
    value (its ``subject``, or anywhere else: the rule ingest applies to dead letters) or its
    partition key is the id, and it was enqueued at or before the erasure (or has no enqueued
    time): the rule of the entity's tombstone. An event enqueued after the erasure starts the
    player's new history and stays."""

    def concerns(event: ParkedEvent) -> bool:
        if event.enqueued_ms is not None and event.enqueued_ms > erased_ms:
            return False
        return event.partition_key == player_id or erasure.mentions(event.body, player_id)

    return concerns


def erase_player(player_id: str, erased_ms: int, lot: ParkingLot | None = None) -> ErasedFromParked:
    """The erasure sweep's part in parked batches. With no storage configured for parking nothing
    can have been parked, so there is nothing to do (said at debug level)."""
    if lot is None:
        try:
            lot = get_parking_lot()
        except ParkingError as exc:
            log.debug("no parked batches to erase from: %s", exc)
            return ErasedFromParked()
    report = lot.erase(concerns_player(player_id, erased_ms), redact=player_id)
    if report.events:
        log.info(
            "erasure removed events from parked batches",
            extra={
                "events": report.events,
                "rewritten": report.blobs_rewritten,
                "deleted": report.blobs_deleted,
            },
        )
    return report


def container_from_settings(env: Mapping[str, str] | None = None) -> object:
    """A ContainerClient for the parked batches, from the host storage settings the app already has.

    ``AzureWebJobsStorage`` (a connection string: Azurite, or ``UseDevelopmentStorage=true``) or,
    in Azure, the identity-based ``AzureWebJobsStorage__blobServiceUri`` /
    ``AzureWebJobsStorage__accountName`` with ``AzureWebJobsStorage__clientId`` for a
    user-assigned identity. ``PARKING_CONTAINER`` names the container.
    """
    from azure.storage.blob import BlobServiceClient, LinearRetry

    # A short retry of its own: when storage is down the invocation fails and the host's
    # retry policy takes over, so there is no point holding the partition here for long.
    options: dict[str, Any] = {
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=0, retry_total=2),
        "connection_timeout": 5,
    }
    env = os.environ if env is None else env
    container = env.get("PARKING_CONTAINER") or DEFAULT_CONTAINER
    try:
        conn, uri, credential = hoststorage.connection(env, "blob")
    except hoststorage.StorageNotConfigured as exc:
        raise ParkingError(f"no storage for parked batches: {exc}") from exc
    if conn:
        return BlobServiceClient.from_connection_string(conn, **options).get_container_client(container)
    return BlobServiceClient(uri, credential=credential, **options).get_container_client(container)


@functools.cache
def get_parking_lot() -> ParkingLot:
    """One per process, built on first park (parking is rare; nothing is built at import time)."""
    return ParkingLot(container_from_settings())


def reset() -> None:
    get_parking_lot.cache_clear()
