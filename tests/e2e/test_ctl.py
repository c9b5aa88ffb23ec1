"""`kubelite ctl` against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "web.yaml"


def ctl(server, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "kubelite.cli.main", "ctl", *args],
                          capture_output=True, text=True, env=env, input=input, timeout=60)


def test_apply_get_describe_delete_round_trip(server):
    server.kubectl("create", "namespace", "ctl")
    first = ctl(server, "-n", "ctl", "apply", "-f", str(EXAMPLE))
    assert first.returncode == 0, first.stderr
    assert "deployment.apps/web created" in first.stdout
    again = ctl(server, "-n", "ctl", "apply", "-f", str(EXAMPLE))
    assert "deployment.apps/web unchanged" in again.stdout
    assert "configmap/web-config unchanged" in again.stdout
    edited = EXAMPLE.read_text().replace("greeting: hello", "greeting: hi")
    changed = ctl(server, "-n", "ctl", "apply", "-f", "-", input=edited)
    assert "configmap/web-config configured" in changed.stdout
    assert server.kubectl_json("get", "cm", "web-config", "-n", "ctl")["data"] == {
        "greeting": "hi"}

    table = ctl(server, "-n", "ctl", "get", "deployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[0] == "web"
    wide = ctl(server, "-n", "ctl", "get", "deploy", "web", "-o", "wide").stdout
    assert "CONTAINERS" in wide and "app=web" in wide
    both = ctl(server, "-n", "ctl", "get", "deploy,svc").stdout
    assert "UP-TO-DATE" in both and "CLUSTER-IP" in both
    everywhere = ctl(server, "get", "cm", "-A").stdout.splitlines()
    assert everywhere[0].split()[0] == "NAMESPACE"
    doc = yaml.safe_load(ctl(server, "-n", "ctl", "get", "svc", "web", "-o", "yaml").stdout)
    assert doc["kind"] == "Service" and doc["spec"]["ports"][0]["port"] == 80
    names = ctl(server, "-n", "ctl", "get", "cm", "-l", "app!=x", "-o", "name").stdout.split()
    assert "configmap/web-config" in names
    described = ctl(server, "-n", "ctl", "describe", "configmap", "web-config").stdout
    assert "Name:         web-config" in described and "greeting: hi" in described

    deleted = ctl(server, "-n", "ctl", "delete", "-f", str(EXAMPLE))
    assert deleted.returncode == 0 and "service/web deleted" in deleted.stdout
    empty = ctl(server, "-n", "ctl", "get", "svc")
    assert "No resources found in ctl namespace." in empty.stderr


def test_errors_are_reported_like_kubectl(server):
    missing = ctl(server, "get", "pods", "nope")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in missing.stderr
    unknown = ctl(server, "get", "nosuchkind")
    assert unknown.returncode == 1 and "doesn't have a resource type" in unknown.stderr
    logs = ctl(server, "logs", "nope")
    assert logs.returncode == 1 and "NotFound" in logs.stderr
    invalid = ctl(server, "apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\n"
                  "metadata:\n  name: Bad_Name\n")
    assert invalid.returncode == 1 and "Invalid" in invalid.stderr
    for verb in ("get", "apply", "delete", "describe", "logs"):
        helped = ctl(server, verb, "--help")
        assert helped.returncode == 0 and "usage:" in helped.stdout
