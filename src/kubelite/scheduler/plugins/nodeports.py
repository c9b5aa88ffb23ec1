"""NodePorts: a hostPort can be taken once per node (per IP and protocol)."""

from __future__ import annotations

from kubelite.scheduler.framework import SUCCESS, CycleState, Obj, Status
from kubelite.scheduler.nodeinfo import NodeInfo, host_ports

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"


def _conflicts(wanted: set[tuple[str, str, int]], used: set[tuple[str, str, int]]) -> bool:
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if port == uport and proto == uproto and (
                    ip == uip or "0.0.0.0" in (ip, uip)):
                return True
    return False


class NodePorts:
    name = NAME

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        wanted = host_ports(pod)
        if wanted and _conflicts(wanted, node.used_ports):
            return Status.unschedulable(NAME, REASON)
        return SUCCESS
