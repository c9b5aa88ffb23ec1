"""NodeResourcesBalancedAllocation: prefer nodes whose resource fractions (requested
over allocatable, this pod included) stay close to each other, scored
(1 - standard deviation) x 100 as Kubernetes does."""

from __future__ import annotations

import math

from kubelite.scheduler.framework import MAX_NODE_SCORE, CycleState
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.resources import CPU, MEMORY

NAME = "NodeResourcesBalancedAllocation"


class BalancedAllocation:
    name = NAME

    def __init__(self, *, resources: tuple[str, ...] = (CPU, MEMORY)) -> None:
        self.resources = resources

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        fractions = []
        for name in self.resources:
            capacity = node.allocatable.get(name, 0)
            if capacity <= 0:
                continue
            used = node.requested.get(name, 0) + pod.requests.get(name, 0)
            fractions.append(min(used / capacity, 1.0))
        if len(fractions) == 2:
            deviation = abs(fractions[0] - fractions[1]) / 2
        elif len(fractions) > 2:
            mean = sum(fractions) / len(fractions)
            deviation = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
        else:
            deviation = 0.0
        return int((1 - deviation) * MAX_NODE_SCORE)
