"""Node loss on a real 3-node `kubelite up` cluster: the time from losing a node to
all its pods Running and Ready again on the other nodes.

Stateless: a Deployment of 30 busybox `sleep 3600` pods spread over the nodes
(topologySpreadConstraints, ~10 each); the node with the most of them is stopped
(`kubelite node stop`: agent and containers killed, as a machine powered off) or cut
off (`kubelite node cut`: agent alive, network gone, so it must fence itself); the
clock runs from the command until all 30 pods are Running and Ready elsewhere. The
Deployment is re-created before each run so that every run loses ~10 pods.

Stateful: a StatefulSet of 2 (Parallel, no volumes) spread by preferred pod
anti-affinity; the node of web-0 is lost the same way; the clock runs until every
ordinal that lived there is Running and Ready again as a new pod on another node. A
watch checks all along that no ordinal is ever Running on two nodes at once; in cut
mode the runtimes' own records also show the old container exited before the new
one started.

Between runs the node is started (or healed) and must be Ready and untainted again.
Targets (issue 5): stateless under 6 s, StatefulSet under 15 s; anchors: Kubernetes
by default ~350 s, Docker Swarm 18 s for 20 replicas on this machine. Needs root,
runc and the CNI plugins; `kubelite down --purge` removes the cluster at the end,
also on failure.

    .venv/bin/python bench/recovery.py [--runs 5] [--replicas 30] [--modes stop,cut]

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KUBELITE = [sys.executable, "-m", "kubelite.cli.main"]
NS = "recovery"
HOSTNAME = "kubernetes.io/hostname"
SLEEP = ["busybox", "sh", "-c", "exec busybox sleep 3600"]
TAINTS = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod_template(app: str, spread: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": {
        "terminationGracePeriodSeconds": 1, **spread,
        "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                        "command": SLEEP}]}}


def deployment(replicas: int) -> dict[str, Any]:
    # ScheduleAnyway: with a node lost, the replacements must still fit on the others.
    spread = {"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": "stateless"}}}]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stateless"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "stateless"}},
                     "template": pod_template("stateless", spread)}}


def statefulset() -> list[dict[str, Any]]:
    spread = {"affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "topologyKey": HOSTNAME, "labelSelector": {"matchLabels": {"app": "web"}}}}]}}}
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
             "spec": {"replicas": 2, "serviceName": "web", "podManagementPolicy": "Parallel",
                      "selector": {"matchLabels": {"app": "web"}},
                      "template": pod_template("web", spread)}}]


def is_ready(pod: dict[str, Any]) -> bool:
    return (pod["status"].get("phase") == "Running"
            and not pod["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in pod["status"].get("conditions") or []))


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


class Cluster:
    """A `kubelite up` cluster driven by the CLI and kubectl, as a user would."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="klrec-", dir="/tmp"))
        self.data = self.base / "data"
        self.env = {**os.environ, "KUBECONFIG": str(self.data / "kubeconfig"),
                    "HOME": str(self.base)}
        self.info: dict[str, Any] = {}

    def kubelite(self, *args: str) -> str:
        result = subprocess.run([*KUBELITE, *args, "--data-dir", str(self.data)],
                                capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"kubelite {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def up(self) -> None:
        self.kubelite("up", "--nodes", "3", "--port", str(free_port()),
                      "--http-port", str(free_port()), "--https-port", str(free_port()),
                      "--cluster-cidr", f"10.{random.randrange(100, 200)}.0.0/16")
        self.info = json.loads((self.data / "cluster.json").read_text())

    def down(self) -> None:
        subprocess.run([*KUBELITE, "down", "--purge", "--data-dir", str(self.data)],
                       capture_output=True, timeout=180)
        shutil.rmtree(self.base, ignore_errors=True)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(["kubectl", *args], input=input, capture_output=True,
                                text=True, env=self.env, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def pods(self, app: str) -> list[dict[str, Any]]:
        return json.loads(self.kubectl("get", "pods", "-n", NS, "-l", f"app={app}",
                                       "-o", "json"))["items"]

    def root(self, node: str) -> str:
        return next(n["root"] for n in self.info["nodes"] if n["name"] == node)

    def back(self, node: str) -> bool:
        obj = json.loads(self.kubectl("get", "node", node, "-o", "json"))
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in obj["status"].get("conditions") or [])
        return ready and not {t["key"] for t in obj["spec"].get("taints") or []} & TAINTS


class PodWatch:
    """`kubectl get pods -w` in a thread: keeps every live copy of each pod and the
    moment `done` first holds after `arm()`; flags any name Running on two nodes."""

    def __init__(self, cluster: Cluster, app: str) -> None:
        self.proc = subprocess.Popen(
            ["kubectl", "get", "pods", "-n", NS, "-l", f"app={app}", "-w", "-o", "json",
             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=cluster.env)
        self.lock = threading.Lock()
        self.pods: dict[str, dict[str, Any]] = {}  # uid -> latest object
        self.violations: list[str] = []
        self.done: Callable[[list[dict[str, Any]]], bool] | None = None
        self.done_at: float | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def arm(self, done: Callable[[list[dict[str, Any]]], bool]) -> None:
        with self.lock:
            self.done, self.done_at = done, None

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
                self._record(event, time.time())

    def _record(self, event: dict[str, Any], at: float) -> None:
        pod = event["object"]
        with self.lock:
            if event["type"] == "DELETED":
                self.pods.pop(pod["metadata"]["uid"], None)
            else:
                self.pods[pod["metadata"]["uid"]] = pod
            name = pod["metadata"]["name"]
            running = {p["spec"].get("nodeName") for p in self.pods.values()
                       if p["metadata"]["name"] == name and p["status"].get("phase") == "Running"}
            if len(running) > 1:
                self.violations.append(f"{name} Running on {sorted(running)}")
            if self.done and self.done_at is None and self.done(list(self.pods.values())):
                self.done_at = at

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(5)


def container_times(root: str, pod_uid: str) -> tuple[list[float], list[float]]:
    """Start and exit times (wall clock) of a pod's containers, from a node's runtime."""
    started, finished = [], []
    for d in Path(root, "runtime", "containers").glob("*/"):
        try:
            meta = json.loads((d / "container.json").read_text())
            if meta["labels"].get("io.kubernetes.pod.uid") != pod_uid:
                continue
            if (d / "started").exists():
                started.append(float((d / "started").read_text()))
            if (d / "exit.json").exists():
                finished.append(json.loads((d / "exit.json").read_text())["finished_at"])
        except (OSError, ValueError, KeyError):
            continue
    return started, finished


def lose(cluster: Cluster, mode: str, node: str) -> float:
    started = time.time()
    cluster.kubelite("node", mode, node)
    return started


def restore(cluster: Cluster, mode: str, node: str) -> None:
    cluster.kubelite("node", "start" if mode == "stop" else "heal", node)
    wait_until(lambda: cluster.back(node), 60, f"{node} Ready again")
    time.sleep(3)


def stateless_run(cluster: Cluster, mode: str, replicas: int) -> dict[str, Any]:
    cluster.kubectl("delete", "deployment", "stateless", "-n", NS, "--ignore-not-found",
                    "--wait=true", "--timeout=60s")
    wait_until(lambda: not cluster.pods("stateless"), 60, "old pods gone")
    cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(deployment(replicas)))
    ready = wait_until(lambda: [p for p in cluster.pods("stateless") if is_ready(p)]
                       if sum(map(is_ready, cluster.pods("stateless"))) == replicas else None,
                       180, f"{replicas} pods Ready")
    per_node: dict[str, int] = {}
    for pod in ready:
        per_node[pod["spec"]["nodeName"]] = per_node.get(pod["spec"]["nodeName"], 0) + 1
    victim = max(per_node, key=lambda n: per_node[n])

    def recovered(items: list[dict[str, Any]]) -> bool:
        return sum(is_ready(p) and p["spec"].get("nodeName") != victim for p in items) \
            == replicas

    watch = PodWatch(cluster, "stateless")
    try:
        time.sleep(1)
        watch.arm(recovered)
        started = lose(cluster, mode, victim)
        try:
            wait_until(lambda: watch.done_at, 120, "replacements Ready")
        finally:
            restore(cluster, mode, victim)
    finally:
        watch.close()
    return {"seconds": round(watch.done_at - started, 2), "node": victim,
            "lost_pods": per_node[victim], "spread": sorted(per_node.values())}


def stateful_run(cluster: Cluster, mode: str) -> dict[str, Any]:
    items = wait_until(lambda: [p for p in cluster.pods("web") if is_ready(p)]
                       if sum(map(is_ready, cluster.pods("web"))) == 2 else None,
                       120, "StatefulSet Ready")
    victim = next(p["spec"]["nodeName"] for p in items if p["metadata"]["name"] == "web-0")
    lost = {p["metadata"]["name"]: p["metadata"]["uid"] for p in items
            if p["spec"]["nodeName"] == victim}

    def recovered(pods: list[dict[str, Any]]) -> bool:
        moved = {p["metadata"]["name"] for p in pods if is_ready(p)
                 and p["spec"].get("nodeName") != victim
                 and p["metadata"]["uid"] not in lost.values()}
        return set(lost) <= moved

    watch = PodWatch(cluster, "web")
    fenced_first: bool | None = None
    try:
        time.sleep(1)
        watch.arm(recovered)
        started = lose(cluster, mode, victim)
        try:
            wait_until(lambda: watch.done_at, 120, "StatefulSet pods back")
            if mode == "cut":
                # Read before healing: the returning agent sweeps the old containers.
                with watch.lock:
                    new = {p["metadata"]["name"]: p for p in watch.pods.values()
                           if p["metadata"]["uid"] not in lost.values()}
                ended = [t for uid in lost.values()
                         for t in container_times(cluster.root(victim), uid)[1]]
                began = [t for name in lost for t in container_times(
                    cluster.root(new[name]["spec"]["nodeName"]), new[name]["metadata"]["uid"])[0]]
                fenced_first = bool(ended) and bool(began) and max(ended) < min(began)
        finally:
            restore(cluster, mode, victim)
    finally:
        watch.close()
    return {"seconds": round(watch.done_at - started, 2), "node": victim,
            "ordinals": sorted(lost), "duplicates": watch.violations,
            **({"fenced_before_restart": fenced_first} if mode == "cut" else {})}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["seconds"] for r in runs]
    return {"median_s": round(statistics.median(times), 2), "runs_s": times,
            "max_s": max(times)}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    cluster = Cluster()
    try:
        cluster.up()
        cluster.kubectl("create", "namespace", NS)
        result: dict[str, Any] = {"nodes": 3, "replicas": args.replicas, "runs": args.runs}
        for mode in args.modes:
            runs = []
            for i in range(args.runs):
                runs.append(stateless_run(cluster, mode, args.replicas))
                print(f"stateless {mode} run {i + 1}: {runs[-1]}", flush=True)
            result[f"stateless_{mode}"] = summary(runs)
        cluster.kubectl("delete", "deployment", "stateless", "-n", NS, "--ignore-not-found")
        for obj in statefulset():
            cluster.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(obj))
        for mode in args.modes:
            runs = []
            for i in range(args.runs):
                runs.append(stateful_run(cluster, mode))
                print(f"statefulset {mode} run {i + 1}: {runs[-1]}", flush=True)
            result[f"statefulset_{mode}"] = summary(runs) | {
                "duplicate_identity": any(r["duplicates"] for r in runs)}
            if mode == "cut":
                result[f"statefulset_{mode}"]["fenced_before_restart"] = all(
                    r["fenced_before_restart"] for r in runs)
        return result
    finally:
        cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=30)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["stop", "cut"],
                        help="comma-separated: stop, cut")
    args = parser.parse_args()
    # SIGTERM must unwind through bench()'s finally, which tears the cluster down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(bench(args)))


if __name__ == "__main__":
    main()
