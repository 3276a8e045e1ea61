"""The Durable client API: the extension's webhooks (``HttpApiHandler``), over HTTP or in process.

The client's entity signals and state reads, and its orchestration requests (start, status,
raise event, terminate, purge), answered as the extension answers them: routed by the devhost's
webhook server (``devhost.webserver``, ``--transport http``), or handed to the SDK's request
functions in process (``InProcTransport``, ``OrchestrationClientTransport``, the default), both
running the SDK's own URL and payload code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from aiohttp import web
from yarl import URL

from devhost.durable import protocol
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.entities import EntityScheduler
from devhost.durable.history import (
    CONNECTION_NAME,
    TERMINAL_STATUSES,
    AlreadyExistsError,
    ArgumentError,
    compact,
    from_ms,
    jtoken,
)
from devhost.durable.orchestration_db import (
    InstanceRow,
)
from devhost.durable.protocol import WEBHOOK_PATH

log = logging.getLogger(__name__)

INPROC_BASE_URL = "http://127.0.0.1:7071"  # never contacted: the in-process transport parses its URLs


def as_sent(url: str) -> str:
    """The URL the SDK's aiohttp client would put on the wire.

    aiohttp builds ``yarl.URL(url)``, which removes dot segments (``entities/Player/..``
    becomes ``entities/``) and percent-encodes what needs it; the in-process transport
    must see the same URL, or it would hide a key that breaks over HTTP.
    """
    return str(URL(url))


class InProcTransport:
    """The webhook API as two coroutines with the SDK request functions' signatures."""

    def __init__(self, scheduler: EntityScheduler) -> None:
        self.scheduler = scheduler

    async def post(self, url: str, data: Any = None, *args: Any, **kwargs: Any) -> list[Any]:
        sent = as_sent(url)
        req = protocol.parse_entity_url(sent)
        if req is None and protocol.WEBHOOK_PATH + "entities/" in sent:
            return [
                400,
                {"error": f"not an entity URL: {sent}"},
            ]  # "entities/Player/.." arrives as "entities/"
        if req is None or req.op is None:
            return [501, {"error": f"the devhost serves entity signals only, not {url}"}]
        try:
            self.scheduler.signal(req.name, req.key, req.op, data)
        except KeyError as exc:
            return [404, {"error": str(exc)}]
        return [202, None]

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        req = protocol.parse_entity_url(as_sent(url))
        if req is None:
            return [501, {"error": f"the devhost serves entity state only, not {url}"}]
        state = self.scheduler.read_state(req.name, req.key)
        return [404, ""] if state is None else [200, state]


# -- the client API: the extension's webhooks (HttpApiHandler) ----------------------------------


class ClientReply(NamedTuple):
    status: int
    body: Any  # JSON value, or None for an empty body
    headers: dict[str, str]


def _error(status: int, message: str, exc: BaseException) -> ClientReply:
    """``request.CreateErrorResponse(status, message, exception)``: an HttpError body."""
    type_name = {
        ArgumentError: "System.ArgumentException",
        AlreadyExistsError: "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
    }.get(type(exc), "System.Exception")
    body = {"Message": message, "ExceptionMessage": str(exc), "ExceptionType": type_name, "StackTrace": None}
    return ClientReply(status, body, {})


def management_payload(origin: str, instance_id: str, hub: str) -> dict[str, str]:
    """``CreateCheckStatusResponse``'s body (HttpApiHandler.GetClientResponseLinks)."""
    prefix = origin.rstrip("/") + WEBHOOK_PATH + "instances/" + quote_plus(instance_id)
    query = f"taskHub={quote_plus(hub)}&connection={CONNECTION_NAME}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{prefix}?{query}",
        "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{prefix}?{query}",
        "restartPostUri": f"{prefix}/restart?{query}",
        "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{prefix}/resume?reason={{text}}&{query}",
    }


def _iso_seconds(ms: int) -> str:
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def status_payload(row: InstanceRow) -> dict[str, Any]:
    """``StatusResponsePayload`` (HttpApiHandler.ConvertFrom): input, customStatus and output are JSON
    parsed from the stored strings (raw string if not JSON), times to the second."""
    return {
        "name": row.name,
        "instanceId": row.instance_id,
        "runtimeStatus": row.status,
        "input": jtoken(row.input),
        "customStatus": jtoken(row.custom_status),
        "output": jtoken(row.output),
        "createdTime": _iso_seconds(row.created_ms),
        "lastUpdatedTime": _iso_seconds(row.updated_ms),
    }


