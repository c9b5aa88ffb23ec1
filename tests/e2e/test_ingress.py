"""Ingress end to end: `kubelite server --ingress-http/--ingress-https`, driven by kubectl.

The first tests need no nodes: backends are aiohttp apps (with a WebSocket echo,
which busybox cannot serve) on loopback addresses 127.0.0.2 and 127.0.0.3, named
by selector-less Services and hand-written EndpointSlices. The last runs on the
`cluster` fixture: busybox httpd pods behind Services, reached through the pod
network from the proxy in the host's network namespace.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import Server, free_port

pytestmark = pytest.mark.e2e

NAME = web.AppKey("name", str)


async def _handle(request: web.Request) -> web.StreamResponse:
    if request.path == "/ws":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"{request.app[NAME]} echoes {msg.data}")
        return ws
    return web.json_response({"backend": request.app[NAME], "path": request.path,
                              "xff": request.headers.get("X-Forwarded-For"),
                              "proto": request.headers.get("X-Forwarded-Proto")})


class Backends:
    """aiohttp apps on their own event loop in a thread: name -> (ip, port)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []
        self.addresses = {n: self._call(self._start(n, ip)) for n, ip in names.items()}

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self, name: str, ip: str) -> tuple[str, int]:
        app = web.Application()
        app[NAME] = name
        app.router.add_get("/{tail:.*}", _handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, ip, 0).start()
        self.runners.append(runner)
        return (ip, runner.addresses[0][1])

    def close(self) -> None:
        for runner in self.runners:
            self._call(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class IngressServer(Server):
    http_port: int = 0
    https_port: int = 0
    extra: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.cli.main", "server", "--data-dir",
             str(self.data_dir), "--listen", f"127.0.0.1:{self.port}", "--disable-scheduler",
             "--ingress-http", f"127.0.0.1:{self.http_port}",
             "--ingress-https", f"127.0.0.1:{self.https_port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        for port in (self.port, self.http_port, self.https_port):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(self.log_path.read_text()[-3000:]) from None
                    time.sleep(0.1)


def _pki(base: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for secure.test signed by it: (ca, cert, key) files."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)

    def cert(cn: str, pub, issuer: str, sign_key, *, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        return b.sign(sign_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    paths = (base / "ca.crt", base / "tls.crt", base / "tls.key")
    paths[0].write_bytes(cert("e2e CA", ca_key.public_key(), "e2e CA", ca_key, ca=True)
                         .public_bytes(pem))
    paths[1].write_bytes(cert("secure.test", key.public_key(), "e2e CA", ca_key, ca=False)
                         .public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IngressServer, Backends]]:
    base = tmp_path_factory.mktemp("ingress")
    srv = IngressServer(data_dir=base / "data", port=free_port(), http_port=free_port(),
                        https_port=free_port())
    backends = Backends({"one": "127.0.0.2", "two": "127.0.0.3"})
    try:
        srv.start()
        yield srv, backends
    finally:
        srv.stop()
        backends.close()


def manifests(backends: Backends, cert: Path, key: Path) -> str:
    docs = []
    for name, (ip, port) in backends.addresses.items():
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                     "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}})
        docs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-1",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4",
                     "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                     "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]})
    docs.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": {"name": "secure-tls"},
                 "data": {"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                          "tls.key": base64.b64encode(key.read_bytes()).decode()}})

    def path(p: str, svc: str, ptype: str = "Prefix") -> dict:
        return {"path": p, "pathType": ptype,
                "backend": {"service": {"name": svc, "port": {"name": "http"}}}}
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "site"},
                 "spec": {"tls": [{"hosts": ["secure.test"], "secretName": "secure-tls"}],
                          "rules": [
                              {"host": "a.test", "http": {"paths": [path("/", "one"),
                                                                    path("/api", "two")]}},
                              {"host": "b.test", "http": {"paths": [path("/", "two")]}},
                              {"host": "secure.test", "http": {"paths": [path("/", "one")]}},
                              {"host": "*.wild.test", "http": {"paths": [
                                  path("/ws", "two", "Exact")]}}]}})
    return yaml.safe_dump_all(docs)


