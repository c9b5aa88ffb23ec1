"""The server side of exec and attach: a runtime `ExecProcess` served over the
WebSocket channel protocols (see channels.py).

The session ends when the process ends (its output is flushed, then the
error channel gets a Status and the WebSocket closes) or when the client goes
away (an exec'd process is killed; an attach is only detached).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from kubelite.runtime.base import ExecProcess
from kubelite.streaming import channels

log = logging.getLogger("kubelite.streaming.remotecommand")

# Output still arriving after the process has exited (a background child holding
# the pipe open) is given this long before the session ends without it.
DRAIN_TIMEOUT = 2.0


class OptionsError(ValueError):
    """The query asks for an impossible session."""


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StreamOptions:
        """From `?stdin=true&stdout=true&stderr=true&tty=true`, as kubelet reads them."""
        opts = cls(stdin=_flag(query, "stdin"), stdout=_flag(query, "stdout"),
                   stderr=_flag(query, "stderr"), tty=_flag(query, "tty"))
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise OptionsError("you must specify at least 1 of stdin, stdout, stderr")
        if opts.tty and opts.stderr:
            # With a terminal, stderr is the same stream as stdout (kubelet does the same).
            opts = cls(stdin=opts.stdin, stdout=opts.stdout, stderr=False, tty=True)
        return opts


async def _pump(ws: web.WebSocketResponse, source: AsyncIterator[bytes], channel: int,
                wanted: bool) -> None:
    async for chunk in source:
        if wanted and chunk:
            await ws.send_bytes(channels.frame(channel, chunk))


async def _from_client(ws: web.WebSocketResponse, process: ExecProcess,
                       opts: StreamOptions) -> None:
    async for msg in ws:
        # The PyPI client sends str input as text messages, channel byte included.
        raw = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not raw:
            continue
        channel, data = channels.parse(raw)
        if channel == channels.STDIN and opts.stdin:
            await process.write_stdin(data)
        elif channel == channels.RESIZE and opts.tty:
            try:
                width, height = channels.parse_resize(data)
            except ValueError as exc:
                log.debug("ignoring resize: %s", exc)
                continue
            await process.resize(width, height)
        elif channel == channels.CLOSE and data[:1] == bytes((channels.STDIN,)):
            await process.close_stdin()


async def serve_websocket(ws: web.WebSocketResponse, process: ExecProcess,
                          opts: StreamOptions, *, command: list[str] | None) -> int | None:
    """Run the session on a prepared WebSocket. `command` is None for attach, whose
    Status is Success however the container ends, as kubelet's. Returns the exit
    code, or None when the client left first."""
    outputs = [asyncio.create_task(_pump(ws, process.stdout(), channels.STDOUT, opts.stdout))]
    if not opts.tty:
        outputs.append(asyncio.create_task(
            _pump(ws, process.stderr(), channels.STDERR, opts.stderr)))
    client = asyncio.create_task(_from_client(ws, process, opts))
    exited = asyncio.create_task(process.wait())
    try:
        await asyncio.wait({client, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            return None
        code = exited.result()
        await asyncio.wait(outputs, timeout=DRAIN_TIMEOUT)
        if command is None or code == 0:
            status = channels.success_status()
        else:
            status = channels.exit_status(code, command)
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(channels.frame(channels.ERROR, channels.encode_status(status)))
        return code
    finally:
        # Also when this handler is cancelled because the connection dropped.
        if not exited.done():
            await process.kill()
        for task in (*outputs, client, exited):
            task.cancel()
        await asyncio.gather(*outputs, client, exited, return_exceptions=True)
        await ws.close()


async def refuse(ws: web.WebSocketResponse, message: str, *, reason: str = "InternalError",
                 code: int = 500) -> None:
    """End a prepared session with a failure Status (the container is gone, ...)."""
    status = channels.failure_status(message, reason=reason, code=code)
    with contextlib.suppress(ConnectionError):
        await ws.send_bytes(channels.frame(channels.ERROR, channels.encode_status(status)))
    await ws.close()
