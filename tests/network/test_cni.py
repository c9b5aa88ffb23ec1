"""The pod network on Debian's real CNI plugins: a node namespace with two pod
namespaces attached to its bridge, addresses from the node's podCIDR, traffic
between them, host ports, and nothing left after DEL and sweep."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelite.network.cni import Attachment, CNIError, NetworkList, exec_plugin
from kubelite.network.podnet import PodNetwork, port_mappings
from kubelite.network.sandboxes import NetworkedRuntime
from kubelite.runtime.base import Sandbox, SandboxConfig, SandboxID
from tests.network.netns_helpers import in_ns, namespaces, sh, tag_of

SUBNET = "10.244.7.0/24"


@pytest.fixture
def nets(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    tag = tag_of(tmp_path)
    with namespaces(f"klcni{tag}n", f"klcni{tag}a", f"klcni{tag}b") as made:
        yield made[0], made[1], made[2]


def ns_path(ns: str) -> str:
    return f"/var/run/netns/{ns}"


async def test_two_pods_on_one_node_reach_each_other_and_leave_nothing(
        tmp_path: Path, nets: tuple[str, str, str]) -> None:
    node, a, b = nets
    net = PodNetwork(tmp_path / "network", netns=node)
    net.configure(SUBNET)
    ip_a = await net.attach("sandbox-a", ns_path(a), namespace="default", name="a", uid="u-a")
    ip_b = await net.attach("sandbox-b", ns_path(b), namespace="default", name="b", uid="u-b")
    assert ip_a[0].startswith("10.244.7.") and ip_b[0].startswith("10.244.7.")
    assert ip_a != ip_b and ip_a[0] != "10.244.7.1"  # .1 is the bridge (gateway)
    assert await net.ips("sandbox-a") == ip_a

    # The pod side: eth0 with the address, default route via the bridge.
    routes = json.loads(in_ns(a, "ip", "-j", "route").stdout)
    assert any(r["dst"] == "default" and r.get("gateway") == "10.244.7.1" for r in routes)
    assert in_ns(a, "busybox", "ping", "-c", "1", "-W", "2", ip_b[0]).returncode == 0
    assert in_ns(b, "busybox", "ping", "-c", "1", "-W", "2", "10.244.7.1").returncode == 0
    link = json.loads(in_ns(node, "ip", "-j", "-d", "link", "show", "cni0").stdout)[0]
    assert link["linkinfo"]["info_kind"] == "bridge"

    await net.check("sandbox-a", ns_path(a))
    # CHECK notices a pod whose interface went away.
    in_ns(b, "ip", "link", "del", "eth0")
    with pytest.raises(CNIError):
        await net.check("sandbox-b", ns_path(b))

    await net.detach("sandbox-a", ns_path(a))
    await net.detach("sandbox-b", ns_path(b))
    await net.detach("sandbox-b", ns_path(b))  # DEL again is harmless
    assert net.reservations() == {}
    assert not list((tmp_path / "network" / "results").iterdir())
    assert in_ns(a, "ip", "link", "show", "eth0", check=False).returncode != 0
    veths = json.loads(in_ns(node, "ip", "-j", "link", "show", "type", "veth").stdout)
    assert veths == []


async def test_sweep_releases_pods_that_are_gone(tmp_path: Path,
                                                 nets: tuple[str, str, str]) -> None:
    node, a, b = nets
    net = PodNetwork(tmp_path / "network", netns=node)
    net.configure(SUBNET)
    kept = await net.attach("keep", ns_path(a), namespace="ns", name="a", uid="u-a")
    await net.attach("gone", ns_path(b), namespace="ns", name="b", uid="u-b")
    # A reservation without a cached result: the agent died between ADD and the cache.
    stray = tmp_path / "network" / "ipam" / "kubelite" / "10.244.7.200"
    stray.write_text("crashed\r\neth0")
    # The pod's namespace is gone too (unmounted, an empty file left behind).
    sh("ip", "netns", "del", b)
    async def live() -> set[str]:
        return {"keep"}
    assert await net.sweep(live) == 2
    assert set(net.reservations().values()) == {"keep"}
    assert await net.ips("keep") == kept
    assert await net.ips("gone") == ()
    await net.detach("keep", ns_path(a))
    assert net.reservations() == {}


async def test_host_port_reaches_the_pod_through_the_node(tmp_path: Path,
                                                          nets: tuple[str, str, str]) -> None:
    node, a, outside = nets
    net = PodNetwork(tmp_path / "network", netns=node)
    net.configure(SUBNET)
    pod = {"spec": {"containers": [{"name": "c", "ports": [
        {"containerPort": 8080, "hostPort": 18080}, {"containerPort": 53, "protocol": "UDP"}]}]}}
    ports = port_mappings(pod)
    assert ports == ((18080, 8080, "TCP", ""),)
    ip = await net.attach("hp", ns_path(a), namespace="ns", name="a", uid="u", ports=ports)
    # A client outside the node, reaching the node's own address.
    sh("ip", "-n", node, "link", "add", "vout", "type", "veth", "peer", "name", "eth0",
       "netns", outside)
    sh("ip", "-n", node, "addr", "add", "192.168.250.2/24", "dev", "vout")
    sh("ip", "-n", node, "link", "set", "vout", "up")
    sh("ip", "-n", outside, "addr", "add", "192.168.250.3/24", "dev", "eth0")
    sh("ip", "-n", outside, "link", "set", "eth0", "up")
    server = subprocess.Popen(
        ["nsenter", f"--net={ns_path(a)}", "busybox", "sh", "-c",
         f"echo hello-from-{ip[0]} | busybox nc -l -p 8080"], stdout=subprocess.DEVNULL)
    try:
        out = ""
        deadline = time.monotonic() + 10
        while not out and time.monotonic() < deadline:
            out = in_ns(outside, "busybox", "nc", "-w", "2", "192.168.250.2", "18080",
                        check=False).stdout
            time.sleep(0.1)
        assert out.strip() == f"hello-from-{ip[0]}"
    finally:
        server.kill()
        server.wait()
    await net.detach("hp", ns_path(a))
    assert "18080" not in in_ns(node, "iptables-save", "-t", "nat").stdout


async def test_network_list_runs_plugins_in_order_with_prev_result(
        tmp_path: Path, nets: tuple[str, str, str]) -> None:
    node, a, _b = nets
    conflist = {"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}
    net = NetworkList(conflist, cache_dir=tmp_path / "cache", netns=node)
    result = await net.add(Attachment(container_id="c1", netns=ns_path(a), ifname="lo"))
    assert result["cniVersion"] == "1.0.0"
    assert (tmp_path / "cache" / "lo-only-c1-lo.json").exists()
    await net.delete(Attachment(container_id="c1", netns=ns_path(a), ifname="lo"))
    assert not (tmp_path / "cache" / "lo-only-c1-lo.json").exists()


async def test_plugin_errors_carry_the_plugins_code_and_message(tmp_path: Path) -> None:
    with pytest.raises(CNIError) as err:
        # loopback touches nothing before it opens the namespace (bridge would
        # create its bridge in the current one first).
        await exec_plugin("loopback", "ADD", {"cniVersion": "1.0.0", "name": "x",
                                               "type": "loopback"},
                          Attachment(container_id="c", netns="/nonexistent/ns"))
    assert err.value.plugin == "loopback" and err.value.msg and err.value.code
    with pytest.raises(CNIError, match="not found"):
        await exec_plugin("no-such-plugin", "ADD", {}, Attachment(container_id="c", netns=""))


async def test_not_ready_without_a_pod_cidr(tmp_path: Path) -> None:
    net = PodNetwork(tmp_path / "network")
    with pytest.raises(CNIError, match="no podCIDR"):
        await net.attach("s", "/nonexistent", namespace="n", name="p", uid="u", wait=0.05)


class FakeRuntime:
    """Sandboxes whose network namespaces the test made; the rest of a runtime unused."""

    def __init__(self, netns_paths: list[str]) -> None:
        self.free = list(netns_paths)
        self.sandboxes: dict[str, Sandbox] = {}

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        sid = SandboxID(f"sb-{config.name}")
        sb = Sandbox(id=sid, config=config,
                     netns_path="" if config.host_network else self.free.pop(0))
        self.sandboxes[sid] = sb
        return sb

    async def remove_sandbox(self, sandbox_id: SandboxID) -> None:
        self.sandboxes.pop(sandbox_id, None)

    async def list_sandboxes(self) -> list[Sandbox]:
        return list(self.sandboxes.values())


async def test_networked_runtime_attaches_checks_on_adoption_and_detaches(
        tmp_path: Path, nets: tuple[str, str, str]) -> None:
    node, a, b = nets
    inner = FakeRuntime([ns_path(a), ns_path(b)])
    net = PodNetwork(tmp_path / "network", netns=node)
    net.configure(SUBNET)
    rt = NetworkedRuntime(inner, net)  # type: ignore[arg-type]
    first = await rt.create_sandbox(SandboxConfig(pod_uid="u1", name="p1", namespace="ns",
                                                  hostname="p1"))
    second = await rt.create_sandbox(SandboxConfig(pod_uid="u2", name="p2", namespace="ns",
                                                   hostname="p2"))
    host = await rt.create_sandbox(SandboxConfig(pod_uid="u3", name="p3", namespace="ns",
                                                 hostname="p3", host_network=True))
    assert first.ips and second.ips and host.ips == ()

    # A new agent adopts them: CHECK finds p2's interface gone and reports it notready.
    in_ns(b, "ip", "link", "del", "eth0")
    adopted = {sb.config.name: sb for sb in
               await NetworkedRuntime(inner, net).list_sandboxes()}  # type: ignore[arg-type]
    assert adopted["p1"].state == "ready" and adopted["p1"].ips == first.ips
    assert adopted["p2"].state == "notready"
    assert adopted["p3"].state == "ready"

    for sb in (first, second, host):
        await rt.remove_sandbox(sb.id)
    assert net.reservations() == {}
