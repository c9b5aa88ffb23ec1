"""The API server's HTTP/1.1 connections.

Nearly every request a cluster makes has one answer: a get, list, create, update,
patch, delete or binding. Those are parsed here by httptools and answered by the
same handlers, with less of the server's CPU than aiohttp's framing took: a GET
over the Unix socket cost 107 µs and costs 47 (measured on a 2-core machine, where
a scheduled pod costs the API server three requests). aiohttp keeps what it does
well and what is rare: watches, logs, exec, attach and port-forward (streams and
upgrades), and the paths outside /api and /apis. Such a request takes the whole
connection to aiohttp with the bytes read so far, and it stays there.

A hand-over needs the request's first byte, which httptools does not report. It is
known when the request began a read from the socket, which is always so unless the
client pipelined it behind another; a pipelined stream is refused with 400 (no
client pipelines, and none can after a stream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from kubelite.api import errors
from kubelite.server import codec
from kubelite.tasks import cancelled

log = logging.getLogger("kubelite.server.http")

Handler = Callable[["Request"], Awaitable[web.StreamResponse]]
# (method, path, query string, headers) -> whether the fast path answers it
Unary = Callable[[str, str, str, CIMultiDictProxy[str]], bool]

IDLE_TIMEOUT = 75.0  # aiohttp's keep-alive limit, which clients already expect
# A request line and headers past this size are refused, as Go's net/http (and so
# kube-apiserver) refuses them: httptools itself would buffer them without end.
MAX_HEAD = 1 << 20
_QUEUED_LIMIT = 8  # pipelined requests read ahead before reading pauses
_LINGER = 1.0  # seconds a refused connection is read before it closes
_NO_MATCH: MappingProxyType[str, str] = MappingProxyType({})
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class _HandOver(Exception):
    """Raised from a parser callback to stop parsing: aiohttp takes the connection."""


class Body:
    """A request body read whole before its handler runs, behind the part of
    aiohttp's StreamReader that handlers use."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def readexactly(self, n: int) -> bytes:
        if n > len(self._data):
            raise asyncio.IncompleteReadError(self._data, n)
        data, self._data = self._data[:n], self._data[n:]
        return data

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data)
        data, self._data = self._data[:n], self._data[n:]
        return data

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        while self._data:
            yield await self.read(n)

    def unread_data(self, data: bytes) -> None:
        self._data = data + self._data


class Request:
    """What the API's handlers read of an aiohttp Request, for a request parsed here."""

    __slots__ = ("method", "path", "query_string", "headers", "content", "app", "transport",
                 "_query", "_state")
    match_info = _NO_MATCH

    def __init__(self, method: str, path: str, query_string: str,
                 headers: CIMultiDictProxy[str], body: bytes, app: web.Application,
                 transport: asyncio.BaseTransport) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.content = Body(body)
        self.app = app
        self.transport = transport
        self._query: MultiDictProxy[str] | None = None
        self._state: dict[Any, Any] = {}

    @property
    def query(self) -> MultiDictProxy[str]:
        if self._query is None:
            self._query = MultiDictProxy(MultiDict(
                parse_qsl(self.query_string, keep_blank_values=True)))
        return self._query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def can_read_body(self) -> bool:
        return bool(self.content._data)

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
        return self._line


_DATE = _Date()
_SKIPPED = frozenset({"content-length", "transfer-encoding", "connection", "date"})


def encode_response(response: web.StreamResponse, *, head: bool, keep_alive: bool) -> bytes:
    """The bytes of a whole response; a streamed one has no place on this path."""
    if not isinstance(response, web.Response):
        raise TypeError(f"a {type(response).__name__} on the unary path")
    body = response.body
    if body is None:
        body = b""
    elif not isinstance(body, bytes | bytearray):
        raise TypeError(f"a response body of type {type(body).__name__}")
    out = [b"HTTP/1.1 %d %s\r\n" % (response.status, response.reason.encode("latin-1"))]
    for name, value in response.headers.items():
        if name.lower() not in _SKIPPED:
            out.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("utf-8")))
    out.append(_DATE.line())
    out.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    if not head:
        out.append(body)
    return b"".join(out)


