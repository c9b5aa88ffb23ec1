"""The agent's HTTPS endpoint (kubelet's port 10250), which the API server
proxies pods/log, pods/exec, pods/attach and pods/portforward to.

Routes live in a table: the streaming protocols add theirs with
`AgentServer.add_route(method, path, handler, subresource=...)` before
`start()`. Handlers are aiohttp handlers; they reach the agent's pods and
runtime through `request.app[PODS]` and `request.app[RUNTIME]`, and find a
container with `await request.app[PODS].container(namespace, pod, name)`.
Every route but /healthz is authenticated (tls.Authenticator) and authorized
as `<verb> nodes/<subresource>` on this node, as kubelet does.

Built in: GET /healthz, and GET /containerLogs/{namespace}/{pod}/{container}
with follow, tailLines, timestamps, sinceSeconds, sinceTime, limitBytes and
previous.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from kubelite.agent.logs import LogOptions, stream_log
from kubelite.agent.podmanager import LookupError_, PodManager
from kubelite.agent.tls import Authenticator
from kubelite.runtime import errors
from kubelite.runtime.base import ContainerRuntime

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PODS = web.AppKey("pods", PodManager)
RUNTIME = web.AppKey("runtime", ContainerRuntime)  # type: ignore[type-abstract]
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    # Authorized as `<verb> nodes/<subresource>`; None serves without authentication.
    subresource: str | None = "proxy"


class AgentServer:
    def __init__(self, *, pods: PodManager, runtime: ContainerRuntime, host: str, port: int,
                 ssl_context: ssl.SSLContext | None, authenticator: Authenticator | None) -> None:
        self.pods = pods
        self.runtime = runtime
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.routes: list[Route] = [
            Route("GET", "/healthz", _healthz, subresource=None),
            Route("GET", "/containerLogs/{namespace}/{pod}/{container}", container_logs),
        ]
        self._runner: web.AppRunner | None = None

    def add_route(self, method: str, path: str, handler: Handler, *,
                  subresource: str | None = "proxy") -> None:
        if self._runner is not None:
            raise RuntimeError("add routes before the server starts")
        self.routes.append(Route(method, path, handler, subresource))

    def _guard(self, route: Route) -> Handler:
        if route.subresource is None or self.authenticator is None:
            return route.handler
        authenticator, subresource = self.authenticator, route.subresource

        async def guarded(request: web.Request) -> web.StreamResponse:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            verb = _VERBS.get(request.method, "get")
            verdict = await authenticator.check(
                peer_cert=peer, authorization=request.headers.get("Authorization"),
                verb=verb, subresource=subresource)
            if verdict == "unauthenticated":
                return web.Response(status=401, text="Unauthorized")
            if verdict == "forbidden":
                return web.Response(status=403, text=f"Forbidden (user may not {verb} "
                                                     f"nodes/{subresource})")
            return await route.handler(request)

        return guarded

    async def start(self) -> None:
        app = web.Application()
        app[PODS] = self.pods
        app[RUNTIME] = self.runtime
        for route in self.routes:
            app.router.add_route(route.method, route.path, self._guard(route))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            # Asked for any free port: report the one bound.
            self.port = int(self._runner.addresses[0][1])
        log.info("agent endpoint on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise web.HTTPBadRequest(text=f"invalid {name}: {raw!r}") from e


def _bool(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def log_options(request: web.Request) -> LogOptions:
    since: float | None = None
    seconds = _int(request, "sinceSeconds")
    if seconds is not None:
        since = time.time() - seconds
    elif request.query.get("sinceTime"):
        raw = request.query["sinceTime"].replace("Z", "+00:00")
        try:
            since = dt.datetime.fromisoformat(raw).timestamp()
        except ValueError as e:
            raise web.HTTPBadRequest(text=f"invalid sinceTime: {request.query['sinceTime']!r}") \
                from e
    return LogOptions(follow=_bool(request, "follow"), tail_lines=_int(request, "tailLines"),
                      timestamps=_bool(request, "timestamps"), since=since,
                      limit_bytes=_int(request, "limitBytes"))


async def container_logs(request: web.Request) -> web.StreamResponse:
    pods, runtime = request.app[PODS], request.app[RUNTIME]
    m = request.match_info
    opts = log_options(request)
    try:
        ref = await pods.container(m["namespace"], m["pod"], m["container"],
                                   previous=_bool(request, "previous"))
    except LookupError_ as e:
        return web.Response(status=e.code, text=e.message)
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)

    async def running() -> bool:
        if ref.container_id is None:
            return False
        try:
            return (await runtime.container_status(ref.container_id)).state == "running"
        except errors.ContainerNotFound:
            return False

    async def write(data: bytes) -> None:
        await response.write(data)

    await stream_log(ref.log_path, opts, write=write, running=running)
    await response.write_eof()
    return response
