"""DefaultPreemption (PostFilter): when a pod fits nowhere, find nodes where evicting
lower-priority pods would make it fit, keep as many of them as still allows it
(those whose PodDisruptionBudget would be violated are reprieved first), pick the
node by Kubernetes' order (fewest PDB violations, lowest top victim priority,
lowest priority sum, fewest victims, latest-started top victims), delete the
victims and nominate the node in the pod's status.nominatedNodeName."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubelite.api.registry import lookup
from kubelite.client import Client, EventRecorder
from kubelite.client.errors import ClientError, NotFound
from kubelite.scheduler.framework import (
    SUCCESS,
    Code,
    CycleState,
    Handle,
    PodChangeAware,
    Status,
)
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, selector_of

if TYPE_CHECKING:
    from kubelite.scheduler.runtime import Framework

NAME = "DefaultPreemption"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
PODS = lookup("", "v1", "pods")
Obj = dict[str, Any]


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]
    pdb_violations: int


def _start(pod: PodInfo) -> str:
    return (pod.pod.get("status") or {}).get("startTime") or pod.pod["metadata"].get(
        "creationTimestamp") or ""


def _more_important_first(pods: list[PodInfo]) -> list[PodInfo]:
    ordered = sorted(pods, key=_start)
    return sorted(ordered, key=lambda p: -p.priority)


class DefaultPreemption:
    name = NAME

    def __init__(self, *, handle: Handle, client: Client | None = None,
                 recorder: EventRecorder | None = None, min_candidate_nodes_percentage: int = 10,
                 min_candidate_nodes_absolute: int = 100) -> None:
        self.handle = handle
        self.client = client
        self.recorder = recorder
        self.percentage = min_candidate_nodes_percentage
        self.absolute = min_candidate_nodes_absolute
        # Set by the profile builder: the framework whose filters decide fitting.
        self.framework: Framework | None = None

    def _eligible(self, pod: PodInfo) -> str | None:
        if pod.spec.get("preemptionPolicy") == "Never":
            return NEVER
        nominated = (pod.pod.get("status") or {}).get("nominatedNodeName")
        node = self.handle.node(nominated) if nominated else None
        if node is not None and any(p.priority < pod.priority and p.pod["metadata"].get(
                "deletionTimestamp") for p in node.pods.values()):
            return TERMINATING
        return None

    async def post_filter(self, state: CycleState, pod: PodInfo,
                          statuses: dict[str, Status]) -> tuple[str | None, Status]:
        reason = self._eligible(pod)
        if reason is not None:
            return None, Status.unschedulable(NAME, f"preemption: {reason}")
        nodes = self.handle.nodes()
        candidates, node_statuses = self.find_candidates(state, pod, nodes, statuses)
        if not candidates:
            return None, Status.unschedulable(NAME, "preemption: " + _fit_message(
                len(nodes), node_statuses))
        best = pick_one(candidates)
        await self._evict(pod, best)
        return best.node, SUCCESS

    def find_candidates(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                        statuses: dict[str, Status]
                        ) -> tuple[list[Candidate], dict[str, Status]]:
        node_statuses: dict[str, Status] = {}
        potential = []
        for node in nodes:
            status = statuses.get(node.name)
            if status is not None and status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                node_statuses[node.name] = Status.unschedulable(NAME, NOT_HELPFUL,
                                                                resolvable=False)
            else:
                potential.append(node)
        if not potential:
            return [], node_statuses
        wanted = max(len(potential) * self.percentage // 100, self.absolute)
        offset = random.randrange(len(potential))
        pdbs = self._pdbs()
        candidates = []
        for i in range(len(potential)):
            node = potential[(offset + i) % len(potential)]
            victims, violations, status = self.select_victims(state.clone(), pod, node, pdbs)
            if status.ok:
                candidates.append(Candidate(node.name, victims, violations))
                if len(candidates) >= wanted:
                    break
            else:
                node_statuses[node.name] = status
        return candidates, node_statuses

    def _pdbs(self) -> list[tuple[str, Any, int]]:
        found = []
        for pdb in self.handle.lister("poddisruptionbudgets").list():
            allowed = int((pdb.get("status") or {}).get("disruptionsAllowed") or 0)
            found.append((pdb["metadata"].get("namespace"),
                          selector_of((pdb.get("spec") or {}).get("selector")), allowed))
        return found

    def _change_aware(self) -> list[PodChangeAware]:
        assert self.framework is not None
        return [p for p in self.framework.pre_filters if isinstance(p, PodChangeAware)]

    def select_victims(self, state: CycleState, pod: PodInfo, node: NodeInfo,
                       pdbs: list[tuple[str, Any, int]]
                       ) -> tuple[list[PodInfo], int, Status]:
        assert self.framework is not None
        info = node.clone()
        aware = self._change_aware()
        lower = [p for p in info.pods.values() if p.priority < pod.priority]
        if not lower:
            return [], 0, Status.unschedulable(NAME, NO_VICTIMS, resolvable=False)
        for victim in lower:
            info.remove_pod(victim.key)
            for plugin in aware:
                plugin.remove_pod(state, pod, victim, info)
        status = self.framework.run_filters(state, pod, info)
        if not status.ok:
            return [], 0, status
        violating, fine = _split_by_pdb(_more_important_first(lower), pdbs)
        victims: list[PodInfo] = []
        violations = 0
        for group, violates in ((violating, True), (fine, False)):
            for candidate in group:
                info.add_pod(candidate)
                for plugin in aware:
                    plugin.add_pod(state, pod, candidate, info)
                if self.framework.run_filters(state, pod, info).ok:
                    continue
                info.remove_pod(candidate.key)
                for plugin in aware:
                    plugin.remove_pod(state, pod, candidate, info)
                victims.append(candidate)
                violations += violates
        return victims, violations, SUCCESS

    async def _evict(self, pod: PodInfo, candidate: Candidate) -> None:
        if self.client is None:
            return
        assert PODS is not None
        for victim in candidate.victims:
            meta = victim.pod["metadata"]
            with contextlib.suppress(NotFound):
                try:
                    await self.client.delete(PODS, meta["name"], meta.get("namespace"),
                                             preconditions={"uid": meta["uid"]}
                                             if meta.get("uid") else None)
                except ClientError:
                    continue
            if self.recorder is not None:
                await self.recorder.record(
                    victim.pod, "Normal", "Preempted",
                    f"Preempted by pod {pod.uid} on node {candidate.node}")


def _split_by_pdb(pods: list[PodInfo], pdbs: list[tuple[str, Any, int]]
                  ) -> tuple[list[PodInfo], list[PodInfo]]:
    """Pods whose eviction would exceed a matching budget's disruptionsAllowed (counting
    the evictions before them), and the others."""
    allowed = [n for _, _, n in pdbs]
    violating, fine = [], []
    for pod in pods:
        hit = False
        for i, (ns, selector, _) in enumerate(pdbs):
            if ns == pod.namespace and not selector.empty and selector.matches(pod.labels):
                allowed[i] -= 1
                hit = hit or allowed[i] < 0
        (violating if hit else fine).append(pod)
    return violating, fine


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def pick_one(candidates: list[Candidate]) -> Candidate:
    def key(c: Candidate) -> tuple[Any, ...]:
        top = c.victims[0].priority if c.victims else -(2 ** 31)
        earliest_top = min((_epoch(_start(v)) for v in c.victims if v.priority == top),
                           default=0.0)
        # the later the most important victims started, the better
        return (c.pdb_violations, top, sum(v.priority for v in c.victims), len(c.victims),
                -earliest_top)

    return min(candidates, key=key)


def _fit_message(total: int, statuses: dict[str, Status]) -> str:
    counts: dict[str, int] = {}
    for status in statuses.values():
        for reason in status.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    parts = ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))
    return f"0/{total} nodes are available: {parts}." if parts else (
        f"0/{total} nodes are available.")
