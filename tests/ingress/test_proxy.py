"""The ingress proxy against real aiohttp backends (and a raw one) on loopback.

The throughput figures quoted in kubelite/ingress/proxy.py were taken with the
backend, the proxy and the load in three processes (an aiohttp "hello world"
app, `IngressProxy` with one route, and `_rate` below with 32 clients for 3 s);
`test_throughput_is_at_least_half_of_direct` repeats a loose version of it in
one process (run it with `-s` to print the figures).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.ingress.proxy import IngressProxy
from kubelite.ingress.routes import KeyPair, Route, TableBuilder, Upstream

NAME = web.AppKey("name", str)


async def _info(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/ws"):
        ws = web.WebSocketResponse(protocols=("echo",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "bye":
                    await ws.close(code=4001, message=b"bye")
                    break
                await ws.send_str(f"{request.app[NAME]}:{msg.data}")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws
    if request.path.startswith("/slow"):
        await asyncio.sleep(0.5)
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response({
        "backend": request.app[NAME], "path": request.path_qs, "host": request.host,
        "xff": request.headers.get("X-Forwarded-For"),
        "proto": request.headers.get("X-Forwarded-Proto"),
        "xhost": request.headers.get("X-Forwarded-Host"),
        "connection": request.headers.get("Connection"),
        "peer_port": peer[1] if peer else None, "body": body.decode(),
    }, headers={"Set-Cookie": "a=1"})


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, tuple[str, int]]]:
    runners, out = [], {}
    for name in ("one", "two", "three"):
        app = web.Application()
        app[NAME] = name
        app.router.add_route("*", "/{tail:.*}", _info)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        out[name] = ("127.0.0.1", runner.addresses[0][1])
    try:
        yield out
    finally:
        for runner in runners:
            await runner.cleanup()


def closed_port() -> tuple[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return ("127.0.0.1", s.getsockname()[1])


def up(name: str, *eps: tuple[str, int]) -> Upstream:
    return Upstream(name=name, endpoints=tuple(eps))


@pytest.fixture
async def proxy() -> AsyncIterator[IngressProxy]:
    async with IngressProxy(http=[("127.0.0.1", 0)]) as p:
        yield p


async def get(proxy: IngressProxy, path: str, host: str, **kw) -> tuple[int, dict | str]:
    port = proxy.http_addresses[0][1]
    async with aiohttp.ClientSession() as s, s.get(
            f"http://127.0.0.1:{port}{path}", headers={"Host": host, **kw}) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type == "application/json" else text)


async def test_two_hosts_and_two_paths_reach_their_services(proxy, backends) -> None:
    t = TableBuilder()
    t.add_route("a.test", Route("Prefix", "/", up("one", backends["one"])))
    t.add_route("a.test", Route("Prefix", "/api", up("two", backends["two"])))
    t.add_route("b.test", Route("Exact", "/x", up("three", backends["three"])))
    await proxy.update(t.build())
    assert (await get(proxy, "/page?q=1", "a.test"))[1]["backend"] == "one"
    status, body = await get(proxy, "/api/v1?q=1", "a.test:80")
    assert status == 200 and body["backend"] == "two" and body["path"] == "/api/v1?q=1"
    assert body["host"] == "a.test:80", "the client's Host header is kept"
    assert body["xff"] == "127.0.0.1" and body["proto"] == "http" and body["xhost"] == "a.test:80"
    assert (await get(proxy, "/x", "b.test"))[1]["backend"] == "three"
    assert (await get(proxy, "/y", "b.test"))[0] == 404
    status, body = await get(proxy, "/", "a.test", **{"X-Forwarded-For": "192.0.2.1"})
    assert body["xff"] == "192.0.2.1, 127.0.0.1"


async def test_post_body_and_headers_pass_through(proxy, backends) -> None:
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("one", backends["one"])))
    await proxy.update(t.build())
    port = proxy.http_addresses[0][1]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}/p", data=b"x" * 100_000) as r:
            assert r.status == 200 and r.headers["Set-Cookie"] == "a=1"
            assert (await r.json())["body"] == "x" * 100_000

        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"ab", b"cd"):
                yield part
        async with s.put(f"http://127.0.0.1:{port}/c", data=chunks()) as r:
            assert (await r.json())["body"] == "abcd"


async def test_keep_alive_to_clients_and_pooled_connections_to_backends(proxy, backends) -> None:
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("one", backends["one"])))
    await proxy.update(t.build())
    reader, writer = await asyncio.open_connection(*proxy.http_addresses[0])
    try:
        peers = []
        for _ in range(3):
            writer.write(b"GET /k HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            assert head.startswith("HTTP/1.1 200")
            length = int(next(line.split(":")[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length")))
            body = json.loads(await reader.readexactly(length))
            assert body["connection"] is None, "hop-by-hop headers are not forwarded"
            peers.append(body["peer_port"])
        assert len(set(peers)) == 1, "the backend connection was reused"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_websocket_echo_through_the_proxy(proxy, backends) -> None:
    t = TableBuilder()
    t.add_route("ws.test", Route("Prefix", "/ws", up("two", closed_port(), backends["two"])))
    await proxy.update(t.build())
    port = proxy.http_addresses[0][1]
    async with aiohttp.ClientSession() as s, s.ws_connect(
            f"http://127.0.0.1:{port}/ws/chat", headers={"Host": "ws.test"},
            protocols=("echo",)) as ws:
        assert ws.protocol == "echo"
        for n in range(3):
            await ws.send_str(f"hi {n}")
            assert await ws.receive_str(timeout=5) == f"two:hi {n}"
        await ws.send_bytes(b"abc")
        assert await ws.receive_bytes(timeout=5) == b"cba"
        await ws.send_str("bye")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001


async def test_refused_endpoints_are_skipped(proxy, backends) -> None:
    dead = [closed_port() for _ in range(3)]
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("mixed", *dead, backends["one"])))
    t.add_route("", Route("Prefix", "/dead", up("dead", *dead)))
    await proxy.update(t.build())
    for _ in range(10):
        status, body = await get(proxy, "/", "h")
        assert status == 200 and body["backend"] == "one"
    assert (await get(proxy, "/dead", "h"))[0] == 502


async def test_no_endpoint_is_503_and_no_rule_is_404(proxy) -> None:
    t = TableBuilder()
    t.add_route("h", Route("Prefix", "/", up("empty")))
    await proxy.update(t.build())
    assert (await get(proxy, "/", "h"))[0] == 503
    assert (await get(proxy, "/", "other"))[0] == 404


async def test_config_swap_keeps_requests_in_flight(proxy, backends) -> None:
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("one", backends["one"])))
    await proxy.update(t.build())
    slow = asyncio.create_task(get(proxy, "/slow", "h"))
    await asyncio.sleep(0.2)
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("two", backends["two"])))
    await proxy.update(t.build())
    assert (await get(proxy, "/now", "h"))[1]["backend"] == "two"
    status, body = await slow
    assert status == 200 and body["backend"] == "one"


# -- TLS -------------------------------------------------------------------------------

def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool,
          sans: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, KeyPair]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelite test CA")])
    ca = _cert("kubelite test CA", ca_key, ca_name, ca_key, ca=True)
    pairs = {}
    for host in ("a.tls.test", "b.tls.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert(host, key, ca_name, ca_key, ca=False, sans=(host,))
        pairs[host] = KeyPair(
            cert=leaf.public_bytes(serialization.Encoding.PEM),
            key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return path, pairs


async def test_tls_termination_picks_the_certificate_by_sni(backends, test_ca) -> None:
    ca_path, pairs = test_ca
    async with IngressProxy(https=[("127.0.0.1", 0)]) as proxy:
        t = TableBuilder()
        for host, backend in (("a.tls.test", "one"), ("b.tls.test", "two")):
            t.add_route(host, Route("Prefix", "/", up(backend, backends[backend])))
            t.add_certificate(host, pairs[host])
        await proxy.update(t.build())
        port = proxy.https_addresses[0][1]
        verify = ssl.create_default_context(cafile=str(ca_path))
        async with aiohttp.ClientSession() as s:
            for host, backend in (("a.tls.test", "one"), ("b.tls.test", "two")):
                async with s.get(f"https://127.0.0.1:{port}/", ssl=verify, server_hostname=host,
                                 headers={"Host": host}) as r:
                    body = await r.json()
                    assert body["backend"] == backend and body["proto"] == "https"
            for host in ("a.tls.test", "b.tls.test"):
                _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=verify,
                                                          server_hostname=host)
                peer = writer.get_extra_info("peercert")
                writer.close()
                await writer.wait_closed()
                assert dict(x[0] for x in peer["subject"])["commonName"] == host
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(f"https://127.0.0.1:{port}/", ssl=verify,
                            server_hostname="c.tls.test")
            # An unknown name still gets the self-signed default certificate.
            async with s.get(f"https://127.0.0.1:{port}/", ssl=False,
                             server_hostname="c.tls.test") as r:
                assert r.status == 404


# -- speed ---------------------------------------------------------------------------------

async def _rate(url: str, *, seconds: float = 1.5, clients: int = 32) -> float:
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with s.get(url, headers={"Host": "bench"}) as r:
                    await r.read()
                    done += 1
        await asyncio.gather(*(worker() for _ in range(clients)))
    return done / seconds


async def test_throughput_is_at_least_half_of_direct(proxy, backends) -> None:
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("one", backends["one"])))
    await proxy.update(t.build())
    host, port = backends["one"]
    direct = await _rate(f"http://{host}:{port}/b")
    proxied = await _rate(f"http://127.0.0.1:{proxy.http_addresses[0][1]}/b")
    print(f"direct {direct:.0f} req/s, through the proxy {proxied:.0f} req/s "
          f"({proxied / direct:.2f})")
    # Client, proxy and backend share one event loop here, so the bound is loose: the
    # proxy must not cost more than four backends' worth of work per request.
    assert proxied > direct * 0.2


# -- HTTP framing against a raw backend -------------------------------------------------

RAW_ANSWERS = {
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
    b"/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    b"/once": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce",
}


@pytest.fixture
async def raw_backend() -> AsyncIterator[tuple[str, int]]:
    """Answers canned bytes by path; /once closes the connection after answering
    without saying so, as a backend whose keep-alive timer fired would."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b" ")[:2]
                answer = RAW_ANSWERS[target]
                if method == b"HEAD":
                    answer = answer.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
                writer.write(answer)
                await writer.drain()
                if target in (b"/close", b"/once"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield ("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_response_framings_and_a_backend_that_closed_a_pooled_connection(
        proxy, raw_backend) -> None:
    t = TableBuilder()
    t.add_route("", Route("Prefix", "/", up("raw", raw_backend)))
    await proxy.update(t.build())
    assert await get(proxy, "/chunked", "h") == (200, "hello world")
    assert await get(proxy, "/continue", "h") == (201, "done")
    assert await get(proxy, "/close", "h") == (200, "until the end")
    for _ in range(3):
        assert await get(proxy, "/once", "h") == (200, "once")
    port = proxy.http_addresses[0][1]
    async with aiohttp.ClientSession() as s, s.head(f"http://127.0.0.1:{port}/once") as r:
        assert r.status == 200 and r.headers["Content-Length"] == "4"
