"""pods/log, pods/exec, pods/attach and pods/portforward: checked against the
pod here, then proxied to the node agent that runs it.

The agent is found from the pod's `spec.nodeName`: the Node's InternalIP (else
its first address) and `status.daemonEndpoints.kubeletEndpoint.Port`. The
connection is HTTPS verified against the cluster CA, and authenticated with a
bearer token the agent accepts; for now that is the admin token (the agent
compares it with the token of its own kubeconfig), until nodes have their own
credentials and agents can ask the API server about tokens.

Logs are streamed through as they come. Exec, attach and port-forward are
WebSocket upgrades relayed message by message, so every channel protocol the
agent speaks (v5/v4 channels, SPDY inside WebSocket) passes unchanged. A
`POST` with `Upgrade: SPDY/3.1` (kubectl's fallback after a failed WebSocket
upgrade) is answered with the reason the upgrade failed, as a Status.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import WSMsgType, web

from kubelite.api import errors
from kubelite.api.registry import lookup
from kubelite.server.context import Target, ctx

Obj = dict[str, Any]
_NODES = lookup("", "v1", "nodes")
DEFAULT_AGENT_PORT = 10250
# Connecting to an agent that does not answer should not hang a kubectl command.
CONNECT_TIMEOUT = 10.0
_LOG_PARAMS = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines",
               "limitBytes")
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            409: "Conflict", 503: "ServiceUnavailable"}


class NodeAccess:
    """How the API server reaches node agents: the CA that signs their serving
    certificates, the token it presents, and one shared HTTP client."""

    def __init__(self, *, ca_file: Path, token: str) -> None:
        self.ca_file = ca_file
        self.token = token
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        return self._ssl

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


NODE_ACCESS = web.AppKey("node-access", NodeAccess)


def install(app: web.Application, *, ca_file: Path, token: str) -> None:
    """Give the API server application its way to the agents; call before it starts."""
    access = NodeAccess(ca_file=ca_file, token=token)
    app[NODE_ACCESS] = access

    async def cleanup(_: web.Application) -> None:
        await access.close()

    app.on_cleanup.append(cleanup)


def node_access(request: web.Request) -> NodeAccess:
    access = request.app.get(NODE_ACCESS)
    if access is None:
        raise errors.APIError(503, "ServiceUnavailable",
                              "this API server has no credentials for node agents")
    return access


def _container(pod: Obj, requested: str) -> str:
    """The container a request names, defaulted as the apiserver does, or a 400."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or []]
    if not requested:
        if len(containers) == 1:
            return containers[0]
        message = (f"a container name must be specified for pod {name}, choose one of: "
                   f"[{' '.join(containers)}]")
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise errors.bad_request(message)
    if requested not in (*containers, *init, *ephemeral):
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


async def _agent_base(request: web.Request, pod: Obj) -> str:
    """https://ADDRESS:PORT of the agent running `pod`."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
    assert _NODES is not None
    return agent_base(await ctx(request).objects.get(_NODES, None, node_name))


def agent_base(node: Obj) -> str:
    """https://ADDRESS:PORT of the agent of `node`."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    address = next((a["address"] for a in addresses if a.get("type") == "InternalIP"),
                   addresses[0]["address"] if addresses else "")
    if not address:
        raise errors.bad_request(f"node {node['metadata']['name']} has no address")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") \
        or DEFAULT_AGENT_PORT
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{port}"


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


async def _agent_error(resp: aiohttp.ClientResponse) -> errors.APIError:
    """The agent's refusal as a Status the client shows."""
    text = (await resp.text(errors="replace")).strip()
    if resp.content_type == "application/json":
        with contextlib.suppress(ValueError, KeyError, TypeError):
            body = await resp.json(content_type=None)
            return errors.APIError(resp.status, body.get("reason") or "InternalError",
                                   body["message"], body.get("details"))
    code = resp.status if resp.status < 500 else 500
    return errors.APIError(code, _REASONS.get(code, "InternalError"),
                           text or f"the node agent answered {resp.status}")


def _unreachable(exc: Exception, url: str) -> errors.APIError:
    return errors.APIError(500, "InternalError", f"error dialing node agent {url}: {exc}")


# ---- pods/log ----------------------------------------------------------------------------


