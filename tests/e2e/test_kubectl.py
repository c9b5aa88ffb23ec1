"""The real kubectl against a real kubelite API server (issue: API foundation)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).parent / "manifests"


def test_apply_create_unchanged_configure_and_server_side(server, tmp_path):
    out = server.kubectl("apply", "-f", str(MANIFESTS / "app.yaml")).stdout
    for line in ("configmap/web-config created", "secret/web-secret created",
                 "deployment.apps/web created", "service/web created",
                 "ingress.networking.k8s.io/web created"):
        assert line in out
    again = server.kubectl("apply", "-f", str(MANIFESTS / "app.yaml")).stdout
    assert "deployment.apps/web unchanged" in again
    assert "service/web unchanged" in again

    edited = (MANIFESTS / "app.yaml").read_text().replace(
        "image: busybox:1.36\n        command: [\"httpd\"", "image: busybox:1.37\n        command: [\"httpd\"")
    edited = edited.replace("replicas: 2", "replicas: 3")
    path = tmp_path / "edited.yaml"
    path.write_text(edited)
    out = server.kubectl("apply", "-f", str(path)).stdout
    assert "deployment.apps/web configured" in out
    dep = server.kubectl_json("get", "deployment", "web")
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    # strategic merge on containers by name: one image changed, the other kept
    assert containers["web"]["image"] == "busybox:1.37"
    assert containers["sidecar"]["image"] == "busybox:1.36"
    assert containers["web"]["env"][0]["name"] == "GREETING"
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["generation"] == 2
    secret = server.kubectl_json("get", "secret", "web-secret")
    assert secret["data"] == {"password": "czNjcmV0"}

    ssa = tmp_path / "ssa.yaml"
    ssa.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-cm\ndata:\n  a: '1'\n")
    assert "serverside-applied" in server.kubectl("apply", "--server-side", "-f", str(ssa)).stdout
    cm = server.kubectl_json("get", "configmap", "ssa-cm", "--show-managed-fields")
    managers = {m["manager"]: m["operation"] for m in cm["metadata"]["managedFields"]}
    assert managers == {"kubectl": "Apply"}
    # another manager changing an applied field conflicts unless forced
    conflict = server.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-",
                              input=ssa.read_text().replace("'1'", "'2'"), check=False)
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower()
    server.kubectl("apply", "--server-side", "--field-manager=other", "--force-conflicts",
                   "-f", "-", input=ssa.read_text().replace("'1'", "'2'"))
    assert server.kubectl_json("get", "configmap", "ssa-cm")["data"] == {"a": "2"}


def test_get_tables_and_output_formats(server):
    server.kubectl("apply", "-f", str(MANIFESTS / "app.yaml"))
    table = server.kubectl("get", "deployments").stdout
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    wide = server.kubectl("get", "deployments", "-o", "wide").stdout
    assert "CONTAINERS" in wide and "busybox" in wide and "app=web" in wide
    svc = server.kubectl("get", "svc", "web").stdout
    assert "80/TCP" in svc and "ClusterIP" in svc
    assert "web-config" in server.kubectl("get", "cm").stdout
    names = server.kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.name}").stdout
    assert names == "web"
    assert "kind: Deployment" in server.kubectl("get", "deploy", "web", "-o", "yaml").stdout
    every = server.kubectl("get", "namespaces").stdout
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert ns in every
    assert "web" in server.kubectl("get", "deploy", "-l", "app=web").stdout
    assert "No resources found" in server.kubectl("get", "deploy", "-l", "app=nope").stderr
    fs = server.kubectl("get", "cm", "--field-selector", "metadata.name=web-config").stdout
    assert "web-config" in fs and "ssa-cm" not in fs
    everywhere = server.kubectl("get", "cm", "-A").stdout
    assert everywhere.split("\n")[0].split()[0] == "NAMESPACE"
    for kind in ("pods", "services", "endpoints", "configmaps", "secrets", "nodes", "events",
                 "pv", "pvc", "serviceaccounts", "deployments", "replicasets", "statefulsets",
                 "daemonsets", "jobs", "cronjobs", "ingresses", "ingressclasses", "leases",
                 "storageclasses", "endpointslices", "priorityclasses", "controllerrevisions",
                 "poddisruptionbudgets", "networkpolicies"):
        result = server.kubectl("get", kind, "-A", check=False)
        assert result.returncode == 0, (kind, result.stderr)


def test_chunked_get(server):
    for i in range(5):
        server.kubectl("create", "configmap", f"chunk-{i}", "--from-literal=k=v", "-n", "kube-public")
    out = server.kubectl("get", "cm", "-n", "kube-public", "--chunk-size=2", "-o", "name").stdout
    assert sorted(out.split()) == [f"configmap/chunk-{i}" for i in range(5)]


def test_watch_prints_changes(server):
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
    proc = subprocess.Popen(["kubectl", "get", "cm", "-w", "-n", "kube-system"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        server.kubectl("create", "configmap", "watched", "-n", "kube-system", "--from-literal=a=b")
        server.kubectl("label", "configmap", "watched", "-n", "kube-system", "x=y")
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline and sum("watched" in ln for ln in lines) < 2:
            line = proc.stdout.readline()
            if line:
                lines.append(line)
        assert sum("watched" in ln for ln in lines) >= 2, lines
    finally:
        proc.terminate()
        proc.wait(5)


def test_label_annotate_patch_scale_edit(server, tmp_path):
    server.kubectl("apply", "-f", str(MANIFESTS / "app.yaml"))
    server.kubectl("label", "deploy", "web", "tier=frontend")
    server.kubectl("annotate", "deploy", "web", "note=hello")
    dep = server.kubectl_json("get", "deploy", "web")
    assert dep["metadata"]["labels"]["tier"] == "frontend"
    assert dep["metadata"]["annotations"]["note"] == "hello"
    server.kubectl("patch", "deploy", "web", "-p", '{"spec":{"minReadySeconds":5}}')
    server.kubectl("patch", "deploy", "web", "--type=merge", "-p",
                   '{"metadata":{"labels":{"merged":"yes"}}}')
    server.kubectl("patch", "deploy", "web", "--type=json", "-p",
                   '[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]')
    dep = server.kubectl_json("get", "deploy", "web")
    assert dep["spec"]["minReadySeconds"] == 5
    assert dep["metadata"]["labels"]["merged"] == "yes"
    assert dep["spec"]["revisionHistoryLimit"] == 3
    assert "scaled" in server.kubectl("scale", "deploy", "web", "--replicas=5").stdout
    assert server.kubectl_json("get", "deploy", "web")["spec"]["replicas"] == 5

    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/note: hello/note: edited/' \"$1\"\n")
    editor.chmod(0o755)
    out = server.kubectl("edit", "deploy", "web", env={"EDITOR": str(editor),
                                                       "KUBE_EDITOR": str(editor)}).stdout
    assert "edited" in out
    assert server.kubectl_json("get", "deploy", "web")["metadata"]["annotations"]["note"] == "edited"


def test_typed_create_commands_send_protobuf(server):
    server.kubectl("create", "namespace", "typed")
    server.kubectl("create", "configmap", "cfg", "-n", "typed", "--from-literal=a=1")
    server.kubectl("create", "secret", "generic", "sec", "-n", "typed", "--from-literal=p=q")
    server.kubectl("create", "deployment", "dep", "-n", "typed", "--image=busybox",
                   "--replicas=2", "--port=80")
    server.kubectl("create", "job", "job", "-n", "typed", "--image=busybox", "--", "true")
    assert server.kubectl_json("get", "cm", "cfg", "-n", "typed")["data"] == {"a": "1"}
    assert server.kubectl_json("get", "secret", "sec", "-n", "typed")["data"] == {"p": "cQ=="}
    dep = server.kubectl_json("get", "deploy", "dep", "-n", "typed")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    job = server.kubectl_json("get", "job", "job", "-n", "typed")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_run_expose_diff_wait_can_i(server, tmp_path):
    server.kubectl("run", "runner", "--image=busybox", "--labels=app=runner", "--port=80")
    pod = server.kubectl_json("get", "pod", "runner")
    assert pod["status"]["phase"] == "Pending"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    server.kubectl("expose", "pod", "runner", "--port=80")
    svc = server.kubectl_json("get", "svc", "runner")
    assert svc["spec"]["selector"] == {"app": "runner"}

    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: diffed\ndata:\n  a: '1'\n")
    server.kubectl("apply", "-f", str(manifest))
    manifest.write_text(manifest.read_text().replace("'1'", "'2'"))
    diff = server.kubectl("diff", "-f", str(manifest), check=False)
    assert diff.returncode == 1 and "+  a: \"2\"" in diff.stdout
    assert server.kubectl_json("get", "cm", "diffed")["data"] == {"a": "1"}  # nothing stored

    patch = '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
    server.kubectl("patch", "pod", "runner", "--subresource=status", "--type=merge", "-p", patch)
    waited = server.kubectl("wait", "--for=condition=Ready", "pod/runner", "--timeout=10s")
    assert "condition met" in waited.stdout
    assert server.kubectl("auth", "can-i", "delete", "nodes").stdout.strip() == "yes"
    assert server.kubectl("auth", "can-i", "create", "pods", "-n", "kube-system").stdout.strip() == "yes"


def test_describe_shows_events(server):
    server.kubectl("create", "configmap", "described", "--from-literal=a=b")
    cm = server.kubectl_json("get", "cm", "described")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "described.1", "namespace": "default"},
        "involvedObject": {"kind": "ConfigMap", "name": "described", "namespace": "default",
                           "uid": cm["metadata"]["uid"], "apiVersion": "v1"},
        "reason": "Tested", "message": "an event for describe", "type": "Normal",
        "source": {"component": "e2e"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    server.kubectl("create", "-f", "-", input=json.dumps(event))
    out = server.kubectl("describe", "configmap", "described").stdout
    assert "Tested" in out and "an event for describe" in out


def test_explain_api_resources_api_versions(server):
    explained = server.kubectl("explain", "deployment.spec.strategy").stdout
    assert "rollingUpdate" in explained and "DeploymentStrategy" in explained
    resources = server.kubectl("api-resources").stdout
    for line in ("deployments", "deploy", "apps/v1", "statefulsets", "leases"):
        assert line in resources
    versions = server.kubectl("api-versions").stdout.split()
    assert {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1"} <= set(versions)


def test_delete_cascade_modes(server):
    server.kubectl("create", "configmap", "owner", "--from-literal=a=b")
    owner = server.kubectl_json("get", "cm", "owner")
    dependent = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner["metadata"]["uid"]}]}, "data": {"x": "y"}}
    server.kubectl("create", "-f", "-", input=json.dumps(dependent))
    server.kubectl("delete", "cm", "owner", "--cascade=orphan")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dep = server.kubectl_json("get", "cm", "dependent")
        if not dep["metadata"].get("ownerReferences"):
            break
        time.sleep(0.2)
    assert not dep["metadata"].get("ownerReferences")
    assert server.kubectl("get", "cm", "owner", check=False).returncode != 0

    server.kubectl("create", "configmap", "owner2", "--from-literal=a=b")
    owner = server.kubectl_json("get", "cm", "owner2")
    dependent["metadata"] = {"name": "dependent2", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner2",
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}]}
    server.kubectl("create", "-f", "-", input=json.dumps(dependent))
    server.kubectl("delete", "cm", "owner2", "--cascade=foreground", "--timeout=20s")
    assert server.kubectl("get", "cm", "dependent2", check=False).returncode != 0
    assert server.kubectl("get", "cm", "owner2", check=False).returncode != 0


def test_namespace_deletion_removes_content(server):
    server.kubectl("create", "namespace", "doomed")
    server.kubectl("create", "configmap", "inside", "-n", "doomed", "--from-literal=a=b")
    server.kubectl("delete", "namespace", "doomed", "--timeout=30s")
    assert server.kubectl("get", "ns", "doomed", check=False).returncode != 0
    refused = server.kubectl("create", "configmap", "x", "-n", "missing-ns", "--from-literal=a=b",
                             check=False)
    assert refused.returncode != 0 and 'namespaces "missing-ns" not found' in refused.stderr


def test_every_example_applies(server):
    examples = Path(__file__).resolve().parents[2] / "examples"
    server.kubectl("create", "namespace", "examples")
    out = server.kubectl("apply", "-n", "examples", "-f", str(examples)).stdout
    assert "created" in out
    assert server.kubectl("apply", "-n", "examples", "-f", str(examples),
                          "--dry-run=server").returncode == 0


def test_the_demo_manifests_apply(server):
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo"
    out = server.kubectl("apply", "-f", str(demo)).stdout
    for obj in ("namespace/demo", "deployment.apps/web", "statefulset.apps/counter",
                "service/web", "service/counter", "ingress.networking.k8s.io/demo",
                "configmap/web-config", "secret/web-secret"):
        assert f"{obj} created" in out
    assert "unchanged" in server.kubectl("apply", "-f", str(demo)).stdout
    server.kubectl("delete", "namespace", "demo", "--wait=false")
