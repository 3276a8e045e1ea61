"""A Storage queue trigger, run the way the Functions host's Storage Queues extension runs it.

Against a real queue service (Azurite locally, the host storage account): the
listener fetches up to ``batchSize`` messages, polling with exponential back-off
up to ``maxPollingInterval`` while the queue is empty; it decodes each message
as the host does (``messageEncoding``, Base64 by default: a message that is not
valid Base64 is moved to the ``<queue>-poison`` queue at once, unrun, as the
extension's decoding-failure handler does); a message whose invocation succeeds
is deleted; one that fails becomes visible again after ``visibilityTimeout``,
and when it has been dequeued ``maxDequeueCount`` times it is moved to the
poison queue (one dequeued more often than that is moved without running).
These are the extension's documented host.json settings, read from host.json
(devhost.functions_host.settings.QueueOptions).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from typing import Any

from devhost.functions_host import bindings
from devhost.functions_host.indexing import FunctionSpec
from devhost.functions_host.settings import QueueOptions

log = logging.getLogger(__name__)

PROCESSING_VISIBILITY_S = 600  # a fetched message is invisible while the function runs
MIN_POLL_S = 0.1


@dataclass
class QueueStats:
    invocations: int = 0
    failures: int = 0
    poisoned: int = 0


def decode_body(content: str, encoding: str) -> bytes:
    """The message body as the host hands it to the function; raises when it cannot be decoded."""
    if encoding == "base64":
        return base64.b64decode(content, validate=True)
    return content.encode("utf-8")


class QueueListener:
    def __init__(
        self,
        spec: FunctionSpec,
        connection_string: str,
        options: QueueOptions,
        client_args: dict[str, str],
        stats: QueueStats,
    ) -> None:
        from azure.storage.queue import QueueClient

        self.spec = spec
        self.options = options
        self.client_args = client_args
        self.stats = stats
        self.name = str(spec.trigger["queueName"])
        self.queue = QueueClient.from_connection_string(connection_string, self.name)
        self.poison = QueueClient.from_connection_string(connection_string, f"{self.name}-poison")

    def _ensure(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        for q in (self.queue, self.poison):
            try:
                q.create_queue()
            except ResourceExistsError:
                pass

    def pending(self) -> int:
        """Messages in the queue, visible or not (the service's approximate count)."""
        return int(self.queue.get_queue_properties().approximate_message_count or 0)

    async def run(self) -> None:
        await asyncio.to_thread(self._ensure)
        wait = MIN_POLL_S
        while True:
            messages = await asyncio.to_thread(self._fetch)
            if not messages:
                await asyncio.sleep(wait)
                wait = min(self.options.max_polling_interval_s, wait * 2)
                continue
            wait = MIN_POLL_S
            await asyncio.gather(*(self.process(m) for m in messages))

    def _fetch(self) -> list[Any]:
        pages = self.queue.receive_messages(
            messages_per_page=self.options.batch_size, visibility_timeout=PROCESSING_VISIBILITY_S
        )
        return list(next(pages.by_page(), []))

    async def process(self, msg: Any) -> None:
        if msg.dequeue_count > self.options.max_dequeue_count:  # tried too often already: not run again
            await asyncio.to_thread(self._poison, msg, "dequeue count over maxDequeueCount")
            return
        try:
            body = decode_body(msg.content, self.options.message_encoding)
        except ValueError as exc:  # binascii.Error: the extension moves it to poison at once, unrun
            await asyncio.to_thread(self._poison, msg, f"message could not be decoded: {exc}")
            return
        self.stats.invocations += 1
        try:
            inv = bindings.queue_invocation(
                self.spec.trigger,
                body,
                message_id=msg.id,
                dequeue_count=msg.dequeue_count,
                insertion_time=msg.inserted_on,
                expiration_time=msg.expires_on,
                next_visible_time=msg.next_visible_on,
                pop_receipt=msg.pop_receipt,
                client_args=self.client_args,
            )
            await self.spec.invoke(inv)
        except Exception as exc:  # a decoding error (binascii.Error) or the function's: alike to the host
            self.stats.failures += 1
            await asyncio.to_thread(self._failed, msg, exc)
            return
        await asyncio.to_thread(self.queue.delete_message, msg.id, msg.pop_receipt)

    def _poison(self, msg: Any, why: object) -> None:
        log.error("queue message %s moved to %s-poison: %s", msg.id, self.name, why)
        self.poison.send_message(msg.content)
        self.queue.delete_message(msg.id, msg.pop_receipt)
        self.stats.poisoned += 1

    def _failed(self, msg: Any, exc: BaseException) -> None:
        if msg.dequeue_count >= self.options.max_dequeue_count:
            self._poison(msg, f"failed {msg.dequeue_count} times: {exc}")
            return
        log.warning(
            "queue message %s failed (try %d), visible again in %.0fs: %s",
            msg.id,
            msg.dequeue_count,
            self.options.visibility_timeout_s,
            exc,
        )
        self.queue.update_message(
            msg.id, msg.pop_receipt, visibility_timeout=int(self.options.visibility_timeout_s)
        )
