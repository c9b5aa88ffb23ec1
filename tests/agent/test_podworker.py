"""Pod workers against the fake runtime: starting, restarting, probing, deleting,
bad input, adoption after an agent restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent.podmanager import PodManager
from kubelite.runtime.base import SandboxConfig
from tests.agent.fakes import Harness, container, eventually, harness, make_pod

Obj = dict[str, Any]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[tuple[Harness, PodManager]]:
    hs = harness(tmp_path)
    pods = PodManager(hs.ctx)
    await pods.start()
    try:
        yield hs, pods
    finally:
        await pods.stop()


def status_of(hs: Harness, name: str, namespace: str = "default") -> Obj:
    return hs.client.pod(namespace, name).get("status") or {}


def cstatus(hs: Harness, pod: str, container_name: str, group: str = "containerStatuses") -> Obj:
    for cs in status_of(hs, pod).get(group) or []:
        if cs["name"] == container_name:
            return cs
    return {}


def condition(hs: Harness, pod: str, kind: str) -> str:
    for c in status_of(hs, pod).get("conditions") or []:
        if c["type"] == kind:
            return c["status"]
    return ""


async def test_pod_runs_and_reports_running(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("web"))
    await eventually(lambda: status_of(hs, "web").get("phase") == "Running")
    cs = cstatus(hs, "web", "app")
    assert "running" in cs["state"] and cs["ready"] and cs["started"]
    assert cs["containerID"].startswith("fake://") and cs["restartCount"] == 0
    assert cs["image"] == "docker.io/library/busybox:latest"
    assert condition(hs, "web", "Ready") == "True"
    assert status_of(hs, "web")["hostIP"] == "10.0.0.5"
    assert hs.recorder.messages("Created") == ["Created container: app"]
    assert hs.recorder.messages("Started") == ["Started container app"]
    assert hs.recorder.messages("Pulled") == ['Container image "busybox" already present on machine']


async def test_init_containers_run_in_order_before_apps(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("init", init=[container("one", "exit", "0"),
                                             container("two", "exit", "0")]))
    await eventually(lambda: status_of(hs, "init").get("phase") == "Running")
    starts = [c[1] for c in hs.runtime.calls if c[0] == "start"]
    assert starts == ["one", "two", "app"]
    assert cstatus(hs, "init", "one", "initContainerStatuses")["state"]["terminated"]["reason"] \
        == "Completed"
    assert condition(hs, "init", "Initialized") == "True"


async def test_sidecar_init_container_keeps_running(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("side", init=[container("proxy", "sleep", "1000",
                                                       restartPolicy="Always")]))
    await eventually(lambda: status_of(hs, "side").get("phase") == "Running")
    assert hs.runtime.running("proxy") and hs.runtime.running("app")
    assert cstatus(hs, "side", "proxy", "initContainerStatuses")["started"] is True


async def test_crashing_container_backs_off_into_crash_loop(
        h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("crash", containers=[container("app", "exit", "1")]))
    await eventually(lambda: cstatus(hs, "crash", "app").get("restartCount", 0) >= 2)
    await eventually(lambda: "CrashLoopBackOff" in str(cstatus(hs, "crash", "app")["state"]))
    cs = cstatus(hs, "crash", "app")
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["state"]["waiting"]["message"].startswith("back-off ")
    assert "restarting failed container=app pod=crash_default(uid-crash)" \
        in cs["state"]["waiting"]["message"]
    assert status_of(hs, "crash")["phase"] == "Running"
    assert "Back-off restarting failed container app in pod crash_default(uid-crash)" \
        in hs.recorder.messages("BackOff")
    # The first restart is immediate, the next ones wait 0.2 s, then 0.4 s ...
    starts = [c for c in hs.runtime.calls if c[0] == "start"]
    assert len(starts) >= 3


@pytest.mark.parametrize(("policy", "code", "phase", "restarts"), [
    ("Never", 0, "Succeeded", 0),
    ("Never", 3, "Failed", 0),
    ("OnFailure", 0, "Succeeded", 0),
], ids=["never-success", "never-failure", "onfailure-success"])
async def test_restart_policy_decides_terminal_phase(
        h: tuple[Harness, PodManager], policy: str, code: int, phase: str, restarts: int) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("job", containers=[container("app", "exit", str(code))],
                               restartPolicy=policy))
    await eventually(lambda: status_of(hs, "job").get("phase") == phase)
    cs = cstatus(hs, "job", "app")
    assert cs["state"]["terminated"]["exitCode"] == code
    assert cs["restartCount"] == restarts
    assert condition(hs, "job", "Ready") == "False"
    # The sandbox is gone once the pod is over, the status stays.
    await eventually(lambda: not hs.runtime.sandboxes)


async def test_deletion_runs_prestop_then_stops_and_deletes_pod(
        h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    app = container("app", "sleep", "1000",
                    lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo bye"]}}})
    pod = hs.client.add_pod(make_pod("gone", containers=[app], terminationGracePeriodSeconds=5))
    await eventually(lambda: status_of(hs, "gone").get("phase") == "Running")
    pod = hs.client.pod("default", "gone")
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 5
    hs.client.add_pod(pod)
    await eventually(lambda: ("default/gone", 0, {"uid": "uid-gone"}) in hs.client.deleted)
    kinds = [c[0] for c in hs.runtime.calls]
    assert kinds.index("exec") < kinds.index("stop")
    stop = next(c for c in hs.runtime.calls if c[0] == "stop")
    assert 4.0 <= stop[2] <= 5.0
    assert not hs.runtime.sandboxes and not hs.runtime.containers
    assert "Stopping container app" in hs.recorder.messages("Killing")


async def test_sigkill_after_grace_period(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("stubborn", containers=[container("app", "ignore-term")],
                               terminationGracePeriodSeconds=1))
    await eventually(lambda: status_of(hs, "stubborn").get("phase") == "Running")
    started = time.monotonic()
    hs.client.remove_pod("default", "stubborn")
    await eventually(lambda: not hs.runtime.containers)
    # The 2 s minimum grace of kubelet applies.
    assert time.monotonic() - started >= 1.9


@pytest.mark.parametrize(("app", "reason", "message_part"), [
    (container("app", "sleep", "1", image="Bad Image!"), "InvalidImageName",
     'image name "Bad Image!": invalid reference format'),
    (container("app", "notfound"), "RunContainerError", "executable file not found"),
    (container("app", "sleep", "1", image="missing:1"), "ErrImagePull", "not found"),
    (container("app", "sleep", "1", env=[{"name": "X", "valueFrom": {"configMapKeyRef": {
        "name": "nope", "key": "k"}}}]), "CreateContainerConfigError", 'configmap "nope" not found'),
], ids=["invalid-image", "missing-command", "missing-image", "missing-configmap-env"])
async def test_bad_input_shows_reason_and_others_keep_running(
        h: tuple[Harness, PodManager], app: Obj, reason: str, message_part: str) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("bad", containers=[app]))
    hs.client.add_pod(make_pod("good"))

    def waiting() -> Obj:
        return cstatus(hs, "bad", "app").get("state", {}).get("waiting") or {}

    # A failed start is retried with the crash back-off: CrashLoopBackOff may come first.
    accepted = {reason, "CrashLoopBackOff"} if reason == "RunContainerError" else {reason}
    await eventually(lambda: waiting().get("reason") in accepted)
    await eventually(lambda: status_of(hs, "good").get("phase") == "Running")
    assert message_part in str(cstatus(hs, "bad", "app")) + str(hs.recorder.events)
    assert status_of(hs, "bad")["phase"] == "Pending" or reason == "RunContainerError"


async def test_image_pull_backs_off(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    hs.client.add_pod(make_pod("pull", containers=[container("app", "sleep", "1",
                                                             image="missing:1")]))
    await eventually(lambda: "ImagePullBackOff" in str(cstatus(hs, "pull", "app")))
    assert 'Back-off pulling image "missing:1"' in hs.recorder.messages("BackOff")
    hs.images.pullable.add("docker.io/library/missing:1")
    await eventually(lambda: status_of(hs, "pull").get("phase") == "Running")


async def test_missing_configmap_volume_waits_with_failed_mount(
        h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    pod = make_pod("vol", volumes=[{"name": "cfg", "configMap": {"name": "absent"}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/cfg"}]
    hs.client.add_pod(pod)
    await eventually(lambda: bool(hs.recorder.messages("FailedMount")))
    assert hs.recorder.messages("FailedMount")[0] == \
        'MountVolume.SetUp failed for volume "cfg" : configmap "absent" not found'
    await eventually(lambda: "ContainerCreating" in str(cstatus(hs, "vol", "app")))
    hs.source.put("configmaps", "default", "absent", data={"a": "1"})
    # The informer would wake the pod at once; here the mount retry timer does.
    await eventually(lambda: status_of(hs, "vol").get("phase") == "Running", timeout=8)


async def test_liveness_failure_restarts_container(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    probe = {"exec": {"command": ["check"]}, "periodSeconds": 0.1, "failureThreshold": 2,
             "timeoutSeconds": 1}
    hs.runtime.exec_handler = lambda _cid, _cmd: (1, b"unhealthy")
    hs.client.add_pod(make_pod("live", containers=[container("app", "sleep", "1000",
                                                             livenessProbe=probe)]))
    await eventually(lambda: cstatus(hs, "live", "app").get("restartCount", 0) >= 1)
    assert "Container app failed liveness probe, will be restarted" \
        in hs.recorder.messages("Killing")
    assert "Liveness probe failed: unhealthy" in hs.recorder.messages("Unhealthy")


async def test_readiness_probe_flips_ready(h: tuple[Harness, PodManager]) -> None:
    hs, _ = h
    healthy = {"ok": True}
    hs.runtime.exec_handler = lambda _cid, _cmd: (0 if healthy["ok"] else 1, b"")
    probe = {"exec": {"command": ["check"]}, "periodSeconds": 0.05, "failureThreshold": 1}
    hs.client.add_pod(make_pod("ready", containers=[container("app", "sleep", "1000",
                                                              readinessProbe=probe)]))
    await eventually(lambda: condition(hs, "ready", "Ready") == "True")
    healthy["ok"] = False
    await eventually(lambda: condition(hs, "ready", "Ready") == "False")
    assert cstatus(hs, "ready", "app")["ready"] is False
    healthy["ok"] = True
    await eventually(lambda: condition(hs, "ready", "Ready") == "True")


async def test_restarted_agent_adopts_running_containers(tmp_path: Path) -> None:
    hs = harness(tmp_path)
    first = PodManager(hs.ctx)
    await first.start()
    hs.client.add_pod(make_pod("keep"))
    await eventually(lambda: status_of(hs, "keep").get("phase") == "Running")
    before = {cid: c.status.pid for cid, c in hs.runtime.containers.items()}
    await first.stop()
    # A sandbox of a pod that no longer exists, left behind by the dead agent.
    stray = await hs.runtime.create_sandbox(SandboxConfig(pod_uid="uid-gone", name="gone",
                                                          namespace="default", hostname="gone"))
    second = PodManager(hs.ctx)
    await second.start()
    try:
        assert stray.id not in hs.runtime.sandboxes
        await eventually(lambda: "keep" in str([w.key for w in second.workers.values()]))
        await eventually(lambda: bool(second.workers["uid-keep"].written))
        after = {cid: c.status.pid for cid, c in hs.runtime.containers.items()}
        assert after == before
        assert status_of(hs, "keep")["phase"] == "Running"
        assert [c for c in hs.runtime.calls if c[0] == "start"] == [("start", "app")]
    finally:
        await second.stop()


async def test_pods_beyond_max_pods_are_rejected(tmp_path: Path) -> None:
    hs = harness(tmp_path)
    object.__setattr__(hs.ctx, "config", replace(hs.ctx.config, max_pods=1))
    pods = PodManager(hs.ctx)
    await pods.start()
    try:
        hs.client.add_pod(make_pod("first"))
        await eventually(lambda: status_of(hs, "first").get("phase") == "Running")
        hs.client.add_pod(make_pod("second"))
        await eventually(lambda: status_of(hs, "second").get("phase") == "Failed")
        assert status_of(hs, "second")["reason"] == "OutOfpods"
        assert status_of(hs, "second")["message"] == \
            "Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1"
        assert not hs.runtime.running("second")
    finally:
        await pods.stop()
