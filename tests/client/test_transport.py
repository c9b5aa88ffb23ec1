"""The API client's HTTP/1.1 pool against a real aiohttp server on loopback and on a
Unix socket: keep-alive, chunked bodies, connections the server closes, streams
left early, back-pressure and timeouts."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from kubelite.client import transport
from kubelite.client.transport import Endpoint, HttpPool


class Server:
    """An aiohttp server that counts the connections it accepted."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.peers: set[tuple[str, int] | str] = set()
        self.connections = 0
        app.on_response_prepare.append(self._count)

    async def _count(self, request: web.Request, response: web.StreamResponse) -> None:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        peer = sock.getpeername() if sock is not None else None
        key = peer if peer else id(request.transport)
        if key not in self.peers:
            self.peers.add(key)
            self.connections += 1


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.path,
                              "query": request.query_string, "body": body.decode(),
                              "accept": request.headers.get("Accept"),
                              "auth": request.headers.get("Authorization"),
                              "length": request.headers.get("Content-Length")})


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(5):
        await resp.write(b"%d\n" % i)
    await resp.write_eof()
    return resp


async def _close(request: web.Request) -> web.Response:
    return web.Response(text="bye", headers={"Connection": "close"})


async def _busy(request: web.Request) -> web.Response:
    return web.Response(status=429, text='{"kind":"Status","code":429}',
                        headers={"Retry-After": "3", "Content-Type": "application/json"})


async def _big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    block = b"x" * 65536
    for _ in range(int(request.query["blocks"])):
        await resp.write(block)
    await resp.write_eof()
    return resp


async def _silent(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"first\n")
    await asyncio.sleep(30)
    return resp


def _app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/echo/{tail:.*}", _echo)
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/close", _close)
    app.router.add_get("/busy", _busy)
    app.router.add_get("/big", _big)
    app.router.add_get("/silent", _silent)
    return app


def drop_connections(runner: web.AppRunner) -> None:
    """The server closes its idle keep-alive connections, as on its idle timeout."""
    for proto in list(runner.server.connections):
        proto.force_close()


