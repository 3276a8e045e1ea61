"""The devhost's Storage queue trigger against a real queue service (Azurite), with the real app's
outbox_reminder function. Sources: the Storage Queues extension's documented host.json settings
(messageEncoding base64, maxDequeueCount, visibilityTimeout) and its decoding-failure handler
(QueueServiceClientProvider: an undecodable message goes to <queue>-poison at once, unrun)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from devhost.durable import protocol
from devhost.functions_host.indexing import index_app
from devhost.functions_host.settings import QueueOptions
from devhost.servers.node import Azurite
from devhost.storage.queues import QueueListener, QueueStats
from tests.apphost import BASE, Capture

pytestmark = pytest.mark.azurite


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[str]:
    server = Azurite(tmp_path / "azurite")
    try:
        yield server.start_connection_string()
    finally:
        server.stop()


def test_queue_messages_run_the_function_and_undecodable_ones_go_to_poison_unrun(storage: str) -> None:
    from azure.storage.queue import QueueClient

    settings = {"EVENTHUB_NAME": "h", "EVENTHUB_CONSUMER_GROUP": "c", "OUTBOX_REMINDER_QUEUE": "reminders"}
    spec = index_app(function_app.app, settings).functions["outbox_reminder"]
    queue = QueueClient.from_connection_string(storage, "reminders")
    queue.create_queue()
    good = json.dumps({"playerId": "p1", "op": "flush"}).encode()
    queue.send_message(base64.b64encode(good).decode())  # as shared.reminders sends it
    queue.send_message("{not base64: plain text}")  # as a producer without the encode policy would
    stats = QueueStats()
    capture = Capture()
    options = QueueOptions(max_polling_interval_s=0.2, max_dequeue_count=3)
    client = {a: protocol.client_binding_json(BASE, "h") for a in spec.client_args}

    async def go() -> None:
        listener = QueueListener(spec, storage, options, client, stats)
        task = asyncio.create_task(listener.run())
        for _ in range(100):
            if stats.invocations >= 1 and stats.poisoned >= 1:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with protocol.client_transport(capture.post):
        asyncio.run(go())
    assert [u for u, _ in capture.posts] == [BASE + protocol.WEBHOOK_PATH + "entities/Player/p1?op=flush"]
    assert (stats.invocations, stats.poisoned, stats.failures) == (1, 1, 0)
    poison = QueueClient.from_connection_string(storage, "reminders-poison")
    assert [m.content for m in poison.receive_messages()] == ["{not base64: plain text}"]
    assert queue.get_queue_properties().approximate_message_count == 0
