"""Where daily summaries read and write: the actions container, the summaries container, the export blobs.

- Reads one hour of one day from ``actions`` with a filtered, projected query
  (``WHERE c.day = @day AND c.hour = @hour``, the fields ``shared.summary.ACTION_FIELDS``), one page at a
  time, so an activity holds one page and one partial, never the day.
- Writes summary documents to ``summaries`` (partition key ``/day``) with *upsert* under
  deterministic ids (``{day}.hour-HH``, ``{day}.index``): a rerun of a day replaces its documents.
- Writes the retraining export of an hour as a JSON-lines block blob in the host storage account
  (``AzureWebJobsStorage``: Azurite locally, identity-based in Azure), container
  ``SUMMARY_EXPORT_CONTAINER`` (``summary-exports``), staged in blocks with deterministic ids and
  committed at the end, so a retried activity overwrites the same blob and never appends twice.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from shared import hoststorage, summary
from shared.config import CosmosSettings

EXPORT_BLOCK_ROWS = 2000
_SELECT = ", ".join(f"c.{f}" for f in summary.ACTION_FIELDS)
HOUR_QUERY = f"SELECT {_SELECT} FROM c WHERE c.day = @day AND c.hour = @hour"  # noqa: S608 - fixed text


@functools.cache
def _client(settings: CosmosSettings) -> Any:
    from shared.store import make_client

    return make_client(settings)


def actions(settings: CosmosSettings) -> Any:
    return (
        _client(settings)
        .get_database_client(settings.database)
        .get_container_client(settings.actions_container)
    )


def summaries(settings: CosmosSettings) -> Any:
    return (
        _client(settings)
        .get_database_client(settings.database)
        .get_container_client(settings.summaries_container)
    )


def hour_documents(settings: CosmosSettings, day: str, hour: int) -> Iterator[dict[str, Any]]:
    """The hour's action documents (projected), page by page."""
    params: list[dict[str, Any]] = [{"name": "@day", "value": day}, {"name": "@hour", "value": hour}]
    yield from actions(settings).query_items(
        HOUR_QUERY, parameters=params, enable_cross_partition_query=True, max_item_count=500
    )


def upsert(settings: CosmosSettings, doc: Mapping[str, Any]) -> None:
    summaries(settings).upsert_item(dict(doc))


def read_day(settings: CosmosSettings, day: str) -> list[dict[str, Any]]:
    """Every summary document of the day (index and parts), from its one logical partition."""
    return list(
        summaries(settings).query_items(
            "SELECT * FROM c WHERE c.day = @day",
            parameters=[{"name": "@day", "value": day}],
            partition_key=day,
        )
    )


def index_finals(settings: CosmosSettings, days: list[str]) -> dict[str, bool | None]:
    """Per day, whether its index says final (None: no index): one single-partition query per day
    (a query rather than a point read: the local server answers a point read of a missing
    document in an empty partition with a 500, and wants the partition key in the filter)."""
    container = summaries(settings)
    out: dict[str, bool | None] = {}
    for day in days:
        found = list(
            container.query_items(
                "SELECT c.final FROM c WHERE c.day = @day AND c.id = @id",
                parameters=[
                    {"name": "@day", "value": day},
                    {"name": "@id", "value": summary.index_id(day)},
                ],
                partition_key=day,
            )
        )
        out[day] = (found[0].get("final") is True) if found else None
    return out


# -- the export blobs -------------------------------------------------------------------------------

DEFAULT_EXPORT_CONTAINER = "summary-exports"


def export_container(env: Mapping[str, str] | None = None) -> Any:
    """The export container client from the host storage settings (``shared.hoststorage``)."""
    env = os.environ if env is None else env
    name = env.get("SUMMARY_EXPORT_CONTAINER") or DEFAULT_EXPORT_CONTAINER
    conn, uri, credential = hoststorage.connection(env, "blob")
    return _container(conn, uri, name, credential)


@functools.cache
def _container(conn: str, uri: str, name: str, credential: Any) -> Any:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = (
        BlobServiceClient.from_connection_string(conn)
        if conn
        else BlobServiceClient(uri, credential=credential)
    )
    container = service.get_container_client(name)
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


class ExportWriter:
    """One hour's rows as a JSON-lines block blob: a header line, then one row per sent action."""

    def __init__(self, container: Any, name: str, header: Mapping[str, Any]) -> None:
        self.blob = container.get_blob_client(name)
        self.name = name
        self.rows = 0
        self._blocks: list[str] = []
        self._buffer: list[bytes] = [_line(header)]

    def add(self, row: Mapping[str, Any]) -> None:
        self._buffer.append(_line(row))
        self.rows += 1
        if len(self._buffer) >= EXPORT_BLOCK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        block_id = base64.b64encode(f"{len(self._blocks):08d}".encode()).decode()
        self.blob.stage_block(block_id, b"".join(self._buffer))
        self._blocks.append(block_id)
        self._buffer = []

    def close(self) -> str:
        from azure.storage.blob import BlobBlock, ContentSettings

        self._flush()
        self.blob.commit_block_list(
            [BlobBlock(block_id=b) for b in self._blocks],
            content_settings=ContentSettings(content_type="application/x-ndjson"),
        )
        return self.name


def _line(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()
