"""NodeName: a pod that names its node fits only there."""

from __future__ import annotations

from kubelite.scheduler.framework import SKIP, SUCCESS, CycleState, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = NAME

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.spec.get("nodeName") else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        wanted = pod.spec.get("nodeName")
        if wanted and wanted != node.name:
            return Status.unschedulable(NAME, REASON, resolvable=False)
        return SUCCESS
