"""HTTP/1.1 to the backends: pooled keep-alive connections on plain asyncio streams.

The proxy spends most of its time per request on the backend side; aiohttp's
client builds a URL, a request, a response, timers and cookie handling for each
one. Writing the request head as bytes and parsing the response head here
roughly halves the proxy's cost per request (see proxy.py for the numbers).

Response bodies are framed as RFC 9112 section 6 says: none for HEAD, 1xx, 204
and 304; chunked (decoded here, re-framed by the client side); Content-Length;
else until the backend closes. A connection goes back to the pool only when the
response was read to its end and neither side asked to close it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field

from kubelite.ingress.routes import Address

MAX_HEAD = 64 * 1024
READ_CHUNK = 64 * 1024


class UpstreamError(Exception):
    """The backend broke the exchange (closed early, sent garbage, timed out)."""


class StaleConnection(UpstreamError):
    """A pooled connection was closed by the backend before it answered: nothing was
    processed, so the request may be sent again on a fresh connection."""


@dataclass(eq=False)
class Connection:
    address: Address
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    conn: Connection
    # Set once the body was read to its end on a connection that may be reused.
    reusable: bool = False


def _header_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {t.strip().lower() for k, v in headers if k.lower() == "connection"
            for t in v.split(",")}


class UpstreamPool:
    """Idle connections per backend address, reused most recent first."""

    def __init__(self, *, connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 idle_timeout: float = 60.0, max_idle_per_address: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle_per_address
        self._idle: dict[Address, list[Connection]] = {}

    async def connect(self, address: Address, *, fresh: bool = False) -> Connection:
        """An idle connection to `address`, or a new one; OSError and TimeoutError
        (refused, unreachable) come from a new connection only."""
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if now - conn.idle_since < self.idle_timeout and not conn.reader.at_eof():
                conn.reused = True
                return conn
            conn.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*address, limit=MAX_HEAD), self.connect_timeout)
        return Connection(address, reader, writer)

    def release(self, conn: Connection, *, reusable: bool) -> None:
        idle = self._idle.setdefault(conn.address, [])
        if not reusable or len(idle) >= self.max_idle or conn.writer.is_closing():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    async def send(self, conn: Connection, head: bytes, body: AsyncIterator[bytes] | None,
                   *, chunked: bool, method: str) -> Response:
        """Write the request and read the response head; the body streams from
        `Response.body`, after which `release(conn, reusable=resp.reusable)`."""
        try:
            conn.writer.write(head)
            if body is not None:
                async for piece in body:
                    if chunked:
                        conn.writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    else:
                        conn.writer.write(piece)
                    await conn.writer.drain()
                if chunked:
                    conn.writer.write(b"0\r\n\r\n")
            await conn.writer.drain()
            while True:
                status, reason, headers = await self._read_head(conn)
                if not 100 <= status < 200 or status == 101:
                    break
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            if conn.reused and body is None:
                raise StaleConnection(str(e)) from e
            raise UpstreamError(f"{type(e).__name__}: {e}") from e
        except TimeoutError as e:
            raise UpstreamError("timed out reading the response head") from e
        response = Response(status, reason, headers, _empty(), conn)
        response.body = self._body(response, method)
        return response

    async def _read_head(self, conn: Connection) -> tuple[int, str, list[tuple[str, str]]]:
        try:
            async with asyncio.timeout(self.read_timeout):
                raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as e:
            raise UpstreamError("response head too large") from e
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise UpstreamError(f"bad status line {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise UpstreamError(f"bad header line {line[:80]!r}")
            headers.append((name, value.strip()))
        return int(code), reason, headers

    async def _body(self, resp: Response, method: str) -> AsyncIterator[bytes]:
        reader = resp.conn.reader
        keep = "close" not in _connection_tokens(resp.headers)
        te = (_header_value(resp.headers, "transfer-encoding") or "").lower()
        length = _header_value(resp.headers, "content-length")
        try:
            if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
                pass
            elif "chunked" in te:
                while True:
                    size_line = await self._read(reader.readuntil(b"\r\n"))
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while await self._read(reader.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers are dropped, as most proxies do
                        break
                    yield await self._read(reader.readexactly(size))
                    await self._read(reader.readexactly(2))
            elif length is not None:
                left = int(length)
                while left > 0:
                    piece = await self._read(reader.read(min(left, READ_CHUNK)))
                    if not piece:
                        raise UpstreamError("backend closed before the end of the body")
                    left -= len(piece)
                    yield piece
            else:
                keep = False
                while piece := await self._read(reader.read(READ_CHUNK)):
                    yield piece
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            raise UpstreamError(f"{type(e).__name__}: {e}") from e
        resp.reusable = keep

    async def _read(self, aw: Awaitable[bytes]) -> bytes:
        try:
            async with asyncio.timeout(self.read_timeout):
                return await aw
        except TimeoutError as e:
            raise UpstreamError("timed out reading the response body") from e


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

