"""A SPDY/3.1 session over any ordered byte channel: a WebSocket whose binary
messages carry the bytes (`SPDY/3.1+portforward.k8s.io`) or an upgraded HTTP
connection (`Upgrade: SPDY/3.1`).

Streams are opened by SYN_STREAM and answered with SYN_REPLY; each side closes
its half with a FIN; RST_STREAM ends both halves. Flow control is not enforced
and no WINDOW_UPDATE is sent, as Kubernetes' SPDY library (moby/spdystream)
does neither and logs the frame as unhandled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import WSMsgType, web
from aiohttp.client_ws import ClientWebSocketResponse

from kubelite.streaming import spdy

# Data frames are cut to this size so that one stream cannot hold the channel long.
CHUNK = 32 * 1024
REPLY_TIMEOUT = 30.0


class ByteChannel(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" once the channel has ended."""

    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class WebSocketChannel:
    """A byte stream over the binary messages of a WebSocket, as client-go's
    TunnelingConnection: message boundaries mean nothing."""

    def __init__(self, ws: web.WebSocketResponse | ClientWebSocketResponse) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            if msg.type in (WSMsgType.PING, WSMsgType.PONG):
                continue
            return b""

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        await self._ws.close()


class SpdyStream:
    def __init__(self, session: SpdySession, stream_id: int, headers: spdy.Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._eof = False
        self.local_closed = False
        self.remote_closed = False
        self.replied = asyncio.Event()

    def header(self, name: str) -> str:
        return spdy.header(self.headers, name)

    async def read(self) -> bytes:
        """The next data; b"" once the peer has closed its half or reset the stream."""
        if self._eof:
            return b""
        chunk = await self._inbox.get()
        if chunk is None:
            self._eof = True
            return b""
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            raise ConnectionResetError(f"SPDY stream {self.id} is closed")
        for start in range(0, len(data), CHUNK):
            await self.session.send(spdy.Data(self.id, data[start:start + CHUNK]))

    async def close(self) -> None:
        """Close this side's half (FIN); the peer may still send."""
        if not self.local_closed:
            self.local_closed = True
            with contextlib.suppress(ConnectionError):
                await self.session.send(spdy.Data(self.id, b"", fin=True))
        self.session.forget_if_done(self)

    async def reset(self, status: int = spdy.CANCEL) -> None:
        if not (self.local_closed and self.remote_closed):
            with contextlib.suppress(ConnectionError):
                await self.session.send(spdy.RstStream(self.id, status))
        self._end_remote()
        self.local_closed = True
        self.session.forget_if_done(self)

    def _deliver(self, data: bytes, fin: bool) -> None:
        if self.remote_closed:
            return
        if data:
            self._inbox.put_nowait(data)
        if fin:
            self._end_remote()

    def _end_remote(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._inbox.put_nowait(None)
        self.replied.set()


class SpdySession:
    """One SPDY connection. `run()` reads frames until the channel ends; the
    server side takes the peer's streams from `accept()`, a client opens its
    own with `open_stream()`."""

    def __init__(self, channel: ByteChannel, *, client: bool = False) -> None:
        self._channel = channel
        self._codec = spdy.FrameCodec()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._next_id = 1 if client else 2
        self._last_peer_id = 0
        self._closed = False
        self.done = asyncio.Event()

    async def send(self, frame: spdy.Frame) -> None:
        if self._closed:
            raise ConnectionResetError("SPDY session is closed")
        # Header compression state is shared: encode and write under one lock, in order.
        async with self._write_lock:
            await self._channel.write(self._codec.encode(frame))

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened (already replied to); None once the session ended."""
        return await self._incoming.get()

    async def open_stream(self, headers: spdy.Headers, *, fin: bool = False) -> SpdyStream:
        stream = SpdyStream(self, self._next_id, headers)
        self._next_id += 2
        self._streams[stream.id] = stream
        if fin:
            stream.local_closed = True
        await self.send(spdy.SynStream(stream.id, headers, fin=fin))
        await asyncio.wait_for(stream.replied.wait(), REPLY_TIMEOUT)
        return stream

    def forget_if_done(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._streams.pop(stream.id, None)

    async def run(self) -> None:
        try:
            while data := await self._channel.read():
                for frame in self._codec.feed(data):
                    if not await self._handle(frame):
                        return
        except spdy.ProtocolError:
            with contextlib.suppress(ConnectionError):
                await self.send(spdy.GoAway(self._last_peer_id, 1))
        except ConnectionError:
            pass
        finally:
            self._finish()

    async def _handle(self, frame: spdy.Frame) -> bool:
        match frame:
            case spdy.SynStream(sid, headers, _, _, fin, unidirectional):
                if sid <= self._last_peer_id or sid % 2 == self._next_id % 2:
                    await self.send(spdy.RstStream(sid, spdy.PROTOCOL_ERROR))
                    return True
                self._last_peer_id = sid
                stream = SpdyStream(self, sid, headers)
                stream.local_closed = unidirectional
                self._streams[sid] = stream
                await self.send(spdy.SynReply(sid, {}))
                stream.replied.set()
                if fin:
                    stream._end_remote()
                self._incoming.put_nowait(stream)
            case spdy.SynReply(sid, _, fin) | spdy.HeadersFrame(sid, _, fin):
                if (stream := self._streams.get(sid)) is not None:
                    stream.replied.set()
                    if fin:
                        stream._end_remote()
            case spdy.Data(sid, data, fin):
                if (stream := self._streams.get(sid)) is not None:
                    stream._deliver(data, fin)
                    self.forget_if_done(stream)
            case spdy.RstStream(sid, _):
                if (stream := self._streams.pop(sid, None)) is not None:
                    stream.local_closed = True
                    stream._end_remote()
            case spdy.Ping(ping_id):
                # Clients ping with odd ids, servers with even ones: echo the peer's
                # pings; one of our own coming back is the answer (this side never pings).
                if ping_id % 2 != self._next_id % 2:
                    await self.send(spdy.Ping(ping_id))
            case spdy.GoAway():
                return False
        return True

    def _finish(self) -> None:
        self._closed = True
        for stream in list(self._streams.values()):
            stream.local_closed = True
            stream._end_remote()
        self._streams.clear()
        self._incoming.put_nowait(None)
        self.done.set()

    async def close(self) -> None:
        if not self._closed:
            with contextlib.suppress(ConnectionError):
                await self.send(spdy.GoAway(self._last_peer_id, 0))
            self._closed = True
        with contextlib.suppress(ConnectionError):
            await self._channel.close()
