"""The scheduler's view of nodes and of the pods counted on them, including pods it
has assumed: a pod counts against its node from the moment the node is chosen,
so that a burst of pods never over-commits a node while bindings are in flight.
When the informer later shows the pod bound, its own version replaces the
assumption; when the binding fails, `forget` withdraws it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

Obj = dict[str, Any]
# How many node changes the log keeps: a class table further behind rebuilds.
MAX_CHANGES = 50_000


class SchedulerCache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        # Nodes in a stable order, for the round-robin start of each cycle.
        self._list: list[NodeInfo] = []
        # pod key -> node name, for pods bound or assumed
        self._placed: dict[str, str] = {}
        # pods whose binding is in flight, not yet seen bound by the informer
        self.assumed: set[str] = set()
        # pods the API shows on nodes the scheduler has not seen (yet)
        self._ghosts: dict[str, dict[str, PodInfo]] = {}
        # image name -> number of nodes reporting it (ImageLocality's spread factor)
        self.image_nodes: Counter[str] = Counter()
        # pods with (anti-)affinity terms anywhere: InterPodAffinity skips work when none
        self.affinity_pods = 0
        # Names of nodes whose NodeInfo changed, oldest first, for class tables to
        # catch up on just those; `layout` changes whenever the node list does.
        self._changes: list[str] = []
        self._changes_start = 0
        self.layout = 0

    def __len__(self) -> int:
        return len(self.nodes)

    def node_list(self) -> list[NodeInfo]:
        """The nodes in a stable order (the cache's own list: do not change it)."""
        return self._list

    def node(self, name: str) -> NodeInfo | None:
        return self.nodes.get(name)

    @property
    def changes_end(self) -> int:
        return self._changes_start + len(self._changes)

    def changes_since(self, position: int) -> list[str] | None:
        """Nodes changed from log `position` on; None once the log has dropped them."""
        if position < self._changes_start:
            return None
        return self._changes[position - self._changes_start:]

    def _changed(self, name: str) -> None:
        self._changes.append(name)
        if len(self._changes) > MAX_CHANGES:
            drop = len(self._changes) // 2
            del self._changes[:drop]
            self._changes_start += drop

    # ---- nodes ---------------------------------------------------------------------

    def set_node(self, node: Obj) -> NodeInfo:
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo.of(node)
            self._list.append(info)
            self.layout += 1
            for pod in self._ghosts.pop(name, {}).values():
                info.add_pod(pod)
        else:
            self.image_nodes.subtract(info.images.keys())
            info.set_node(node)
            self._changed(name)
        self.image_nodes.update(info.images.keys())
        return info

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is None:
            return
        self._list.remove(info)
        self.layout += 1
        self.image_nodes.subtract(info.images.keys())
        if info.pods:
            self._ghosts[name] = info.pods

    # ---- pods ----------------------------------------------------------------------

    def _target(self, node_name: str) -> dict[str, PodInfo] | NodeInfo:
        info = self.nodes.get(node_name)
        if info is not None:
            return info
        return self._ghosts.setdefault(node_name, {})

    def add_pod(self, pod: PodInfo, node_name: str) -> None:
        """A pod counted on `node_name`: bound (the API's view) or assumed."""
        self.remove_pod(pod.key)
        self._placed[pod.key] = node_name
        target = self._target(node_name)
        if isinstance(target, NodeInfo):
            target.add_pod(pod)
            self._changed(node_name)
        else:
            target[pod.key] = pod
        if pod.has_affinity:
            self.affinity_pods += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        self.assumed.discard(key)
        node_name = self._placed.pop(key, None)
        if node_name is None:
            return None
        info = self.nodes.get(node_name)
        if info is not None:
            old = info.remove_pod(key)
            self._changed(node_name)
        else:
            ghosts = self._ghosts.get(node_name, {})
            old = ghosts.pop(key, None)
            if not ghosts:
                self._ghosts.pop(node_name, None)
        if old is not None and old.has_affinity:
            self.affinity_pods -= 1
        return old

    def node_of(self, key: str) -> str | None:
        return self._placed.get(key)

    def assume(self, pod: PodInfo, node_name: str) -> None:
        self.add_pod(pod.with_node(node_name), node_name)
        self.assumed.add(pod.key)

    def forget(self, key: str) -> None:
        """A binding failed: the assumption is withdrawn."""
        if key in self.assumed:
            self.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed
