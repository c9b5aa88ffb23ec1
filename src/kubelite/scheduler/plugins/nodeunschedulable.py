"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take no new pods, unless
the pod tolerates the unschedulable taint."""

from __future__ import annotations

from kubelite.scheduler.framework import SUCCESS, CycleState, Obj, Status
from kubelite.scheduler.nodeinfo import NodeInfo
from kubelite.scheduler.plugins.tolerations import tolerates

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = NAME

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        if not (node.node.get("spec") or {}).get("unschedulable"):
            return SUCCESS
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if any(tolerates(t, _TAINT) for t in tolerations):
            return SUCCESS
        return Status.unschedulable(NAME, REASON, resolvable=False)