@pytest.fixture
async def tcp() -> AsyncIterator[tuple[Server, HttpPool, web.AppRunner]]:
    server = Server(_app())
    runner = web.AppRunner(server.app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    pool = HttpPool(Endpoint(host="127.0.0.1", port=port),
                    headers={"Accept": "application/json", "Authorization": "Bearer t"}, limit=4)
    yield server, pool, runner
    await pool.close()
    await runner.cleanup()


async def test_requests_share_one_keep_alive_connection(tcp) -> None:
    server, pool, _ = tcp
    for i in range(5):
        resp = await pool.request("POST", f"/echo/a?i={i}", body=b'{"x":1}',
                                  headers={"Content-Type": "application/json"})
        assert resp.status == 200
        seen = json.loads(resp.body)
        assert seen == {"method": "POST", "path": "/echo/a", "query": f"i={i}",
                        "body": '{"x":1}', "accept": "application/json", "auth": "Bearer t",
                        "length": "7"}
    assert server.connections == 1


async def test_a_request_header_replaces_the_pools(tcp) -> None:
    _, pool, _ = tcp
    resp = await pool.request("GET", "/echo/", headers={"Accept": "application/yaml"})
    assert b'"accept": "application/yaml"' in resp.body


async def test_chunked_bodies_are_joined_and_streamed(tcp) -> None:
    server, pool, _ = tcp
    assert (await pool.request("GET", "/chunked")).body == b"0\n1\n2\n3\n4\n"
    async with pool.stream("GET", "/chunked") as resp:
        assert resp.status == 200
        got = b"".join([chunk async for chunk in resp.chunks()])
    assert got == b"0\n1\n2\n3\n4\n"
    # Both read to the end: the connection was kept.
    await pool.request("GET", "/echo/")
    assert server.connections == 1


async def test_connection_close_is_honoured(tcp) -> None:
    server, pool, _ = tcp
    assert (await pool.request("GET", "/close")).body == b"bye"
    assert (await pool.request("GET", "/echo/")).status == 200
    assert server.connections == 2


async def test_error_answers_carry_their_headers(tcp) -> None:
    _, pool, _ = tcp
    resp = await pool.request("GET", "/busy")
    assert resp.status == 429
    assert resp.headers["retry-after"] == "3"
    assert resp.headers["content-type"].startswith("application/json")


async def test_a_stream_left_early_closes_its_connection(tcp) -> None:
    server, pool, _ = tcp
    async with pool.stream("GET", "/big?blocks=64") as resp:
        async for _ in resp.chunks():
            break
    assert not pool._busy and not pool._idle
    assert (await pool.request("GET", "/echo/")).status == 200
    assert server.connections == 2


async def test_a_slow_reader_pauses_the_socket_and_reads_everything(tcp) -> None:
    _, pool, _ = tcp
    async with pool.stream("GET", "/big?blocks=128") as resp:
        conn = next(iter(pool._busy))
        total = most = 0
        async for chunk in resp.chunks():
            total += len(chunk)
            most = max(most, conn.buffered)
            await asyncio.sleep(0.002)
    assert total == 128 * 65536
    # Unread data stays near the high-water mark, not the 8 MiB sent.
    assert transport.HIGH_WATER // 2 < most < transport.HIGH_WATER + (1 << 19), most


async def test_a_silent_stream_times_out(tcp) -> None:
    _, pool, _ = tcp
    with pytest.raises(TimeoutError):
        async with pool.stream("GET", "/silent", read_timeout=0.2) as resp:
            async for _ in resp.chunks():
                pass
    assert not pool._busy


async def test_an_idle_connection_the_server_closed_is_replaced(tcp) -> None:
    server, pool, runner = tcp
    await pool.request("GET", "/echo/")
    drop_connections(runner)
    await asyncio.sleep(0.05)
    assert (await pool.request("POST", "/echo/", body=b"")).status == 200
    assert server.connections == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST", "PATCH"])
async def test_a_reused_connection_closed_under_a_request(tcp, method: str) -> None:
    server, pool, runner = tcp
    await pool.request("GET", "/echo/")
    # The close has not reached the client yet: the pool takes the dead connection.
    idle = pool._idle[0]
    drop_connections(runner)
    await asyncio.sleep(0.05)
    idle.closed = False
    if method in ("POST", "PATCH"):
        # Not sent twice: the server may have acted on the first.
        with pytest.raises(ConnectionError):
            await pool.request(method, "/echo/", body=b"{}")
        return
    # Idempotent: sent again, once, on a fresh connection.
    assert (await pool.request(method, "/echo/", body=b"{}")).status == 200
    assert server.connections == 2


async def test_old_idle_connections_are_not_reused(tcp) -> None:
    server, pool, _ = tcp
    await pool.request("GET", "/echo/")
    pool._idle[0].idle_since -= transport.MAX_IDLE + 1
    await pool.request("GET", "/echo/")
    assert server.connections == 2


async def test_busy_connections_are_limited(tcp) -> None:
    _, pool, _ = tcp
    streams = [pool.stream("GET", "/silent") for _ in range(4)]
    for s in streams:
        await s.__aenter__()
    blocked = asyncio.create_task(pool.request("GET", "/echo/"))
    await asyncio.sleep(0.1)
    assert not blocked.done()
    await streams[0].__aexit__(None, None, None)
    assert (await asyncio.wait_for(blocked, 5)).status == 200
    for s in streams[1:]:
        await s.__aexit__(None, None, None)


async def test_a_refused_connection_raises_oserror() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = HttpPool(Endpoint(host="127.0.0.1", port=port), headers={})
    with pytest.raises(OSError):
        await pool.request("GET", "/")
    await pool.close()


async def test_unix_socket(tmp_path: Path) -> None:
    runner = web.AppRunner(_app(), handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.UnixSite(runner, str(tmp_path / "s.sock")).start()
    pool = HttpPool(Endpoint(unix=str(tmp_path / "s.sock")), headers={})
    try:
        resp = await pool.request("GET", "/echo/x")
        assert resp.status == 200 and b'"path": "/echo/x"' in resp.body
    finally:
        await pool.close()
        await runner.cleanup()


def test_authority() -> None:
    assert Endpoint(host="10.0.0.1", port=6443).authority == "10.0.0.1:6443"
    assert Endpoint(host="::1", port=80).authority == "[::1]"
    assert Endpoint(unix="/x").authority == "localhost"
    assert Endpoint.from_url("https://example:443", ssl.create_default_context()).authority \
        == "example"
    assert Endpoint.from_url("http://example:8080", None).authority == "example:8080"


async def test_bytes_nobody_asked_for_retire_the_connection() -> None:
    # A server that answers and then sends more: that connection is not reused.
    accepted = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpPool(Endpoint(host="127.0.0.1", port=port), headers={})
    try:
        assert (await pool.request("GET", "/")).body == b"ok"
        await asyncio.sleep(0.1)
        assert (await pool.request("GET", "/")).body == b"ok"
        assert len(accepted) == 2
    finally:
        await pool.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_large_body_is_read_whole(tcp) -> None:
    # Flow control pauses only streamed bodies: a buffered one is read to its end,
    # and so is the rest of a stream read whole.
    _, pool, _ = tcp
    resp = await asyncio.wait_for(pool.request("GET", "/big?blocks=96"), 20)
    assert len(resp.body) == 96 * 65536
    async with pool.stream("GET", "/big?blocks=96") as streamed:
        conn = next(iter(pool._busy))
        while not conn.paused:
            await asyncio.sleep(0.01)
        assert len(await asyncio.wait_for(streamed.read(), 20)) == 96 * 65536
