"""A small app for the worker-process conformance tests: each process answers with its pid and its own
count of invocations (module state is per process), one function raises, and an entity records when
each of its batches ran and in which process."""

from __future__ import annotations

import os
import time
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

calls = 0  # per process: each worker imports the app itself


@app.route(route="who", methods=["GET"])
def who(req: func.HttpRequest) -> func.HttpResponse:
    global calls
    calls += 1
    return func.HttpResponse(f"{os.getpid()} {calls}")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("boom from the worker")


@app.route(route="signal/{key}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def signal(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    await client.signal_entity(df.EntityId("Recorder", req.route_params["key"]), "add", {"n": 1})
    return func.HttpResponse(str(os.getpid()), status_code=202)


@app.entity_trigger(context_name="context", entity_name="Recorder")
def recorder(context: df.DurableEntityContext) -> None:
    """Each operation: [pid, start, end] appended to the state, with a sleep between so overlaps show."""
    state: list[Any] = context.get_state(list)
    started = time.time()
    time.sleep(0.03)
    state.append([os.getpid(), started, time.time()])
    context.set_state(state)
    context.set_result(len(state))