_NO_BODY = object()


def client_request(
    engine: OrchestrationEngine, method: str, url: str, body: Any = _NO_BODY
) -> ClientReply | None:
    """One webhook call on orchestrations, or None when the URL is not an orchestration URL.

    ``body`` is the request body's JSON value (``_NO_BODY`` when there is none).
    """
    parsed = URL(url)
    path = parsed.path
    idx = path.find(WEBHOOK_PATH)
    if idx < 0:
        return None
    segments = path[idx + len(WEBHOOK_PATH) :].split("/")
    origin = str(parsed.origin()) if parsed.is_absolute() else ""
    method = method.upper()
    try:
        if segments[0] == "orchestrators" and len(segments) in (2, 3) and segments[1] and method == "POST":
            instance_id = segments[2] if len(segments) == 3 and segments[2] else None
            input_json = "null" if body is _NO_BODY else compact(body)
            new_id = engine.start_new(segments[1], instance_id, input_json)
            payload = management_payload(origin, new_id, engine.hub)
            return ClientReply(202, payload, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})
        if segments[0] != "instances" or len(segments) < 2 or not segments[1]:
            return None
        instance_id = segments[1]
        if len(segments) == 2 and method == "GET":
            row = engine.status(instance_id)
            if row is None:
                return ClientReply(404, None, {})
            if row.status in TERMINAL_STATUSES:
                return ClientReply(200, status_payload(row), {})
            return ClientReply(202, status_payload(row), {"Location": url, "Retry-After": "5"})
        if len(segments) == 2 and method == "DELETE":
            deleted = engine.purge(instance_id)
            return (
                ClientReply(200, {"instancesDeleted": deleted}, {}) if deleted else ClientReply(404, None, {})
            )
        if len(segments) == 4 and segments[2] == "raiseEvent" and method == "POST":
            data = None if body is _NO_BODY else compact(body)
            return ClientReply(engine.raise_event(instance_id, segments[3], data), None, {})
        if len(segments) == 3 and segments[2] == "terminate" and method == "POST":
            return ClientReply(engine.terminate(instance_id, parsed.query.get("reason")), None, {})
    except ArgumentError as exc:
        return _error(400, "One or more of the arguments submitted is incorrect", exc)
    except Exception as exc:  # the extension answers 500 for any other exception
        return _error(500, "Something went wrong while processing your request", exc)
    return None


class OrchestrationClientTransport:
    """The in-process transport for orchestration URLs, in front of another transport (entities).

    Its ``post``/``get`` have the SDK request functions' signatures; use them with
    ``protocol.client_transport(t.post, t.get)``. URLs are normalised as the SDK's aiohttp
    client would put them on the wire.
    """

    def __init__(
        self,
        engine: OrchestrationEngine,
        post: Callable[..., Awaitable[list[Any]]] | None = None,
        get: Callable[..., Awaitable[list[Any]]] | None = None,
    ) -> None:
        self.engine = engine
        self._post, self._get = post, get

    async def post(self, url: str, data: Any = None, *args: Any, **kwargs: Any) -> list[Any]:
        sent = str(URL(url))
        reply = client_request(self.engine, "POST", sent, _NO_BODY if data is None else data)
        if reply is not None:
            return [reply.status, reply.body]
        if self._post is None:
            return [404, None]
        return await self._post(url, data, *args, **kwargs)

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        sent = str(URL(url))
        reply = client_request(self.engine, "GET", sent)
        if reply is not None:
            return [reply.status, "" if reply.body is None else reply.body]
        if self._get is None:
            return [404, ""]
        return await self._get(url, *args, **kwargs)


def add_webhook_routes(app: web.Application, engine: OrchestrationEngine) -> None:
    """The orchestration webhooks on an aiohttp app (register before any catch-all route)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = _NO_BODY
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                return web.json_response(
                    {"Message": "Invalid JSON content", "ExceptionMessage": str(exc)}, status=400
                )
        if request.method == "POST" and "/raiseEvent/" in request.path:
            if not request.content_type.startswith("application/json"):
                return web.json_response(
                    {"Message": "Only application/json request content is supported"}, status=400
                )
        reply = client_request(engine, request.method, str(request.url), body)
        if reply is None:
            return web.Response(status=404)
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    app.router.add_route("*", WEBHOOK_PATH + "orchestrators/{tail:.*}", handle)
    app.router.add_route("*", WEBHOOK_PATH + "instances/{tail:.*}", handle)
