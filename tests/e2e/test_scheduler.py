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
