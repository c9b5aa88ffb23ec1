"""The agent's exec and port-forward endpoints on a fake runtime; port-forward
reaches an echo server inside a network namespace this test creates."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from kubelite.runtime import proc
from kubelite.streaming import channels
from kubelite.streaming.session import SpdySession, WebSocketChannel
from tests.streaming.fake_agent import FakePod, FakeRuntime, build_app

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ECHO = """
import socket, sys, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[tuple[str, int]]:
    """A network namespace with an echo server on its own 127.0.0.1."""
    name = f"kl-stream-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    echo = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        echo = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{name}", sys.executable,
                                 "-c", ECHO], stdout=subprocess.PIPE, text=True)
        assert echo.stdout is not None
        yield f"/var/run/netns/{name}", int(echo.stdout.readline())
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
async def agent(netns: tuple[str, int], tmp_path: Path
                ) -> AsyncIterator[tuple[TestClient, FakeRuntime]]:
    runtime = FakeRuntime([FakePod("default", "web", netns_path=netns[0])], tmp_path)
    async with TestClient(TestServer(build_app(runtime, token=TOKEN))) as client:
        yield client, runtime


async def _exec(client: TestClient, query: str, protocol: str = channels.V5):
    return await client.ws_connect(f"/exec/default/web/c?{query}", protocols=[protocol],
                                   headers=AUTH)


async def _collect(ws) -> dict[int, bytes]:
    got: dict[int, bytes] = {}
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            channel, data = channels.parse(msg.data)
            got[channel] = got.get(channel, b"") + data
    return got


async def test_exec_v5_stdin_close_and_exit_status(agent) -> None:
    client, _ = agent
    ws = await _exec(client, "command=sh&command=-c&command=cat; echo e>%262; exit 4"
                             "&stdin=true&stdout=true&stderr=true")
    assert ws.protocol == channels.V5
    await ws.send_bytes(channels.frame(channels.STDIN, b"abc\n"))
    await ws.send_bytes(channels.close_frame(channels.STDIN))
    got = await _collect(ws)
    assert got[channels.STDOUT] == b"abc\n" and got[channels.STDERR] == b"e\n"
    status = orjson.loads(got[channels.ERROR])
    assert channels.exit_code_of(status) == 4
    assert status["message"].endswith("exit code 4")


async def test_exec_v4_takes_text_input_and_reports_success(agent) -> None:
    client, _ = agent
    ws = await _exec(client, "command=head&command=-c3&stdin=true&stdout=true",
                     protocol=channels.V4)
    assert ws.protocol == channels.V4
    await ws.send_str("\x00xyz")
    got = await _collect(ws)
    assert got[channels.STDOUT] == b"xyz"
    assert orjson.loads(got[channels.ERROR]) == channels.success_status()


async def test_a_client_that_leaves_kills_its_exec(agent) -> None:
    client, runtime = agent
    ws = await _exec(client, "command=sleep&command=30&stdout=true")
    for _ in range(100):
        if runtime.pids:
            break
        await asyncio.sleep(0.02)
    pid = runtime.pids[-1]
    started = proc.start_time(pid)
    await ws.close()
    for _ in range(100):
        if not proc.alive(pid, started):
            break
        await asyncio.sleep(0.05)
    assert not proc.alive(pid, started)


@pytest.mark.parametrize(("path", "status", "text"), [
    ("/exec/default/web/c?stdout=true", 400, "you must specify a command"),
    ("/exec/default/web/c?command=true", 400, "at least 1 of stdin, stdout, stderr"),
    ("/exec/default/web/other?command=true&stdout=true", 404,
     'container "other" in pod "web" is not running'),
    ("/exec/default/nope/c?command=true&stdout=true", 404,
     'pod "nope" in namespace "default" is not running on this node'),
    ("/exec/default/web/c?command=true&stdout=true", 400, "a WebSocket upgrade"),
    ("/portForward/default/web", 400, "a WebSocket upgrade"),
], ids=["no-command", "no-stream", "no-container", "no-pod", "no-upgrade", "pf-no-upgrade"])
async def test_refusals_are_plain_http(agent, path: str, status: int, text: str) -> None:
    client, _ = agent
    resp = await client.get(path, headers=AUTH)
    assert resp.status == status and text in await resp.text()


async def test_requests_without_the_token_are_refused(agent) -> None:
    client, _ = agent
    assert (await client.get("/exec/default/web/c?command=true&stdout=true")).status == 401


def _reachable_from_host(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


async def test_port_forward_channels_reach_the_pod_network(agent, netns) -> None:
    client, _ = agent
    _, port = netns
    assert not _reachable_from_host(port), "the echo server must live in the pod's netns only"
    ws = await client.ws_connect(f"/portForward/default/web?ports={port}",
                                 protocols=[channels.V4], headers=AUTH)
    prefix = channels.port_prefix(port)
    assert [(await ws.receive()).data for _ in range(2)] == [b"\x00" + prefix, b"\x01" + prefix]
    await ws.send_bytes(b"\x00over-channels")
    assert (await ws.receive()).data == b"\x00over-channels"
    await ws.close()


async def test_port_forward_spdy_tunnel_reaches_the_pod_network(agent, netns) -> None:
    client, _ = agent
    _, port = netns
    ws = await client.ws_connect("/portForward/default/web",
                                 protocols=[channels.PORT_FORWARD_SPDY], headers=AUTH)
    assert ws.protocol == channels.PORT_FORWARD_SPDY
    session = SpdySession(WebSocketChannel(ws), client=True)
    runner = asyncio.create_task(session.run())
    headers = {"port": [str(port)], "requestid": ["0"]}
    error = await session.open_stream({**headers, "streamtype": ["error"]}, fin=True)
    data = await session.open_stream({**headers, "streamtype": ["data"]})
    await data.write(b"over-spdy")
    assert await data.read() == b"over-spdy"
    await data.close()
    assert await data.read() == b""
    assert await error.read() == b""
    await session.close()
    await asyncio.wait_for(runner, 5)


def test_install_adds_the_routes_to_the_agent_route_table(tmp_path: Path) -> None:
    from kubelite.agent.server import AgentServer
    from kubelite.agent.streaming import install

    server = AgentServer(pods=None, runtime=FakeRuntime([], tmp_path), host="127.0.0.1",  # type: ignore[arg-type]
                         port=0, ssl_context=None, authenticator=None)
    install(server)
    added = {(r.method, r.path, r.subresource) for r in server.routes}
    assert {("GET", "/exec/{namespace}/{pod}/{container}", "proxy"),
            ("GET", "/attach/{namespace}/{pod}/{container}", "proxy"),
            ("GET", "/portForward/{namespace}/{pod}", "proxy")} <= added
