"""ReplicaSet and Deployment controllers against a real server, driven by kubectl.

No node agent runs here: a stand-in marks pods Running and Ready the way a node
agent reports them (through the status subresource), so that rollouts can be
watched step by step. The same scenarios run on real agents in the cluster tests.
"""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, config, watch

pytestmark = pytest.mark.e2e


class ReadyPods:
    """Marks every pod of a namespace Ready shortly after it appears."""

    def __init__(self, server, namespace: str) -> None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
        self.api = client.CoreV1Api(client.ApiClient(cfg))
        self.namespace = namespace
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            w = watch.Watch()
            for ev in w.stream(self.api.list_namespaced_pod, self.namespace, timeout_seconds=2):
                pod = ev["object"]
                if ev["type"] == "DELETED" or pod.metadata.deletion_timestamp:
                    continue
                ready = [c for c in pod.status.conditions or [] if c.type == "Ready"]
                if not ready:
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.api.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {
                        "status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})
                if self.stop.is_set():
                    w.stop()

    def __enter__(self) -> ReadyPods:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_replicaset_keeps_replicas_and_adopts_orphans(server):
    server.kubectl("create", "namespace", "rs-test")
    manifest = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: keeper, namespace: rs-test}
spec:
  replicas: 3
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec: {containers: [{name: c, image: busybox}]}
"""
    server.kubectl("apply", "-f", "-", input=manifest)

    def pods():
        return server.kubectl_json("get", "pods", "-n", "rs-test", "-l", "app=keeper")["items"]

    wait_for(lambda: len(pods()) == 3)
    victim = pods()[0]["metadata"]["name"]
    server.kubectl("delete", "pod", victim, "-n", "rs-test")
    wait_for(lambda: len(pods()) == 3 and victim not in {p["metadata"]["name"] for p in pods()})
    server.kubectl("scale", "rs", "keeper", "-n", "rs-test", "--replicas=1")
    wait_for(lambda: len(pods()) == 1)
    rs = server.kubectl_json("get", "rs", "keeper", "-n", "rs-test")
    assert rs["status"]["replicas"] == 1 and rs["status"]["observedGeneration"] >= 1
    owner = pods()[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
    server.kubectl("delete", "namespace", "rs-test", "--timeout=30s")


def test_deployment_rolls_out_keeping_ready_replicas_and_undoes(server):
    ns = "rollout"
    server.kubectl("create", "namespace", ns)
    with ReadyPods(server, ns):
        server.kubectl("create", "deployment", "web", "-n", ns, "--image=busybox:1.36",
                       "--replicas=6")
        server.kubectl("patch", "deployment", "web", "-n", ns, "-p",
                       '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":0,"maxSurge":2}}}}')
        out = server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
        assert "successfully rolled out" in out.stdout
        lowest = [6]
        stop = threading.Event()

        def observe() -> None:
            while not stop.is_set():
                items = server.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"]
                ready = sum(1 for p in items if not p["metadata"].get("deletionTimestamp") and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", [])))
                lowest[0] = min(lowest[0], ready)

        watcher = threading.Thread(target=observe)
        watcher.start()
        try:
            server.kubectl("set", "image", "deployment/web", "-n", ns, "busybox=busybox:1.37")
            out = server.kubectl("rollout", "status", "deployment/web", "-n", ns,
                                 "--timeout=60s")
            assert "successfully rolled out" in out.stdout
        finally:
            stop.set()
            watcher.join()
        assert lowest[0] >= 6
        images = {p["spec"]["containers"][0]["image"] for p in server.kubectl_json(
            "get", "pods", "-n", ns, "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")}
        assert images == {"busybox:1.37"}
        history = server.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
        assert "1 " in history and "2 " in history
        server.kubectl("rollout", "undo", "deployment/web", "-n", ns)
        server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
        dep = server.kubectl_json("get", "deployment", "web", "-n", ns)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        sets = server.kubectl_json("get", "rs", "-n", ns)["items"]
        assert len(sets) == 2
        available = [c for c in dep["status"]["conditions"] if c["type"] == "Available"][0]
        assert available["status"] == "True"
    server.kubectl("delete", "namespace", ns, "--timeout=30s")
