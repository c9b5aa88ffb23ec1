"""The node agent's exec, attach and port-forward endpoints, at kubelet's paths:

    GET /exec/{namespace}/{pod}/{container}?command=..&stdin=..&stdout=..&stderr=..&tty=..
    GET /attach/{namespace}/{pod}/{container}?stdin=..&stdout=..&stderr=..&tty=..
    GET /portForward/{namespace}/{pod}[?ports=..]

Each is a WebSocket upgrade (exec and attach: `v5.channel.k8s.io` or
`v4.channel.k8s.io`; port-forward: `SPDY/3.1+portforward.k8s.io`, or
`v4.channel.k8s.io` with `?ports=`). The API server proxies pods/exec,
pods/attach and pods/portforward here; authentication is the agent server's
business, these handlers assume an authenticated caller.

Pods and containers are found through the runtime alone (sandbox name and
namespace, container name, state running), so the endpoints need no pod worker.
Port-forward connects to 127.0.0.1:PORT inside the sandbox's network namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from kubelite.agent import netns
from kubelite.agent.server import AgentServer
from kubelite.runtime.base import ContainerRuntime, ContainerStatus, Sandbox
from kubelite.runtime.errors import RuntimeError_
from kubelite.streaming import channels, portforward, remotecommand
from kubelite.streaming.session import SpdySession, WebSocketChannel

# kubectl's frames are small; SPDY-in-WebSocket messages carry up to one data frame.
MAX_MESSAGE = 16 * 1024 * 1024

# kubelet authorizes exec, attach and port-forward as `nodes/proxy`.
SUBRESOURCE = "proxy"

NetnsDial = Callable[[str, str, int],
                     Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def _ws_protocol_offered(request: web.Request, supported: tuple[str, ...]) -> bool:
    offered = {p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")}
    return any(p in offered for p in supported)


class StreamingEndpoints:
    """`routes()` go into the agent's HTTPS application."""

    def __init__(self, runtime: ContainerRuntime, *,
                 dial: NetnsDial = netns.open_connection) -> None:
        self._runtime = runtime
        self._dial = dial

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/exec/{namespace}/{pod}/{container}", self.handle_exec),
            web.get("/attach/{namespace}/{pod}/{container}", self.handle_attach),
            web.get("/portForward/{namespace}/{pod}", self.handle_port_forward),
        ]

    # ---- lookups -------------------------------------------------------------------

    async def sandbox(self, namespace: str, pod: str) -> Sandbox:
        found = [s for s in await self._runtime.list_sandboxes()
                 if s.config.namespace == namespace and s.config.name == pod
                 and s.state == "ready"]
        if not found:
            raise web.HTTPNotFound(text=f'pod "{pod}" in namespace "{namespace}" is not '
                                        f"running on this node")
        return max(found, key=lambda s: s.created_at)

    async def container(self, namespace: str, pod: str, name: str) -> ContainerStatus:
        sandbox = await self.sandbox(namespace, pod)
        running = [c for c in await self._runtime.list_containers(sandbox.id)
                   if c.name == name and c.state == "running"]
        if not running:
            raise web.HTTPNotFound(text=f'container "{name}" in pod "{pod}" is not running')
        return max(running, key=lambda c: c.started_at)

    # ---- exec and attach -----------------------------------------------------------

    async def handle_exec(self, request: web.Request) -> web.StreamResponse:
        command = request.query.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="you must specify a command")
        return await self._remote_command(request, command)

    async def handle_attach(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, None)

    async def _remote_command(self, request: web.Request, command: list[str] | None
                              ) -> web.StreamResponse:
        try:
            opts = remotecommand.StreamOptions.from_query(request.query)
        except remotecommand.OptionsError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        info = request.match_info
        # Looked up before the upgrade is checked, so that a plain GET learns why an
        # upgrade would fail (the API server asks that way; see server/streaming.py).
        status = await self.container(info["namespace"], info["pod"], info["container"])
        if not _ws_protocol_offered(request, channels.EXEC_PROTOCOLS):
            raise web.HTTPBadRequest(
                text=f"a WebSocket upgrade to one of {', '.join(channels.EXEC_PROTOCOLS)} "
                     f"is required")
        try:
            if command is None:
                process = await self._runtime.attach(status.id, stdin=opts.stdin)
            else:
                process = await self._runtime.exec(status.id, command, tty=opts.tty,
                                                   stdin=opts.stdin)
        except RuntimeError_ as exc:
            raise web.HTTPInternalServerError(text=str(exc)) from None
        ws = web.WebSocketResponse(protocols=channels.EXEC_PROTOCOLS, max_msg_size=MAX_MESSAGE,
                                   autoping=True)
        try:
            await ws.prepare(request)
        except BaseException:
            await process.kill()
            raise
        await remotecommand.serve_websocket(ws, process, opts, command=command)
        return ws

    # ---- port-forward --------------------------------------------------------------

    async def handle_port_forward(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        sandbox = await self.sandbox(info["namespace"], info["pod"])
        if not _ws_protocol_offered(request, channels.PORT_FORWARD_PROTOCOLS):
            raise web.HTTPBadRequest(
                text=f"a WebSocket upgrade to one of "
                     f"{', '.join(channels.PORT_FORWARD_PROTOCOLS)} is required")
        target = f"pod {info['namespace']}/{info['pod']}, uid {sandbox.config.pod_uid}"
        netns_path = sandbox.netns_path

        async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await self._dial(netns_path, "127.0.0.1", port)

        tunnel = _ws_protocol_offered(request, (channels.PORT_FORWARD_SPDY,))
        ports: list[int] = []
        if not tunnel:
            try:
                ports = portforward.parse_ports(request.query.getall("ports", []))
            except ValueError as exc:
                raise web.HTTPBadRequest(text=str(exc)) from None
        ws = web.WebSocketResponse(
            protocols=(channels.PORT_FORWARD_SPDY if tunnel else channels.V4,),
            max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        if tunnel:
            await portforward.serve_spdy(SpdySession(WebSocketChannel(ws)), dial, target=target)
        else:
            await portforward.serve_websocket(ws, ports, dial, target=target)
        return ws


def install(server: AgentServer) -> StreamingEndpoints:
    """Add the endpoints to the agent's route table; call before `server.start()`."""
    endpoints = StreamingEndpoints(server.runtime)
    for route in endpoints.routes():
        assert isinstance(route, web.RouteDef)
        server.add_route(route.method, route.path, route.handler, subresource=SUBRESOURCE)
    return endpoints
