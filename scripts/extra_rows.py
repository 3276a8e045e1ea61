"""Extra training rows for ``scripts.train_model --extra-rows``: the daily summaries' retraining export.

Each summary child writes the sent actions of one hour as JSON lines (``shared.summary``): a header
``{"schema": "pi-retraining-rows/1", "features": [names...], ...}``, then one row per action
``{"action", "outcome", "score", "modelVersion", "features"}``. A row becomes a training example
labelled by what the player did:

- ``accepted``: the label is the action's type (the player was in the state the action is for);
- ``dismissed``: the label is ``none`` (the suggestion did not fit);
- no response (``none``): skipped, it says nothing about the player.

Features are mapped by name from the header to the code's ``FEATURES`` order; a file whose header
lacks one of them is skipped with a warning. Sources (repeatable):

- a local file, or a directory (every ``*.jsonl`` below it);
- ``blob://<container>/<prefix>``: the host storage account of ``AzureWebJobsStorage`` (Azurite
  locally), e.g. ``blob://summary-exports/2026-11-26/``;
- ``https://<account>.blob.core.windows.net/<container>[/<prefix>][?<SAS>]``: signed in with
  ``DefaultAzureCredential`` (Storage Blob Data Reader) unless the URL carries a SAS.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("train_model")

SCHEMA = "pi-retraining-rows/1"


@dataclass
class ExtraRows:
    X: list[list[float]]
    labels: list[str]  # a LABELS name per row
    files: int
    skipped: int  # rows without an answer, or malformed


def _local(path: Path) -> Iterator[tuple[str, bytes]]:
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    for f in files:
        yield str(f), f.read_bytes()


def _blobs(container: Any, prefix: str) -> Iterator[tuple[str, bytes]]:
    for item in container.list_blobs(name_starts_with=prefix or None):
        if str(item.name).endswith(".jsonl"):
            yield f"{container.container_name}/{item.name}", container.download_blob(item.name).readall()


def _source(source: str) -> Iterator[tuple[str, bytes]]:
    from azure.storage.blob import ContainerClient

    if source.startswith("blob://"):
        container, _, prefix = source[len("blob://") :].partition("/")
        conn = os.environ.get("AzureWebJobsStorage", "")
        if not conn:
            raise SystemExit(
                f"{source}: set AzureWebJobsStorage (a connection string) to read blob:// sources"
            )
        yield from _blobs(ContainerClient.from_connection_string(conn, container), prefix)
    elif source.startswith(("https://", "http://")):
        parts = urlsplit(source)
        segments = parts.path.lstrip("/").split("/", 1)
        container_url = f"{parts.scheme}://{parts.netloc}/{segments[0]}" + (
            f"?{parts.query}" if parts.query else ""
        )
        credential = None
        if not parts.query:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        yield from _blobs(
            ContainerClient.from_container_url(container_url, credential=credential),
            segments[1] if len(segments) > 1 else "",
        )
    else:
        path = Path(source)
        if not path.exists():
            raise SystemExit(f"--extra-rows {source}: no such file or directory")
        yield from _local(path)


def parse(
    files: Iterable[tuple[str, bytes]], features: Sequence[str], action_types: Sequence[str]
) -> ExtraRows:
    out = ExtraRows([], [], 0, 0)
    for name, raw in files:
        lines = raw.decode("utf-8").splitlines()
        if not lines:
            continue
        header = json.loads(lines[0])
        if header.get("schema") != SCHEMA:
            log.warning("%s: not a retraining export (schema %r); skipped", name, header.get("schema"))
            continue
        names = list(header.get("features") or [])
        missing = [f for f in features if f not in names]
        if missing:
            log.warning("%s: features %s are missing; skipped", name, missing)
            continue
        order = [names.index(f) for f in features]
        out.files += 1
        for line in lines[1:]:
            row = json.loads(line)
            values = row.get("features")
            action, outcome = row.get("action"), row.get("outcome")
            if (
                outcome not in ("accepted", "dismissed")
                or action not in action_types
                or not isinstance(values, list)
            ):
                out.skipped += 1
                continue
            if len(values) != len(names):
                out.skipped += 1
                continue
            out.X.append([float(values[i]) for i in order])
            out.labels.append(action if outcome == "accepted" else "none")
    return out


def load(sources: Sequence[str], features: Sequence[str], action_types: Sequence[str]) -> ExtraRows:
    """Every row of every source (see the module doc)."""

    def files() -> Iterator[tuple[str, bytes]]:
        for s in sources:
            yield from _source(s)

    return parse(files(), features, action_types)


def extend(data: Any, sources: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """``data`` (a train_model Dataset) with the sources' rows appended, and a summary for the card."""
    import numpy as np

    from shared.features import FEATURES
    from shared.journeys import LABELS
    from shared.policy import ACTION_TYPES

    extra = load(sources, FEATURES, ACTION_TYPES)
    if not extra.X:
        log.warning("--extra-rows: no answered rows in %s", ", ".join(sources))
        return data, {"sources": list(sources), "files": extra.files, "rows": 0, "skipped": extra.skipped}
    X = np.asarray(extra.X, dtype=np.float32).reshape(-1, len(FEATURES))
    y = np.asarray([LABELS.index(label) for label in extra.labels], dtype=np.int64)
    # each extra row is its own "player" (the export carries no player ids)
    owners = np.arange(len(y), dtype=np.int64) + int(data.player.max(initial=-1)) + 1
    merged = type(data)(
        X=np.concatenate([data.X, X]),
        y=np.concatenate([data.y, y]),
        player=np.concatenate([data.player, owners]),
        players=data.players,
        events=data.events,
        routed=data.routed,
    )
    counts = {label: int((y == i).sum()) for i, label in enumerate(LABELS)}
    log.info(
        "added %d rows from %d export files (%d skipped): %s", len(y), extra.files, extra.skipped, counts
    )
    summary = {
        "sources": list(sources),
        "files": extra.files,
        "rows": len(y),
        "skipped": extra.skipped,
        "class_balance": counts,
    }
    return merged, summary
