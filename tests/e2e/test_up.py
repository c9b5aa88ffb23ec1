"""`kubelite up` as a user meets it, on a real 2-node cluster: Ready nodes and
`kubelite status`, busybox and a loaded image running, a node stopped and started,
cut off and healed, the whole process tree killed with SIGKILL and brought back by
`kubelite up`, and `kubelite down` leaving nothing of the cluster on the host.

The tests share one cluster and run in file order; the last one takes it down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.cluster.layout import cluster_name
from tests.e2e.cluster import KUBELITE, Cluster, need_host

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


def host_state(name: str, data_dir: Path, prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """What of cluster `name` exists on the host: each kind of thing it creates,
    filtered by the cluster's names and address prefixes (other clusters run
    beside it on this machine)."""
    def lines(*argv: str, keys: tuple[str, ...] = (name,)) -> list[str]:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        return sorted(line for line in out.splitlines() if any(k in line for k in keys))

    processes = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if str(data_dir) in cmdline or f"kubelite-{name}" in cgroup:
            processes.append(f"{entry.name} {cmdline}")
    return {
        "netns": lines("ip", "netns"),
        "links": lines("ip", "-o", "link"),
        "routes": lines("ip", "route", keys=(name, *prefixes)),
        "nft": lines("nft", "list", "tables"),
        "forward": lines("iptables", "-w", "-S", "FORWARD"),
        "mounts": sorted(m for m in Path("/proc/mounts").read_text().splitlines()
                         if str(data_dir) in m),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/kubelite-{name}")),
        "processes": sorted(processes),
    }


class UpCluster(Cluster):
    @property
    def name(self) -> str:
        return cluster_name(self.data_dir)

    def state(self) -> dict[str, list[str]]:
        # Routes to the pod CIDRs carry the cluster CIDR's first two octets (the
        # helper picks 10.N.0.0/16); routes on the bridge name the bridge.
        return host_state(self.name, self.data_dir,
                          (self.cluster_cidr.rsplit(".", 2)[0] + ".",))

    def ready(self, node: str) -> str:
        obj = self.kubectl_json("get", "node", node)
        return next((c["status"] for c in obj["status"].get("conditions", [])
                     if c["type"] == "Ready"), "")

    def pod_phase(self, name: str) -> str:
        out = self.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
        return out.strip()

    def runc_containers(self, node: str) -> list[str]:
        root = Path(self.node_info(node)["root"]) / "runtime" / "runc"
        out = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True,
                             text=True, timeout=30).stdout
        return out.split()


@pytest.fixture(scope="module")
def up() -> Iterator[tuple[UpCluster, dict[str, list[str]]]]:
    if reason := need_host():
        pytest.skip(reason)
    cluster = UpCluster(nodes=2)
    before = cluster.state()
    try:
        cluster.up()
        yield cluster, before
    finally:
        cluster.down()


def test_up_gives_ready_nodes_a_state_file_and_status(
        up: tuple[UpCluster, dict[str, list[str]]]) -> None:
    cluster, _ = up
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2"]
    for node in nodes:
        assert cluster.ready(node["metadata"]["name"]) == "True"
        assert node["spec"]["podCIDR"].startswith(cluster.cluster_cidr.rsplit(".", 2)[0] + ".")
    info = cluster.info
    assert info["ready"] is True and info["name"] == cluster.name
    assert info["server"] == f"https://{info['gateway']}:{cluster.port}"
    assert os.kill(info["supervisor_pid"], 0) is None
    for node in info["nodes"]:
        assert os.kill(node["pid"], 0) is None
        assert Path("/run/netns", node["netns"]).exists()
    status = cluster.kubelite("status").stdout.splitlines()
    assert status[0].startswith(f"cluster {cluster.name}: running (pid {info['supervisor_pid']})")
    rows = {line.split()[0]: line.split() for line in status[2:]}
    for node in info["nodes"]:
        assert rows[node["name"]][1:5] == ["Ready", "running", "ok", node["ip"]]


def test_busybox_and_a_loaded_image_run_on_every_node(
        up: tuple[UpCluster, dict[str, list[str]]], tmp_path: Path) -> None:
    cluster, _ = up
    context = tmp_path / "image"
    (context / "rootfs" / "etc").mkdir(parents=True)
    (context / "rootfs" / "etc" / "greeting").write_text("loaded, not pulled\n")
    (context / "image.json").write_text(json.dumps(
        {"tag": "kubelite.local/e2e-up:1", "cmd": ["sh", "-c", "cat /etc/greeting; sleep 3600"]}))
    archive = tmp_path / "e2e-up.tar"
    subprocess.run([*KUBELITE, "image", "build", str(context), "-o", str(archive)], check=True,
                   capture_output=True, timeout=60)
    # `image load` takes --data-dir like every cluster command (added by kubelite()).
    loaded = cluster.kubelite("image", "load", str(archive)).stdout
    assert loaded.splitlines() == [f"node-{k}: loaded kubelite.local/e2e-up:1" for k in (1, 2)]
    # busybox under its Docker Hub name and the default pull policy (Always, for
    # :latest): the preloaded image, as no registry is reachable.
    pods: list[tuple[str, dict[str, Any]]] = [("bb", {"containers": [{
        "name": "c", "image": "busybox",
        "command": ["sh", "-c", "echo hello from busybox; sleep 3600"]}]})]
    pods += [(f"loaded-{node}", {"nodeName": node, "containers": [{
        "name": "c", "image": "kubelite.local/e2e-up:1", "imagePullPolicy": "Never"}]})
        for node in ("node-1", "node-2")]
    for name, spec in pods:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
    try:
        for name, *_ in pods:
            wait_for(f"pod {name} Running", lambda n=name: cluster.pod_phase(n) == "Running")
        assert cluster.kubectl("logs", "bb").strip() == "hello from busybox"
        for name in ("loaded-node-1", "loaded-node-2"):
            assert cluster.kubectl("logs", name).strip() == "loaded, not pulled"
    finally:
        cluster.kubectl("delete", "pod", *(p[0] for p in pods), "--grace-period=0", "--force",
                        "--wait=false", check=False)


def test_node_stop_removes_agent_and_containers_and_start_brings_it_back(
        up: tuple[UpCluster, dict[str, list[str]]]) -> None:
    cluster, _ = up
    node = cluster.node_info("node-2")
    cluster.kubectl("run", "pinned", "--image=busybox", "--restart=Never",
                    '--overrides={"spec": {"nodeName": "node-2"}}', "--", "sleep", "3600")
    try:
        wait_for("pod pinned Running", lambda: cluster.pod_phase("pinned") == "Running")
        assert cluster.runc_containers("node-2")
        assert "node-2 stopped" in cluster.node("stop", "node-2")
        assert cluster.runc_containers("node-2") == []
        with pytest.raises(ProcessLookupError):
            os.kill(node["pid"], 0)
        assert not [p for p in cluster.state()["processes"] if node["cgroup_root"] in p
                    or "--node-name node-2" in p]
        status = cluster.kubelite("status").stdout
        assert any(line.split()[:1] == ["node-2"] and "stopped" in line
                   for line in status.splitlines())
        wait_for("node-2 NotReady or Unknown", lambda: cluster.ready("node-2") in (
            "False", "Unknown"))
        assert "node-2 started" in cluster.node("start", "node-2")
        wait_for("node-2 Ready", lambda: cluster.ready("node-2") == "True")
    finally:
        cluster.kubectl("delete", "pod", "pinned", "--grace-period=0", "--force",
                        "--wait=false", check=False)


def test_node_cut_stops_its_lease_and_heal_brings_it_back(
        up: tuple[UpCluster, dict[str, list[str]]]) -> None:
    cluster, _ = up

    def renewed() -> str:
        lease = cluster.kubectl_json("-n", "kube-node-lease", "get", "lease", "node-1")
        return lease["spec"]["renewTime"]

    assert "cut off" in cluster.node("cut", "node-1")
    try:
        wait_for("node-1 NotReady or Unknown", lambda: cluster.ready("node-1") in (
            "False", "Unknown"))
        cut_at = renewed()
        time.sleep(3)  # three lease intervals
        assert renewed() == cut_at
        assert cluster.node_exec("node-1", "busybox", "ping", "-c", "1", "-W", "1",
                                 cluster.info["gateway"]).returncode != 0
    finally:
        assert "back on" in cluster.node("heal", "node-1")
    wait_for("node-1 Ready", lambda: cluster.ready("node-1") == "True")
    assert renewed() != cut_at


def _role_processes(supervisor: int) -> list[int]:
    """The supervisor and its descendants that are kubelite roles (not the
    containers' shims, which outlive an agent as containerd's shims do)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [supervisor]
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"kubelite.cli.main" in cmdline:
            found.append(pid)
            todo += children.get(pid, [])
    return found


