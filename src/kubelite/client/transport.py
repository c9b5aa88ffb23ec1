"""HTTP/1.1 for the API client: a pool of keep-alive connections to one server,
over TLS or the server's Unix socket, and nothing else.

A general HTTP client spends most of a request's CPU on what the API client never
uses (cookies, redirects, proxies, URL objects, tracing hooks): measured against
kubelite's server, a Client POST took 230-270 µs of the client's CPU through
aiohttp's client and 75-85 through this pool, encoding and parsing included. The scheduler sends two requests per pod, so that
difference is a large part of its cost per pod. Responses are parsed by
httptools (llhttp), so chunked bodies and keep-alive follow the protocol.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

# The server closes a keep-alive connection after 75 s of silence (aiohttp's default,
# and Go's is 90): an idle connection older than this is not reused, so a request
# seldom meets a connection the server is closing (and a retry covers the rest).
MAX_IDLE = 30.0
# A streamed body (a watch) stops reading from the socket while this much is unread.
HIGH_WATER = 1 << 20
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class ConnectionClosed(ConnectionError):
    """The connection ended before the whole response arrived."""


class Response:
    __slots__ = ("status", "_raw", "body")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self._raw, self.body = status, raw_headers, body

    @property
    def headers(self) -> dict[str, str]:
        """Header names in lower case; decoded on demand, as most answers need none."""
        return _decoded(self._raw)


@dataclass(slots=True)
class Endpoint:
    """Where the connections go: `unix` (a socket path) or host and port, with TLS
    when `ssl` is set."""
    host: str = "localhost"
    port: int = 80
    unix: str | None = None
    ssl: ssl.SSLContext | None = None
    authority: str = field(init=False, default="")

    def __post_init__(self) -> None:
        default = 443 if self.ssl else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if self.unix or self.port == default else f"{host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, context: ssl.SSLContext | None) -> Endpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        return cls(host=parts.hostname or "localhost",
                   port=parts.port or (443 if tls else 80), ssl=context if tls else None)


class _Connection(asyncio.Protocol):
    """One connection, one request at a time. The parser's callbacks fill in the
    response; `head` resolves when its head is complete, and the body arrives in
    `chunks` until `done`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.active = False
        self.reused = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        loop = asyncio.get_running_loop()
        self.received = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = loop.create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.done = False
        self.reusable = False
        self.error: BaseException | None = None
        self.wakeup: asyncio.Future[None] | None = None
        # Whether the body is read as it comes; only then is reading paused while
        # too much of it waits, as a buffered body is read only once complete.
        self.streaming = False
        self.paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active or self.done:
            # Nothing was asked: whatever this is, the connection cannot be trusted.
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionClosed(f"malformed response: {e}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.done:
            self._fail(exc or ConnectionClosed("the server closed the connection"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.streaming and self.buffered > HIGH_WATER and not self.paused \
                and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # Asked now: once the message is complete the parser starts on the next one.
        self.reusable = self.parser.should_keep_alive()
        self.done = True
        self._wake()

    # used by the pool

    def _fail(self, error: BaseException) -> None:
        self.error = error
        if not self.head.done():
            self.head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def send(self, data: bytes, *, streaming: bool) -> None:
        self._reset()
        self.active = True
        self.streaming = streaming
        if self.closed or self.transport is None or self.transport.is_closing():
            self._fail(ConnectionClosed("the server closed the connection"))
            return
        self.transport.write(data)

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self.chunks:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            self.wakeup = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(timeout):
                await self.wakeup
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    async def body(self) -> bytes:
        """The rest of the body, read whole."""
        self.streaming = False
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        while not self.done:
            if self.error is not None:
                raise self.error
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        body = b"".join(self.chunks)
        self.chunks.clear()
        return body

    def keep_alive(self) -> bool:
        return self.reusable and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class StreamedResponse:
    """A response whose body is read as it arrives: `async for chunk in resp.chunks()`."""

    def __init__(self, conn: _Connection, status: int, read_timeout: float | None) -> None:
        self._conn = conn
        self.status = status
        self.headers = _decoded(conn.raw_headers)
        self._read_timeout = read_timeout

    async def read(self) -> bytes:
        return await self._conn.body()

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk(self._read_timeout)) is not None:
            yield chunk


class HttpPool:
    """Keep-alive connections to one endpoint, at most `limit` busy at once (a
    running watch keeps one busy)."""

    def __init__(self, endpoint: Endpoint, *, headers: dict[str, str], limit: int = 100,
                 connect_timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self._headers = {"Host": endpoint.authority, **headers}
        self._fixed = _header_lines(self._headers)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(limit)

    async def request(self, method: str, target: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        """Send a request and read its whole response."""
        async with self._slots:
            conn = await self._open(method, target, body, headers, None, streaming=False)
            try:
                data = await conn.body()
            except BaseException:
                self._release(conn, keep=False)
                raise
            self._release(conn, keep=conn.keep_alive())
            return Response(conn.status, conn.raw_headers, data)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, target: str, *, headers: dict[str, str] | None = None,
                     read_timeout: float | None = None) -> AsyncIterator[StreamedResponse]:
        """Send a request and read the body as it comes, waiting at most `read_timeout`
        for each piece; leaving early closes the connection."""
        async with self._slots:
            conn = await self._open(method, target, None, headers, read_timeout, streaming=True)
            try:
                yield StreamedResponse(conn, conn.status, read_timeout)
            except BaseException:
                self._release(conn, keep=False)
                raise
            self._release(conn, keep=conn.keep_alive())

    async def _open(self, method: str, target: str, body: bytes | None,
                    headers: dict[str, str] | None, head_timeout: float | None, *,
                    streaming: bool) -> _Connection:
        """A busy connection on which the request went out and its response's head came
        back."""
        head = [f"{method} {target} HTTP/1.1\r\n"]
        if not headers:
            head.append(self._fixed)
        elif headers.keys().isdisjoint(self._headers):
            head += (self._fixed, _header_lines(headers))
        else:
            head.append(_header_lines({**self._headers, **headers}))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        data = "".join((*head, "\r\n")).encode("latin-1") + (body or b"")
        conn = await self._acquire()
        try:
            try:
                await self._send(conn, data, head_timeout, streaming)
            except ConnectionError:
                # A reused connection the server closed before reading this request:
                # a fresh one, once, for requests that may be sent twice.
                if not (conn.reused and not conn.received and method in IDEMPOTENT):
                    raise
                self._release(conn, keep=False)
                conn = await self._acquire(fresh=True)
                await self._send(conn, data, head_timeout, streaming)
        except BaseException:
            self._release(conn, keep=False)
            raise
        return conn

    @staticmethod
    async def _send(conn: _Connection, data: bytes, head_timeout: float | None,
                    streaming: bool) -> None:
        conn.send(data, streaming=streaming)
        if head_timeout is None:
            await conn.head
            return
        async with asyncio.timeout(head_timeout):
            await conn.head

    def _release(self, conn: _Connection, *, keep: bool) -> None:
        self._busy.discard(conn)
        conn.active = False
        if keep:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    async def _acquire(self, fresh: bool = False) -> _Connection:
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < MAX_IDLE:
                conn.reused = True
                self._busy.add(conn)
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        async with asyncio.timeout(self.connect_timeout):
            if ep.unix is not None:
                _, conn = await loop.create_unix_connection(_Connection, ep.unix)
            else:
                _, conn = await loop.create_connection(
                    _Connection, ep.host, ep.port, ssl=ep.ssl,
                    server_hostname=ep.host if ep.ssl else None)
        self._busy.add(conn)
        return conn

    async def close(self) -> None:
        conns = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for conn in conns:
            conn.close()
        # Let the transports finish closing (TLS shutdown) before the loop may end.
        await asyncio.sleep(0)


def _header_lines(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())


def _decoded(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
