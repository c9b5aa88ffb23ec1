"""A real API server, a real node agent and real runc containers, driven with kubectl.

Everything the agent creates on the host (containers, mounts, cgroups,
namespaces, files) is removed after the module, also when a test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.ports import free_port

pytestmark = pytest.mark.e2e

NODE = "agent-e2e"


def _need_host() -> None:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("real containers need root and runc")
    if not (Path("/bin/busybox").exists() or Path("/usr/bin/busybox").exists()):
        pytest.skip("busybox-static is not installed")


@dataclass
class Agent:
    server: Server
    root: Path
    port: int
    cgroup_root: str
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        pki = self.server.data_dir / "pki"
        log = open(self.root.parent / f"{self.root.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.cli.main", "agent", "--kubeconfig",
             str(self.server.kubeconfig), "--node-name", NODE, "--root", str(self.root),
             "--port", str(self.port), "--address", "127.0.0.1", "--node-ip", "127.0.0.1",
             "--cgroup-root", self.cgroup_root, "--cluster-ca-cert", str(pki / "ca.crt"),
             "--cluster-ca-key", str(pki / "ca.key")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        """Remove every container, mount and cgroup the agent left (it leaves them on exit)."""
        from kubelite.runtime import cgroups, mounts
        from kubelite.runtime.images import OCIImageStore
        from kubelite.runtime.runc import RuncRuntime

        async def sweep() -> None:
            images = OCIImageStore(self.root)
            rt = await RuncRuntime.open(self.root / "runtime", images=images,
                                        cgroup_root=self.cgroup_root)
            for sb in await rt.list_sandboxes():
                await rt.remove_sandbox(sb.id)
            for c in await rt.list_containers():
                await rt.remove_container(c.id)
            cgroups.remove(rt.cgroups, self.cgroup_root)

        asyncio.run(sweep())
        mounts.unmount_all(str(self.root))
        shutil.rmtree(self.root, ignore_errors=True)

    def get(self, path: str, token: str) -> str:
        """GET from the agent's HTTPS endpoint, verified against the cluster CA."""
        ctx = ssl.create_default_context(cafile=str(self.server.data_dir / "pki" / "ca.crt"))
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.read().decode()


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


