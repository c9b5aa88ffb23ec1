"""What the scheduler knows of one node: the Node, its allocatable resources, and
the pods counted against it (bound or assumed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelite.scheduler.resources import allocatable, non_zero_requests, pod_requests

Obj = dict[str, Any]


def pod_key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def host_ports(pod: Obj) -> set[tuple[str, str, int]]:
    ports = set()
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.add((p.get("hostIP") or "0.0.0.0", p.get("protocol", "TCP"),
                           int(p["hostPort"])))
    return ports


@dataclass
class NodeInfo:
    node: Obj
    allocatable: dict[str, int] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)
    # cpu and memory with pods that request nothing counted at Kubernetes'
    # non-zero defaults, so that scoring spreads them instead of stacking them.
    non_zero_requested: dict[str, int] = field(default_factory=dict)
    pods: dict[str, Obj] = field(default_factory=dict)
    used_ports: set[tuple[str, str, int]] = field(default_factory=set)

    @classmethod
    def of(cls, node: Obj) -> NodeInfo:
        return cls(node=node, allocatable=allocatable(node))

    @property
    def name(self) -> str:
        return self.node["metadata"]["name"]

    def set_node(self, node: Obj) -> None:
        self.node = node
        self.allocatable = allocatable(node)

    def add_pod(self, pod: Obj) -> None:
        key = pod_key(pod)
        if key in self.pods:
            self.remove_pod(self.pods[key])
        self.pods[key] = pod
        for k, v in pod_requests(pod).items():
            self.requested[k] = self.requested.get(k, 0) + v
        for k, v in non_zero_requests(pod).items():
            self.non_zero_requested[k] = self.non_zero_requested.get(k, 0) + v
        self.used_ports |= host_ports(pod)

    def remove_pod(self, pod: Obj) -> None:
        old = self.pods.pop(pod_key(pod), None)
        if old is None:
            return
        for k, v in pod_requests(old).items():
            self.requested[k] = self.requested.get(k, 0) - v
        for k, v in non_zero_requests(old).items():
            self.non_zero_requested[k] = self.non_zero_requested.get(k, 0) - v
        self.used_ports = set().union(*(host_ports(p) for p in self.pods.values()))
