"""Cluster DNS and NetworkPolicy on a real multi-node cluster (`cluster` fixture).

Pods are created directly with hostname/subdomain, which is what a StatefulSet
gives its pods, so `web-0.web.default.svc.cluster.local` exists without one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("tests.e2e.cluster")

pytestmark = pytest.mark.e2e

HTTPD = "echo $HOSTNAME > /tmp/index.html && exec busybox httpd -f -p 8080 -h /tmp"


def pod(name: str, labels: dict[str, str], command: str, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 0, **spec, "containers": [{
                "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["busybox", "sh", "-c", command],
                "ports": [{"name": "http", "containerPort": 8080}]}]}}


def service(name: str, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, **spec,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def policy(name: str, **spec: Any) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


OBJECTS = [
    service("web", clusterIP="None"),
    service("web-vip"),
    pod("web-0", {"app": "web"}, HTTPD, hostname="web-0", subdomain="web"),
    pod("web-1", {"app": "web"}, HTTPD, hostname="web-1", subdomain="web"),
    pod("client", {"role": "client"}, "exec busybox sleep 3600"),
    pod("other", {"role": "other"}, "exec busybox sleep 3600"),
]


def apply(cluster, *objs: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def wait_until(check, *, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout} s (last: {last!r})")


def sh(cluster, pod_name: str, command: str) -> str:
    return cluster.kubectl("exec", pod_name, "--", "busybox", "sh", "-c", command, check=False)


@pytest.fixture(scope="module")
def web(cluster) -> Iterator[dict[str, str]]:
    """The pods' IPs by name, once all are ready."""
    try:
        apply(cluster, *OBJECTS)
        cluster.kubectl("wait", "--for=condition=Ready", "pod", "web-0", "web-1", "client",
                        "other", "--timeout=90s")
        pods = cluster.kubectl_json("get", "pods", "-l", "app in (web)")["items"]
        pods += [cluster.kubectl_json("get", "pod", n) for n in ("client", "other")]
        yield {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    finally:
        cluster.kubectl("delete", "networkpolicies", "--all", check=False)
        cluster.kubectl("delete", "pods", "web-0", "web-1", "client", "other",
                        "--wait=true", "--timeout=60s", check=False)
        cluster.kubectl("delete", "services", "web", "web-vip", check=False)


def lookup(cluster, name: str) -> str:
    return sh(cluster, "client", f"busybox nslookup {name} 2>&1")


def test_nslookup_service_headless_and_pod_hostname(cluster, web: dict[str, str]) -> None:
    vip = cluster.kubectl_json("get", "service", "web-vip")["spec"]["clusterIP"]
    out = wait_until(lambda: (o := lookup(cluster, "web-vip.default.svc.cluster.local"))
                     and vip in o and o)
    assert "10.96.0.10" in out
    # The search path of ClusterFirst pods makes the short name resolve too.
    assert vip in lookup(cluster, "web-vip")

    out = wait_until(lambda: (o := lookup(cluster, "web.default.svc.cluster.local"))
                     and web["web-0"] in o and web["web-1"] in o and o)
    assert vip not in out
    out = lookup(cluster, "web-0.web.default.svc.cluster.local")
    assert web["web-0"] in out and web["web-1"] not in out, out
    assert "NXDOMAIN" in lookup(cluster, "nope.default.svc.cluster.local")
    # Through the Service, by name.
    body = sh(cluster, "client", "busybox timeout 5 busybox wget -qO- http://web-vip/")
    assert body.strip() in ("web-0", "web-1"), body


def fetch(cluster, client: str, ip: str) -> str:
    # busybox's own timeout: Debian's busybox wget crashes with -T.
    return sh(cluster, client, f"busybox timeout 2 busybox wget -qO- http://{ip}:8080/ "
                               "&& echo OK || echo FAIL").strip().splitlines()[-1]


def test_network_policy_default_deny_then_allow_by_label(cluster, web: dict[str, str]) -> None:
    target = web["web-0"]
    assert fetch(cluster, "client", target) == "OK"
    assert fetch(cluster, "other", target) == "OK"
    try:
        apply(cluster, policy("deny-ingress", podSelector={}, policyTypes=["Ingress"]))
        wait_until(lambda: fetch(cluster, "client", target) == "FAIL", timeout=20)
        assert fetch(cluster, "other", target) == "FAIL"

        apply(cluster, policy(
            "web-from-client", podSelector={"matchLabels": {"app": "web"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                      "ports": [{"port": "http"}]}]))
        wait_until(lambda: fetch(cluster, "client", target) == "OK", timeout=20)
        assert fetch(cluster, "client", web["web-1"]) == "OK"
        assert fetch(cluster, "other", target) == "FAIL"
    finally:
        cluster.kubectl("delete", "networkpolicies", "deny-ingress", "web-from-client",
                        check=False)
    wait_until(lambda: fetch(cluster, "other", target) == "OK", timeout=20)
