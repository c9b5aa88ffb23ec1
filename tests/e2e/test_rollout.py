"""A rolling update on a real cluster (agents, runc, readiness probes), driven by
kubectl: with maxUnavailable 0 the number of Ready pods never drops below the
replica count, and `rollout undo` returns to the previous ReplicaSet."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPLICAS = 6


def deployment(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
        "spec": {
            "replicas": REPLICAS, "selector": {"matchLabels": {"app": "roll"}},
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 2}},
            "template": {"metadata": {"labels": {"app": "roll"}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 3600"],
                    "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                       "periodSeconds": 1}}]}}}}


def ready_pods(cluster: Any) -> int:
    items = cluster.kubectl_json("get", "pods", "-l", "app=roll")["items"]
    return sum(1 for p in items if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (p.get("status") or {}).get("conditions") or []))


def test_rolling_update_keeps_every_replica_ready_and_undo_goes_back(cluster: Any) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment("busybox:stable")))
    try:
        cluster.kubectl("rollout", "status", "deployment/roll", "--timeout=120s", timeout=150)
        lowest = [REPLICAS]
        stop = threading.Event()

        def observe() -> None:
            while not stop.is_set():
                lowest[0] = min(lowest[0], ready_pods(cluster))

        watcher = threading.Thread(target=observe)
        watcher.start()
        try:
            cluster.kubectl("set", "image", "deployment/roll", "app=busybox:latest")
            out = cluster.kubectl("rollout", "status", "deployment/roll", "--timeout=120s",
                                  timeout=150)
            assert "successfully rolled out" in out
        finally:
            stop.set()
            watcher.join()
        assert lowest[0] >= REPLICAS
        images = {p["spec"]["containers"][0]["image"] for p in cluster.kubectl_json(
            "get", "pods", "-l", "app=roll")["items"] if not p["metadata"].get(
            "deletionTimestamp")}
        assert images == {"busybox:latest"}
        cluster.kubectl("rollout", "undo", "deployment/roll")
        cluster.kubectl("rollout", "status", "deployment/roll", "--timeout=120s", timeout=150)
        dep = cluster.kubectl_json("get", "deployment", "roll")
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:stable"
        sets = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
                for rs in cluster.kubectl_json("get", "rs", "-l", "app=roll")["items"]}
        assert sets == {"busybox:stable": REPLICAS, "busybox:latest": 0}
    finally:
        cluster.kubectl("delete", "deployment", "roll", "--wait=false", check=False)
