"""The pod network end to end: a real API server (with node IPAM) and two real
agents, each node in a network namespace of its own, joined by a bridge:

    lan netns: br0 192.168.88.1, API server --- node-1 192.168.88.11 --- node-2 .12

Pods get addresses from their node's podCIDR through the CNI plugins; a pod on
one node reaches a pod on the other by pod IP (routes from the agents' route
syncers); hostNetwork pods share the node's address; deleting pods releases
their addresses and interfaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.network.netns_helpers import in_ns, namespaces, sh, tag_of

pytestmark = pytest.mark.e2e

LAN_IP = "192.168.88.1"
CLUSTER_CIDR = "10.244.0.0/16"


def wait_until(check: Callable[[], Any], timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


@dataclass
class Net:
    base: Path
    lan: str
    nodes: dict[str, str]  # node name -> netns
    roots: dict[str, Path] = field(default_factory=dict)
    cgroup_root: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    agents: dict[str, tuple[subprocess.Popen, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.base / "data" / "kubeconfig"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        res = subprocess.run(["nsenter", f"--net=/var/run/netns/{self.lan}", "kubectl",
                              "--kubeconfig", str(self.kubeconfig), *args],
                             input=input, capture_output=True, text=True, timeout=90)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {res.stderr}")
        return res.stdout

    def pod(self, name: str) -> dict:
        return json.loads(self.kubectl("get", "pod", name, "-o", "json"))

    def spawn(self, netns: str, log: str, *args: str) -> subprocess.Popen:
        out = open(self.base / log, "ab")
        proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{netns}", sys.executable,
                                 "-m", "kubelite.cli.main", *args],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sweep_runtime(root: Path, cgroup_root: str) -> None:
    from kubelite.runtime import cgroups, mounts
    from kubelite.runtime.images import OCIImageStore
    from kubelite.runtime.runc import RuncRuntime

    async def sweep() -> None:
        rt = await RuncRuntime.open(root / "runtime", images=OCIImageStore(root),
                                    cgroup_root=cgroup_root)
        for sb in await rt.list_sandboxes():
            await rt.remove_sandbox(sb.id)
        for c in await rt.list_containers():
            await rt.remove_container(c.id)
        cgroups.remove(rt.cgroups, cgroup_root)

    asyncio.run(sweep())
    mounts.unmount_all(str(root))
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    if os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runc and kubectl")
    base = tmp_path_factory.mktemp("podnet")
    tag = tag_of(base)
    n = Net(base=base, lan=f"klpn{tag}l", nodes={"node-1": f"klpn{tag}1", "node-2": f"klpn{tag}2"},
            cgroup_root=f"/kubelite-podnet-{secrets.token_hex(4)}")
    with namespaces(n.lan, *n.nodes.values()):
        try:
            _build(n)
            yield n
        finally:
            n.kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s", check=False)
            for proc in reversed(n.procs):
                _stop(proc)
            for root in n.roots.values():
                _sweep_runtime(root, n.cgroup_root)


def _build(n: Net) -> None:
    sh("ip", "-n", n.lan, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", n.lan, "addr", "add", f"{LAN_IP}/24", "dev", "br0")
    sh("ip", "-n", n.lan, "link", "set", "br0", "up")
    for i, ns in enumerate(n.nodes.values(), start=1):
        sh("ip", "-n", n.lan, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", n.lan, "link", "set", f"v{i}", "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"192.168.88.1{i}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
    n.spawn(n.lan, "server.log", "server", "--data-dir", str(n.base / "data"),
            "--listen", f"{LAN_IP}:6443", "--tls-san", LAN_IP, "--cluster-cidr", CLUSTER_CIDR)
    wait_until(lambda: n.kubeconfig.exists() and "ok" in n.kubectl("get", "--raw", "/readyz",
                                                                   check=False), 30)
    archive = n.base / "busybox.tar"
    subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "busybox", "-o",
                    str(archive)], check=True, capture_output=True)
    pki = n.base / "data" / "pki"
    for i, (name, ns) in enumerate(n.nodes.items(), start=1):
        root = Path(tempfile.mkdtemp(prefix="klpn-", dir="/tmp"))
        n.roots[name] = root
        subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "import",
                        str(archive), "--root", str(root)], check=True, capture_output=True)
        args = ("agent", "--kubeconfig", str(n.kubeconfig), "--node-name", name,
                "--root", str(root), "--node-ip", f"192.168.88.1{i}",
                "--cgroup-root", n.cgroup_root, "--cluster-cidr", CLUSTER_CIDR,
                "--cluster-ca-cert", str(pki / "ca.crt"), "--cluster-ca-key", str(pki / "ca.key"))
        n.agents[name] = (n.spawn(ns, f"{name}.log", *args), args)
    for name in n.nodes:
        wait_until(lambda name=name: "True" in n.kubectl(
            "get", "node", name, "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False))


def pod_manifest(name: str, node: str, command: str, **spec: Any) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, **spec,
                 "containers": [{"name": "main", "image": "busybox",
                                 "imagePullPolicy": "IfNotPresent",
                                 "command": ["busybox", "sh", "-c", command]}]}})


def running_ip(n: Net, name: str) -> str:
    def ip() -> str:
        status = n.pod(name).get("status") or {}
        return status.get("podIP", "") if status.get("phase") == "Running" else ""
    return wait_until(ip)


def reservations(root: Path) -> list[str]:
    ipam = root / "network" / "ipam" / "kubelite"
    if not ipam.exists():
        return []
    return [f.name for f in ipam.iterdir() if f.name[0].isdigit()]


def test_nodes_get_pod_cidrs_and_routes_to_each_other(net: Net) -> None:
    cidrs = {name: net.kubectl("get", "node", name, "-o", "jsonpath={.spec.podCIDR}")
             for name in net.nodes}
    assert len(set(cidrs.values())) == 2 and all(c.startswith("10.244.") for c in cidrs.values())

    def routed() -> bool:
        out = in_ns(net.nodes["node-1"], "ip", "route", "show", cidrs["node-2"]).stdout
        return "via 192.168.88.12" in out
    wait_until(routed)


def test_pod_on_one_node_fetches_from_a_pod_on_the_other_by_pod_ip(net: Net) -> None:
    net.kubectl("apply", "-f", "-", input=pod_manifest(
        "web", "node-1", "echo hello-from-web > /tmp/index.html && "
        "exec busybox httpd -f -p 8080 -h /tmp"))
    net.kubectl("apply", "-f", "-", input=pod_manifest("client", "node-2", "sleep 3600"))
    web_ip = running_ip(net, "web")
    client_ip = running_ip(net, "client")
    cidr1 = net.kubectl("get", "node", "node-1", "-o", "jsonpath={.spec.podCIDR}")
    assert web_ip.startswith(cidr1.rsplit(".", 2)[0] + ".")
    assert net.pod("web")["status"]["podIPs"] == [{"ip": web_ip}]
    assert client_ip != web_ip

    def fetched() -> str:
        return net.kubectl("exec", "client", "--", "busybox", "sh", "-c",
                           f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | "
                           f"busybox nc -w 3 {web_ip} 8080", check=False)
    assert "hello-from-web" in wait_until(fetched, 20)
    # No NAT between pods: the server's own view of the peer is the client's pod IP.
    seen = net.kubectl("exec", "web", "--", "busybox", "sh", "-c",
                       f"busybox ping -c 1 -W 3 {client_ip} >/dev/null && echo reachable")
    assert seen.strip() == "reachable"

    net.kubectl("delete", "pod", "web", "client", "--wait=true", "--timeout=60s")
    for name, root in net.roots.items():
        wait_until(lambda root=root: reservations(root) == [], 20)
        veths = json.loads(in_ns(net.nodes[name], "ip", "-j", "link", "show", "type",
                                 "veth").stdout)
        assert [v["ifname"] for v in veths] == ["eth0"]
        assert not list((root / "network" / "results").glob("*.json"))


def test_host_network_pod_shares_the_node_address(net: Net) -> None:
    net.kubectl("apply", "-f", "-", input=pod_manifest(
        "hostnet", "node-2", "sleep 3600", hostNetwork=True))
    assert running_ip(net, "hostnet") == "192.168.88.12"
    out = net.kubectl("exec", "hostnet", "--", "busybox", "ip", "-o", "-4", "addr")
    assert "192.168.88.12" in out
    net.kubectl("delete", "pod", "hostnet", "--wait=true", "--timeout=60s")
    assert reservations(net.roots["node-2"]) == []


def test_restarted_agent_adopts_the_pod_network_and_sweeps_leaks(net: Net) -> None:
    net.kubectl("apply", "-f", "-", input=pod_manifest("steady", "node-1", "sleep 3600"))
    ip = running_ip(net, "steady")
    sandbox_before = [p.name for p in (net.roots["node-1"] / "runtime" / "sandboxes").iterdir()]
    proc, args = net.agents["node-1"]
    _stop(proc)
    # A reservation the dead agent leaked (ADD done, cache never written).
    ipam = net.roots["node-1"] / "network" / "ipam" / "kubelite"
    (ipam / (ip.rsplit(".", 1)[0] + ".250")).write_text("vanished-sandbox\r\neth0")
    net.agents["node-1"] = (net.spawn(net.nodes["node-1"], "node-1.log", *args), args)
    wait_until(lambda: sorted(reservations(net.roots["node-1"])) == [ip])
    # CHECK passed: the same sandbox and address, no restart.
    assert [p.name for p in (net.roots["node-1"] / "runtime" / "sandboxes").iterdir()] == \
        sandbox_before
    pod = net.pod("steady")
    assert pod["status"]["podIP"] == ip
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    net.kubectl("delete", "pod", "steady", "--wait=true", "--timeout=60s")
    wait_until(lambda: reservations(net.roots["node-1"]) == [], 20)
