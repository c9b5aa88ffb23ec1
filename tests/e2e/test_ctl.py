"""`kubelite ctl` against a real server, run in-process through the `kubelite` entry point."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kubelite.cli.main import main

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "web.yaml"
NS = "ctl"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def ctl(server, capsys, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))

    def run(*args: str, stdin: str | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(["ctl", *args])
        except SystemExit as exc:  # argparse: --help and usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def applied(server) -> Iterator[None]:
    """The example app in namespace `ctl`, applied once by kubectl for the read-only tests."""
    server.kubectl("create", "namespace", NS)
    server.kubectl("apply", "-n", NS, "-f", str(EXAMPLE))
    yield
    server.kubectl("delete", "namespace", NS, "--wait=false")


def test_apply_reports_created_unchanged_configured(server, ctl):
    server.kubectl("create", "namespace", "apply")
    first = ctl("-n", "apply", "apply", "-f", str(EXAMPLE))
    assert first.code == 0, first.err
    assert first.out.splitlines() == [
        "configmap/web-config created", "secret/web-secret created",
        "deployment.apps/web created", "service/web created",
        "ingress.networking.k8s.io/web created"]
    again = ctl("apply", "-f", str(EXAMPLE), "-n", "apply")
    assert again.out.count(" unchanged") == 5, again.out

    edited = EXAMPLE.read_text().replace("greeting: hello", "greeting: hi")
    changed = ctl("-n", "apply", "apply", "-f", "-", stdin=edited)
    assert "configmap/web-config configured" in changed.out
    assert "deployment.apps/web unchanged" in changed.out
    cm = server.kubectl_json("get", "cm", "web-config", "-n", "apply", "--show-managed-fields")
    assert cm["data"] == {"greeting": "hi"}
    assert {m["manager"] for m in cm["metadata"]["managedFields"]} == {"kubelite-ctl"}

    server.kubectl("patch", "cm", "web-config", "-n", "apply", "--type=merge",
                   "-p", '{"data":{"greeting":"theirs"}}')
    conflict = ctl("-n", "apply", "apply", "-f", "-", stdin=edited)
    assert conflict.code == 1
    assert 'conflict with "kubectl-patch"' in conflict.err and ".data.greeting" in conflict.err
    forced = ctl("-n", "apply", "apply", "--force-conflicts", "-f", "-", stdin=edited)
    assert forced.code == 0 and "configmap/web-config configured" in forced.out


def test_apply_directory_and_namespace_from_file(server, ctl, tmp_path):
    server.kubectl("create", "namespace", "fromfile")
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: fromfile}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "b", "namespace": "fromfile"}}]}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    result = ctl("apply", "-f", str(tmp_path))
    assert result.out.splitlines() == ["configmap/a created", "configmap/b created"]
    clash = ctl("-n", "default", "apply", "-f", str(tmp_path / "a.yaml"))
    assert clash.code == 1
    assert 'namespace from the provided object "fromfile" does not match' in clash.err


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.mark.usefixtures("applied")
@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["get", "deployments"], [["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]],
                 id="plural-name-gives-the-server-columns"),
    pytest.param(["get", "deployment.apps", "web"], [["NAME", "READY", "UP-TO-DATE",
                 "AVAILABLE", "AGE"]], id="kind-dot-group"),
    pytest.param(["get", "cm/web-config", "-o", "name"], [["configmap/web-config"]],
                 id="kind-slash-name-as-name"),
    pytest.param(["get", "ing", "-o", "name"], [["ingress.networking.k8s.io/web"]],
                 id="short-name-with-group-in-name-output"),
    pytest.param(["get", "deploy,svc", "-o", "name"], [["deployment.apps/web"], ["service/web"]],
                 id="several-kinds"),
    pytest.param(["get", "deploy", "-l", "app=web", "-o", "name"], [["deployment.apps/web"]],
                 id="label-selector"),
    pytest.param(["get", "secrets", "--field-selector", "type=Opaque", "-o", "name"],
                 [["secret/web-secret"]], id="field-selector"),
])
def test_get_selects_objects(ctl, args, expected):
    result = ctl("-n", NS, *args)
    assert result.code == 0, result.err
    assert table(result.out)[:len(expected)] == expected


@pytest.mark.usefixtures("applied")
def test_get_table_layouts(ctl):
    plain = ctl("get", "deploy", "web", "-n", NS).out.splitlines()
    assert plain[0].startswith("NAME   READY   UP-TO-DATE   AVAILABLE   AGE")
    assert plain[1].startswith("web    ")
    wide = table(ctl("-n", NS, "get", "deploy", "-o", "wide").out)
    assert wide[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1][-3:] == ["web,sidecar", "busybox:1.36,busybox:1.36", "app=web"]
    both = ctl("-n", NS, "get", "deploy,svc").out.split("\n\n")
    assert table(both[0])[1][0] == "deployment.apps/web"
    assert table(both[1])[0][:3] == ["NAME", "TYPE", "CLUSTER-IP"]
    assert table(both[1])[1][0] == "service/web"
    everywhere = table(ctl("get", "svc", "-A").out)
    assert everywhere[0][:2] == ["NAMESPACE", "NAME"]
    assert [NS, "web"] in [row[:2] for row in everywhere]


@pytest.mark.usefixtures("applied")
def test_get_documents(ctl):
    one = yaml.safe_load(ctl("-n", NS, "get", "svc", "web", "-o", "yaml").out)
    assert one["kind"] == "Service" and one["spec"]["ports"][0]["port"] == 80
    listed = json.loads(ctl("-n", NS, "get", "cm,secret", "-o", "json").out)
    assert listed["kind"] == "List"
    assert {(o["kind"], o["metadata"]["name"]) for o in listed["items"]} >= {
        ("ConfigMap", "web-config"), ("Secret", "web-secret")}


def test_get_empty_list_says_so_on_stderr(server, ctl):
    server.kubectl("create", "namespace", "empty")
    result = ctl("-n", "empty", "get", "deployments")
    assert (result.code, result.out) == (0, "")
    assert result.err == "No resources found in empty namespace.\n"


def test_describe_shows_fields_conditions_and_events(server, ctl):
    server.kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "describe-me", "labels": {"zone": "a", "disk": "ssd"}}}))
    server.kubectl("patch", "node", "describe-me", "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"conditions": [
                       {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}}))
    uid = server.kubectl_json("get", "node", "describe-me")["metadata"]["uid"]
    server.kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev1", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": "describe-me", "uid": uid},
        "reason": "Rebooted", "message": "node rebooted", "type": "Warning", "count": 3,
        "source": {"component": "test"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}))
    out = ctl("describe", "node", "describe-me").out.splitlines()
    assert out[:3] == ["Name:         describe-me", "Labels:       disk=ssd",
                       "              zone=a"]
    assert "Kind:         Node" in out and "Metadata:" in out
    conditions = out.index("Conditions:")
    assert table("\n".join(out[conditions + 1:conditions + 4])) == [
        ["Type", "Status", "Reason"], ["----", "------", "------"],
        ["Ready", "False", "KubeletNotReady"]]
    events = out.index("Events:")
    assert out[events + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert out[events + 3].split()[:2] == ["Warning", "Rebooted"]
    assert out[events + 3].endswith("  test  node rebooted")
    assert "(x3 over" in out[events + 3]


@pytest.mark.usefixtures("applied")
def test_describe_config_map_and_secret(ctl):
    cm = ctl("-n", NS, "describe", "configmap", "web-config").out
    assert f"Namespace:    {NS}\n" in cm
    assert "Data\n====\ngreeting:\n----\nhello\n\nBinaryData\n====\n\nEvents:  <none>" in cm
    secret = ctl("-n", NS, "describe", "secret/web-secret").out
    assert "password:  6 bytes" in secret and "s3cret" not in secret


def test_delete_cascades_and_waits(server, ctl):
    server.kubectl("create", "configmap", "owner")
    uid = server.kubectl_json("get", "cm", "owner")["metadata"]["uid"]
    server.kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dependent",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                             "uid": uid, "blockOwnerDeletion": True}]}}))
    result = ctl("delete", "cm", "owner", "--cascade=foreground", "--wait")
    assert (result.code, result.out) == (0, 'configmap "owner" deleted\n')
    # --wait returned only after the garbage collector removed the dependent and the owner.
    gone = server.kubectl("get", "cm", "owner", "dependent", check=False)
    assert gone.stderr.count("NotFound") == 2


def test_delete_wait_follows_finalizers(server, ctl):
    server.kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}))

    def release() -> None:
        time.sleep(1)
        server.kubectl("patch", "cm", "held", "--type=json",
                       "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')

    releaser = threading.Thread(target=release)
    releaser.start()
    started = time.monotonic()
    result = ctl("delete", "configmap/held", "--wait=true")
    releaser.join()
    assert result.code == 0 and time.monotonic() - started >= 1
    assert server.kubectl("get", "cm", "held", check=False).returncode == 1


def test_delete_from_file_and_missing_objects(server, ctl):
    server.kubectl("create", "namespace", "del")
    server.kubectl("apply", "-n", "del", "-f", str(EXAMPLE))
    result = ctl("-n", "del", "delete", "-f", str(EXAMPLE))
    assert result.code == 0
    assert 'deployment.apps "web" deleted' in result.out and 'service "web" deleted' in result.out
    again = ctl("-n", "del", "delete", "svc", "web", "nope")
    assert again.code == 1
    assert again.err.splitlines() == ['Error from server (NotFound): services "web" not found',
                                      'Error from server (NotFound): services "nope" not found']


def test_logs_of_a_pod_not_yet_on_a_node_are_empty(server, ctl):
    # A selector no node has keeps the pod unscheduled whatever nodes other tests made.
    server.kubectl("run", "logme", "--image=busybox:1.36", "--overrides",
                   '{"spec":{"nodeSelector":{"kubelite.io/none":"x"}}}')
    result = ctl("logs", "logme", "--tail", "5")
    assert result.code == 0 and result.out == ""


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["get", "pods", "nope"], 'Error from server (NotFound): pods "nope" not found',
                 id="missing-object"),
    pytest.param(["get", "nosuchkind"], 'error: the server doesn\'t have a resource type '
                 '"nosuchkind"', id="unknown-kind"),
    pytest.param(["get", "pods", "x", "-A"], "cannot be retrieved by name across all "
                 "namespaces", id="name-with-all-namespaces"),
    pytest.param(["describe", "deploy", "nope"], 'deployments.apps "nope" not found',
                 id="describe-missing"),
    pytest.param(["logs", "nope"], 'Error from server (NotFound): pods "nope" not found',
                 id="logs-missing-pod"),
    pytest.param(["delete", "pods"], "no name was specified", id="delete-without-name"),
    pytest.param(["apply", "-f", "-"], "no objects passed to apply", id="apply-nothing"),
    pytest.param(["--kubeconfig", "/nonexistent", "get", "pods"], "kubeconfig /nonexistent "
                 "does not exist", id="missing-kubeconfig"),
    pytest.param(["get", "pods", "-o", "table"], "invalid choice: 'table'", id="bad-flag"),
])
def test_errors_exit_1_with_kubectl_messages(ctl, args, message):
    result = ctl(*args, stdin="")
    assert result.code in (1, 2) and message in result.err
    assert result.code == (2 if "invalid choice" in message else 1)


def test_invalid_object_reports_the_server_status(ctl):
    result = ctl("apply", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\n"
                 "metadata:\n  name: Bad_Name\n")
    assert result.code == 1
    assert result.err.startswith('Error from server (Invalid): ConfigMap "Bad_Name" is invalid')


@pytest.mark.parametrize("verb", ["get", "apply", "delete", "describe", "logs"])
def test_every_verb_has_help(ctl, verb):
    result = ctl(verb, "--help")
    assert result.code == 0 and result.out.startswith(f"usage: kubelite ctl {verb}")


def test_the_kubelite_binary_exits_1_on_errors(server):
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
    result = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "ctl", "get", "ns",
                             "nope"], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 1
    assert result.stderr == 'Error from server (NotFound): namespaces "nope" not found\n'
