"""The scheduler against a real server with hollow nodes (`kubelite simulate`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e


class Simulated:
    def __init__(self, server, *, nodes: int, prefix: str, cpu: str = "16",
                 zones: int = 0) -> None:
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
        self.server = server
        self.prefix = prefix
        self.nodes = nodes
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.cli.main", "simulate", "--kubeconfig",
             str(server.kubeconfig), "--nodes", str(nodes), "--prefix", prefix, "--cpu", cpu,
             "--zones", str(zones)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        assert "registered" in self.proc.stdout.readline()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        names = [f"{self.prefix}-{i}" for i in range(self.nodes)]
        self.server.kubectl("delete", "node", *names, "--ignore-not-found")


def bound(server, ns: str) -> dict[str, str]:
    pods = json.loads(server.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}


def test_burst_never_overcommits_and_reports_insufficient_cpu(server):
    ns = "overcommit"
    server.kubectl("create", "namespace", ns)
    sim = Simulated(server, nodes=10, prefix="oc", cpu="16")
    try:
        # every hollow node keeps a Lease, as a kubelet does
        deadline = time.monotonic() + 10
        while True:
            found = server.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json")
            leases = {item["metadata"]["name"]: item["spec"]
                      for item in json.loads(found.stdout)["items"]}
            if all(f"oc-{i}" in leases for i in range(10)) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert all(leases[f"oc-{i}"]["holderIdentity"] == f"oc-{i}"
                   and leases[f"oc-{i}"]["renewTime"] for i in range(10))
        pods = [{"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": f"p-{i}", "namespace": ns},
                 "spec": {"nodeSelector": {"kubelite.io/hollow": "true"},
                          "containers": [{"name": "c", "image": "busybox",
                                          "resources": {"requests": {"cpu": "1"}}}]}}
                for i in range(200)]
        server.kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": pods}), timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            placed = bound(server, ns)
            if sum(1 for n in placed.values() if n) >= 160:
                break
            time.sleep(0.5)
        time.sleep(1)
        placed = bound(server, ns)
        per_node: dict[str, int] = {}
        for node in placed.values():
            if node:
                per_node[node] = per_node.get(node, 0) + 1
        assert sum(per_node.values()) == 160
        assert max(per_node.values()) <= 16
        pending = [name for name, node in placed.items() if not node]
        assert len(pending) == 40
        described = server.kubectl("describe", "pod", pending[0], "-n", ns).stdout
        assert "FailedScheduling" in described
        assert "Insufficient cpu" in described
    finally:
        server.kubectl("delete", "namespace", ns, "--timeout=60s")
        sim.stop()


def test_pending_pod_is_scheduled_soon_after_a_fitting_node_appears(server):
    ns = "late-node"
    server.kubectl("create", "namespace", ns)
    server.kubectl("run", "wants-zone", "-n", ns, "--image=busybox",
                   "--overrides", json.dumps({"spec": {"nodeSelector": {"zone": "new"}}}))
    time.sleep(1)
    assert bound(server, ns) == {"wants-zone": ""}
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "late", "labels": {"zone": "new"}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
    try:
        start = time.monotonic()
        server.kubectl("create", "-f", "-", input=json.dumps(node))
        while time.monotonic() - start < 5 and not bound(server, ns)["wants-zone"]:
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        assert bound(server, ns)["wants-zone"] == "late"
        assert elapsed < 2.0  # kubectl's own start-up is in this figure
        events = server.kubectl("get", "events", "-n", ns).stdout
        assert "Successfully assigned late-node/wants-zone to late" in events
    finally:
        # No agent runs on "late" to confirm the pod's end: force it, as a user would.
        server.kubectl("delete", "pod", "wants-zone", "-n", ns, "--force", "--grace-period=0")
        server.kubectl("delete", "namespace", ns, "--timeout=60s")
        server.kubectl("delete", "node", "late", "--ignore-not-found")


def wait_for(predicate, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_zone_spread_of_a_deployment_lands_three_per_zone(server):
    ns = "spread"
    server.kubectl("create", "namespace", ns)
    sim = Simulated(server, nodes=6, prefix="zs", cpu="16", zones=3)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 9, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "nodeSelector": {"kubelite.io/hollow": "true"},
                     "topologySpreadConstraints": [{
                         "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                         "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app": "web"}}}],
                     "containers": [{"name": "c", "image": "busybox"}]}}}}
    try:
        server.kubectl("apply", "-f", "-", input=json.dumps(deployment))
        placed = wait_for(lambda: (lambda b: b if len(b) == 9 and all(b.values()) else None)(
            bound(server, ns)))
        assert placed, bound(server, ns)
        zones: dict[str, int] = {}
        for node in placed.values():
            zone = f"zone-{int(node.split('-')[1]) % 3}"
            zones[zone] = zones.get(zone, 0) + 1
        assert sorted(zones.values()) == [3, 3, 3]
    finally:
        server.kubectl("delete", "namespace", ns, "--timeout=60s")
        sim.stop()


def test_a_high_priority_pod_preempts_the_cheapest_victims(server):
    ns = "preempt"
    server.kubectl("create", "namespace", ns)
    classes = [{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value}
               for name, value in (("e2e-low", 10), ("e2e-mid", 20), ("e2e-high", 1000))]
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                         "items": classes}))
    sim = Simulated(server, nodes=2, prefix="pe", cpu="4")

    def pod(name: str, cls: str, cpu: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"priorityClassName": cls,
                         "nodeSelector": {"kubelite.io/hollow": "true"},
                         "containers": [{"name": "c", "image": "busybox",
                                         "resources": {"requests": {"cpu": cpu}}}]}}
    try:
        # pe-0 ends up with two cheap pods, pe-1 with one more important pod.
        server.kubectl("create", "-f", "-", input=json.dumps(pod("mid", "e2e-mid", "4")))
        assert wait_for(lambda: bound(server, ns).get("mid"))
        fillers = [pod("low-a", "e2e-low", "2"), pod("low-b", "e2e-low", "2")]
        server.kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": fillers}))
        assert wait_for(lambda: len(b := bound(server, ns)) == 3 and all(b.values()))
        placed = bound(server, ns)
        low_node = placed["low-a"]
        assert placed["low-b"] == low_node and placed["mid"] != low_node
        server.kubectl("create", "-f", "-", input=json.dumps(pod("vip", "e2e-high", "3")))
        assert wait_for(lambda: bound(server, ns).get("vip"), timeout=30) == low_node
        remaining = bound(server, ns)
        assert "mid" in remaining and "low-a" not in remaining and "low-b" not in remaining
        events = server.kubectl("get", "events", "-n", ns).stdout
        assert "Preempted" in events
    finally:
        server.kubectl("delete", "namespace", ns, "--timeout=60s")
        server.kubectl("delete", "priorityclass", "e2e-low", "e2e-mid", "e2e-high")
        sim.stop()


def test_explain_placement_shows_filters_scores_and_choice(server):
    ns = "explain"
    server.kubectl("create", "namespace", ns)
    sim = Simulated(server, nodes=3, prefix="ex", cpu="2")
    try:
        server.kubectl("run", "big", "-n", ns, "--image=busybox", "--overrides", json.dumps(
            {"spec": {"nodeSelector": {"kubelite.io/hollow": "true"}, "containers": [
                {"name": "big", "image": "busybox",
                 "resources": {"requests": {"cpu": "3"}}}]}}))
        server.kubectl("run", "small", "-n", ns, "--image=busybox", "--overrides", json.dumps(
            {"spec": {"nodeSelector": {"kubelite.io/hollow": "true"}}}))
        assert wait_for(lambda: bound(server, ns).get("small"))
        described = wait_for(lambda: "FailedScheduling" in (d := server.kubectl(
            "describe", "pod", "big", "-n", ns).stdout) and d)
        assert ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
                "available: 3 No preemption victims found for incoming pod..") in described
        cmd = [sys.executable, "-m", "kubelite.cli.main", "explain-placement", "-n", ns,
               "--kubeconfig", str(server.kubeconfig)]
        pending = subprocess.run([*cmd, "big"], capture_output=True, text=True, timeout=60)
        assert pending.returncode == 0, pending.stderr
        for i in range(3):
            assert f"ex-{i}  NodeResourcesFit: Insufficient cpu" in pending.stdout
        assert "no node fits explain/big: 0/3 nodes are available: 3 Insufficient cpu." in (
            pending.stdout)
        placed = subprocess.run([*cmd, "small"], capture_output=True, text=True, timeout=60)
        lines = placed.stdout.splitlines()
        assert lines[0].split()[:2] == ["NODE", "FILTER"]
        assert "NodeResourcesFit(x1)" in lines[0] and "TOTAL" in lines[0]
        assert any("<- chosen" in line and "passed" in line for line in lines)
        assert any(line.startswith("chosen: ex-") for line in lines)
        assert f"explain/small is bound to {bound(server, ns)['small']}" in placed.stdout
    finally:
        server.kubectl("delete", "namespace", ns, "--timeout=60s")
        sim.stop()
