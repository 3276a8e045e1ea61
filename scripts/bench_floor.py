"""The platform's share: the same functions with no logic (scripts/bench.py, docs/performance.md).

What any design with the engine's shape pays before it does anything: the trigger's Durable
client, a msgspec decode of each body, one signal per player per batch through the SDK, and
an entity that reads its input and hands its state back unchanged through the SDK's entity
protocol. Run on the same workloads, batches and entity grouping as the engine, from the
engine's own warm states (the same bytes cross the protocol), it bounds from below what the
engine can reach without leaving the Durable SDK.
"""

from __future__ import annotations

import asyncio
from typing import List  # noqa: UP035 - the worker refuses list[...] on Python 3.11 (docs/platform.md)

import azure.durable_functions as df
import azure.functions as func
import msgspec

from scripts.bench_naive import hub_ingest
from shared.journeys import NOISE_TYPES

ENTITY = "FloorPlayer"

app = df.DFApp()


class _Event(msgspec.Struct):
    id: str
    type: str
    subject: str
    time: str


_decode = msgspec.json.Decoder(_Event).decode


@hub_ingest(app, "floor_ingest")
async def floor_ingest(
    events: List[func.EventHubEvent],  # noqa: UP006 - see the import
    client: df.DurableOrchestrationClient,
) -> None:
    groups: dict[str, list[str]] = {}
    for e in events:
        ev = _decode(e.get_body())
        if ev.type not in NOISE_TYPES:
            groups.setdefault(ev.subject, []).append(f"{ev.id},{ev.type},{ev.time}")
    await asyncio.gather(
        *(client.signal_entity(df.EntityId(ENTITY, k), "events", ";".join(v)) for k, v in groups.items())
    )


@app.entity_trigger(context_name="context", entity_name=ENTITY)
def floor_player(context: df.DurableEntityContext) -> None:
    context.get_input()
    context.set_state(context.get_state())
