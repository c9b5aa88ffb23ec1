"""The service proxy on real nftables, in network namespaces the test makes.

    client (10.244.9.2) --veth-- node (10.244.9.1 | br0 10.244.0.1) --bridge-- ep1 10.244.0.11
    outside (172.30.0.2) --veth-- node (172.30.0.1)                          \\- ep2 10.244.0.12

The proxy programs the node namespace from a real API server; each endpoint
runs a tiny HTTP server answering its name and the address it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, load_kubeconfig
from kubelite.network.proxy import ServiceProxy
from tests.controllers.live_api import api_server, namespace, ns_name

__all__ = ["api_server", "ns_name"]

SERVICES = lookup("", "v1", "services")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")

SERVER = r"""
import http.server, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name} {self.client_address[0]}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H)
print("ready", flush=True)
s.serve_forever()
"""

CLIENT = r"""
import json, socket, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
out = []
for _ in range(n):
    try:
        out.append(urllib.request.urlopen(url, timeout=2).read().decode())
    except OSError as exc:
        out.append("error " + type(exc).__name__)
print(json.dumps(out))
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@dataclass
class Net:
    node: str
    ep1: str
    ep2: str
    client: str
    outside: str

    def all(self) -> list[str]:
        return [self.node, self.ep1, self.ep2, self.client, self.outside]


def _link(node: str, peer_ns: str, node_if: str, peer_ip: str, gw: str,
          node_ip: str | None = None, bridge: str | None = None) -> None:
    sh("ip", "-n", node, "link", "add", node_if, "type", "veth", "peer", "name", "eth0",
       "netns", peer_ns)
    if bridge:
        # Hairpin mode, as the CNI bridge plugin's hairpinMode sets it: with
        # br_netfilter a pod's packet DNATed back to itself leaves by the port it came in.
        sh("ip", "-n", node, "link", "set", node_if, "master", bridge)
        sh("ip", "-n", node, "link", "set", node_if, "type", "bridge_slave", "hairpin", "on")
    if node_ip:
        sh("ip", "-n", node, "addr", "add", node_ip, "dev", node_if)
    sh("ip", "-n", node, "link", "set", node_if, "up")
    sh("ip", "-n", peer_ns, "addr", "add", peer_ip, "dev", "eth0")
    sh("ip", "-n", peer_ns, "link", "set", "eth0", "up")
    sh("ip", "-n", peer_ns, "route", "add", "default", "via", gw)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    tag = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:6]
    n = Net(*(f"klpx{tag}{x}" for x in ("n", "a", "b", "c", "o")))
    procs: list[subprocess.Popen] = []
    try:
        for ns in n.all():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("nsenter", f"--net=/var/run/netns/{n.node}", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", n.node, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", n.node, "addr", "add", "10.244.0.1/24", "dev", "br0")
        sh("ip", "-n", n.node, "link", "set", "br0", "up")
        _link(n.node, n.ep1, "ve1", "10.244.0.11/24", "10.244.0.1", bridge="br0")
        _link(n.node, n.ep2, "ve2", "10.244.0.12/24", "10.244.0.1", bridge="br0")
        _link(n.node, n.client, "vc", "10.244.9.2/24", "10.244.9.1", node_ip="10.244.9.1/24")
        _link(n.node, n.outside, "vo", "172.30.0.2/24", "172.30.0.1", node_ip="172.30.0.1/24")
        for ns, name in ((n.ep1, "ep1"), (n.ep2, "ep2")):
            proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{ns}", sys.executable,
                                     "-c", SERVER, name], stdout=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield n
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for ns in n.all():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


