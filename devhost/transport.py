"""How a DurableOrchestrationClient's requests reach the entity scheduler.

Two interchangeable transports, both running the SDK's own URL and payload code:

- ``http``: the Durable extension's webhook API on a loopback aiohttp server
  (``POST {rpcBaseUrl}entities/{name}/{key}?op=`` -> 202, ``GET`` -> 200 state or 404);
  the same server serves the app's HTTP functions under ``/api/``.
- ``inproc``: the client's module-level request functions swapped for coroutines
  that call the scheduler directly (``protocol.client_transport``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost import protocol
from devhost.entities import EntityScheduler
from devhost.indexing import FunctionSpec

log = logging.getLogger(__name__)

INPROC_BASE_URL = "http://127.0.0.1:7071"  # never contacted: the in-process transport parses its URLs


class InProcTransport:
    """The webhook API as two coroutines with the SDK request functions' signatures."""

    def __init__(self, scheduler: EntityScheduler) -> None:
        self.scheduler = scheduler

    async def post(self, url: str, data: Any = None, *args: Any, **kwargs: Any) -> list[Any]:
        req = protocol.parse_entity_url(url)
        if req is None or req.op is None:
            return [501, {"error": f"the devhost serves entity signals only, not {url}"}]
        try:
            self.scheduler.signal(req.name, req.key, req.op, data)
        except KeyError as exc:
            return [404, {"error": str(exc)}]
        return [202, None]

    async def get(self, url: str, *args: Any, **kwargs: Any) -> list[Any]:
        req = protocol.parse_entity_url(url)
        if req is None:
            return [501, {"error": f"the devhost serves entity state only, not {url}"}]
        state = self.scheduler.read_state(req.name, req.key)
        return [404, ""] if state is None else [200, state]


class WebhookServer:
    """Loopback aiohttp server: Durable webhooks + the app's HTTP-triggered functions."""

    def __init__(self, scheduler: EntityScheduler, http_functions: list[FunctionSpec], hub: str) -> None:
        self.scheduler = scheduler
        self.hub = hub
        self.http_functions = http_functions
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _app(self) -> web.Application:
        app = web.Application()
        entity = protocol.WEBHOOK_PATH + "entities/{name}/{key}"
        app.router.add_post(entity, self._signal)
        app.router.add_get(entity, self._read)
        for spec in self.http_functions:
            route = "/api/" + str(spec.trigger.get("route") or spec.name).lstrip("/")
            for method in spec.trigger.get("methods") or ["GET", "POST"]:
                app.router.add_route(method.upper(), route, self._http_handler(spec))
        app.router.add_route("*", protocol.WEBHOOK_PATH + "{tail:.*}", self._unsupported)
        return app

    async def start(self) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _signal(self, request: web.Request) -> web.Response:
        op = request.query.get("op")
        if not op:
            return web.json_response({"error": "op is required"}, status=400)
        # The SDK posts json.dumps(input) as a JSON value: the body is a JSON string (or null).
        data = await request.json() if request.can_read_body else None
        try:
            self.scheduler.signal(request.match_info["name"], request.match_info["key"], op, data)
        except KeyError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.Response(status=202)

    async def _read(self, request: web.Request) -> web.Response:
        state = self.scheduler.read_state(request.match_info["name"], request.match_info["key"])
        if state is None:
            return web.Response(status=404)
        return web.json_response(state)

    async def _unsupported(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"not supported by the devhost: {request.path}"}, status=501)

    def _http_handler(self, spec: FunctionSpec) -> Any:
        trigger_arg = str(spec.trigger["name"])

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            req = func.HttpRequest(
                request.method,
                str(request.url),
                headers=dict(request.headers),
                params=dict(request.query),
                route_params=dict(request.match_info),
                body=body,
            )
            kwargs: dict[str, Any] = {trigger_arg: req}
            for arg in spec.client_args:
                kwargs[arg] = protocol.client_binding_json(self.base_url, self.hub)
            handler = spec.handler
            if inspect.iscoroutinefunction(handler):
                resp = await handler(**kwargs)
            else:
                resp = await asyncio.to_thread(handler, **kwargs)
                if inspect.isawaitable(resp):
                    resp = await resp
            if not isinstance(resp, func.HttpResponse):
                return web.Response(status=500, text=f"function {spec.name} returned {type(resp).__name__}")
            headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-type"}
            return web.Response(
                status=resp.status_code, body=resp.get_body(), headers=headers, content_type=resp.mimetype
            )

        return handle
