"""The server side of port-forward: both wire protocols, on any way of dialing
a port (the node agent dials inside the pod's network namespace).

- SPDY (`portforward.k8s.io`, kubectl): per forwarded connection the client
  opens an error stream and a data stream that share a `requestID` header and
  name the `port`. Bytes are copied between the data stream and one TCP
  connection; a failure is written as text on the error stream. The error
  stream is closed when the connection is done, which is what the client waits for.
- WebSocket channels (`v4.channel.k8s.io`, the PyPI client): `?ports=a,b` gives
  one TCP connection per port for the life of the WebSocket; see channels.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from kubelite.streaming import channels, spdy
from kubelite.streaming.session import SpdySession, SpdyStream
from kubelite.tasks import cancelled

log = logging.getLogger("kubelite.streaming.portforward")

Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

STREAM_TYPE = "streamtype"
STREAM_TYPE_DATA = "data"
STREAM_TYPE_ERROR = "error"
PORT = "port"
REQUEST_ID = "requestid"
READ_SIZE = 32 * 1024


def parse_ports(values: list[str]) -> list[int]:
    """The ports of `?ports=80,443&ports=8080`; ValueError on anything else."""
    ports: list[int] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item.isdigit() or not 0 < int(item) < 65536:
                raise ValueError(f"invalid port {item!r}")
            ports.append(int(item))
    if not ports:
        raise ValueError("at least one port must be given in the ports query parameter")
    return ports


def _port_of(stream: SpdyStream) -> int:
    value = stream.header(PORT)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"invalid port {value!r}")
    return int(value)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _forward_pair(data: SpdyStream, error: SpdyStream, dial: Dial, target: str) -> None:
    port = 0
    try:
        port = _port_of(data)
        reader, writer = await dial(port)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(ConnectionError):
            await error.write(f"error forwarding port {port} to {target}: {exc}".encode())
            await error.close()
            await data.reset()
        return

    async def to_pod() -> None:
        async for chunk in data.chunks():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def from_pod() -> None:
        while chunk := await reader.read(READ_SIZE):
            await data.write(chunk)
        await data.close()

    upstream = asyncio.create_task(to_pod())
    try:
        await from_pod()
    except ConnectionError as exc:
        log.debug("port-forward %s:%d ended: %s", target, port, exc)
    finally:
        upstream.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await upstream
        await _close_writer(writer)
        with contextlib.suppress(ConnectionError):
            await error.close()


async def serve_spdy(session: SpdySession, dial: Dial, *, target: str) -> None:
    """Forward every stream pair the client opens until the session ends."""
    pending: dict[str, dict[str, SpdyStream]] = {}
    tasks: set[asyncio.Task[None]] = set()
    runner = asyncio.create_task(session.run())
    try:
        while (stream := await session.accept()) is not None:
            kind = stream.header(STREAM_TYPE)
            request_id = stream.header(REQUEST_ID)
            if not request_id:
                # Clients before requestID paired an error stream with the data stream
                # opened just before it.
                request_id = str(stream.id if kind == STREAM_TYPE_ERROR else stream.id + 2)
            if kind not in (STREAM_TYPE_DATA, STREAM_TYPE_ERROR):
                await stream.reset(spdy.PROTOCOL_ERROR)
                continue
            pair = pending.setdefault(request_id, {})
            if kind in pair:
                await stream.reset(spdy.PROTOCOL_ERROR)
                continue
            pair[kind] = stream
            if len(pair) == 2:
                del pending[request_id]
                task = asyncio.create_task(_forward_pair(
                    pair[STREAM_TYPE_DATA], pair[STREAM_TYPE_ERROR], dial, target))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cancelled(runner)
        await session.close()


async def serve_websocket(ws: web.WebSocketResponse, ports: list[int], dial: Dial, *,
                          target: str) -> None:
    """The PyPI client's flavour: one connection per port for the life of `ws`."""
    # Dialled before anything is read, so that no early client data is lost.
    writers: dict[int, asyncio.StreamWriter] = {}
    readers: dict[int, asyncio.StreamReader] = {}
    failures: dict[int, str] = {}
    for i, port in enumerate(ports):
        try:
            readers[i], writers[i] = await dial(port)
        except OSError as exc:
            failures[i] = f"error forwarding port {port} to {target}: {exc}"
    for i, port in enumerate(ports):
        await ws.send_bytes(channels.frame(2 * i, channels.port_prefix(port)))
        await ws.send_bytes(channels.frame(2 * i + 1, channels.port_prefix(port)))
    for i, message in failures.items():
        await ws.send_bytes(channels.frame(2 * i + 1, message.encode()))

    async def pump(i: int) -> None:
        try:
            while chunk := await readers[i].read(READ_SIZE):
                await ws.send_bytes(channels.frame(2 * i, chunk))
        except ConnectionError:
            pass
        finally:
            await _close_writer(writers[i])

    async def from_client() -> None:
        async for msg in ws:
            raw = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not raw:
                continue
            channel, data = channels.parse(raw)
            writer = writers.get(channel // 2) if channel % 2 == 0 else None
            if writer is not None and data and not writer.is_closing():
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

    pumps = [asyncio.create_task(pump(i)) for i in readers]
    client = asyncio.create_task(from_client())
    try:
        # Done when the client goes away or every pod connection has ended.
        await asyncio.wait([client, asyncio.gather(*pumps, return_exceptions=True)],
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*pumps, client]:
            task.cancel()
        await asyncio.gather(*pumps, client, return_exceptions=True)
        for writer in writers.values():
            await _close_writer(writer)
        await ws.close()
