"""The ingress data path: an asyncio HTTP/1.1 reverse proxy on aiohttp.

Why this data path, by measurement (2 shared cores; a small response from an
aiohttp backend; 32 keep-alive clients from a third process; /tmp scripts
described in tests/ingress/test_proxy.py's docstring):
- direct to the backend: 5,000-6,000 req/s;
- aiohttp server + aiohttp's client to the backend: 1,600-2,300 req/s (0.33-0.38
  of direct); aiohttp's client builds a URL, request, response, timers and
  cookie handling per request;
- aiohttp server + the pooled asyncio-stream client of upstream.py: 2,700-3,400
  req/s (0.47-0.62 of direct), which is what runs here.
The client side stays on aiohttp's server: its C (llhttp) parser, keep-alive,
TLS and WebSocket handling are faster and safer than a parser written here. An
external proxy (nginx, haproxy) is not installed on these machines and would
need its configuration regenerated and reloaded on every change; this one
swaps its table in one assignment.

Behaviour (as ingress-nginx's defaults, where it matters to clients):
- the original Host header is kept; X-Forwarded-For gets the client's address
  appended, X-Forwarded-Proto/-Host/-Port and X-Real-IP are set; hop-by-hop
  headers (RFC 9110 7.6.1 and those named in Connection) are not forwarded;
- no matching rule and no default backend: 404; a matched Service without a
  ready endpoint: 503; every endpoint refusing or unreachable: 502;
- an endpoint that refuses the connection (or times out connecting) is skipped
  and the next one tried: nothing was sent yet, so this is safe for any method;
- `Upgrade: websocket` requests are proxied message by message (both halves
  are real WebSocket endpoints), close codes and pings included;
- `update(table)` swaps the routing table and TLS contexts in one assignment:
  requests and WebSockets in flight keep the upstream they already chose.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from kubelite.ingress.routes import Address, KeyPair, RoutingTable, Upstream
from kubelite.ingress.tls import contexts_for, self_signed, server_context, sni_selector
from kubelite.ingress.upstream import (
    Response,
    StaleConnection,
    UpstreamError,
    UpstreamPool,
    request_head,
)

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
# Headers the WebSocket client handshake writes itself.
WS_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                          "sec-websocket-protocol", "host", "content-length"})


@dataclass(frozen=True)
class _State:
    """Everything a request reads, swapped as one reference."""

    table: RoutingTable = field(default_factory=RoutingTable)
    contexts: dict[KeyPair, ssl.SSLContext] = field(default_factory=dict)


def _forwarded_headers(request: web.BaseRequest, *, websocket: bool = False) -> CIMultiDict[str]:
    named = {v.strip().lower() for v in request.headers.getall("Connection", [])
             for v in v.split(",")}
    drop = HOP_BY_HOP | named | (WS_HANDSHAKE if websocket else frozenset())
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in drop)
    if "Host" not in out:
        # An HTTP/1.0 client may send none; HTTP/1.1 backends require one.
        out["Host"] = request.host
    remote = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    out["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    out["X-Real-IP"] = remote
    out["X-Forwarded-Proto"] = "https" if request.secure else "http"
    out["X-Forwarded-Host"] = request.headers.get("Host", "")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        out["X-Forwarded-Port"] = str(sockname[1])
    return out


def _error(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=f"{status} {text}\n")


def _order(upstream: Upstream) -> list[Address]:
    """The endpoints to try, starting at a random one (spreads load with no shared state)."""
    eps = list(upstream.endpoints)
    start = random.randrange(len(eps))
    return eps[start:] + eps[:start]


class IngressProxy:
    """`async with IngressProxy(http=[("127.0.0.1", 80)], https=[...]) as proxy:`
    serves until exit; `await proxy.update(table)` changes the routes. Port 0 binds
    a free port: the bound addresses are in `http_addresses` / `https_addresses`."""

    def __init__(
        self,
        *,
        http: Sequence[Address] = (),
        https: Sequence[Address] = (),
        default_certificate: KeyPair | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.http = list(http)
        self.https = list(https)
        self.default_certificate = default_certificate
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.shutdown_timeout = shutdown_timeout
        self.http_addresses: list[Address] = []
        self.https_addresses: list[Address] = []
        self._state = _State()
        self._runner: web.ServerRunner | None = None
        # WebSockets go through aiohttp's client; plain requests through the pool.
        self._session: aiohttp.ClientSession | None = None
        self._pool = UpstreamPool(connect_timeout=connect_timeout, read_timeout=read_timeout)

    @property
    def table(self) -> RoutingTable:
        return self._state.table

    async def update(self, table: RoutingTable) -> None:
        """Use `table` for requests from now on; its certificates are loaded first,
        so the swap itself is one assignment."""
        contexts = await contexts_for(table.certificates.values(), self._state.contexts)
        self._state = _State(table=table, contexts=contexts)

    def _context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        state = self._state
        pair = state.table.certificate(server_name)
        return state.contexts.get(pair) if pair is not None else None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60,
                                           enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                          sock_read=self.read_timeout),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        # No access log: a log line per request cost about a tenth of the proxy's CPU
        # (bench/network.py) and flooded the control plane's log.
        self._runner = web.ServerRunner(web.Server(self._handle, access_log=None),
                                        handle_signals=False,
                                        shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        try:
            for host, port in self.http:
                self.http_addresses.append(await self._listen(host, port, None))
            if self.https:
                pair = self.default_certificate or await asyncio.to_thread(self_signed)
                default_ctx = await asyncio.to_thread(server_context, pair)
                default_ctx.sni_callback = sni_selector(self._context_for)
                for host, port in self.https:
                    self.https_addresses.append(await self._listen(host, port, default_ctx))
        except BaseException:
            await self.stop()
            raise

    async def _listen(self, host: str, port: int, ctx: ssl.SSLContext | None) -> Address:
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port, ssl_context=ctx, reuse_address=True,
                           backlog=1024)
        await site.start()
        # One host, one socket: the newest address is this site's.
        return (host, self._runner.addresses[-1][1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        self._pool.close()
        self.http_addresses, self.https_addresses = [], []

    async def __aenter__(self) -> IngressProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- requests -------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        upstream = self._state.table.match(request.host, request.path)
        if upstream is None:
            return _error(404, "Not Found")
        if not upstream.endpoints:
            return _error(503, "Service Temporarily Unavailable")
        connection = request.headers.get("Connection", "").lower()
        if (request.headers.get("Upgrade", "").lower() == "websocket"
                and "upgrade" in connection):
            return await self._websocket(request, upstream)
        return await self._forward(request, upstream)

    async def _forward(self, request: web.BaseRequest, upstream: Upstream) -> web.StreamResponse:
        headers = [(k, v) for k, v in _forwarded_headers(request).items()
                   if k.lower() != "expect"]
        chunked = request.body_exists and "Content-Length" not in request.headers
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        head = request_head(request.method, request.raw_path, headers)
        body = request.content.iter_any() if request.body_exists else None
        for address in _order(upstream):
            fresh = False
            while True:
                try:
                    conn = await self._pool.connect(address, fresh=fresh)
                except (OSError, TimeoutError) as e:
                    log.debug("ingress: %s endpoint %s:%s: %s", upstream.name, *address, e)
                    break
                try:
                    backend = await self._pool.send(conn, head, body, chunked=chunked,
                                                    method=request.method)
                except StaleConnection:
                    conn.close()
                    fresh = True
                    continue
                except UpstreamError as e:
                    conn.close()
                    log.info("ingress: %s %s via %s: %s", request.method, request.path,
                             upstream.name, e)
                    return _error(502, "Bad Gateway")
                try:
                    response = await self._relay(request, backend)
                except BaseException:
                    conn.close()
                    raise
                self._pool.release(conn, reusable=backend.reusable)
                return response
        return _error(502, "Bad Gateway")

    async def _relay(self, request: web.BaseRequest, backend: Response) -> web.StreamResponse:
        named = {t.strip().lower() for k, v in backend.headers if k.lower() == "connection"
                 for t in v.split(",")}
        response = web.StreamResponse(status=backend.status, reason=backend.reason or None)
        for key, value in backend.headers:
            lower = key.lower()
            if lower not in HOP_BY_HOP and lower not in named:
                response.headers.add(key, value)
        await response.prepare(request)
        async for chunk in backend.body:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _websocket(self, request: web.BaseRequest,
                         upstream: Upstream) -> web.StreamResponse:
        assert self._session is not None
        headers = _forwarded_headers(request, websocket=True)
        headers["Host"] = request.headers.get("Host", "")
        protocols = [p.strip() for v in request.headers.getall("Sec-WebSocket-Protocol", [])
                     for p in v.split(",") if p.strip()]
        for ip, port in _order(upstream):
            try:
                backend = await self._session.ws_connect(
                    f"http://{ip}:{port}{request.raw_path}", headers=headers,
                    protocols=protocols, autoping=False, max_msg_size=0)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                continue
            except aiohttp.WSServerHandshakeError as e:
                return _error(e.status if e.status >= 400 else 502, "Bad Gateway")
            except aiohttp.ClientError:
                return _error(502, "Bad Gateway")
            client = web.WebSocketResponse(
                protocols=[backend.protocol] if backend.protocol else (),
                autoping=False, max_msg_size=0)
            try:
                await client.prepare(request)
                await _pipe_both(client, backend)
            finally:
                await backend.close()
            return client
        return _error(502, "Bad Gateway")


async def _pipe(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    while True:
        msg = await src.receive()
        if msg.type == WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == WSMsgType.PING:
            await dst.ping(msg.data)
        elif msg.type == WSMsgType.PONG:
            await dst.pong(msg.data)
        else:
            # CLOSE (src already answered it: autoclose), CLOSING or CLOSED, ERROR.
            code = src.close_code if msg.type == WSMsgType.CLOSE else None
            extra = msg.extra if msg.type == WSMsgType.CLOSE and isinstance(msg.extra, str) else ""
            await dst.close(code=code or 1000, message=extra.encode())
            return


async def _pipe_both(client: web.WebSocketResponse,
                     backend: aiohttp.ClientWebSocketResponse) -> None:
    """Relay until either side closes; the close is passed on and the other half ends."""
    tasks = [asyncio.create_task(_pipe(client, backend)),
             asyncio.create_task(_pipe(backend, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
