"""NetworkPolicy on real nftables, in network namespaces the test makes.

    node: br0 10.244.0.1/24 --+-- server 10.244.0.10 (app=web, TCP 8080 "http")
                              +-- client 10.244.0.11 (role=client)
                              +-- other  10.244.0.12 (role=other)

The enforcer programs the node namespace from a real API server in which the
test plays the agent (pods bound to node-1 with their IPs in status).
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, load_kubeconfig
from kubelite.network.policy import PolicyEnforcer, delete_table
from tests.controllers.live_api import api_server, namespace, ns_name

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
POLICIES = lookup("networking.k8s.io", "v1", "networkpolicies")

SERVER = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"ok"); c.close()
"""

CONNECT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], 8080), timeout=0.7) as s:
        print(s.recv(2).decode() or "closed")
except OSError as exc:
    print(type(exc).__name__)
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@dataclass
class Net:
    node: str
    server: str
    client: str
    other: str

    def all(self) -> list[str]:
        return [self.node, self.server, self.client, self.other]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    tag = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:6]
    n = Net(*(f"klnp{tag}{x}" for x in ("n", "s", "c", "o")))
    procs: list[subprocess.Popen] = []
    try:
        for ns in n.all():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", n.node, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", n.node, "addr", "add", "10.244.0.1/24", "dev", "br0")
        sh("ip", "-n", n.node, "link", "set", "br0", "up")
        for i, ns in ((10, n.server), (11, n.client), (12, n.other)):
            sh("ip", "-n", n.node, "link", "add", f"v{i}", "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            sh("ip", "-n", n.node, "link", "set", f"v{i}", "master", "br0")
            sh("ip", "-n", n.node, "link", "set", f"v{i}", "up")
            sh("ip", "-n", ns, "addr", "add", f"10.244.0.{i}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{n.server}", sys.executable,
                                 "-c", SERVER], stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield n
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for ns in n.all():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


async def connect(ns: str, ip: str = "10.244.0.10") -> str:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/var/run/netns/{ns}", sys.executable, "-c", CONNECT, ip,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode().strip()


async def pod(client: Client, ns: str, name: str, ip: str, labels: dict[str, str]) -> None:
    created = await client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{
            "name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 8080}]}]}}, ns)
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    await client.update_status(PODS, {**created, "status": status})


def policy(name: str, **spec: object) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name}, "spec": {"podSelector": {}, **spec}}


async def settle(enforcer: PolicyEnforcer, needle: str, present: bool = True) -> None:
    deadline = time.monotonic() + 10
    while enforcer.applied is None or (needle in enforcer.applied) != present:
        assert time.monotonic() < deadline, enforcer.applied
        await asyncio.sleep(0.02)


async def reach(net: Net) -> tuple[str, str]:
    client, other = await asyncio.gather(connect(net.client), connect(net.other))
    return client, other


async def test_default_deny_then_allow_by_label(api_server, ns_name, net) -> None:
    async with Client(load_kubeconfig(api_server)) as client:
        ns = await namespace(client, ns_name)
        await pod(client, ns, "server", "10.244.0.10", {"app": "web"})
        await pod(client, ns, "client", "10.244.0.11", {"role": "client"})
        await pod(client, ns, "other", "10.244.0.12", {"role": "other"})
        async with PolicyEnforcer(client, node_name="node-1", netns=net.node,
                                  debounce=0.01) as enforcer:
            try:
                await asyncio.wait_for(enforcer.synced.wait(), 10)
                assert await reach(net) == ("ok", "ok")

                await client.create(POLICIES, policy("deny", policyTypes=["Ingress"]), ns)
                await settle(enforcer, "ip daddr vmap")
                assert await reach(net) == ("TimeoutError", "TimeoutError")

                await client.create(POLICIES, policy(
                    "allow-client", podSelector={"matchLabels": {"app": "web"}},
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                              "ports": [{"port": "http"}]}]), ns)
                await settle(enforcer, "ip saddr { 10.244.0.11 }")
                assert await reach(net) == ("ok", "TimeoutError")

                # Egress of `client` denied except to the server: its connection
                # still works, while the server's way back to it is not policed by
                # ingress of client (established traffic is always allowed).
                await client.create(POLICIES, policy(
                    "client-egress", podSelector={"matchLabels": {"role": "client"}},
                    policyTypes=["Egress"],
                    egress=[{"to": [{"ipBlock": {"cidr": "10.244.0.10/32"}}]}]), ns)
                await settle(enforcer, "ip daddr 10.244.0.10/32 return")
                assert await connect(net.client) == "ok"
                assert await connect(net.client, "10.244.0.12") == "TimeoutError"

                for name in ("deny", "allow-client", "client-egress"):
                    await client.delete(POLICIES, name, ns)
                await settle(enforcer, "vmap", present=False)
                assert await reach(net) == ("ok", "ok")
            finally:
                await delete_table(netns=net.node)
