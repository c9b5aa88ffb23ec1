"""Node loss, batch and disruption on a real 3-node `kubelite up` cluster, driven by
kubectl: a stopped node's pods come back elsewhere within 15 s; a node cut off the
network kills its own containers (self-fencing) and comes back clean; a Job of 5
completions 2 at a time completes; `kubectl drain` honours a PodDisruptionBudget."""

from __future__ import annotations

import glob
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

SLEEP = ["busybox", "sh", "-c", "exec busybox sleep 3600"]


def wait_until(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": "busybox",
                                         "imagePullPolicy": "IfNotPresent",
                                         "command": SLEEP}]}}}}


def pods(cluster: Any, ns: str, app: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"app={app}")["items"]


def running_ready(items: list[dict]) -> list[dict]:
    return [p for p in items if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or [])]


def namespace(cluster: Any, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    return name


def test_pods_of_a_stopped_node_run_elsewhere_within_15_seconds(cluster: Any) -> None:
    ns = namespace(cluster, "node-loss")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment("web", 6)))
    ready = wait_until(lambda: len(running_ready(pods(cluster, ns, "web"))) == 6 and
                       running_ready(pods(cluster, ns, "web")), timeout=90)
    per_node: dict[str, int] = {}
    for pod in ready:
        per_node[pod["spec"]["nodeName"]] = per_node.get(pod["spec"]["nodeName"], 0) + 1
    victim = max(per_node, key=lambda n: per_node[n])
    stopped = time.monotonic()
    cluster.node("stop", victim)
    try:
        def recovered() -> bool:
            alive = [p for p in running_ready(pods(cluster, ns, "web"))
                     if p["spec"]["nodeName"] != victim]
            return len(alive) == 6

        wait_until(recovered, timeout=30, interval=0.2)
        elapsed = time.monotonic() - stopped
        assert elapsed < 15, f"replacements took {elapsed:.1f} s"
        node = cluster.kubectl_json("get", "node", victim)
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
        assert ("node.kubernetes.io/unreachable", "NoExecute") in taints
        # The lost node's pods are deleted once its agent has certainly fenced itself.
        wait_until(lambda: not [p for p in pods(cluster, ns, "web")
                                if p["spec"].get("nodeName") == victim], timeout=20)
    finally:
        cluster.node("start", victim)
    back = wait_until(lambda: _untainted(cluster, victim), timeout=60)
    assert any(c["type"] == "Ready" and c["status"] == "True"
               for c in back["status"]["conditions"])
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _live_containers(root: str) -> list[str]:
    """Containers of the node's runtime whose shim has not recorded an exit."""
    return [d for d in glob.glob(f"{root}/runtime/containers/*/")
            if not glob.glob(f"{d}exit.json")]


def test_a_cut_off_node_fences_itself_and_comes_back_clean(cluster: Any) -> None:
    ns = namespace(cluster, "fencing")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deployment("cut", 6)))
    ready = wait_until(lambda: len(running_ready(pods(cluster, ns, "cut"))) == 6 and
                       running_ready(pods(cluster, ns, "cut")), timeout=90)
    victim = max({p["spec"]["nodeName"] for p in ready},
                 key=lambda n: sum(p["spec"]["nodeName"] == n for p in ready))
    root = cluster.node_info(victim)["root"]
    assert _live_containers(root)
    cut = time.monotonic()
    cluster.node("cut", victim)
    try:
        # The agent still runs but cannot renew its Lease: it kills its own pods.
        wait_until(lambda: not _live_containers(root), timeout=10, interval=0.1)
        fenced = time.monotonic() - cut
        assert fenced < 6, f"fencing took {fenced:.1f} s"
        wait_until(lambda: len([p for p in running_ready(pods(cluster, ns, "cut"))
                                if p["spec"]["nodeName"] != victim]) == 6, timeout=15)
    finally:
        cluster.node("heal", victim)
    wait_until(lambda: _untainted(cluster, victim), timeout=30)
    assert all(p["spec"]["nodeName"] != victim for p in pods(cluster, ns, "cut"))
    time.sleep(2)
    assert not _live_containers(root)
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _untainted(cluster: Any, name: str) -> dict | None:
    node = cluster.kubectl_json("get", "node", name)
    keys = {t["key"] for t in node["spec"].get("taints") or []}
    ready = any(c["type"] == "Ready" and c["status"] == "True"
                for c in node["status"].get("conditions") or [])
    return node if ready and not keys & {"node.kubernetes.io/unreachable",
                                         "node.kubernetes.io/not-ready"} else None


def test_a_job_of_five_completions_two_at_a_time_completes(cluster: Any) -> None:
    ns = namespace(cluster, "batch")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "five"},
           "spec": {"completions": 5, "parallelism": 2, "template": {"spec": {
               "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
               "containers": [{"name": "main", "image": "busybox",
                               "imagePullPolicy": "IfNotPresent",
                               "command": ["busybox", "sh", "-c", "busybox sleep 0.5"]}]}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
    most = 0

    def complete() -> bool:
        nonlocal most
        obj = cluster.kubectl_json("get", "job", "five", "-n", ns)
        most = max(most, obj.get("status", {}).get("active", 0))
        return any(c["type"] == "Complete" and c["status"] == "True"
                   for c in obj.get("status", {}).get("conditions") or [])

    wait_until(complete, timeout=90)
    obj = cluster.kubectl_json("get", "job", "five", "-n", ns)
    assert obj["status"]["succeeded"] == 5 and most <= 2
    done = cluster.kubectl_json("get", "pods", "-n", ns, "-l", "job-name=five")["items"]
    assert all("batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or [])
               for p in done)
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_drain_evicts_respecting_a_disruption_budget(cluster: Any) -> None:
    ns = namespace(cluster, "drain")
    target = cluster.info["nodes"][0]["name"]
    # All three prefer the node to drain, so the budget must hold evictions back.
    db = deployment("db", 3)
    db["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                  "values": [target]}]}}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(db))
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pdb))
    wait_until(lambda: len(running_ready(pods(cluster, ns, "db"))) == 3, timeout=90)
    wait_until(lambda: cluster.kubectl_json("get", "pdb", "db", "-n", ns)
               .get("status", {}).get("disruptionsAllowed") == 1)
    lowest = [3]
    stop = threading.Event()

    def watch_ready() -> None:
        while not stop.is_set():
            lowest[0] = min(lowest[0], len(running_ready(pods(cluster, ns, "db"))))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_ready)
    watcher.start()
    try:
        out = cluster.kubectl("drain", target, "--ignore-daemonsets", "--delete-emptydir-data",
                              "--timeout=120s", timeout=150)
        assert f"node/{target} drained" in out
    finally:
        stop.set()
        watcher.join()
        cluster.kubectl("uncordon", target)
    assert lowest[0] >= 2
    left = [p for p in pods(cluster, ns, "db") if p["spec"].get("nodeName") == target
            and not p["metadata"].get("deletionTimestamp")]
    assert left == []
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
