"""Pod status from what the node observes, computed as kubelet's
generateAPIPodStatus does: phase, conditions, and a status per container.

Pure functions of a `PodView`; the pod worker gathers the view and writes the
result with the status subresource only when it differs from what was written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubelite.runtime.base import ContainerStatus

Obj = dict[str, Any]

TERMINAL = ("Succeeded", "Failed")


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class ContainerView:
    """What the node knows about one container of the spec."""

    spec: Obj
    current: ContainerStatus | None = None  # the newest instance in the runtime
    previous: ContainerStatus | None = None  # the one before it, for lastState
    restart_count: int = 0
    # Why it is not running now, e.g. ("CrashLoopBackOff", "back-off 10s ...").
    waiting: tuple[str, str] | None = None
    ready: bool = False
    started: bool = False
    termination_message: str = ""
    sidecar: bool = False

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def running(self) -> bool:
        return self.current is not None and self.current.state == "running"

    @property
    def succeeded(self) -> bool:
        c = self.current
        return c is not None and c.state == "exited" and c.exit_code == 0

    @property
    def failed(self) -> bool:
        c = self.current
        return c is not None and c.state == "exited" and c.exit_code != 0


@dataclass(slots=True)
class PodView:
    pod: Obj
    init: list[ContainerView]
    app: list[ContainerView]
    runtime_name: str
    sandbox_ready: bool
    host_ip: str
    pod_ip: str = ""
    # Set by the worker once it decided the pod is over (restartPolicy allows no more).
    terminal_phase: str = ""


def _terminated(c: ContainerStatus, runtime: str, message: str = "") -> Obj:
    state: Obj = {
        "exitCode": c.exit_code if c.exit_code is not None else 0,
        "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
        "startedAt": rfc3339(c.started_at) if c.started_at else None,
        "finishedAt": rfc3339(c.finished_at) if c.finished_at else None,
        "containerID": f"{runtime}://{c.id}",
    }
    if message or c.message:
        state["message"] = message or c.message
    return {"terminated": state}


def _image_id(c: ContainerStatus) -> str:
    if not c.image_digest:
        return ""
    repo = c.image_ref.split("@", 1)[0]
    slash, colon = repo.rfind("/"), repo.rfind(":")
    if colon > slash:
        repo = repo[:colon]
    return f"{repo}@{c.image_digest}"


def container_status(view: ContainerView, runtime: str, default_waiting: str) -> Obj:
    spec, cur = view.spec, view.current
    out: Obj = {"name": view.name, "image": spec.get("image", ""), "imageID": "",
                "ready": view.ready, "restartCount": view.restart_count,
                "started": view.started, "state": {}, "lastState": {}}
    if cur is not None:
        out["image"] = cur.image_ref or out["image"]
        out["imageID"] = _image_id(cur)
        out["containerID"] = f"{runtime}://{cur.id}"
    last = view.previous
    if cur is not None and cur.state == "running":
        out["state"] = {"running": {"startedAt": rfc3339(cur.started_at or cur.created_at)}}
    elif cur is not None and cur.state == "exited" and view.waiting is None:
        out["state"] = _terminated(cur, runtime, view.termination_message)
    else:
        reason, message = view.waiting or (default_waiting, "")
        waiting: Obj = {"reason": reason}
        if message:
            waiting["message"] = message
        out["state"] = {"waiting": waiting}
        if cur is not None and cur.state == "exited":
            last = cur
    if last is not None and last.state == "exited":
        out["lastState"] = _terminated(last, runtime)
    return out


def phase(view: PodView) -> str:
    """kubelet's getPhase over the observed containers."""
    if view.terminal_phase:
        return view.terminal_phase
    current = (view.pod.get("status") or {}).get("phase")
    if current in TERMINAL:
        return current
    policy = (view.pod.get("spec") or {}).get("restartPolicy") or "Always"
    regular_init = [c for c in view.init if not c.sidecar]
    if any(c.failed for c in regular_init) and policy == "Never":
        return "Failed"
    if not all(c.succeeded for c in regular_init):
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in view.app:
        if c.running:
            running += 1
        elif c.current is not None and c.current.state == "exited":
            stopped += 1
            succeeded += c.succeeded
        elif c.previous is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    if not ok and reason:
        cond["reason"] = reason
    if not ok and message:
        cond["message"] = message
    return cond


