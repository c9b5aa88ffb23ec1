"""The API server's HTTP/1.1 front: unary requests answered by httptools parsing,
streams handed to aiohttp on the same connection, and the edges of HTTP/1.1 a
server must get right (pipelining, HEAD, Connection: close, 100-continue, bad
input, idle connections, shutdown). Driven over a Unix socket with raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp import web

from kubelite.server.app import APIServer, ServerConfig
from kubelite.server.http1 import HttpServer
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port

STARTED: list[str] = []
CANCELLED: list[str] = []


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _unary(request) -> web.StreamResponse:
    if request.path == "/fail":
        raise RuntimeError("a bug in a handler")
    if request.path.startswith("/slow"):
        STARTED.append(request.path)
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            CANCELLED.append(request.path)
            raise
    body = await request.content.read()
    return web.json_response({
        "method": request.method, "path": request.path, "query": list(request.query.items()),
        "body": body.decode(), "agent": request.headers.get("user-agent")})


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(3):
        await response.write(b"line %d\n" % i)
    await response.write_eof()
    return response


@contextlib.asynccontextmanager
async def front(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, str]]:
    app = web.Application()
    app.router.add_get("/stream", _stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = HttpServer(runner, _unary, lambda m, path, q, h: path != "/stream",
                        max_body=1000)
    path = str(tmp_path / "front.sock")
    await server.listen_unix(path, backlog=16)
    try:
        yield server, path
    finally:
        await server.close(1.0)
        await runner.cleanup()


class Raw:
    """One connection, bytes in, parsed responses out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str) -> Raw:
        return cls(*await asyncio.open_unix_connection(path))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line = await asyncio.wait_for(self.reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if head:
            return int(status_line.split()[1]), headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readline()).strip(), 16):
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            await self.reader.readexactly(2)
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        return int(status_line.split()[1]), headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def request(method: str, target: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_pipelined_requests_are_answered_in_order(tmp_path):
    async with front(tmp_path) as (_, path):
        conn = await Raw.open(path)
        conn.send(request("GET", "/slow?a=1&a=2&b=x+y%21") + request("POST", "/echo", b"hello")
                  + request("DELETE", "/third"))
        answers = [await conn.response() for _ in range(3)]
        assert [orjson.loads(body)["path"] for _, _, body in answers] == [
            "/slow", "/echo", "/third"]
        assert orjson.loads(answers[0][2])["query"] == [["a", "1"], ["a", "2"], ["b", "x y!"]]
        assert orjson.loads(answers[1][2])["body"] == "hello"
        assert all(status == 200 and "date" in headers for status, headers, _ in answers)
        await conn.close()


async def test_a_stream_takes_the_connection_to_aiohttp_with_its_bytes(tmp_path):
    async with front(tmp_path) as (server, path):
        conn = await Raw.open(path)
        conn.send(request("GET", "/echo"))
        assert (await conn.response())[0] == 200
        # The request arrives in two reads: the hand-over carries both.
        conn.send(b"GET /stream HTTP/1.1\r\nHo")
        await asyncio.sleep(0.05)
        conn.send(b"st: x\r\n\r\n")
        status, headers, body = await conn.response()
        assert (status, body) == (200, b"line 0\nline 1\nline 2\n")
        assert not server.connections  # aiohttp's now
        # aiohttp keeps serving the connection, its own requests included.
        conn.send(request("GET", "/stream"))
        assert (await conn.response())[2] == b"line 0\nline 1\nline 2\n"
        await conn.close()


async def test_a_stream_pipelined_behind_a_request_is_refused(tmp_path):
    async with front(tmp_path) as (_, path):
        conn = await Raw.open(path)
        conn.send(request("GET", "/slow") + request("GET", "/stream"))
        status, _, body = await conn.response()
        assert status == 200 and orjson.loads(body)["path"] == "/slow"
        status, headers, body = await conn.response()
        assert status == 400 and b"pipelined" in body
        assert headers["connection"] == "close"
        assert await conn.closed()


async def test_head_close_and_continue(tmp_path):
    async with front(tmp_path) as (_, path):
        conn = await Raw.open(path)
        conn.send(request("HEAD", "/echo"))
        status, headers, _ = await conn.response(head=True)
        assert status == 200 and int(headers["content-length"]) > 0
        # No body followed the HEAD answer: the next answer parses from its first byte.
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 2\r\n\r\n")
        assert await asyncio.wait_for(conn.reader.readline(), 5) == b"HTTP/1.1 100 Continue\r\n"
        assert await conn.reader.readline() == b"\r\n"
        conn.send(b"ok")
        assert orjson.loads((await conn.response())[2])["body"] == "ok"
        conn.send(request("GET", "/echo", extra="Connection: close\r\n"))
        status, headers, _ = await conn.response()
        assert status == 200 and headers["connection"] == "close"
        assert await conn.closed()


async def test_bad_input_is_answered_and_the_server_goes_on(tmp_path):
    async with front(tmp_path) as (_, path):
        conn = await Raw.open(path)
        conn.send(b"GARBAGE\r\n\r\n")
        status, headers, _ = await conn.response()
        assert status == 400 and headers["connection"] == "close"
        assert await conn.closed()
        conn = await Raw.open(path)
        conn.send(request("GET", "/fail"))
        status, _, body = await conn.response()
        assert status == 500 and orjson.loads(body)["kind"] == "Status"
        # Past max_body the rest is only counted: enough arrives to tell the body
        # too large, never the whole of it.
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n")
        for _ in range(10):
            conn.send(b"x" * 5000)
            await asyncio.sleep(0.01)
        status, _, body = await conn.response()
        assert status == 200 and 1000 < len(orjson.loads(body)["body"]) < 50_000
        await conn.close()


async def test_a_head_without_end_is_refused(tmp_path):
    def send_endless_header(path: str) -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Long: ")
            with contextlib.suppress(ConnectionError):  # refused while still sending
                for _ in range(64):
                    sock.sendall(b"a" * 32768)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer
    async with front(tmp_path) as (_, path):
        answer = await asyncio.to_thread(send_endless_header, path)
        assert answer.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in answer


async def test_idle_connections_are_closed_and_shutdown_closes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr("kubelite.server.http1.IDLE_TIMEOUT", 0.2)
    async with front(tmp_path) as (server, path):
        idle = await Raw.open(path)
        idle.send(request("GET", "/echo"))
        await idle.response()
        assert await idle.closed()
        busy = await Raw.open(path)
        busy.send(request("GET", "/slow-busy"))
        await until(lambda: "/slow-busy" in STARTED)
        assert len(server.connections) == 1
        waiting = await Raw.open(path)
        await until(lambda: len(server.connections) == 2)
        await server.close(1.0)
        # The request in progress is answered before its connection closes.
        assert (await busy.response())[0] == 200
        assert await busy.closed()
        assert await waiting.closed()
        assert not server.connections


async def test_a_client_gone_cancels_its_request(tmp_path):
    """As aiohttp's handler_cancellation does: nobody is left to answer."""
    async with front(tmp_path) as (server, path):
        conn = await Raw.open(path)
        conn.send(request("GET", "/slow-gone"))
        await until(lambda: "/slow-gone" in STARTED)
        await conn.close()
        await until(lambda: CANCELLED == ["/slow-gone"])
        assert not server.connections


async def test_watch_after_requests_on_one_api_connection(tmp_path):
    """Through the real API server: creates on the fast path, then a watch on the
    same connection, served by aiohttp, sees a create made after it began."""
    store = SqliteStore(tmp_path / "state.db")
    async with APIServer(ServerConfig(data_dir=tmp_path, port=free_port()), store):
        token = yaml.safe_load((tmp_path / "kubeconfig").read_text())["users"][0]["user"]["token"]
        auth = f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        path = "/api/v1/namespaces/default/configmaps"

        def configmap(name: str) -> bytes:
            return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": name}})
        conn = await Raw.open(str(tmp_path / "api.sock"))
        conn.send(request("POST", path, configmap("before"), auth))
        status, _, body = await conn.response()
        assert status == 201
        rv = orjson.loads(body)["metadata"]["resourceVersion"]
        conn.send(request("GET", f"{path}?watch=true&resourceVersion={rv}", extra=auth))
        status_line = await asyncio.wait_for(conn.reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.1 200")
        other = await Raw.open(str(tmp_path / "api.sock"))
        other.send(request("POST", path, configmap("after"), auth))
        assert (await other.response())[0] == 201
        line = b""
        while b'"after"' not in line:
            line = await asyncio.wait_for(conn.reader.readline(), 5)
        assert b'"type":"ADDED"' in line
        for c in (conn, other):
            await c.close()


@pytest.mark.parametrize("target", ["/api/v1/namespaces/default/pods/p/log",
                                    "/api/v1/namespaces/default/pods?watch=1",
                                    "/api/v1/watch/pods", "/version", "/apis/apps"])
def test_streams_and_other_paths_stay_with_aiohttp(target):
    from kubelite.server.app import is_unary
    path, _, query = target.partition("?")
    assert not is_unary("GET", path, query, {})


def test_api_requests_with_one_answer_take_the_fast_path():
    from kubelite.server.app import is_unary
    assert is_unary("GET", "/api/v1/namespaces/default/pods/p", "", {})
    assert is_unary("POST", "/api/v1/namespaces/default/pods/p/binding", "", {})
    assert is_unary("PATCH", "/apis/apps/v1/namespaces/d/deployments/x/status", "", {})
