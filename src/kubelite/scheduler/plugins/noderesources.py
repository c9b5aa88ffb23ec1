"""NodeResourcesFit: a pod fits where allocatable minus what is requested (bound and
assumed pods) covers its requests and the pod count; scored by a strategy:
LeastAllocated (default, spreads), MostAllocated (packs) or RequestedToCapacityRatio
(a piecewise-linear shape over utilisation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelite.scheduler.framework import MAX_NODE_SCORE, SUCCESS, CycleState, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.resources import CPU, MEMORY

NAME = "NodeResourcesFit"
LEAST = "LeastAllocated"
MOST = "MostAllocated"
RATIO = "RequestedToCapacityRatio"
# Checked first and in this order, as Kubernetes' fitsRequest; other (extended,
# hugepages) resources follow by name.
_ORDER = (CPU, MEMORY, "ephemeral-storage")
DEFAULT_RESOURCES = ((CPU, 1), (MEMORY, 1))
_CPU_MEMORY = frozenset((CPU, MEMORY))


@dataclass(frozen=True)
class ScoringStrategy:
    type: str = LEAST
    resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES
    # RequestedToCapacityRatio: (utilisation 0..100, score 0..10) points
    shape: tuple[tuple[int, int], ...] = ((0, 10), (100, 0))

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ScoringStrategy:
        raw = args.get("scoringStrategy") or {}
        resources = tuple((r["name"], int(r.get("weight") or 1))
                          for r in raw.get("resources") or []) or DEFAULT_RESOURCES
        shape = tuple((int(p["utilization"]), int(p["score"]))
                      for p in (raw.get("requestedToCapacityRatio") or {}).get("shape") or [])
        return cls(raw.get("type") or LEAST, resources, shape or cls.shape)


def insufficient(pod: PodInfo, node: NodeInfo, ignored: frozenset[str] = frozenset()
                 ) -> list[str]:
    """Kubernetes' fitsRequest reasons, in its order."""
    reasons = []
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append("Too many pods")
    requests = pod.requests
    if not requests:
        return reasons
    names = [n for n in _ORDER if n in requests]
    names += sorted(n for n in requests if n not in _ORDER and n != "pods")
    for name in names:
        want = requests[name]
        if want <= 0 or name in ignored:
            continue
        if want > node.allocatable.get(name, 0) - node.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def _requested(pod: PodInfo, node: NodeInfo, name: str, non_zero: bool) -> int:
    if non_zero and name == CPU:
        return node.non_zero_cpu + pod.non_zero_cpu
    if non_zero and name == MEMORY:
        return node.non_zero_memory + pod.non_zero_memory
    return node.requested.get(name, 0) + pod.requests.get(name, 0)


def _shape_score(shape: tuple[tuple[int, int], ...], utilisation: int) -> int:
    points = [(u, s * MAX_NODE_SCORE // 10) for u, s in shape]
    if utilisation <= points[0][0]:
        return points[0][1]
    for (u0, s0), (u1, s1) in zip(points, points[1:], strict=False):
        if utilisation <= u1:
            return s0 + (s1 - s0) * (utilisation - u0) // (u1 - u0)
    return points[-1][1]


class NodeResourcesFit:
    name = NAME

    def __init__(self, *, strategy: ScoringStrategy | None = None,
                 ignored_resources: frozenset[str] = frozenset()) -> None:
        self.strategy = strategy or ScoringStrategy()
        self.ignored = ignored_resources

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        # The common case inline: a pod asking for cpu and memory only.
        requests = pod.requests
        if (len(node.pods) < node.allowed_pods and len(requests) <= 2
                and requests.keys() <= _CPU_MEMORY and not self.ignored
                and requests.get(CPU, 0) <= node.cpu_allocatable - node.cpu_requested
                and requests.get(MEMORY, 0) <= node.memory_allocatable - node.memory_requested):
            return SUCCESS
        reasons = insufficient(pod, node, self.ignored)
        return Status.unschedulable(NAME, *reasons) if reasons else SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        strategy = self.strategy
        if strategy.type == LEAST and strategy.resources == DEFAULT_RESOURCES:
            # The default, inline: LeastAllocated over cpu and memory, equal weights.
            total = weights = 0
            for capacity, used in ((node.cpu_allocatable, node.non_zero_cpu + pod.non_zero_cpu),
                                   (node.memory_allocatable,
                                    node.non_zero_memory + pod.non_zero_memory)):
                if capacity > 0:
                    total += (capacity - used) * MAX_NODE_SCORE // capacity if used <= capacity \
                        else 0
                    weights += 1
            return total // weights if weights else 0
        # Least and MostAllocated count containers without requests at the non-zero
        # defaults, so that best-effort pods spread too.
        non_zero = strategy.type != RATIO
        total = weights = 0
        for name, weight in strategy.resources:
            capacity = node.allocatable.get(name, 0)
            if capacity <= 0:
                continue
            used = _requested(pod, node, name, non_zero)
            if strategy.type == LEAST:
                value = (capacity - used) * MAX_NODE_SCORE // capacity if used <= capacity else 0
            elif strategy.type == MOST:
                value = min(used, capacity) * MAX_NODE_SCORE // capacity
            else:
                value = _shape_score(strategy.shape, min(used, capacity) * 100 // capacity)
            total += value * weight
            weights += weight
        return total // weights if weights else 0
