"""The disruption controller: PodDisruptionBudget status, as Kubernetes'
pkg/controller/disruption.

For each budget: the pods its selector matches; expectedPods, which is their
number when minAvailable is an integer, and otherwise the scale of their
controllers (a Deployment through its ReplicaSet, a ReplicaSet, a
StatefulSet); desiredHealthy from minAvailable or maxUnavailable (percentages
rounded up); currentHealthy, the Ready pods not being deleted and not listed in
status.disruptedPods; disruptionsAllowed = currentHealthy - desiredHealthy, at
least 0. disruptedPods are the evictions the API server granted
(server/eviction.py) that have not shown up as deletions yet; an entry that
does not within two minutes is dropped, as Kubernetes' DeletionTimeout.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.client import (
    Client,
    Conflict,
    Controller,
    EventRecorder,
    InformerFactory,
    NotFound,
    object_key,
)
from kubelite.client.controller import controller_ref
from kubelite.controllers import podutil

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
PDBS = lookup("policy", "v1", "poddisruptionbudgets")
REPLICASETS = lookup("apps", "v1", "replicasets")
DEPLOYMENTS = lookup("apps", "v1", "deployments")
STATEFULSETS = lookup("apps", "v1", "statefulsets")
DELETION_TIMEOUT = 120.0


class NoController(Exception):
    """A matched pod's scale cannot be found (Kubernetes: "found no controllers")."""


