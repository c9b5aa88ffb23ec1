"""Pod status computation: phase, container states and conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.agent.status import ContainerView, PodView, conditions, phase, pod_status
from kubelite.runtime.base import ContainerID, ContainerStatus, SandboxID
from tests.agent.fakes import make_pod


def st(state: str, code: int | None = None, reason: str = "", n: int = 0) -> ContainerStatus:
    return ContainerStatus(id=ContainerID(f"id{n}{state}"), sandbox_id=SandboxID("sb"),
                           name="c", image_ref="docker.io/library/busybox:latest",
                           image_digest="sha256:" + "1" * 64, state=state,  # type: ignore[arg-type]
                           exit_code=code, reason=reason, started_at=100.0, finished_at=200.0)


def view(*apps: ContainerView, init: list[ContainerView] | None = None,
         policy: str = "Always") -> PodView:
    pod = make_pod("p", restartPolicy=policy)
    return PodView(pod=pod, init=init or [], app=list(apps), runtime_name="runc",
                   sandbox_ready=True, host_ip="10.0.0.5")


def cv(current: ContainerStatus | None = None, previous: ContainerStatus | None = None,
       **kw: Any) -> ContainerView:
    return ContainerView(spec={"name": "c", "image": "busybox"}, current=current,
                         previous=previous, **kw)


@dataclass
class PhaseCase:
    id: str
    view: PodView
    want: str
    extra: dict = field(default_factory=dict)


PHASES = [
    PhaseCase("nothing-started", view(cv()), "Pending"),
    PhaseCase("running", view(cv(st("running"))), "Running"),
    PhaseCase("one-running-one-waiting", view(cv(st("running")), cv()), "Pending"),
    PhaseCase("always-restarting", view(cv(st("exited", 1)), policy="Always"), "Running"),
    PhaseCase("never-all-succeeded", view(cv(st("exited", 0)), policy="Never"), "Succeeded"),
    PhaseCase("never-one-failed", view(cv(st("exited", 0)), cv(st("exited", 2)),
                                       policy="Never"), "Failed"),
    PhaseCase("onfailure-failed-restarts", view(cv(st("exited", 1)), policy="OnFailure"),
              "Running"),
    PhaseCase("crash-loop-waiting", view(cv(None, st("exited", 1), waiting=("CrashLoopBackOff", ""))),
              "Running"),
    PhaseCase("init-running", view(cv(), init=[cv(st("running"))]), "Pending"),
    PhaseCase("init-failed-never", view(cv(), init=[cv(st("exited", 1))], policy="Never"),
              "Failed"),
]


@pytest.mark.parametrize("case", PHASES, ids=[c.id for c in PHASES])
def test_phase(case: PhaseCase) -> None:
    assert phase(case.view) == case.want


def test_crash_loop_shows_waiting_with_last_state() -> None:
    dead = st("exited", 1, "Error")
    status = pod_status(view(cv(dead, waiting=("CrashLoopBackOff", "back-off 10s ..."),
                                restart_count=3)))
    (cs,) = status["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s ..."}}
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["containerID"] == f"runc://{dead.id}"
    assert cs["restartCount"] == 3
    assert cs["imageID"] == "docker.io/library/busybox@sha256:" + "1" * 64


def test_oom_killed_and_termination_message() -> None:
    status = pod_status(view(cv(st("exited", 137, "OOMKilled"), termination_message="bye"),
                             policy="Never"))
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137 and term["message"] == "bye"
    assert status["phase"] == "Failed"


def test_conditions_name_unready_and_incomplete_containers() -> None:
    v = view(cv(st("running"), ready=False, started=True),
             init=[cv(st("running"))])
    v.init[0].spec = {"name": "setup"}
    conds = {c["type"]: c for c in conditions(v, "Pending")}
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [setup]"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [c]"
    assert conds["PodScheduled"]["status"] == "True"


def test_readiness_gate_holds_ready_back() -> None:
    v = view(cv(st("running"), ready=True, started=True))
    v.pod["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}]
    conds = {c["type"]: c for c in conditions(v, "Running")}
    assert conds["ContainersReady"]["status"] == "True"
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ReadinessGatesNotReady"


def test_transition_time_kept_while_status_unchanged() -> None:
    v = view(cv(st("running"), ready=True, started=True))
    v.pod["status"]["conditions"] = [{"type": "Ready", "status": "True",
                                      "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    ready = next(c for c in pod_status(v)["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"