def _plain(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%s"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, reason.encode(), _DATE.line(), len(body), body))


class Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive and answered in order,
    until a streaming request hands the connection to aiohttp."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[tuple[Request, bool]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.idle_since: float | None = None
        self._writable: asyncio.Future[None] | None = None
        # The bytes read since the current request began, while that is known.
        self._chunks: list[bytes] | None = None
        self._in_message = False
        self._in_body = False
        self._head_bytes = 0
        self._ended_in_read = False
        # What follows the answers in progress: a hand-over or a refusal.
        self._then: Callable[[], None] | None = None
        self._stopped = False
        self._url = b""
        self._target: tuple[str, str, str, CIMultiDictProxy[str]] = ("", "", "", _NO_HEADERS)
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._server.connections.add(self)
        self.idle_since = self._loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._queue.clear()
        if self._worker is not None:
            self._worker.cancel()  # as aiohttp's handler_cancellation does
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        self.idle_since = None
        if not self._in_message:
            self._chunks = [data]
        elif self._chunks is not None:
            self._chunks.append(data)
        self._ended_in_read = False
        try:
            self._parser.feed_data(data)
            if self._in_message and not self._in_body:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD:
                    self._refuse(431, "Request Header Fields Too Large",
                                 "the request line and headers are too large")
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HandOver):
                self._hand_over()
                return
            log.error("HTTP parser callback failed", exc_info=exc.__context__ or exc)
            self._refuse(500, "Internal Server Error", "internal error")
        except httptools.HttpParserUpgrade:
            self._refuse(400, "Bad Request", "unexpected protocol upgrade")
        except httptools.HttpParserError as exc:
            self._refuse(400, "Bad Request", f"malformed HTTP request: {exc}")

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._in_message = True
        if self._ended_in_read:
            self._chunks = None  # pipelined: where it began is not known
        self._url = b""
        self._headers = []
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("utf-8", "surrogateescape"),
                              value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._head_bytes = 0
        target = self._url.decode("utf-8", "surrogateescape")
        raw_path, _, query = target.partition("?")
        path = unquote(raw_path) if "%" in raw_path else raw_path
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        method = self._parser.get_method().decode()
        if (not raw_path.startswith("/") or "Upgrade" in headers
                or not self._server.unary(method, path, query, headers)):
            if self._chunks is None:
                self._refuse(400, "Bad Request", "a streaming request pipelined behind another")
                return
            raise _HandOver
        self._target = (method, path, query, headers)
        if headers.get("Expect", "").lower() == "100-continue":
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        # Past the limit the rest is only counted: the handler answers 413.
        if self._size <= self._server.max_body:
            self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._in_body = False
        self._ended_in_read = True
        if self._stopped:
            return
        assert self.transport is not None
        method, path, query, headers = self._target
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(method, path, query, headers, body, self._server.app, self.transport)
        self._queue.append((request, self._parser.should_keep_alive()))
        if len(self._queue) > _QUEUED_LIMIT:
            self.transport.pause_reading()
        if self._worker is None:
            self._worker = self._loop.create_task(self._serve())

    # serving

    async def _serve(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while self._queue:
                request, keep_alive = self._queue.popleft()
                if len(self._queue) == _QUEUED_LIMIT:
                    transport.resume_reading()
                response = await self._server.respond(request, keep_alive)
                if transport.is_closing():
                    return
                transport.write(response)
                if not keep_alive:
                    transport.close()
                    return
                if self._writable is not None:
                    await self._writable
        finally:
            self._worker = None
        if self._then is not None:
            self._then()
        elif not self._in_message:
            self.idle_since = self._loop.time()

    def _stop(self, then: Callable[[], None]) -> None:
        """Read no more; run `then` once the answers already due are out."""
        self._stopped = True
        assert self.transport is not None
        if self._worker is None:
            then()
        else:
            self._then = then
            self.transport.pause_reading()

    def _hand_over(self) -> None:
        assert self._chunks is not None
        data = b"".join(self._chunks)
        self._stop(lambda: self._give_to_aiohttp(data))

    def _give_to_aiohttp(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self._server.connections.discard(self)
        protocol = self._server.aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        transport.resume_reading()
        protocol.data_received(data)

    def _refuse(self, status: int, reason: str, text: str) -> None:
        """Answer an unservable request and close, after the answers before it."""
        answer = _plain(status, reason, text)

        def close() -> None:
            transport = self.transport
            assert transport is not None
            transport.write(answer)
            # A close with the client's bytes unread resets the connection, and the
            # client may lose the answer: read (and drop) them for a moment first.
            if transport.can_write_eof():
                transport.write_eof()
            transport.resume_reading()
            self._loop.call_later(_LINGER, transport.close)
        self._stop(close)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HttpServer:
    """Listeners whose connections answer unary requests with `handler` and hand
    the rest to `runner`'s aiohttp server."""

    def __init__(self, runner: web.AppRunner, handler: Handler, unary: Unary, *,
                 max_body: int) -> None:
        self.app = runner.app
        self._runner = runner
        self._handler = handler
        self.unary = unary
        self.max_body = max_body
        self.connections: set[Connection] = set()
        self._listeners: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None

    def aiohttp_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None, "the AppRunner is set up before anything listens"
        return server()

    async def respond(self, request: Request, keep_alive: bool) -> bytes:
        head = request.method == "HEAD"
        try:
            try:
                response = await self._handler(request)
            except web.HTTPException as exc:
                response = exc
            return encode_response(response, head=head, keep_alive=keep_alive)
        except Exception as exc:  # a bug must not end the connection without an answer
            log.exception("unhandled error serving %s %s", request.method, request.path)
            return encode_response(codec.error_response(errors.internal(type(exc).__name__)),
                                   head=head, keep_alive=keep_alive)

    def _start_sweeping(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections idle past IDLE_TIMEOUT, looked for now and then rather
        than timed per request: a timer per request costs more than the check."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(IDLE_TIMEOUT / 4)
            limit = loop.time() - IDLE_TIMEOUT
            for conn in [c for c in self.connections
                         if c.idle_since is not None and c.idle_since < limit]:
                conn.close()

    async def listen_tcp(self, host: str, port: int, *, ssl: Any, backlog: int) -> None:
        self._listeners.append(await asyncio.get_running_loop().create_server(
            lambda: Connection(self), host, port, ssl=ssl, backlog=backlog,
            reuse_address=True))
        self._start_sweeping()

    async def listen_unix(self, path: str, *, backlog: int) -> None:
        self._listeners.append(await asyncio.get_running_loop().create_unix_server(
            lambda: Connection(self), path, backlog=backlog))
        self._start_sweeping()

    async def close(self, timeout: float) -> None:
        """Stop listening, let requests in progress finish for up to `timeout`
        seconds, then close every connection still here."""
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self._sweeper is not None:
            await cancelled(self._sweeper)
            self._sweeper = None
        for conn in [c for c in self.connections if not c.busy]:
            conn.close()
        deadline = asyncio.get_running_loop().time() + timeout
        while any(c.busy for c in self.connections):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
