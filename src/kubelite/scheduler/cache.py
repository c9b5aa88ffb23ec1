"""The scheduler's view of nodes and the pods counted on them, including pods it has
assumed (chosen a node for) while their binding is in flight, so that a burst of
pods never over-commits a node."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler.nodeinfo import NodeInfo, pod_key

Obj = dict[str, Any]


class SchedulerCache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        # pod key -> node name, for pods bound or assumed
        self._placed: dict[str, str] = {}
        # pods whose binding is in flight, not yet seen bound by the informer
        self.assumed: set[str] = set()

    def set_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            self.nodes[name] = NodeInfo.of(node)
        else:
            info.set_node(node)

    def remove_node(self, node: Obj) -> None:
        self.nodes.pop(node["metadata"]["name"], None)

    def add_pod(self, pod: Obj) -> None:
        """A pod the API shows bound to a node (its own view replaces an assumption)."""
        key = pod_key(pod)
        node_name = pod["spec"]["nodeName"]
        self.assumed.discard(key)
        previous = self._placed.get(key)
        if previous is not None and previous != node_name and previous in self.nodes:
            self.nodes[previous].remove_pod(pod)
        self._placed[key] = node_name
        if node_name in self.nodes:
            self.nodes[node_name].add_pod(pod)

    def remove_pod(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.assumed.discard(key)
        node_name = self._placed.pop(key, None)
        if node_name in self.nodes:
            self.nodes[node_name].remove_pod(pod)

    def assume(self, pod: Obj, node_name: str) -> None:
        placed = {**pod, "spec": {**pod["spec"], "nodeName": node_name}}
        self.add_pod(placed)
        self.assumed.add(pod_key(pod))

    def forget(self, pod: Obj) -> None:
        """A binding failed: the assumption is withdrawn."""
        if pod_key(pod) in self.assumed:
            self.remove_pod(pod)
