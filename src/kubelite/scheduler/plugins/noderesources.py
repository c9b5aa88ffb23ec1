"""NodeResourcesFit (filter, LeastAllocated score) and BalancedAllocation (score)."""

from __future__ import annotations

from kubelite.scheduler.framework import MAX_NODE_SCORE, SUCCESS, CycleState, Obj, Status
from kubelite.scheduler.nodeinfo import NodeInfo
from kubelite.scheduler.resources import CPU, MEMORY, PODS, non_zero_requests, pod_requests

FIT = "NodeResourcesFit"
BALANCED = "NodeResourcesBalancedAllocation"
_REQUESTS = "noderesources/requests"
_NON_ZERO = "noderesources/non-zero"


def requests_of(state: CycleState, pod: Obj) -> dict[str, int]:
    cached = state.data.get(_REQUESTS)
    if cached is None:
        cached = state.data[_REQUESTS] = pod_requests(pod)
    return cached


def non_zero_of(state: CycleState, pod: Obj) -> dict[str, int]:
    cached = state.data.get(_NON_ZERO)
    if cached is None:
        cached = state.data[_NON_ZERO] = non_zero_requests(pod)
    return cached


class NodeResourcesFit:
    name = FIT

    def __init__(self, *, weight: int = 1) -> None:
        self.weight = weight

    def pre_filter(self, state: CycleState, pod: Obj) -> Status:
        requests_of(state, pod)
        return SUCCESS

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        reasons = []
        if len(node.pods) + 1 > node.allocatable.get(PODS, 110):
            reasons.append("Too many pods")
        for name, want in sorted(requests_of(state, pod).items()):
            if want <= 0:
                continue
            free = node.allocatable.get(name, 0) - node.requested.get(name, 0)
            if want > free:
                reasons.append(f"Insufficient {name}")
        if reasons:
            return Status.unschedulable(FIT, *reasons)
        return SUCCESS

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int:
        """LeastAllocated: the emptier the node after placing the pod, the better."""
        want = non_zero_of(state, pod)
        total = 0
        for name in (CPU, MEMORY):
            capacity = node.allocatable.get(name, 0)
            if capacity <= 0:
                continue
            used = node.non_zero_requested.get(name, 0) + want[name]
            total += max(capacity - used, 0) * MAX_NODE_SCORE // capacity
        return total // 2


class BalancedAllocation:
    name = BALANCED

    def __init__(self, *, weight: int = 1) -> None:
        self.weight = weight

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int:
        """Prefer nodes whose cpu and memory fractions stay close to each other."""
        want = non_zero_of(state, pod)
        fractions = []
        for name in (CPU, MEMORY):
            capacity = node.allocatable.get(name, 0)
            if capacity <= 0:
                return 0
            fractions.append(min((node.non_zero_requested.get(name, 0) + want[name]) / capacity,
                                 1.0))
        spread = abs(fractions[0] - fractions[1]) / 2
        return int((1 - spread) * MAX_NODE_SCORE)
