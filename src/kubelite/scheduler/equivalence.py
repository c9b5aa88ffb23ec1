"""Per-node results remembered across cycles for pods that are alike.

Pods of one ReplicaSet (or of a benchmark) have the same spec, and most plugins'
Filter and Score read nothing but the pod's spec and the one node at hand
(`NODE_LOCAL`). For such a pod, the result on a node cannot change while the
node's `NodeInfo.generation` stays the same, so a cycle reuses what an earlier
cycle of an equal pod computed on every node that has not changed since, and runs
the plugins only on the few that did (typically the one node the previous pod
was assumed on). kube-scheduler once had such an equivalence cache; kubelite
needs it more, its per-node plugin calls being Python calls.

A cycle uses it only when every plugin it actually runs (after PreFilter and
PreScore skips) is node-local; plugins that count other pods across the cluster
(InterPodAffinity, PodTopologySpread), volumes, or images spread over nodes
(ImageLocality) make the cycle compute everything afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import orjson

from kubelite.scheduler.framework import Status
from kubelite.scheduler.nodeinfo import PodInfo

# Plugins whose Filter and Score depend only on the pod's spec, on the plugin's own
# configuration, and on the NodeInfo they are given.
NODE_LOCAL = frozenset({
    "NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodePorts",
    "NodeResourcesFit", "NodeResourcesBalancedAllocation"})
# How many distinct pod specs are remembered at once (least recently used first out).
DEFAULT_CLASSES = 16


@dataclass(slots=True)
class NodeResult:
    """One node's answers for one equivalence class, valid at `generation` only."""

    generation: int
    status: Status
    # names of the score plugins that ran, their raw (not normalised) scores, and the
    # weighted sum of those that need no normalisation
    scorers: tuple[str, ...] | None = None
    scores: tuple[int, ...] = ()
    base: int = 0


def equivalence_key(pod: PodInfo) -> bytes:
    """Pods with equal specs are alike for every node-local plugin."""
    return orjson.dumps(pod.spec, option=orjson.OPT_SORT_KEYS)


class EquivalenceCache:
    def __init__(self, *, classes: int = DEFAULT_CLASSES) -> None:
        self.classes = classes
        self._results: OrderedDict[bytes, dict[str, NodeResult]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._results)

    def results(self, pod: PodInfo) -> dict[str, NodeResult]:
        """The node name -> result map of the pod's class, created empty if new."""
        key = equivalence_key(pod)
        results = self._results.get(key)
        if results is None:
            results = self._results[key] = {}
            while len(self._results) > self.classes:
                self._results.popitem(last=False)
        else:
            self._results.move_to_end(key)
        return results
