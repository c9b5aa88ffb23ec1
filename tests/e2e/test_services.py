"""Services on a real `kubelite up` cluster (issue 6 acceptance): the pod network
across nodes, ClusterIPs through the nftables proxy reached by DNS name, endpoints
that follow readiness, NodePort and LoadBalancer on the nodes' addresses, 422s for
bad Services, and nothing left on the nodes once the pods are gone."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

# Serves its own hostname; ready while /tmp/ready exists, so a test can turn it unready.
HTTPD = ("echo $HOSTNAME > /www/index.html; touch /tmp/ready; "
         "exec busybox httpd -f -p 8080 -h /www")
WEB_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 0,
                 # One per node, so that the spread also crosses nodes.
                 "topologySpreadConstraints": [{
                     "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                     "whenUnsatisfiable": "DoNotSchedule",
                     "labelSelector": {"matchLabels": {"app": "web"}}}],
                 "containers": [{
                     "name": "httpd", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                     "command": ["busybox", "sh", "-c", "mkdir -p /www && " + HTTPD],
                     "ports": [{"name": "http", "containerPort": 8080}],
                     "readinessProbe": {"exec": {"command": ["busybox", "cat", "/tmp/ready"]},
                                        "periodSeconds": 1, "failureThreshold": 1}}]}}}}


def service(name: str, selector: dict[str, str], **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, **spec,
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def pod(name: str, command: str, *, node: str | None = None,
        labels: dict[str, str] | None = None) -> dict:
    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 0, "containers": [{
        "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
        "command": ["busybox", "sh", "-c", command],
        "ports": [{"name": "http", "containerPort": 8080}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def wait_until(check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout} s (last: {last!r})")


def apply(cluster: Any, *objs: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def sh(cluster: Any, pod_name: str, command: str, *, timeout: float = 60) -> str:
    return cluster.kubectl("exec", pod_name, "--", "busybox", "sh", "-c", command,
                           check=False, timeout=timeout)


def wget(cluster: Any, client: str, url: str) -> str:
    # busybox's own timeout: Debian's busybox wget crashes with -T.
    return sh(cluster, client, f"busybox timeout 5 busybox wget -qO- {url} || echo FAIL").strip()


def web_pods(cluster: Any) -> dict[str, dict]:
    return {p["metadata"]["name"]: p
            for p in cluster.kubectl_json("get", "pods", "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")}


def nft_table(cluster: Any, node: str) -> str:
    return cluster.node_exec(node, "nft", "list", "table", "ip", "kubelite").stdout


def http_get(url: str, *, timeout: float = 3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode().strip()


@pytest.fixture(scope="module")
def web(cluster: Any) -> Iterator[dict[str, str]]:
    """Deployment `web` (3 ready pods, one per node) behind Service `web`, and a
    client pod; yields pod name -> pod IP of the web pods."""
    try:
        apply(cluster, WEB_DEPLOYMENT, service("web", {"app": "web"}),
              pod("client", "exec busybox sleep 3600", node="node-1"))
        cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
        cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=90s",
                        timeout=120)
        yield {name: p["status"]["podIP"] for name, p in web_pods(cluster).items()}
    finally:
        cluster.kubectl("delete", "deployment/web", "service/web", "pod/client",
                        "--ignore-not-found", "--wait=false", check=False)


def test_a_pod_on_one_node_fetches_from_a_pod_on_another_by_pod_ip(cluster: Any) -> None:
    apply(cluster, pod("far", "mkdir -p /www && echo far-away > /www/index.html && "
                              "exec busybox httpd -f -p 8080 -h /www", node="node-2"),
          pod("near", "exec busybox sleep 3600", node="node-1"))
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "pod/far", "pod/near",
                        "--timeout=90s", timeout=120)
        far = cluster.kubectl_json("get", "pod", "far")
        near = cluster.kubectl_json("get", "pod", "near")
        cidrs = {n: cluster.kubectl("get", "node", n, "-o", "jsonpath={.spec.podCIDR}")
                 for n in ("node-1", "node-2")}
        assert cidrs["node-1"] != cidrs["node-2"]
        assert far["status"]["podIP"].startswith(cidrs["node-2"].rsplit(".", 2)[0] + ".")
        assert near["status"]["podIP"].startswith(cidrs["node-1"].rsplit(".", 2)[0] + ".")
        url = f"http://{far['status']['podIP']}:8080/"
        assert wait_until(lambda: wget(cluster, "near", url) == "far-away", timeout=20)
    finally:
        cluster.kubectl("delete", "pod", "far", "near", "--ignore-not-found", "--wait=false",
                        check=False)


def test_service_name_reaches_all_three_web_pods_evenly(cluster: Any,
                                                         web: dict[str, str]) -> None:
    pods = web_pods(cluster)
    assert {p["spec"]["nodeName"] for p in pods.values()} == {"node-1", "node-2", "node-3"}
    first = wait_until(lambda: (body := wget(cluster, "client",
                                             "http://web.default.svc.cluster.local"))
                       in pods and body, timeout=30)
    assert first in pods
    # One exec, 300 fetches by name, one answer per line.
    out = sh(cluster, "client", "for i in $(busybox seq 300); do "
                                "busybox wget -qO- http://web.default.svc.cluster.local "
                                "|| echo FAIL; done", timeout=180)
    counts = Counter(out.split())
    assert sum(counts.values()) == 300 and set(counts) == set(pods), counts
    assert min(counts.values()) >= 60, counts


def test_unready_pod_leaves_the_service_within_two_seconds(cluster: Any,
                                                           web: dict[str, str]) -> None:
    name, ip = sorted(web.items())[0]
    nodes = [n["name"] for n in cluster.info["nodes"]]
    wait_until(lambda: all(f"{ip}:8080" in nft_table(cluster, n) for n in nodes))
    started = time.monotonic()
    cluster.kubectl("exec", name, "--", "busybox", "rm", "/tmp/ready")
    gone = wait_until(lambda: all(f"{ip}:8080" not in nft_table(cluster, n) for n in nodes)
                      and time.monotonic(), timeout=10, interval=0.05)
    assert gone - started < 2.0, f"took {gone - started:.2f} s"
    bodies = set(sh(cluster, "client", "for i in $(busybox seq 30); do busybox wget -qO- "
                                       "http://web || echo FAIL; done").split())
    assert bodies == set(web) - {name}, bodies

    cluster.kubectl("exec", name, "--", "busybox", "touch", "/tmp/ready")
    wait_until(lambda: all(f"{ip}:8080" in nft_table(cluster, n) for n in nodes), timeout=10)


def test_the_node_itself_reaches_a_cluster_ip(cluster: Any, web: dict[str, str]) -> None:
    # As a hostNetwork pod would: from the node's own namespace, which has no
    # default route, only the one to the service CIDR that `kubelite up` adds.
    vip = cluster.kubectl_json("get", "service", "web")["spec"]["clusterIP"]
    got = cluster.node_exec("node-2", "busybox", "timeout", "5", "busybox", "wget", "-qO-",
                            f"http://{vip}/")
    assert got.returncode == 0 and got.stdout.strip() in web, (got.stdout, got.stderr)


def test_a_recreated_pod_is_reachable_through_the_same_cluster_ip(cluster: Any,
                                                                  web: dict[str, str]) -> None:
    def solo(generation: str) -> dict:
        return pod("solo", f"mkdir -p /www && echo {generation} > /www/index.html && "
                           "exec busybox httpd -f -p 8080 -h /www", labels={"app": "solo"})
    apply(cluster, service("solo", {"app": "solo"}), solo("first"))
    try:
        vip = cluster.kubectl_json("get", "service", "solo")["spec"]["clusterIP"]
        cluster.kubectl("wait", "--for=condition=Ready", "pod/solo", "--timeout=90s",
                        timeout=120)
        assert wait_until(lambda: wget(cluster, "client", f"http://{vip}/") == "first",
                          timeout=20)
        cluster.kubectl("delete", "pod", "solo", "--wait=true", "--timeout=60s", timeout=90)
        apply(cluster, solo("second"))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/solo", "--timeout=90s",
                        timeout=120)
        assert cluster.kubectl_json("get", "service", "solo")["spec"]["clusterIP"] == vip
        assert wait_until(lambda: wget(cluster, "client", f"http://{vip}/") == "second",
                          timeout=20)
    finally:
        cluster.kubectl("delete", "service/solo", "pod/solo", "--ignore-not-found",
                        "--wait=false", check=False)


def test_node_port_answers_on_every_node_and_load_balancer_gets_addresses(
        cluster: Any, web: dict[str, str]) -> None:
    apply(cluster, service("web-np", {"app": "web"}, type="NodePort"),
          service("web-lb", {"app": "web"}, type="LoadBalancer"))
    try:
        np = cluster.kubectl_json("get", "service", "web-np")["spec"]["ports"][0]["nodePort"]
        assert 30000 <= np <= 32767
        for node in cluster.info["nodes"]:
            url = f"http://{node['ip']}:{np}/"
            assert wait_until(lambda url=url: _try_get(url) in web, timeout=20)

        node_ips = sorted(n["ip"] for n in cluster.info["nodes"])
        ingress = wait_until(lambda: ((cluster.kubectl_json("get", "service", "web-lb")
                                       .get("status") or {}).get("loadBalancer") or {})
                             .get("ingress"), timeout=20)
        assert sorted(i["ip"] for i in ingress) == node_ips
        assert "10.250." in cluster.kubectl("get", "service", "web-lb")
        url = f"http://{ingress[0]['ip']}:80/"
        assert wait_until(lambda: _try_get(url) in web, timeout=20)
    finally:
        cluster.kubectl("delete", "service", "web-np", "web-lb", "--ignore-not-found",
                        check=False)


def _try_get(url: str) -> str:
    try:
        return http_get(url)
    except (OSError, urllib.error.URLError):
        return ""


def _post(cluster: Any, path: str, body: dict) -> tuple[int, dict]:
    """POST with the admin kubeconfig, as raw HTTP: the code and the Status body."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
        ca.write(base64.b64decode(server["certificate-authority-data"]))
        ca.flush()
        context = ssl.create_default_context(cafile=ca.name)
    request = urllib.request.Request(
        server["server"] + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("spec,field,message", [
    ({"clusterIP": "10.200.0.5"}, "spec.clusterIPs",
     "the provided IP (10.200.0.5) is not in the valid range"),
    ({"clusterIP": "10.96.0.10"}, "spec.clusterIPs", "provided IP is already allocated"),
    ({"ports": [{"port": 70000}]}, "spec.ports[0].port", "must be between 1 and 65535"),
], ids=["cluster-ip-out-of-range", "cluster-ip-taken", "port-out-of-range"])
def test_bad_service_is_refused_with_422_and_the_field(cluster: Any, spec: dict, field: str,
                                                       message: str) -> None:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
            "spec": {"selector": {"app": "bad"}, "ports": [{"port": 80}], **spec}}
    code, status = _post(cluster, "/api/v1/namespaces/default/services", body)
    assert code == 422, status
    assert status["reason"] == "Invalid"
    causes = status["details"]["causes"]
    assert any(c["field"] == field and message in c["message"] for c in causes), causes
    out = cluster.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert 'The Service "bad" is invalid' in out and field in out, out


def test_nothing_is_left_of_deleted_pods(cluster: Any, web: dict[str, str]) -> None:
    """Runs last: the module's pods are deleted and their traces looked for on every node."""
    ips = set(web.values()) | {cluster.kubectl_json("get", "pod", "client")["status"]["podIP"]}
    cluster.kubectl("delete", "deployment/web", "service/web", "pod/client", "--wait=true",
                    "--timeout=90s", timeout=120)
    wait_until(lambda: not cluster.kubectl_json("get", "pods")["items"], timeout=60)
    nodes = {n["name"]: Path(n["root"]) for n in cluster.info["nodes"]}

    def traces() -> list[str]:
        found = []
        for node, root in nodes.items():
            veths = json.loads(cluster.node_exec(node, "ip", "-j", "link", "show",
                                                 "type", "veth").stdout or "[]")
            found += [f"{node} veth {v['ifname']}" for v in veths if v["ifname"] != "eth0"]
            routes = cluster.node_exec(node, "ip", "route").stdout
            table = nft_table(cluster, node)
            found += [f"{node} {where} {ip}" for ip in ips
                      for where, text in (("route", routes), ("nft", table))
                      if f"{ip} " in text or f"{ip}:" in text]
            found += [f"{node} ipam {f.name}" for f in (root / "network" / "ipam").glob("*/*")
                      if f.name[0].isdigit()]
            found += [f"{node} cni result {f.name}"
                      for f in (root / "network" / "results").glob("*")]
        return found
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not traces(), timeout=30)
    assert traces() == []