def fetch(port: int, host: str, path: str, *, tls: ssl.SSLContext | None = None) -> tuple[int, str]:
    """One HTTP/1.1 request to 127.0.0.1:port with `host` as Host (and SNI for TLS)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def until(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, OSError, KeyError, IndexError, ValueError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.2)


def test_ingress_routes_hosts_paths_tls_and_websockets(env, tmp_path: Path) -> None:
    srv, backends = env
    ca, cert, key = _pki(tmp_path)
    cls = until(lambda: srv.kubectl_json("get", "ingressclass", "kubelite"))
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    srv.kubectl("apply", "-f", "-", input=manifests(backends, cert, key))

    def backend_of(host: str, path: str) -> str:
        status, body = fetch(srv.http_port, host, path)
        assert status == 200, (status, body)
        return json.loads(body)["backend"]

    until(lambda: backend_of("a.test", "/api/x") == "two")
    assert backend_of("a.test", "/") == "one"
    assert backend_of("a.test", "/apiary") == "one"
    assert backend_of("b.test", "/anything") == "two"
    assert fetch(srv.http_port, "c.test", "/")[0] == 404

    verify = ssl.create_default_context(cafile=str(ca))
    until(lambda: fetch(srv.https_port, "secure.test", "/", tls=verify)[0] == 200)
    body = json.loads(fetch(srv.https_port, "secure.test", "/", tls=verify)[1])
    assert body["backend"] == "one" and body["proto"] == "https"

    async def websocket() -> str:
        async with aiohttp.ClientSession() as s, s.ws_connect(
                f"http://127.0.0.1:{srv.http_port}/ws", headers={"Host": "x.wild.test"}) as ws:
            await ws.send_str("ping")
            return await ws.receive_str(timeout=5)
    assert asyncio.run(websocket()) == "two echoes ping"

    status = until(lambda: srv.kubectl_json("get", "ingress", "site")["status"]
                   ["loadBalancer"]["ingress"])
    assert status == [{"ip": "127.0.0.1"}]
    listed = srv.kubectl("get", "ingress", "site").stdout
    assert "127.0.0.1" in listed


def test_a_service_without_endpoints_answers_503(env) -> None:
    srv, _ = env
    srv.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "empty"},
        "spec": {"ingressClassName": "kubelite", "rules": [{"host": "empty.test", "http": {
            "paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "nothing", "port": {"number": 80}}}}]}}]}}))
    until(lambda: fetch(srv.http_port, "empty.test", "/")[0] == 503)


@pytest.mark.parametrize("change,field", [
    ({"pathType": "Regex"}, "spec.rules[0].http.paths[0].pathType"),
    ({"backend": None}, "spec.rules[0].http.paths[0].backend"),
    ({"host": "Bad_Host"}, "spec.rules[0].host"),
])
def test_invalid_ingress_is_refused_with_the_field(env, change: dict, field: str) -> None:
    srv, _ = env
    p = {"path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": "one", "port": {"number": 80}}}}
    rule: dict = {"host": "ok.test", "http": {"paths": [p]}}
    if "host" in change:
        rule["host"] = change["host"]
    else:
        p.update(change)
        if p["backend"] is None:
            del p["backend"]
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "bad"}, "spec": {"rules": [rule]}}
    result = srv.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert 'The Ingress "bad" is invalid' in result.stderr
    assert field in result.stderr


# -- on a real cluster: busybox httpd pods behind Services ---------------------------------

HTTPD = ("mkdir -p /www/b && echo $SITE > /www/index.html && echo $SITE > /www/b/index.html"
         " && exec busybox httpd -f -p 8080 -h /www")


def web_pod(site: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"web-{site}", "labels": {"app": f"web-{site}"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "httpd", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["busybox", "sh", "-c", HTTPD], "env": [{"name": "SITE", "value": site}],
                "ports": [{"name": "http", "containerPort": 8080}]}]}}


def web_service(site: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"web-{site}"},
            "spec": {"selector": {"app": f"web-{site}"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def test_ingress_on_a_cluster_routes_to_pods_and_terminates_tls(cluster, tmp_path: Path) -> None:
    ca, cert, key = _pki(tmp_path)

    def path(p: str, svc: str) -> dict:
        return {"path": p, "pathType": "Prefix",
                "backend": {"service": {"name": svc, "port": {"number": 80}}}}
    objects = [web_pod("a"), web_pod("b"), web_service("a"), web_service("b"),
               {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "secure-tls"},
                "data": {"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                         "tls.key": base64.b64encode(key.read_bytes()).decode()}},
               {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "sites"},
                "spec": {"tls": [{"hosts": ["secure.test"], "secretName": "secure-tls"}],
                         "rules": [
                             {"host": "a.test", "http": {"paths": [path("/", "web-a"),
                                                                   path("/b", "web-b")]}},
                             {"host": "b.test", "http": {"paths": [path("/", "web-b")]}},
                             {"host": "secure.test", "http": {"paths": [path("/", "web-a")]}}]}}]
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": objects}))
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "pod", "web-a", "web-b",
                        "--timeout=90s", timeout=120)

        def site(host: str, p: str) -> str:
            status, body = fetch(cluster.http_port, host, p)
            assert status == 200, (status, body)
            return body.strip()

        until(lambda: site("a.test", "/") == "a" and site("b.test", "/") == "b", timeout=30)
        assert site("a.test", "/b/") == "b"
        assert site("b.test", "/b/") == "b"
        assert fetch(cluster.http_port, "nobody.test", "/")[0] == 404
        verify = ssl.create_default_context(cafile=str(ca))
        status, body = fetch(cluster.https_port, "secure.test", "/", tls=verify)
        assert (status, body.strip()) == (200, "a")

        want = [{"ip": cluster.info["gateway"]}, {"ip": "127.0.0.1"}]
        until(lambda: cluster.kubectl_json("get", "ingress", "sites")["status"]
              ["loadBalancer"]["ingress"] == want)

        # A deleted pod's endpoint leaves the route: 503 until a new one is ready.
        cluster.kubectl("delete", "pod", "web-b", "--wait=true", timeout=60)
        until(lambda: fetch(cluster.http_port, "b.test", "/")[0] == 503)
    finally:
        cluster.kubectl("delete", "ingress/sites", "secret/secure-tls", "service/web-a",
                        "service/web-b", "pod/web-a", "pod/web-b", "--ignore-not-found",
                        "--wait=false", check=False)