def test_kill_9_of_the_process_tree_then_up_brings_back_objects_and_pods(
        up: tuple[UpCluster, dict[str, list[str]]]) -> None:
    cluster, _ = up
    cluster.kubectl("create", "configmap", "survivor", "--from-literal=k=v")
    cluster.kubectl("create", "deployment", "sleeper", "--image=busybox", "--replicas=2",
                    "--", "sleep", "3600")
    cluster.kubectl("rollout", "status", "deployment/sleeper", "--timeout=60s")
    tree = _role_processes(cluster.info["supervisor_pid"])
    assert len(tree) >= 5  # supervisor, server, controller-manager, two agents
    for sig in (signal.SIGSTOP, signal.SIGKILL):  # all at once, as a power cut
        for pid in tree:
            os.kill(pid, sig)
    wait_for("the killed processes to go", lambda: not any(
        Path(f"/proc/{pid}").exists() and "(Z)" not in Path(f"/proc/{pid}/status").read_text()
        for pid in tree), timeout=10)
    cluster.up()
    assert cluster.info["supervisor_pid"] not in tree
    assert cluster.kubectl_json("get", "configmap", "survivor")["data"] == {"k": "v"}
    cluster.kubectl("rollout", "status", "deployment/sleeper", "--timeout=60s")
    pods = cluster.kubectl_json("get", "pods", "-l", "app=sleeper")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    assert len(running) >= 2
    cluster.kubectl("delete", "deployment", "sleeper", "--wait=false")


def test_down_leaves_nothing_of_the_cluster_on_the_host(
        up: tuple[UpCluster, dict[str, list[str]]]) -> None:
    cluster, before = up
    during = cluster.state()
    # The bridge gets FORWARD exceptions only where that chain can drop traffic.
    listing = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True,
                             text=True).stdout.splitlines()
    filtering = any(line.startswith("-A") or line == "-P FORWARD DROP" for line in listing)
    for kind in ("netns", "links", "routes", "cgroups", "processes",
                 *(("forward",) if filtering else ())):
        assert during[kind], f"the snapshot finds no {kind} of a running cluster"
    assert not any(before.values())
    cluster.kubelite("down")
    assert cluster.state() == before
    doc = json.loads((cluster.data_dir / "cluster.json").read_text())
    assert doc["stopped"] is True and doc["ready"] is False
    cluster.kubelite("down", "--purge")
    assert not cluster.data_dir.exists()