def resolve(value: Any, total: int) -> int:
    """An IntOrString against `total`, percentages rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def desired_healthy(spec: Obj, expected: int) -> int:
    if spec.get("maxUnavailable") is not None:
        return max(expected - resolve(spec["maxUnavailable"], expected), 0)
    if spec.get("minAvailable") is not None:
        return resolve(spec["minAvailable"], expected)
    return expected


class DisruptionController(Controller):
    name = "disruption-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        assert PODS is not None and PDBS is not None
        assert REPLICASETS is not None and DEPLOYMENTS is not None and STATEFULSETS is not None
        self.client = client
        self.recorder = EventRecorder(client, component="controllermanager")
        self.budgets = self.watch(factory.informer(PDBS))
        self.pods = factory.informer(PODS)
        self._track(self.pods)
        self.pods.add_handlers(on_add=self._pod_changed,
                               on_update=lambda old, new: self._pod_changed(new),
                               on_delete=self._pod_changed)
        self.replicasets = self._namespace_wide(factory.informer(REPLICASETS))
        self.deployments = self._namespace_wide(factory.informer(DEPLOYMENTS))
        self.statefulsets = self._namespace_wide(factory.informer(STATEFULSETS))

    def _namespace_wide(self, informer: Any) -> Any:
        """A controller's scale changed: recount every budget of its namespace."""
        def put(obj: Obj) -> None:
            for pdb in self.budgets.by_index("namespace", obj["metadata"].get("namespace", "")):
                self.queue.add(object_key(pdb))

        informer.add_handlers(on_add=put, on_update=lambda old, new: put(new), on_delete=put)
        self._track(informer)
        return informer

    def _pod_changed(self, pod: Obj) -> None:
        labels = pod["metadata"].get("labels") or {}
        for pdb in self.budgets.by_index("namespace", pod["metadata"].get("namespace", "")):
            selector = (pdb.get("spec") or {}).get("selector")
            if selector is not None and LabelSelector.from_object(selector).matches(labels):
                self.queue.add(object_key(pdb))

    async def sync(self, key: str) -> None:
        pdb = self.budgets.get(key)
        if pdb is None:
            return
        spec = pdb.get("spec") or {}
        ns = pdb["metadata"]["namespace"]
        selector = spec.get("selector")
        pods = [] if selector is None else [
            p for p in self.pods.by_index("namespace", ns)
            if LabelSelector.from_object(selector).matches(p["metadata"].get("labels"))]
        now = podutil.now_utc()
        disrupted, wake = self._still_disrupted(pdb, pods, now)
        try:
            expected = self._expected(spec, pods)
        except NoController as e:
            await self.recorder.record(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                       f"Failed to calculate the number of expected pods: {e}")
            await self._write(pdb, 0, 0, 0, 0, disrupted, "SyncFailed", str(e))
            return
        healthy = sum(1 for p in pods if podutil.is_ready(p)
                      and not p["metadata"].get("deletionTimestamp")
                      and p["metadata"]["name"] not in disrupted)
        desired = desired_healthy(spec, expected)
        allowed = max(healthy - desired, 0)
        reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
        await self._write(pdb, healthy, desired, expected, allowed, disrupted, reason, "")
        if wake is not None:
            self.queue.add_after(key, wake)

    def _still_disrupted(self, pdb: Obj, pods: list[Obj],
                         now: dt.datetime) -> tuple[dict[str, str], float | None]:
        """The granted evictions still waiting for their deletion, and when the
        oldest of them times out."""
        listed = (pdb.get("status") or {}).get("disruptedPods") or {}
        alive = {p["metadata"]["name"]: p for p in pods}
        kept: dict[str, str] = {}
        wake: float | None = None
        for name, when in listed.items():
            pod = alive.get(name)
            granted = podutil.parse_time(when)
            if pod is None or pod["metadata"].get("deletionTimestamp") or granted is None:
                continue
            left = DELETION_TIMEOUT - (now - granted).total_seconds()
            if left <= 0:
                continue
            kept[name] = when
            wake = left if wake is None else min(wake, left)
        return kept, wake

    def _expected(self, spec: Obj, pods: list[Obj]) -> int:
        min_available = spec.get("minAvailable")
        if spec.get("maxUnavailable") is None and not (
                isinstance(min_available, str) and min_available.endswith("%")):
            return len(pods)
        scales: dict[str, int] = {}
        for pod in pods:
            uid, scale = self._scale_of(pod)
            scales[uid] = scale
        return sum(scales.values())

    def _scale_of(self, pod: Obj) -> tuple[str, int]:
        """(uid, replicas) of the controller whose scale the pod counts against."""
        ref = controller_ref(pod)
        ns = pod["metadata"]["namespace"]
        if ref is None:
            raise NoController(f"pod {pod['metadata']['name']} has no controller")
        kind = ref.get("kind")
        if kind == "ReplicaSet":
            rs = self.replicasets.get(f"{ns}/{ref['name']}")
            if rs is not None and rs["metadata"]["uid"] == ref.get("uid"):
                owner = controller_ref(rs)
                if owner is not None and owner.get("kind") == "Deployment":
                    deploy = self.deployments.get(f"{ns}/{owner['name']}")
                    if deploy is not None and deploy["metadata"]["uid"] == owner.get("uid"):
                        return owner["uid"], int(deploy["spec"].get("replicas", 1))
                return rs["metadata"]["uid"], int(rs["spec"].get("replicas", 1))
        elif kind == "StatefulSet":
            sts = self.statefulsets.get(f"{ns}/{ref['name']}")
            if sts is not None and sts["metadata"]["uid"] == ref.get("uid"):
                return sts["metadata"]["uid"], int(sts["spec"].get("replicas", 1))
        raise NoController(f"found no controllers for pod {pod['metadata']['name']!r}")

    async def _write(self, pdb: Obj, healthy: int, desired: int, expected: int, allowed: int,
                     disrupted: dict[str, str], reason: str, message: str) -> None:
        old = pdb.get("status") or {}
        before = podutil.condition(pdb, "DisruptionAllowed") or {}
        cstatus = "True" if allowed > 0 and reason != "SyncFailed" else "False"
        same = before.get("status") == cstatus and before.get("reason") == reason
        condition = {"type": "DisruptionAllowed", "status": cstatus, "reason": reason,
                     "message": message, "observedGeneration": pdb["metadata"].get("generation"),
                     "lastTransitionTime": before.get("lastTransitionTime") if same
                     else podutil.rfc3339(podutil.now_utc())}
        status: Obj = {
            "observedGeneration": pdb["metadata"].get("generation"),
            "disruptionsAllowed": allowed, "currentHealthy": healthy,
            "desiredHealthy": desired, "expectedPods": expected,
            "conditions": [condition],
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        if status == old:
            return
        try:
            await self.client.update_status(PDBS, {**pdb, "status": status})
        except (NotFound, Conflict):
            # The eviction subresource or a newer spec wrote first; the event brings a resync.
            pass
