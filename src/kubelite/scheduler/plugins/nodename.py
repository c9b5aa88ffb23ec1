"""NodeName: a pod that names its node fits only there."""

from __future__ import annotations

from kubelite.scheduler.framework import SUCCESS, CycleState, Obj, Status
from kubelite.scheduler.nodeinfo import NodeInfo

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = NAME

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node.name:
            return Status.unschedulable(NAME, REASON, resolvable=False)
        return SUCCESS
