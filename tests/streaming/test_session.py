"""The SPDY session and the SPDY port-forward server over an in-memory channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kubelite.streaming import portforward, spdy
from kubelite.streaming.session import SpdySession
from tests.streaming.fake_agent import echo_server


class Pipe:
    """One end of an in-memory byte channel."""

    def __init__(self, inbox: asyncio.Queue[bytes], outbox: asyncio.Queue[bytes]) -> None:
        self.inbox, self.outbox = inbox, outbox

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        self.outbox.put_nowait(data)

    async def close(self) -> None:
        self.outbox.put_nowait(b"")


def pipes() -> tuple[Pipe, Pipe]:
    a: asyncio.Queue[bytes] = asyncio.Queue()
    b: asyncio.Queue[bytes] = asyncio.Queue()
    return Pipe(a, b), Pipe(b, a)


@pytest.fixture
async def sessions() -> AsyncIterator[tuple[SpdySession, SpdySession]]:
    client_end, server_end = pipes()
    client, server = SpdySession(client_end, client=True), SpdySession(server_end)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    yield client, server
    await client.close()
    await server.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_stream_carries_data_both_ways_until_each_side_closes(sessions) -> None:
    client, server = sessions
    stream = await client.open_stream({"streamType": ["data"], "port": ["80"]})
    accepted = await server.accept()
    assert accepted is not None and accepted.id == stream.id == 1
    assert accepted.header("streamtype") == "data" and accepted.header("port") == "80"
    await stream.write(b"up")
    assert await accepted.read() == b"up"
    await accepted.write(b"down" * 20000)  # several data frames
    got = b""
    while len(got) < 80000:
        got += await stream.read()
    assert got == b"down" * 20000
    await stream.close()
    assert await accepted.read() == b""
    await accepted.write(b"still open this way")
    assert await stream.read() == b"still open this way"
    await accepted.close()
    assert await stream.read() == b""


async def test_reset_ends_both_halves(sessions) -> None:
    client, server = sessions
    stream = await client.open_stream({"streamtype": ["data"]})
    accepted = await server.accept()
    assert accepted is not None
    await stream.reset()
    assert await accepted.read() == b""
    with pytest.raises(ConnectionResetError):
        await stream.write(b"x")


async def test_peer_pings_are_echoed_and_goaway_ends_the_session() -> None:
    raw, server_end = pipes()
    server = SpdySession(server_end)
    runner = asyncio.create_task(server.run())
    codec = spdy.FrameCodec()
    await raw.write(codec.encode(spdy.Ping(7)))
    assert codec.feed(await raw.read()) == [spdy.Ping(7)]
    await raw.write(codec.encode(spdy.GoAway(0)))
    await asyncio.wait_for(runner, 5)
    assert await server.accept() is None


async def test_stream_ids_of_the_wrong_parity_are_refused() -> None:
    raw, server_end = pipes()
    server = SpdySession(server_end)
    runner = asyncio.create_task(server.run())
    codec = spdy.FrameCodec()
    await raw.write(codec.encode(spdy.SynStream(2, {})))
    assert codec.feed(await raw.read()) == [spdy.RstStream(2, spdy.PROTOCOL_ERROR)]
    await raw.close()
    await asyncio.wait_for(runner, 5)


async def _open_pair(client: SpdySession, port: int, request_id: str):
    headers = {"port": [str(port)], "requestid": [request_id]}
    # As kubectl: the error stream first, closed at once since nothing is sent on it.
    error = await client.open_stream({**headers, "streamtype": ["error"]})
    await error.close()
    data = await client.open_stream({**headers, "streamtype": ["data"]})
    return error, data


async def test_spdy_port_forward_copies_and_closes_both_streams() -> None:
    echo = await echo_server()
    port = echo.sockets[0].getsockname()[1]
    client_end, server_end = pipes()
    client = SpdySession(client_end, client=True)
    client_task = asyncio.create_task(client.run())

    async def dial(p: int):
        return await asyncio.open_connection("127.0.0.1", p)

    serving = asyncio.create_task(portforward.serve_spdy(SpdySession(server_end), dial,
                                                         target="pod t"))
    try:
        pairs = [await _open_pair(client, port, str(i)) for i in range(2)]
        for i, (_, data) in enumerate(pairs):
            await data.write(f"hello {i}".encode())
        for i, (error, data) in enumerate(pairs):
            assert await data.read() == f"hello {i}".encode()
            await data.close()
            assert await data.read() == b""
            assert await error.read() == b""
    finally:
        await client.close()
        await asyncio.wait_for(asyncio.gather(serving, client_task), 5)
        echo.close()


async def test_spdy_port_forward_reports_a_refused_port_on_the_error_stream() -> None:
    client_end, server_end = pipes()
    client = SpdySession(client_end, client=True)
    client_task = asyncio.create_task(client.run())

    async def dial(p: int):
        raise ConnectionRefusedError(111, "Connection refused")

    serving = asyncio.create_task(portforward.serve_spdy(SpdySession(server_end), dial,
                                                         target="pod default/web"))
    try:
        error, data = await _open_pair(client, 8080, "0")
        message = b""
        while chunk := await error.read():
            message += chunk
        assert message == (b"error forwarding port 8080 to pod default/web: "
                           b"[Errno 111] Connection refused")
        assert await data.read() == b""
    finally:
        await client.close()
        await asyncio.wait_for(asyncio.gather(serving, client_task), 5)