@pytest.fixture(scope="module")
def agent(server: Server) -> Iterator[Agent]:
    _need_host()
    root = Path(tempfile.mkdtemp(prefix="kla-", dir="/tmp"))
    archive = root.parent / f"{root.name}-busybox.tar"
    subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "busybox", "-o",
                    str(archive)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "import", str(archive),
                    "--root", str(root)], check=True, capture_output=True)
    archive.unlink()
    a = Agent(server, root, free_port(), f"/kubelite-e2e-{secrets.token_hex(4)}")
    a.start()
    try:
        wait_until(lambda: "True" in server.kubectl(
            "get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False).stdout)
        yield a
    finally:
        server.kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s", check=False)
        a.stop()
        a.cleanup()
        (root.parent / f"{root.name}.log").unlink(missing_ok=True)


def pod_json(server: Server, name: str) -> dict[str, Any]:
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)


def container_status(server: Server, pod: str, name: str) -> dict[str, Any]:
    status = pod_json(server, pod).get("status") or {}
    for cs in [*(status.get("containerStatuses") or []),
               *(status.get("initContainerStatuses") or [])]:
        if cs["name"] == name:
            return cs
    return {}


def phase(server: Server, pod: str) -> str:
    return (pod_json(server, pod).get("status") or {}).get("phase", "")


DEMO = """
apiVersion: v1
kind: ConfigMap
metadata: {name: demo-cfg}
data: {greeting: hello, file.txt: content-1}
---
apiVersion: v1
kind: Secret
metadata: {name: demo-sec}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: demo}
spec:
  nodeName: agent-e2e
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: init
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo from-init > /shared/init.txt"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo started $GREETING $PASSWORD; while true; do cat /cfg/file.txt; echo; sleep 0.2; done"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: demo-cfg, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: demo-sec, key: password}}}
    volumeMounts: [{name: cfg, mountPath: /cfg}, {name: shared, mountPath: /shared}]
  - name: side
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /shared/init.txt; exec sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  volumes:
  - {name: cfg, configMap: {name: demo-cfg}}
  - {name: shared, emptyDir: {}}
"""


def test_pod_with_init_env_and_volumes_runs(server: Server, agent: Agent) -> None:
    server.kubectl("apply", "-f", "-", input=DEMO)
    wait_until(lambda: phase(server, "demo") == "Running")
    token = (server.data_dir / "admin.token").read_text().strip()
    logs = wait_until(lambda: agent.get("/containerLogs/default/demo/app", token))
    assert logs.startswith("started hello s3cret\n")
    assert agent.get("/containerLogs/default/demo/side", token) == "from-init\n"
    tail = agent.get("/containerLogs/default/demo/app?tailLines=1&timestamps=true", token)
    assert tail.count("\n") == 1 and tail.split(" ", 1)[1] == "content-1\n"
    # A changed ConfigMap reaches the mounted file without a restart.
    server.kubectl("patch", "configmap", "demo-cfg", "-p", '{"data":{"file.txt":"content-2"}}')
    wait_until(lambda: agent.get("/containerLogs/default/demo/app?tailLines=1", token)
               == "content-2\n", timeout=20)
    assert container_status(server, "demo", "app")["restartCount"] == 0
    described = server.kubectl("get", "pod", "demo").stdout
    assert "2/2" in described and "Running" in described


def test_kubectl_logs_and_exec_through_the_api_server(server: Server, agent: Agent) -> None:
    server.kubectl("apply", "-f", "-", input=DEMO)
    wait_until(lambda: phase(server, "demo") == "Running")
    assert server.kubectl("logs", "demo", "-c", "side").stdout == "from-init\n"
    out = server.kubectl("exec", "demo", "-c", "side", "--", "sh", "-c", "echo $HOSTNAME")
    assert out.stdout.strip() == "demo"
    failed = server.kubectl("exec", "demo", "-c", "side", "--", "sh", "-c", "exit 3",
                            check=False)
    assert failed.returncode == 3
    piped = server.kubectl("exec", "-i", "demo", "-c", "side", "--", "cat", input="through\n")
    assert piped.stdout == "through\n"


def test_crash_loop_back_off_with_growing_restart_count(server: Server, agent: Agent) -> None:
    server.kubectl("run", "crash", "--image=busybox", "--image-pull-policy=IfNotPresent",
                   "--overrides", json.dumps({"spec": {"nodeName": NODE}}),
                   "--", "sh", "-c", "echo dying; exit 1")
    wait_until(lambda: container_status(server, "crash", "crash").get("restartCount", 0) >= 2,
               timeout=45)
    cs = wait_until(lambda: (c := container_status(server, "crash", "crash")) and
                    (c.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
                    and c, timeout=30)
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert "CrashLoopBackOff" in server.kubectl("get", "pod", "crash").stdout
    server.kubectl("delete", "pod", "crash", "--wait=true")


def test_oom_killed_container_is_reported(server: Server, agent: Agent) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oom"},
        "spec": {"nodeName": NODE, "restartPolicy": "Never", "containers": [{
            "name": "hog", "image": "busybox", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "cat /dev/zero | head -c 200m | tail > /dev/null"],
            "resources": {"limits": {"memory": "20Mi", "cpu": "250m"}}}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_until(lambda: phase(server, "oom") == "Failed", timeout=30)
    terminated = container_status(server, "oom", "hog")["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    server.kubectl("delete", "pod", "oom", "--wait=true")


def test_deletion_stops_with_grace_and_leaves_nothing(server: Server, agent: Agent) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stubborn"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "app", "image": "busybox", "imagePullPolicy": "IfNotPresent",
            # PID 1 ignores SIGTERM by default: only SIGKILL ends it.
            "command": ["sleep", "3600"],
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye"]}}}}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_until(lambda: phase(server, "stubborn") == "Running")
    uid = pod_json(server, "stubborn")["metadata"]["uid"]
    started = time.monotonic()
    server.kubectl("delete", "pod", "stubborn", "--wait=true")
    took = time.monotonic() - started
    assert 1.5 <= took < 15
    assert not (agent.root / "pods" / uid).exists()
    assert not any(uid in p.name for p in (agent.root / "logs").iterdir())
    assert uid not in Path("/proc/self/mountinfo").read_text()
    events = server.kubectl("get", "events", "--field-selector",
                            "involvedObject.name=stubborn").stdout
    assert "Stopping container app" in events


def test_bad_input_gives_reasons_and_other_pods_keep_running(server: Server,
                                                             agent: Agent) -> None:
    bad = [
        ("badimage", {"image": "Not A Valid:Image"}),
        ("badcmd", {"image": "busybox", "command": ["/no/such/binary"]}),
        ("badvol", {"image": "busybox", "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}),
    ]
    for name, spec in bad:
        pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                               "spec": {"nodeName": NODE, "containers": [{
                                   "name": "c", "imagePullPolicy": "IfNotPresent", **spec}]}}
        if name == "badvol":
            pod["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "missing"}}]
        server.kubectl("apply", "-f", "-", input=json.dumps(pod))
    server.kubectl("run", "fine", "--image=busybox", "--image-pull-policy=IfNotPresent",
                   "--overrides", json.dumps({"spec": {"nodeName": NODE}}), "--", "sleep", "3600")

    def reason(pod: str) -> str:
        state = container_status(server, pod, "c").get("state") or {}
        last = container_status(server, pod, "c").get("lastState") or {}
        return str(state.get("waiting", {}).get("reason") or last.get("terminated", {}).get(
            "reason") or "")

    wait_until(lambda: reason("badimage") == "InvalidImageName")
    wait_until(lambda: reason("badcmd") in ("RunContainerError", "CrashLoopBackOff",
                                            "StartError", "CreateContainerError"))
    wait_until(lambda: reason("badvol") == "ContainerCreating")
    wait_until(lambda: phase(server, "fine") == "Running")
    events = server.kubectl("get", "events").stdout
    assert 'configmap "missing" not found' in events
    assert "FailedMount" in events
    for name in ("badimage", "badcmd", "badvol", "fine"):
        server.kubectl("delete", "pod", name, "--wait=false")


def test_killed_agent_comes_back_and_adopts_containers(server: Server, agent: Agent) -> None:
    names = [f"keep-{i}" for i in range(3)]
    for name in names:
        server.kubectl("run", name, "--image=busybox", "--image-pull-policy=IfNotPresent",
                       "--overrides", json.dumps({"spec": {"nodeName": NODE}}),
                       "--", "sleep", "3600")
    for name in names:
        wait_until(lambda n=name: phase(server, n) == "Running")
    before = {n: container_status(server, n, n)["containerID"] for n in names}
    agent.stop(signal.SIGKILL)
    agent.start()
    time.sleep(3)
    wait_until(lambda: "True" in server.kubectl(
        "get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    ).stdout)
    after = {n: container_status(server, n, n)["containerID"] for n in names}
    assert after == before
    assert all(container_status(server, n, n)["restartCount"] == 0 for n in names)
    assert all(phase(server, n) == "Running" for n in names)
    for name in names:
        server.kubectl("delete", "pod", name, "--wait=false")


def ready_condition(server: Server, pod: str) -> str:
    for cond in (pod_json(server, pod).get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return str(cond["status"])
    return ""


def test_probes_inside_the_pod_network_namespace(server: Server, agent: Agent) -> None:
    script = ("mkdir -p /www; touch /www/ready /tmp/healthy; httpd -p 8080 -h /www; "
              "sleep 4; rm /www/ready; sleep 4; touch /www/ready; "
              "sleep 2; rm /tmp/healthy; exec sleep 3600")
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": "busybox", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script],
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
            # The pod has only its own loopback: these reach it through setns.
            "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                               "periodSeconds": 1, "failureThreshold": 1},
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                              "periodSeconds": 1, "failureThreshold": 2}}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_until(lambda: ready_condition(server, "probed") == "True", timeout=30)
    cid = container_status(server, "probed", "web")["containerID"].split("://", 1)[1]
    uid = pod_json(server, "probed")["metadata"]["uid"]
    quota = Path(f"/sys/fs/cgroup/cpu{agent.cgroup_root}/pod{uid}/{cid}/cpu.cfs_quota_us")
    assert quota.read_text().strip() == "25000"
    wait_until(lambda: ready_condition(server, "probed") == "False", timeout=15)
    wait_until(lambda: ready_condition(server, "probed") == "True", timeout=15)
    wait_until(lambda: container_status(server, "probed", "web").get("restartCount", 0) >= 1,
               timeout=20)
    events = server.kubectl("get", "events", "--field-selector",
                            "involvedObject.name=probed").stdout
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in events
    assert "failed liveness probe, will be restarted" in events
    server.kubectl("delete", "pod", "probed", "--wait=false")


def test_kubectl_port_forward_reaches_the_pod(server: Server, agent: Agent) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fwd"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": "busybox", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "mkdir /www; echo forwarded > /www/index.html; "
                                    "exec httpd -f -p 8080 -h /www"]}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_until(lambda: phase(server, "fwd") == "Running")
    local = free_port()
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(server.kubeconfig), "port-forward", "pod/fwd",
         f"{local}:8080"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        assert f"Forwarding from 127.0.0.1:{local} -> 8080" in proc.stdout.readline()
        for _ in range(3):  # each request is a new stream over the same connection
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as resp:
                assert resp.read() == b"forwarded\n"
    finally:
        proc.terminate()
        proc.wait(10)
    server.kubectl("delete", "pod", "fwd", "--wait=false")


def test_pull_from_a_registry_with_pull_secret_and_back_off_when_missing(
        server: Server, agent: Agent, tmp_path: Path) -> None:
    from tests.runtime.registry_fixture import Registry, have_registry_tools

    if reason := have_registry_tools():
        pytest.skip(reason)
    archive = tmp_path / "busybox.tar"
    subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "busybox", "-o",
                    str(archive)], check=True, capture_output=True)
    registry = Registry(tmp_path, auth="basic")
    asyncio.run(registry.start())
    try:
        asyncio.run(registry.push(archive, "team/tool:v1"))
        server.kubectl("create", "secret", "docker-registry", "regcred",
                       f"--docker-server={registry.host}", f"--docker-username={registry.user}",
                       f"--docker-password={registry.password}")
        for name, image, secret in (("pulled", f"{registry.host}/team/tool:v1", True),
                                    ("denied", f"{registry.host}/team/tool:v1", False),
                                    ("absent", f"{registry.host}/team/absent:v1", True)):
            # Always: without it the pod without credentials would run the image the
            # first pod pulled, as Kubernetes allows.
            spec: dict[str, Any] = {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                                    "containers": [{"name": "c", "image": image,
                                                    "imagePullPolicy": "Always",
                                                    "command": ["sleep", "3600"]}]}
            if secret:
                spec["imagePullSecrets"] = [{"name": "regcred"}]
            server.kubectl("apply", "-f", "-", input=json.dumps(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
        wait_until(lambda: phase(server, "pulled") == "Running", timeout=60)

        def waiting(pod: str) -> str:
            state = container_status(server, pod, "c").get("state") or {}
            return str(state.get("waiting", {}).get("reason", ""))

        for pod in ("denied", "absent"):
            # ErrImagePull shows only until the next sync: the events keep both.
            wait_until(lambda p=pod: waiting(p) == "ImagePullBackOff", timeout=60)
            events = server.kubectl("get", "events", "--field-selector",
                                    f"involvedObject.name={pod}").stdout
            assert "Error: ErrImagePull" in events and "Error: ImagePullBackOff" in events
        events = server.kubectl("get", "events", "--field-selector",
                                "involvedObject.name=pulled").stdout
        assert f'Successfully pulled image "{registry.host}/team/tool:v1"' in events
    finally:
        for name in ("pulled", "denied", "absent"):
            server.kubectl("delete", "pod", name, "--wait=false", check=False)
        server.kubectl("delete", "secret", "regcred", check=False)
        asyncio.run(registry.stop())


def test_kubectl_top_reads_usage_from_the_agent(server: Server, agent: Agent) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "burner", "labels": {"a": "b"}},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0, "containers": [{
            "name": "spin", "image": "busybox", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "while :; do :; done"],
            "resources": {"limits": {"cpu": "200m", "memory": "32Mi"}}}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_until(lambda: phase(server, "burner") == "Running")

    def top_cpu() -> int:
        out = server.kubectl("top", "pod", "-l", "a=b", "--no-headers", check=False).stdout
        fields = out.split()
        return int(fields[1].rstrip("m")) if len(fields) == 3 and fields[0] == "burner" else 0

    # The CPU quota caps the spinning loop at 200m; a rate needs two samples 5 s apart.
    cpu = wait_until(top_cpu, timeout=30)
    assert 120 <= cpu <= 230, cpu
    nodes = server.kubectl("top", "node", "--no-headers").stdout.split()
    assert nodes[0] == NODE and int(nodes[1].rstrip("m")) >= 120
    per_container = server.kubectl("top", "pod", "burner", "--containers", "--no-headers").stdout
    assert per_container.split()[:2] == ["burner", "spin"]
    missing = server.kubectl("top", "pod", "nope", check=False)
    assert missing.returncode != 0 and 'podmetrics.metrics.k8s.io "default/nope" not found' in missing.stderr
    server.kubectl("delete", "pod", "burner", "--wait=false")


def test_horizontal_pod_autoscaler_scales_on_cpu(server: Server, agent: Agent) -> None:
    server.kubectl("create", "deployment", "spinner", "--image=busybox", "--replicas=1",
                   "--", "sh", "-c", "while :; do :; done")
    server.kubectl("set", "resources", "deployment", "spinner", "--requests=cpu=50m",
                   "--limits=cpu=100m,memory=32Mi")
    server.kubectl("patch", "deployment", "spinner", "-p", json.dumps({"spec": {"template": {
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "busybox", "imagePullPolicy": "IfNotPresent"}]}}}}))
    # Each pod spins at its 100m limit against a 50m request: 200% of a 50% target.
    # kubectl autoscale writes autoscaling/v1; the controller works on v2.
    server.kubectl("autoscale", "deployment", "spinner", "--min=1", "--max=3",
                   "--cpu-percent=50")
    try:
        wait_until(lambda: server.kubectl(
            "get", "deployment", "spinner", "-o", "jsonpath={.spec.replicas}").stdout == "3",
            timeout=60)
        hpa = json.loads(server.kubectl("get", "hpa", "spinner", "-o", "json").stdout)
        status = hpa["status"]
        assert status["desiredReplicas"] == 3
        [metric] = status["currentMetrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["current"]["averageUtilization"] > 100
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["ScalingActive"]["status"] == "True"
        assert conditions["ScalingLimited"]["reason"] == "TooManyReplicas"
        events = server.kubectl("get", "events", "--field-selector",
                                "involvedObject.name=spinner").stdout
        assert "SuccessfulRescale" in events
        assert "cpu resource utilization (percentage of request) above target" in events
        as_v1 = json.loads(server.kubectl("get", "horizontalpodautoscalers.v1.autoscaling",
                                          "spinner", "-o", "json").stdout)
        assert as_v1["spec"]["targetCPUUtilizationPercentage"] == 50
        assert as_v1["status"]["currentCPUUtilizationPercentage"] > 100
        noted = json.loads(as_v1["metadata"]["annotations"][
            "autoscaling.alpha.kubernetes.io/conditions"])
        assert {c["type"] for c in noted} >= {"ScalingActive", "ScalingLimited"}
    finally:
        server.kubectl("delete", "hpa", "spinner", check=False)
        server.kubectl("delete", "deployment", "spinner", check=False)