async def fetch(ns: str, url: str, count: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/var/run/netns/{ns}", sys.executable, "-c", CLIENT, url, str(count),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return json.loads(out)


def service(**spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}


def endpoint_slice(*ready: bool) -> dict:
    eps = [{"addresses": [f"10.244.0.1{i + 1}"], "conditions": {"ready": r, "serving": r},
            "nodeName": "node-1"} for i, r in enumerate(ready)]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


@contextlib.asynccontextmanager
async def proxied(kubeconfig: Path, node_ns: str) -> AsyncIterator[tuple[Client, ServiceProxy]]:
    async with Client(load_kubeconfig(kubeconfig)) as client:
        proxy = ServiceProxy(client, node_name="node-1", netns=node_ns)
        async with proxy:
            yield client, proxy


async def settle(proxy: ServiceProxy, check) -> float:
    """Seconds until `check(proxy)` holds after a sync."""
    started = time.monotonic()
    while not check(proxy):
        assert time.monotonic() - started < 10, "proxy did not sync"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def names(answers: list[str]) -> list[str]:
    return [a.split()[0] for a in answers]


async def test_cluster_ip_spreads_sticks_and_follows_endpoints(api_server, ns_name, net) -> None:
    async with proxied(api_server, net.node) as (client, proxy):
        ns = await namespace(client, ns_name)
        svc = await client.create(SERVICES, service(), ns)
        ip = svc["spec"]["clusterIP"]
        slice_ = await client.create(SLICES, endpoint_slice(True, True), ns)

        def has(ip_: str, count: int):
            return lambda p: p.applied is not None and sum(
                ip_ in k for k in p.applied.maps["service-ips"]) and len(
                [c for c in p.applied.chains if c.startswith("endpoint-") and ns in c]) == count

        await settle(proxy, has(ip, 2))
        answers = await fetch(net.client, f"http://{ip}/", 200)
        counts = {n: names(answers).count(n) for n in ("ep1", "ep2")}
        assert sum(counts.values()) == 200, answers[:5]
        assert min(counts.values()) >= 60, counts
        # Pod clients keep their address (no masquerade inside the cluster CIDR).
        assert {a.split()[1] for a in answers} == {"10.244.9.2"}

        # Hairpin: an endpoint reaching its own Service, itself included, is masqueraded.
        hairpin = await fetch(net.ep1, f"http://{ip}/", 20)
        assert all(not a.startswith("error") for a in hairpin), hairpin

        # ep2 turns unready: gone from the rules after one sync, well under 2 s.
        slice_["endpoints"][1]["conditions"] = {"ready": False, "serving": False}
        await client.update(SLICES, slice_)
        took = await settle(proxy, has(ip, 1))
        assert took < 2
        assert set(names(await fetch(net.client, f"http://{ip}/", 20))) == {"ep1"}

        # Session affinity: one client, one endpoint.
        slice_ = await client.get(SLICES, "web-1", ns)
        slice_["endpoints"][1]["conditions"] = {"ready": True, "serving": True}
        await client.update(SLICES, slice_)
        await settle(proxy, has(ip, 2))
        svc = await client.get(SERVICES, "web", ns)
        svc["spec"]["sessionAffinity"] = "ClientIP"
        await client.update(SERVICES, svc)
        await settle(proxy, lambda p: p.applied is not None and bool(p.applied.sets))
        assert len(set(names(await fetch(net.client, f"http://{ip}/", 30)))) == 1

        # No endpoints: refused at once rather than left to time out.
        await client.delete(SLICES, "web-1", ns)
        await settle(proxy, lambda p: p.applied is not None and any(
            ip in k for k in p.applied.maps["no-endpoint-services"]))
        (answer,) = await fetch(net.client, f"http://{ip}/", 1)
        assert answer.startswith("error"), answer


async def test_node_port_and_masquerade_for_outside_clients(api_server, ns_name, net) -> None:
    async with proxied(api_server, net.node) as (client, proxy):
        ns = await namespace(client, ns_name)
        svc = await client.create(SERVICES, service(type="NodePort"), ns)
        node_port = svc["spec"]["ports"][0]["nodePort"]
        await client.create(SLICES, endpoint_slice(True, True), ns)
        await settle(proxy, lambda p: p.applied is not None and any(
            str(node_port) in k for k in p.applied.maps["service-nodeports"]))
        outside = await fetch(net.outside, f"http://172.30.0.1:{node_port}/", 40)
        assert set(names(outside)) == {"ep1", "ep2"}
        # Masqueraded: the endpoint sees the node, which routes the answer back.
        assert {a.split()[1] for a in outside} == {"10.244.0.1"}
        from_pod = await fetch(net.client, f"http://10.244.9.1:{node_port}/", 10)
        assert set(names(from_pod)) <= {"ep1", "ep2"} and len(from_pod) == 10
        # ClusterIP from outside the cluster CIDR is masqueraded as well.
        via_ip = await fetch(net.outside, f"http://{svc['spec']['clusterIP']}/", 5)
        assert {a.split()[1] for a in via_ip} == {"10.244.0.1"}, via_ip