def conditions(view: PodView, pod_phase: str) -> list[Obj]:
    spec = view.pod.get("spec") or {}
    regular = [c for c in view.init if not c.sidecar]
    incomplete = [c.name for c in regular if not c.succeeded]
    sidecars_started = all(c.started for c in view.init if c.sidecar)
    initialized = (not incomplete and sidecars_started) or pod_phase == "Succeeded"
    unready = [c.name for c in [*[c for c in view.init if c.sidecar], *view.app] if not c.ready]
    out = [_condition("PodReadyToStartContainers", view.sandbox_ready)]
    out.append(_condition("Initialized", initialized, "ContainersNotInitialized",
                          f"containers with incomplete status: [{' '.join(incomplete)}]"))
    if pod_phase in TERMINAL:
        out.append(_condition("ContainersReady", False, "PodCompleted"))
        out.append(_condition("Ready", False, "PodCompleted"))
    else:
        ready = not unready
        message = f"containers with unready status: [{' '.join(unready)}]"
        out.append(_condition("ContainersReady", ready, "ContainersNotReady", message))
        gates_ok, gate_message = _readiness_gates(view.pod)
        if ready and not gates_ok:
            out.append(_condition("Ready", False, "ReadinessGatesNotReady", gate_message))
        else:
            out.append(_condition("Ready", ready, "ContainersNotReady", message))
    existing = {c.get("type") for c in out}
    # Conditions owned by others (PodScheduled, readiness gates, DisruptionTarget) stay.
    for cond in (view.pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") not in existing:
            out.append(cond)
    if not any(c.get("type") == "PodScheduled" for c in out) and spec.get("nodeName"):
        out.append(_condition("PodScheduled", True))
    return out


def _readiness_gates(pod: Obj) -> tuple[bool, str]:
    have = {c.get("type"): c.get("status")
            for c in (pod.get("status") or {}).get("conditions") or []}
    for gate in (pod.get("spec") or {}).get("readinessGates") or []:
        kind = gate.get("conditionType")
        if kind not in have:
            return False, f'corresponding condition of pod readiness gate "{kind}" does not exist.'
        if have[kind] != "True":
            return False, f'the status of pod readiness gate "{kind}" is not "True", but {have[kind]}'
    return True, ""


def _with_transition_times(new: list[Obj], old: list[Obj]) -> list[Obj]:
    before = {c.get("type"): c for c in old}
    stamp = now_rfc3339()
    for cond in new:
        prev = before.get(cond["type"])
        if prev is not None and prev.get("status") == cond["status"] \
                and prev.get("lastTransitionTime"):
            cond["lastTransitionTime"] = prev["lastTransitionTime"]
        else:
            cond.setdefault("lastTransitionTime", stamp)
    return new


def pod_status(view: PodView) -> Obj:
    """The whole status the agent owns (what it writes with the status subresource)."""
    old = view.pod.get("status") or {}
    pod_phase = phase(view)
    init_done = all(c.succeeded for c in view.init if not c.sidecar) and all(
        c.started for c in view.init if c.sidecar)
    default_app = "ContainerCreating" if init_done or not view.sandbox_ready \
        else "PodInitializing"
    status: Obj = {
        "phase": pod_phase,
        "conditions": _with_transition_times(conditions(view, pod_phase),
                                             old.get("conditions") or []),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}] if view.host_ip else [],
        "startTime": old.get("startTime") or now_rfc3339(),
        "containerStatuses": [container_status(c, view.runtime_name, default_app)
                              for c in view.app],
        "qosClass": old.get("qosClass"),
    }
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.init:
        default_init = "PodInitializing" if view.sandbox_ready else "ContainerCreating"
        status["initContainerStatuses"] = [
            container_status(c, view.runtime_name, default_init) for c in view.init]
    return {k: v for k, v in status.items() if v is not None}


def same_status(a: Obj, b: Obj) -> bool:
    """Whether writing `a` over `b` would change anything the agent owns."""
    return all(a.get(k) == b.get(k) for k in a)
