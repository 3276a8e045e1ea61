"""The Durable Functions wire protocol, as the Python SDK (azure-functions-durable 1.7) speaks it.

Used by the devhost and by the function-level tests, so both drive the real SDK
code paths: the client binding JSON that ``durable_client_input`` turns into a
``DurableOrchestrationClient``, the webhook URLs its signals are posted to, and
the JSON batch an entity handler consumes and returns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CLIENT_MODULE = "azure.durable_functions.models.DurableOrchestrationClient"
WEBHOOK_PATH = "/runtime/webhooks/durabletask/"

PostFn = Callable[..., Awaitable[list[Any]]]
GetFn = Callable[..., Awaitable[list[Any]]]


def client_binding_json(base_url: str, task_hub: str) -> str:
    """The JSON string the Functions host passes for a ``durableClient`` binding."""
    rpc = base_url.rstrip("/") + WEBHOOK_PATH
    mgmt = rpc + "instances/INSTANCEID?taskHub=" + task_hub + "&connection=Storage"
    return json.dumps(
        {
            "taskHubName": task_hub,
            "creationUrls": {
                "createNewInstancePostUri": rpc + "orchestrators/{functionName}[/{instanceId}]",
                "createAndWaitOnNewInstancePostUri": rpc
                + "orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}",
            },
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": mgmt,
                "sendEventPostUri": rpc + "instances/INSTANCEID/raiseEvent/{eventName}",
                "terminatePostUri": rpc + "instances/INSTANCEID/terminate?reason={text}",
                "purgeHistoryDeleteUri": mgmt,
            },
            "baseUrl": rpc,
            "requiredQueryStringParameters": "",
            "rpcBaseUrl": rpc,
        }
    )


@dataclass(frozen=True)
class EntityRequest:
    """A webhook call on an entity, decoded from the URL the SDK built."""

    name: str
    key: str
    op: str | None


def parse_entity_url(url: str) -> EntityRequest | None:
    """``{rpcBaseUrl}entities/{name}/{key}?op={op}`` -> parts; None for other URLs."""
    parts = urlsplit(url)
    path = parts.path
    idx = path.find(WEBHOOK_PATH + "entities/")
    if idx < 0:
        return None
    rest = path[idx + len(WEBHOOK_PATH + "entities/") :].split("/", 1)
    # An empty key is what the extension receives for the key "." (the client normalised it away).
    if len(rest) != 2 or not rest[0]:
        return None
    op = parse_qs(parts.query).get("op", [None])[0]
    return EntityRequest(unquote(rest[0]), unquote(rest[1]), op)


@contextmanager
def client_transport(post: PostFn, get: GetFn | None = None) -> Iterator[None]:
    """Route every DurableOrchestrationClient created inside the block through ``post``/``get``.

    The client copies the module-level request functions in its constructor, so
    swapping them on the module (reached through sys.modules: the package
    re-exports the class under the module's name) covers all new clients.
    """
    module: Any = sys.modules[CLIENT_MODULE]
    saved = module.post_async_request, module.get_async_request
    module.post_async_request = post
    if get is not None:
        module.get_async_request = get
    try:
        yield
    finally:
        module.post_async_request, module.get_async_request = saved


def entity_batch_json(
    name: str, key: str, state: str | None, operations: list[tuple[str, str | None]]
) -> str:
    """The batch the extension hands an entity function.

    ``state`` is the entity's stored state (a JSON string) or None. Each operation
    is (name, signal body) where the body is the JSON text the client posted; the
    extension passes it JSON-encoded once more, which ``get_input()`` undoes.
    """
    return json.dumps(
        {
            "self": {"name": name, "key": key},
            "state": state,
            "exists": state is not None,
            "batch": [
                {"name": op, "isSignal": True, "input": json.dumps(body) if body is not None else None}
                for op, body in operations
            ],
        }
    )


@dataclass
class EntityBatchResult:
    exists: bool
    state: str | None  # JSON text to store, or None when the entity was deleted
    results: list[dict[str, Any]]


def parse_entity_response(raw: str) -> EntityBatchResult:
    data = json.loads(raw)
    return EntityBatchResult(
        exists=bool(data["entityExists"]),
        state=data["entityState"] if data["entityExists"] else None,
        results=data["results"],
    )
