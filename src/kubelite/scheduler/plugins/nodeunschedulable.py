"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take no new pods, unless the
pod tolerates the node.kubernetes.io/unschedulable:NoSchedule taint."""

from __future__ import annotations

from kubelite.scheduler.framework import SUCCESS, CycleState, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.plugins.tolerations import tolerates

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = NAME

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if not node.unschedulable:
            return SUCCESS
        if any(tolerates(t, _TAINT) for t in pod.spec.get("tolerations") or []):
            return SUCCESS
        return Status.unschedulable(NAME, REASON, resolvable=False)
