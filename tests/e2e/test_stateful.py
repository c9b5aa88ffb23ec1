"""Stateful workloads on a real `kubelite up` cluster: ordered StatefulSet pods keep
their local-path data across re-creation; a DaemonSet runs on every node."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("tests.e2e.cluster", reason="tests/e2e/cluster.py (the cluster helper) is not there yet")

STATEFULSET = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 3
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: ["sh", "-c", "[ -f /data/ordinal ] || echo ${HOSTNAME##*-} > /data/ordinal; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
        readinessProbe: {exec: {command: ["cat", "/data/ordinal"]}, periodSeconds: 1}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}
"""

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, command: ["sleep", "3600"]}]
"""


def _wait(check, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.5)


def test_statefulset_comes_up_in_order_and_keeps_its_data(cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=STATEFULSET)
    try:
        def all_ready() -> bool:
            st = cluster.kubectl_json("get", "statefulset", "web").get("status") or {}
            return st.get("readyReplicas") == 3
        _wait(all_ready, timeout=120)
        pods = {p["metadata"]["name"]: p for p in cluster.kubectl_json(
            "get", "pods", "-l", "app=web")["items"]}
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        created = [pods[f"web-{n}"]["metadata"]["creationTimestamp"] for n in range(3)]
        assert created == sorted(created)
        started = [pods[f"web-{n}"]["status"]["startTime"] for n in range(3)]
        assert started == sorted(started)
        for n in range(3):
            out = cluster.kubectl("exec", f"web-{n}", "--", "cat", "/data/ordinal")
            assert out.strip() == str(n)
        # A marker written now must survive the pod's re-creation.
        cluster.kubectl("exec", "web-1", "--", "sh", "-c", "echo kept > /data/marker")
        uid = pods["web-1"]["metadata"]["uid"]
        cluster.kubectl("delete", "pod", "web-1", "--wait=false")

        def back() -> bool:
            p = cluster.kubectl_json("get", "pod", "web-1")
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (p.get("status") or {}).get("conditions") or [])
            return p["metadata"]["uid"] != uid and ready
        _wait(back)
        assert cluster.kubectl("exec", "web-1", "--", "cat", "/data/ordinal").strip() == "1"
        assert cluster.kubectl("exec", "web-1", "--", "cat", "/data/marker").strip() == "kept"
    finally:
        cluster.kubectl("delete", "statefulset,service", "web", "--wait=false", check=False)
        cluster.kubectl("delete", "pvc", "-l", "app=web", "--wait=false", check=False)


def test_daemonset_runs_one_pod_per_node(cluster) -> None:
    nodes = {n["name"] for n in cluster.info["nodes"]}
    cluster.kubectl("apply", "-f", "-", input=DAEMONSET)
    try:
        def placed() -> dict[str, str] | None:
            items = cluster.kubectl_json("get", "pods", "-l", "app=node-agent")["items"]
            running = {p["spec"].get("nodeName"): p["metadata"]["name"] for p in items
                       if (p.get("status") or {}).get("phase") == "Running"}
            return running if set(running) == nodes and len(items) == len(nodes) else None
        _wait(placed)
        st = cluster.kubectl_json("get", "daemonset", "node-agent")["status"]
        assert st["desiredNumberScheduled"] == len(nodes)
        assert st["currentNumberScheduled"] == len(nodes)
    finally:
        cluster.kubectl("delete", "daemonset", "node-agent", "--wait=false", check=False)
