"""Safe stateful failover on a real 3-node `kubelite up` cluster: the node running
web-0 of a StatefulSet is cut off the network; web-0 comes back Running on another
node within 20 s, never runs twice at once (seen by a watch of the API and proven by
the runtimes' own records: the old container's exit precedes the new one's start),
and the healed node returns Ready without the stale pod."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

NS = "failover"


def statefulset(name: str, replicas: int) -> list[dict[str, Any]]:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"clusterIP": "None", "selector": {"app": name},
                        "ports": [{"port": 80}]}}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
           "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "busybox",
                                        "imagePullPolicy": "IfNotPresent",
                                        "command": ["busybox", "sh", "-c",
                                                    "exec busybox sleep 3600"]}]}}}}
    return [service, sts]


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def is_ready(pod: dict[str, Any]) -> bool:
    return (pod["status"].get("phase") == "Running"
            and not pod["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in pod["status"].get("conditions") or []))


class PodWatch:
    """`kubectl get pods -w` in a thread; after every event it checks that no pod name
    is Running (as the API last reported it, until deleted) on two nodes at once."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
               "HOME": str(cluster.data_dir.parent)}
        self.proc = subprocess.Popen(
            ["kubectl", "get", "pods", "-n", namespace, "-w", "-o", "json",
             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)
        # name -> uid -> (phase, node) of every copy not yet deleted.
        self.live: dict[str, dict[str, tuple[str, str]]] = {}
        self.events: list[tuple[float, str, str, str, str, str]] = []
        self.violations: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    event, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                buf = buf.lstrip()[end:]
                self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        pod = event["object"]
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        phase, node = pod["status"].get("phase", ""), pod["spec"].get("nodeName", "")
        self.events.append((time.time(), event["type"], name, uid, phase, node))
        copies = self.live.setdefault(name, {})
        if event["type"] == "DELETED":
            copies.pop(uid, None)
            return
        copies[uid] = (phase, node)
        running = {n for p, n in copies.values() if p == "Running"}
        if len(running) > 1:
            self.violations.append(f"{name} Running on {sorted(running)} at {time.time()}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(5)


def containers_of(root: str, pod_uid: str) -> list[dict[str, Any]]:
    """The runtime's records of a pod's containers on one node: labels, start and exit."""
    out = []
    for d in Path(root, "runtime", "containers").glob("*/"):
        try:
            meta = json.loads((d / "container.json").read_text())
        except (OSError, ValueError):
            continue
        if meta["labels"].get("io.kubernetes.pod.uid") != pod_uid:
            continue
        started = d / "started"
        ended = d / "exit.json"
        out.append({"id": meta["id"],
                    "started": float(started.read_text()) if started.exists() else None,
                    "finished": json.loads(ended.read_text())["finished_at"]
                    if ended.exists() else None})
    return out


def untainted_ready(cluster: Any, name: str) -> bool:
    node = cluster.kubectl_json("get", "node", name)
    keys = {t["key"] for t in node["spec"].get("taints") or []}
    ready = any(c["type"] == "Ready" and c["status"] == "True"
                for c in node["status"].get("conditions") or [])
    return ready and not keys & {"node.kubernetes.io/unreachable",
                                 "node.kubernetes.io/not-ready"}


def test_a_cut_off_stateful_pod_moves_once_and_never_runs_twice(cluster: Any) -> None:
    cluster.kubectl("create", "namespace", NS)
    for obj in statefulset("web", 2):
        cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(obj))

    def both_ready() -> dict[str, dict[str, Any]] | None:
        items = cluster.kubectl_json("get", "pods", "-n", NS, "-l", "app=web")["items"]
        ready = {p["metadata"]["name"]: p for p in items if is_ready(p)}
        return ready if len(ready) == 2 else None

    old = wait_until(both_ready, timeout=90)["web-0"]
    victim, old_uid = old["spec"]["nodeName"], old["metadata"]["uid"]
    victim_root = cluster.node_info(victim)["root"]
    assert [c for c in containers_of(victim_root, old_uid) if c["finished"] is None]
    watch = PodWatch(cluster, NS)
    cut = time.monotonic()
    cluster.node("cut", victim)
    try:
        def moved() -> dict[str, Any] | None:
            try:
                pod = cluster.kubectl_json("get", "pod", "web-0", "-n", NS)
            except AssertionError:
                return None
            ok = pod["metadata"]["uid"] != old_uid and is_ready(pod)
            return pod if ok else None

        new = wait_until(moved, timeout=20)
        elapsed = time.monotonic() - cut
        assert new["spec"]["nodeName"] != victim
        # Read while still cut: healing lets the agent sweep the old container away.
        old_records = containers_of(victim_root, old_uid)
        new_records = containers_of(cluster.node_info(new["spec"]["nodeName"])["root"],
                                    new["metadata"]["uid"])
    finally:
        cluster.node("heal", victim)
        watch.close()
    assert elapsed < 20, f"web-0 took {elapsed:.1f} s to come back"
    assert old_records and all(c["finished"] is not None for c in old_records), old_records
    assert new_records and all(c["started"] is not None for c in new_records), new_records
    fenced = max(c["finished"] for c in old_records)
    restarted = min(c["started"] for c in new_records)
    assert fenced < restarted, f"old web-0 exited at {fenced}, new started at {restarted}"
    assert not watch.violations, watch.violations
    uids = {uid for _, _, name, uid, _, _ in watch.events if name == "web-0"}
    assert uids == {old_uid, new["metadata"]["uid"]}, "web-0 was re-created more than once"

    wait_until(lambda: untainted_ready(cluster, victim), timeout=30)
    time.sleep(2)
    assert not [c for c in containers_of(victim_root, old_uid) if c["finished"] is None]
    items = cluster.kubectl_json("get", "pods", "-n", NS, "-l", "app=web")["items"]
    assert not [p for p in items if p["metadata"]["uid"] == old_uid]
    cluster.kubectl("delete", "namespace", NS, "--wait=false")
