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
        if self.resources == (CPU, MEMORY) and node.cpu_allocatable > 0 \
                and node.memory_allocatable > 0:
            cpu = (node.cpu_requested + pod.requests.get(CPU, 0)) / node.cpu_allocatable
            memory = (node.memory_requested + pod.requests.get(MEMORY, 0)
                      ) / node.memory_allocatable
            return int((1 - abs(min(cpu, 1.0) - min(memory, 1.0)) / 2) * MAX_NODE_SCORE)
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
