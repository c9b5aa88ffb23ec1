"""NodePorts: a pod's hostPorts must be free on the node (same protocol and port, and
the same host IP or either side on 0.0.0.0)."""

from __future__ import annotations

from kubelite.scheduler.framework import SKIP, SUCCESS, CycleState, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"


def conflicts(wanted: frozenset[tuple[str, str, int]], used: dict[tuple[str, str, int], int]
              ) -> bool:
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if port == uport and proto == uproto and (ip == uip or "0.0.0.0" in (ip, uip)):
                return True
    return False


class NodePorts:
    name = NAME

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if pod.ports and conflicts(pod.ports, node.used_ports):
            return Status.unschedulable(NAME, REASON)
        return SUCCESS