def test_down_leaves_nothing_of_the_cluster_on_the_host() -> None:
    """A cluster of its own (one node, one pod): after `down --purge` no netns, link,
    route, iptables rule, cgroup or process of it remains."""
    from tests.e2e.cluster import Cluster, need_host

    if reason := need_host():
        pytest.skip(reason)
    own = Cluster(nodes=1)
    try:
        own.up()
        apply(own, pod("lone", "exec busybox sleep 3600"))
        own.kubectl("wait", "--for=condition=Ready", "pod/lone", "--timeout=90s", timeout=120)
    finally:
        own.down()
    name, prefix = own.info["name"], own.cluster_cidr.rsplit(".", 2)[0] + "."
    assert not [ns for ns in Path("/run/netns").glob(f"{name}-*")]
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                      check=True).stdout)
    assert not [link["ifname"] for link in links if link["ifname"].startswith(name)]
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert prefix not in routes and own.info["gateway"] not in routes
    rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True,
                           text=True, check=True).stdout
    assert own.info["bridge"] not in rules
    assert not list(Path("/sys/fs/cgroup").glob(f"*/kubelite-{name}")) + list(
        Path("/sys/fs/cgroup").glob(f"kubelite-{name}"))
    assert not [c for c in _cmdlines() if str(own.data_dir).encode() in c]


def _cmdlines() -> list[bytes]:
    out = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            out.append(path.read_bytes())
    return out
