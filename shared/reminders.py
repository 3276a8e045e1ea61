"""Outbox reminders: wake a player's entity later, whether or not the player sends another event.

A Python entity cannot signal itself (azure-functions-durable 1.x), so an action
whose write failed used to wait in the outbox for the player's next event, and
a player who had gone quiet lost it when the outbox expired. Instead, the entity
puts a message on a Storage queue with a visibility delay; when it becomes
visible, the queue-triggered ``outbox_reminder`` function signals the entity's
``flush`` operation, which retries the writes (and asks for another reminder if
they fail again). The queue lives in the host storage account, which depends
on neither Cosmos DB nor the Durable backend.

Messages are Base64-encoded: the Functions host decodes queue messages as
Base64 by default (``extensions.queues.messageEncoding``) and fails a message
that is not.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

from shared import hoststorage

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "outbox-reminders"


# The entity operations a reminder may signal.
OPERATIONS = frozenset({"flush", "erase", "sweep"})


class Reminders(Protocol):
    def remind(self, player_id: str, delay_s: int, op: str = "flush") -> None:
        """Ask for operation ``op`` on the player's entity in ``delay_s`` seconds; raises if it cannot."""


def message(player_id: str, op: str = "flush") -> str:
    if op not in OPERATIONS:
        raise ValueError(f"not a reminder operation: {op!r}")
    return json.dumps({"playerId": player_id, "op": op}, separators=(",", ":"))


class QueueReminders:
    """Reminders on a Storage queue (azure-storage-queue); the client is built and the queue
    created on first use, so a missing setting fails a reminder, never an entity batch."""

    def __init__(self, queue_client: Any = None, factory: Any = None) -> None:
        self._queue = queue_client
        self._factory = factory or queue_from_settings
        self._ready = False

    def remind(self, player_id: str, delay_s: int, op: str = "flush") -> None:
        if not self._ready:
            from azure.core.exceptions import ResourceExistsError

            if self._queue is None:
                self._queue = self._factory()
            try:
                self._queue.create_queue()
            except ResourceExistsError:
                pass
            self._ready = True
        # The queue service caps the visibility delay at 7 days; reminders are minutes.
        self._queue.send_message(message(player_id, op), visibility_timeout=max(0, min(delay_s, 3600)))


def queue_from_settings(env: Mapping[str, str] | None = None) -> Any:
    """A QueueClient from the host storage settings (connection string, or identity-based URIs)."""
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    env = os.environ if env is None else env
    name = env.get("OUTBOX_REMINDER_QUEUE") or DEFAULT_QUEUE
    options: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(), "connection_timeout": 5}
    conn, uri, credential = hoststorage.connection(env, "queue")
    if conn:
        return QueueClient.from_connection_string(conn, name, **options)
    return QueueClient(uri, name, credential=credential, **options)


@functools.cache
def get_reminders() -> QueueReminders:
    return QueueReminders()


def reset() -> None:
    get_reminders.cache_clear()
