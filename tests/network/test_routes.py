"""Routes between nodes and masquerade, on real network namespaces:

    pod a --cni0-- node-1 (192.168.77.11) --br0 in "lan"-- node-2 (192.168.77.12) --cni0-- pod b
                                                  \\-- lan 192.168.77.1 (outside the cluster)

Nodes come from a real API server; each node's route syncer runs in its namespace.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.client import Client, load_kubeconfig
from kubelite.network import masquerade
from kubelite.network.podnet import PodNetwork
from kubelite.network.routes import (
    NODES,
    RTPROT_KUBELITE,
    RouteSyncer,
    apply_routes,
    current_routes,
    desired_routes,
)
from tests.controllers.live_api import api_server, delete_nodes, until
from tests.network.netns_helpers import in_ns, namespaces, sh, tag_of

__all__ = ["api_server"]

CLUSTER = "10.244.0.0/16"

WHOAMI = r"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("0.0.0.0", 8080), H)
print("ready", flush=True)
s.serve_forever()
"""


def node_obj(name: str, ip: str, cidr: str | None) -> dict:
    return {"metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}]}}


def test_desired_routes_skip_self_foreign_cidrs_and_nodes_without_address() -> None:
    nodes = [node_obj("n1", "192.168.1.1", "10.244.1.0/24"),
             node_obj("n2", "192.168.1.2", "10.244.2.0/24"),
             node_obj("n3", "192.168.1.3", None),
             node_obj("n4", "192.168.1.4", "10.99.0.0/24"),
             {"metadata": {"name": "n5"}, "spec": {"podCIDR": "10.244.5.0/24"}}]
    assert desired_routes(nodes, cluster_cidr=CLUSTER, skip="n1") == {
        "10.244.2.0/24": "192.168.1.2"}
    assert desired_routes(nodes, cluster_cidr=CLUSTER) == {
        "10.244.1.0/24": "192.168.1.1", "10.244.2.0/24": "192.168.1.2"}


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[dict[str, str]]:
    tag = tag_of(tmp_path)
    names = {k: f"klrt{tag}{k}" for k in ("lan", "n1", "n2", "a", "b")}
    with namespaces(*names.values()):
        sh("ip", "-n", names["lan"], "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", names["lan"], "addr", "add", "192.168.77.1/24", "dev", "br0")
        sh("ip", "-n", names["lan"], "link", "set", "br0", "up")
        for i, node in (("1", names["n1"]), ("2", names["n2"])):
            sh("ip", "-n", names["lan"], "link", "add", f"v{i}", "type", "veth", "peer",
               "name", "eth0", "netns", node)
            sh("ip", "-n", names["lan"], "link", "set", f"v{i}", "master", "br0", "up")
            sh("ip", "-n", node, "addr", "add", f"192.168.77.1{i}/24", "dev", "eth0")
            sh("ip", "-n", node, "link", "set", "eth0", "up")
        yield names


async def test_apply_routes_replaces_only_its_own(lan: dict[str, str]) -> None:
    ns = lan["n1"]
    sh("ip", "-n", ns, "route", "add", "10.244.9.0/24", "via", "192.168.77.1")  # not ours
    assert await apply_routes({"10.244.2.0/24": "192.168.77.12"}, cluster_cidr=CLUSTER,
                              netns=ns) == []
    assert await current_routes(cluster_cidr=CLUSTER, netns=ns) == {
        "10.244.2.0/24": "192.168.77.12"}
    errors = await apply_routes({"10.244.3.0/24": "172.31.0.1"}, cluster_cidr=CLUSTER, netns=ns)
    assert errors  # the gateway is on no link
    assert await current_routes(cluster_cidr=CLUSTER, netns=ns) == {}
    routes = json.loads(in_ns(ns, "ip", "-j", "route").stdout)
    assert any(r["dst"] == "10.244.9.0/24" for r in routes)


async def test_pods_on_two_nodes_reach_each_other_through_synced_routes(
        api_server: Path, lan: dict[str, str], tmp_path: Path) -> None:
    tag = tag_of(tmp_path)
    names = [f"rt-{tag}-1", f"rt-{tag}-2", f"rt-{tag}-3"]
    server = None
    async with Client(load_kubeconfig(api_server)) as client:
        try:
            for name, ip, cidr in ((names[0], "192.168.77.11", "10.244.1.0/24"),
                                   (names[1], "192.168.77.12", "10.244.2.0/24")):
                obj = node_obj(name, ip, cidr)
                created = await client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                                      "metadata": obj["metadata"],
                                                      "spec": obj["spec"]})
                created["status"] = obj["status"]
                await client.update_status(NODES, created)
            syncers = [RouteSyncer(client, cluster_cidr=CLUSTER, node_name=n, netns=lan[k])
                       for n, k in ((names[0], "n1"), (names[1], "n2"))]
            for s in syncers:
                await s.start()
            try:
                await asyncio.wait_for(syncers[0].pod_cidr_assigned.wait(), 10)
                assert syncers[0].pod_cidr == "10.244.1.0/24"
                await until(lambda: current_routes(cluster_cidr=CLUSTER, netns=lan["n1"]))
                assert await current_routes(cluster_cidr=CLUSTER, netns=lan["n1"]) == {
                    "10.244.2.0/24": "192.168.77.12"}
                await until(lambda: current_routes(cluster_cidr=CLUSTER, netns=lan["n2"]))

                for k, pod, cidr in (("n1", "a", "10.244.1.0/24"), ("n2", "b", "10.244.2.0/24")):
                    await masquerade.install(CLUSTER, netns=lan[k])
                    net = PodNetwork(tmp_path / k, netns=lan[k])
                    net.configure(cidr)
                    await net.attach(pod, f"/var/run/netns/{lan[pod]}", namespace="ns",
                                     name=pod, uid=pod)
                ip_b = (await PodNetwork(tmp_path / "n2").ips("b"))[0]
                ping = in_ns(lan["a"], "busybox", "ping", "-c", "1", "-W", "3", ip_b, check=False)
                assert ping.returncode == 0, ping.stdout

                # Leaving the cluster CIDR, a pod's traffic is masqueraded to its node.
                server = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{lan['lan']}",
                                           sys.executable, "-c", WHOAMI], stdout=subprocess.PIPE)
                assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
                seen = in_ns(lan["a"], sys.executable, "-c",
                             "import urllib.request; print(urllib.request.urlopen("
                             "'http://192.168.77.1:8080/', timeout=3).read().decode())"
                             ).stdout.strip()
                assert seen == "192.168.77.11"

                # A third node appears, then node 2 goes: routes follow.
                third = node_obj(names[2], "192.168.77.13", "10.244.3.0/24")
                created = await client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                                      "metadata": third["metadata"],
                                                      "spec": third["spec"]})
                created["status"] = third["status"]
                await client.update_status(NODES, created)
                await client.delete(NODES, names[1])

                async def followed() -> bool:
                    return await current_routes(cluster_cidr=CLUSTER, netns=lan["n1"]) == {
                        "10.244.3.0/24": "192.168.77.13"}
                await until(followed)
            finally:
                await syncers[0].stop(remove_routes=True)
                await syncers[1].stop()
            assert await current_routes(cluster_cidr=CLUSTER, netns=lan["n1"]) == {}
            await masquerade.remove(netns=lan["n1"])
            assert "kubelite-net" not in in_ns(lan["n1"], "nft", "list", "tables").stdout
            assert f"proto {RTPROT_KUBELITE}" not in in_ns(lan["n1"], "ip", "route",
                                                     "show", "table", "all").stdout
        finally:
            if server is not None:
                server.kill()
                server.wait()
            await delete_nodes(client, names)
