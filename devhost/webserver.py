"""The run's loopback HTTP server, as the Functions host's HTTP listener: the app's HTTP
functions under ``/api/``, the Durable extension's webhook API (``POST
{rpcBaseUrl}entities/{name}/{key}?op=`` -> 202, ``GET`` -> 200 state or 404, and the
orchestration client routes of ``devhost.durable.client``) and the dashboard.

With ``--transport http`` the Durable client's requests come here over HTTP; with the default
``inproc`` they are answered in process by ``devhost.durable.client.InProcTransport`` (the
same SDK URL and payload code, without the socket).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiohttp import web

from devhost.dashboard import Dashboard
from devhost.durable import protocol
from devhost.durable.client import add_webhook_routes
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.entities import EntityScheduler
from devhost.functions_host import bindings
from devhost.functions_host.indexing import FunctionSpec

log = logging.getLogger(__name__)


def is_loopback_host(request: web.Request) -> bool:
    """Was the request addressed to this server's loopback address by name (Host header)?

    The server listens on 127.0.0.1 only, but a page on another site can still reach it from a
    browser through DNS rebinding; such a request carries that site's name in its Host header."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    port = sock[1] if sock else None
    return request.host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}")


@web.middleware
async def _loopback_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every route (the Durable webhooks, the app's HTTP functions with their erase API, the
    dashboard) answers only requests addressed to the loopback address."""
    if not is_loopback_host(request):
        return web.Response(status=421, text="this server answers on its loopback address only")
    return await handler(request)


class WebhookServer:
    """Loopback aiohttp server: Durable webhooks + the app's HTTP-triggered functions."""

    def __init__(
        self,
        scheduler: EntityScheduler,
        http_functions: list[FunctionSpec],
        hub: str,
        orchestrations: OrchestrationEngine | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.orchestrations = orchestrations  # orchestrators/ and instances/ webhooks when set
        self.hub = hub
        self.http_functions = http_functions
        self.dashboard = Dashboard()  # the page and /devhost/api/ (devhost/dashboard.py)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_loopback_only])
        entity = protocol.WEBHOOK_PATH + "entities/{name}/{key:.*}"
        app.router.add_post(entity, self._signal)
        app.router.add_get(entity, self._read)
        for spec in self.http_functions:
            route = "/api/" + str(spec.trigger.get("route") or spec.name).lstrip("/")
            for method in spec.trigger.get("methods") or ["GET", "POST"]:
                app.router.add_route(method.upper(), route, self._http_handler(spec))
        if self.orchestrations is not None:
            add_webhook_routes(app, self.orchestrations)
        self.dashboard.add_routes(app)
        app.router.add_route("*", protocol.WEBHOOK_PATH + "entities/{tail:.*}", self._bad_entity_url)
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

    async def _bad_entity_url(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"not an entity URL: {request.path}"}, status=400)

    async def _unsupported(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"not supported by the devhost: {request.path}"}, status=501)

    def _http_handler(self, spec: FunctionSpec) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            binding = protocol.client_binding_json(self.base_url, self.hub)
            inv = bindings.http_invocation(
                spec.trigger,
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                query=dict(request.query),
                route_params=dict(request.match_info),
                body=await request.read(),
                client_args={arg: binding for arg in spec.client_args},
            )
            try:
                reply = bindings.http_reply(await spec.invoke(inv))
            except Exception as exc:  # the host answers 500 when the invocation fails
                log.exception("HTTP function %s failed", spec.name)
                return web.Response(status=500, text=f"function {spec.name} failed: {type(exc).__name__}")
            headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
            content_type = reply.headers.get("content-type", "application/octet-stream")
            resp = web.Response(status=reply.status, body=reply.body, headers=headers)
            resp.headers["Content-Type"] = content_type
            return resp

        return handle