async def handle_log(request: web.Request, t: Target) -> web.StreamResponse:
    if request.method != "GET":
        raise errors.method_not_allowed("log supports GET only")
    assert t.name is not None
    pod = await ctx(request).objects.get(t.res, t.namespace, t.name)
    container = _container(pod, request.query.get("container", ""))
    for name in ("sinceSeconds", "tailLines", "limitBytes"):
        value = request.query.get(name)
        if value is not None and not value.lstrip("-").isdigit():
            raise errors.bad_request(f"invalid value for {name}: {value!r}")
    if not (pod.get("spec") or {}).get("nodeName"):
        # No node yet, no logs yet: the apiserver answers an empty body too.
        return web.Response(text="", content_type="text/plain")
    access = node_access(request)
    base = await _agent_base(request, pod)
    query = {k: request.query[k] for k in _LOG_PARAMS if k in request.query}
    url = f"{base}/containerLogs/{_path(t.namespace or 'default', t.name, container)}"
    if query:
        url += "?" + urlencode(query)
    try:
        resp = await access.session().get(url, ssl=access.ssl_context())
    except (aiohttp.ClientError, OSError) as exc:
        raise _unreachable(exc, url) from None
    async with resp:
        if resp.status != 200:
            raise await _agent_error(resp)
        out = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await out.prepare(request)
        with contextlib.suppress(ConnectionError, aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
        with contextlib.suppress(ConnectionError):
            await out.write_eof()
        return out


# ---- exec, attach, portforward -----------------------------------------------------------


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _pump(source: Any, sink: Any) -> None:
    """Forward WebSocket messages from `source` to `sink` until `source` ends."""
    async for msg in source:
        if msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.ERROR:
            break


async def _relay(client: web.WebSocketResponse, agent: aiohttp.ClientWebSocketResponse) -> None:
    """Copy messages both ways; whichever side closes first closes the other."""

    async def down() -> None:
        await _pump(agent, client)
        await client.close(code=agent.close_code or aiohttp.WSCloseCode.OK)

    async def up() -> None:
        await _pump(client, agent)
        await agent.close()

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # The other direction gets a moment to see the close, then is stopped.
        await asyncio.wait(tasks, timeout=5.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await agent.close()
        await client.close()


async def _proxy_upgrade(request: web.Request, path: str, query: list[tuple[str, str]]
                         ) -> web.StreamResponse:
    access = node_access(request)
    url = path + ("?" + urlencode(query) if query else "")
    session = access.session()
    if not _is_websocket(request):
        # kubectl's SPDY fallback: explain why the WebSocket did not work.
        try:
            async with session.get(url, ssl=access.ssl_context()) as resp:
                raise await _agent_error(resp)
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc, url) from None
    offered = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "")
                    .split(",") if p.strip())
    try:
        agent = await session.ws_connect(url, protocols=offered, ssl=access.ssl_context(),
                                         max_msg_size=0, autoping=True)
    except aiohttp.WSServerHandshakeError:
        # The handshake error carries no body: ask once more, plainly, for the reason.
        try:
            async with session.get(url, ssl=access.ssl_context()) as resp:
                raise await _agent_error(resp) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc, url) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _unreachable(exc, url) from None
    client = web.WebSocketResponse(protocols=(agent.protocol,) if agent.protocol else (),
                                   max_msg_size=0, autoping=True)
    try:
        await client.prepare(request)
    except BaseException:
        await agent.close()
        raise
    await _relay(client, agent)
    return client


async def _remote_command(request: web.Request, t: Target, verb: str) -> web.StreamResponse:
    if request.method not in ("GET", "POST"):
        raise errors.method_not_allowed(f"{verb} supports GET and POST only")
    assert t.name is not None
    pod = await ctx(request).objects.get(t.res, t.namespace, t.name)
    container = _container(pod, request.query.get("container", ""))
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        action = "exec into" if verb == "exec" else "attach to"
        raise errors.bad_request(
            f"cannot {action} a container in a completed pod; current phase is {phase}")
    if verb == "exec" and not request.query.getall("command", []):
        raise errors.bad_request("you must specify at least one command for the container")
    base = await _agent_base(request, pod)
    query = [(k, v) for k, v in request.query.items()
             if k in ("command", "stdin", "stdout", "stderr", "tty")]
    path = f"{base}/{verb}/{_path(t.namespace or 'default', t.name, container)}"
    return await _proxy_upgrade(request, path, query)


async def handle_exec(request: web.Request, t: Target) -> web.StreamResponse:
    return await _remote_command(request, t, "exec")


async def handle_attach(request: web.Request, t: Target) -> web.StreamResponse:
    return await _remote_command(request, t, "attach")


async def handle_portforward(request: web.Request, t: Target) -> web.StreamResponse:
    if request.method not in ("GET", "POST"):
        raise errors.method_not_allowed("portforward supports GET and POST only")
    assert t.name is not None
    pod = await ctx(request).objects.get(t.res, t.namespace, t.name)
    base = await _agent_base(request, pod)
    query = [("ports", v) for v in request.query.getall("ports", [])]
    path = f"{base}/portForward/{_path(t.namespace or 'default', t.name)}"
    return await _proxy_upgrade(request, path, query)


__all__ = ["NODE_ACCESS", "NodeAccess", "handle_attach", "handle_exec", "handle_log",
           "handle_portforward", "install"]
