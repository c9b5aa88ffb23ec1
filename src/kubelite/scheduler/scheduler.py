"""The scheduler loop: pending pods -> filter -> score -> assume -> bind.

An API client like every other component: informers on nodes and pods feed the
cache and the queue; a binding is a POST to pods/NAME/binding; every decision is
reported as an Event (`Scheduled`, or `FailedScheduling` with the per-node
reasons aggregated as kube-scheduler words them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, EventRecorder, InformerFactory
from kubelite.client.errors import ClientError, Conflict, NotFound
from kubelite.scheduler.cache import SchedulerCache
from kubelite.scheduler.framework import (
    Code,
    CycleState,
    FilterPlugin,
    NormalizeScorePlugin,
    PreFilterPlugin,
    ScorePlugin,
    Status,
)
from kubelite.scheduler.plugins import default_plugins
from kubelite.scheduler.queue import SchedulingQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]
NODES = lookup("", "v1", "nodes")
PODS = lookup("", "v1", "pods")
DEFAULT_SCHEDULER = "default-scheduler"


@dataclass
class Placement:
    """The outcome of one cycle: per-node filter results, scores and the choice."""

    filtered: dict[str, Status]
    scores: dict[str, dict[str, int]]
    totals: dict[str, int]
    chosen: str | None


MIN_FEASIBLE_NODES_TO_FIND = 100


def feasible_nodes_to_find(total: int) -> int:
    """kube-scheduler's adaptive percentageOfNodesToScore: in big clusters, stop
    filtering once this many feasible nodes are found (50% falling to 5%)."""
    if total < MIN_FEASIBLE_NODES_TO_FIND:
        return total
    percentage = max(50 - total // 125, 5)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def failure_message(nodes: int, filtered: dict[str, Status]) -> str:
    """`0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
    {dedicated: gpu}.` — reasons counted over nodes, sorted, as kube-scheduler."""
    counts: Counter[str] = Counter()
    for status in filtered.values():
        for reason in status.reasons:
            counts[reason] += 1
    parts = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
    if not parts:
        return f"0/{nodes} nodes are available: no nodes available to schedule pods."
    return f"0/{nodes} nodes are available: {parts}."


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, *,
                 scheduler_name: str = DEFAULT_SCHEDULER,
                 plugins: list[object] | None = None) -> None:
        assert NODES is not None and PODS is not None
        self.client = client
        self.scheduler_name = scheduler_name
        self.plugins = plugins if plugins is not None else default_plugins()
        # Plugins sorted by extension point once: isinstance on runtime-checkable
        # Protocols is far too slow to do per node.
        self._pre_filters = [p for p in self.plugins if isinstance(p, PreFilterPlugin)]
        self._filters = [p for p in self.plugins if isinstance(p, FilterPlugin)]
        self._scorers = [(p, isinstance(p, NormalizeScorePlugin), getattr(p, "weight", 1))
                         for p in self.plugins if isinstance(p, ScorePlugin)]
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue()
        self.recorder = EventRecorder(client, component=scheduler_name)
        self.nodes = factory.informer(NODES)
        self.pods = factory.informer(PODS)
        self.nodes.add_handlers(on_add=self._node_changed, on_update=lambda o, n:
                                self._node_changed(n), on_delete=self._node_deleted)
        self.pods.add_handlers(on_add=self._pod_seen, on_update=lambda o, n: self._pod_seen(n),
                               on_delete=self._pod_deleted)
        self._bindings: set[asyncio.Task[None]] = set()
        self._next_start = 0

    # ---- events from the informers -------------------------------------------------

    def _node_changed(self, node: Obj) -> None:
        self.cache.set_node(node)
        self.queue.move_all_to_active()

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node)

    def _responsible(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName", DEFAULT_SCHEDULER) == self.scheduler_name
                and not pod["metadata"].get("deletionTimestamp"))

    def _pod_seen(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self.queue.done(pod)
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self.cache.remove_pod(pod)
                self.queue.move_all_to_active()
            else:
                self.cache.add_pod(pod)
        elif self._responsible(pod):
            self.queue.add(pod)
        else:
            self.queue.delete(pod)

    def _pod_deleted(self, pod: Obj) -> None:
        self.queue.delete(pod)
        if (pod.get("spec") or {}).get("nodeName"):
            self.cache.remove_pod(pod)
            self.queue.move_all_to_active()

    # ---- one scheduling cycle -----------------------------------------------------

    def place(self, pod: Obj) -> Placement:
        state = CycleState()
        for plugin in self._pre_filters:
            status = plugin.pre_filter(state, pod)
            if not status.ok and status.code is not Code.SKIP:
                return Placement({n: status for n in self.cache.nodes}, {}, {}, None)
        filtered: dict[str, Status] = {}
        feasible = []
        nodes = list(self.cache.nodes.items())
        wanted = feasible_nodes_to_find(len(nodes))
        # Start where the last cycle stopped, so that every node gets its turn.
        start = self._next_start % len(nodes) if nodes else 0
        for name, info in nodes[start:] + nodes[:start]:
            if len(feasible) >= wanted:
                break
            status = Status()
            for plugin in self._filters:
                status = plugin.filter(state, pod, info)
                if not status.ok:
                    break
            filtered[name] = status
            if status.ok:
                feasible.append(info)
        self._next_start = start + len(filtered)
        scores: dict[str, dict[str, int]] = {}
        totals = {info.name: 0 for info in feasible}
        if len(feasible) > 1:
            for plugin, normalize, weight in self._scorers:
                per_node = {info.name: plugin.score(state, pod, info) for info in feasible}
                if normalize:
                    plugin.normalize_scores(state, pod, per_node)
                scores[plugin.name] = per_node
                for name, value in per_node.items():
                    totals[name] += value * weight
        chosen = max(totals, key=lambda n: (totals[n], n)) if totals else None
        return Placement(filtered, scores, totals, chosen)

    async def schedule_one(self, pod: Obj) -> None:
        placement = self.place(pod)
        if placement.chosen is None:
            message = failure_message(len(self.cache.nodes), placement.filtered)
            self.queue.unschedulable(pod)
            await self._record_failure(pod, message)
            return
        self.cache.assume(pod, placement.chosen)
        task = asyncio.create_task(self._bind(pod, placement.chosen))
        self._bindings.add(task)
        task.add_done_callback(self._bindings.discard)

    async def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        try:
            await self.client.bind(pod, node)
        except (NotFound, Conflict):
            self.cache.forget(pod)
            return
        except ClientError as exc:
            log.warning("binding %s/%s to %s failed: %s", meta["namespace"], meta["name"],
                        node, exc)
            self.cache.forget(pod)
            self.queue.backoff(pod)
            return
        await self.recorder.record(pod, "Normal", "Scheduled",
                                   f"Successfully assigned {meta['namespace']}/{meta['name']} "
                                   f"to {node}")

    async def _record_failure(self, pod: Obj, message: str) -> None:
        await self.recorder.record(pod, "Warning", "FailedScheduling", message)
        meta = pod["metadata"]
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message}
        current = [c for c in (pod.get("status") or {}).get("conditions") or []
                   if c.get("type") == "PodScheduled"]
        if current and all(current[0].get(k) == v for k, v in condition.items()):
            return
        with contextlib.suppress(NotFound, Conflict):
            await self.client.patch(PODS, meta["name"], {"status": {"conditions": [condition]}},
                                    patch_type="strategic", namespace=meta["namespace"],
                                    subresource="status")

    async def run(self) -> None:
        await asyncio.gather(self.nodes.has_synced.wait(), self.pods.has_synced.wait())
        log.info("%s: caches synced with %d nodes", self.scheduler_name, len(self.cache.nodes))
        try:
            while True:
                pod = await self.queue.pop()
                try:
                    await self.schedule_one(pod)
                except Exception:
                    log.exception("scheduling %s failed", pod["metadata"].get("name"))
                    self.queue.backoff(pod)
        finally:
            for task in list(self._bindings):
                task.cancel()
