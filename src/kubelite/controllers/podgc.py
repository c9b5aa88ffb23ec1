"""The pod garbage collector, as Kubernetes' pkg/controller/podgc.

Each pass (after pod or node events, and every `period` seconds):
- orphaned pods, bound to a node that has not existed for `quarantine` seconds
  (Kubernetes: 40 s) and whose absence a GET confirms, so that neither a lagging
  cache nor a pod bound before its node registered is condemned, are marked Failed
  with a DisruptionTarget condition (DeletionByPodGC) and deleted with grace 0;
- terminating pods that were never scheduled, or sit on a node that is not
  Ready and carries the node.kubernetes.io/out-of-service taint, are deleted
  with grace 0, since no agent will ever confirm their end;
- terminated pods (Succeeded or Failed) beyond `threshold` are deleted, oldest
  first (kube-controller-manager's --terminated-pod-gc-threshold, 12500).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import (
    Client,
    Conflict,
    Controller,
    InformerFactory,
    NotFound,
)
from kubelite.controllers import podutil

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
KEY = "pods"
TERMINATED_THRESHOLD = 12500
# Kubernetes' gcCheckPeriod.
PERIOD = 20.0
QUARANTINE = 40.0
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def _terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PodGCController(Controller):
    name = "pod-garbage-collector"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 threshold: int = TERMINATED_THRESHOLD, period: float = PERIOD,
                 quarantine: float = QUARANTINE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(workers=1)
        assert PODS is not None and NODES is not None
        self.client = client
        self.threshold = threshold
        self.period = period
        self.quarantine = quarantine
        self.clock = clock
        # Node name -> when a pod bound to it was first seen without the node.
        self._missing_since: dict[str, float] = {}
        self.pods = factory.informer(PODS)
        self.nodes = factory.informer(NODES)
        for informer in (self.pods, self.nodes):
            self._track(informer)
        self.pods.add_handlers(on_add=self._pod_changed,
                               on_update=lambda _old, new: self._pod_changed(new))
        self.nodes.add_handlers(on_delete=lambda _node: self.queue.add(KEY))

    def _pod_changed(self, pod: Obj) -> None:
        if _terminated(pod) or pod["metadata"].get("deletionTimestamp") or (
                (pod.get("spec") or {}).get("nodeName")
                and self.nodes.get(pod["spec"]["nodeName"]) is None):
            self.queue.add(KEY)

    async def run(self) -> None:
        self.queue.add(KEY)
        await super().run()

    async def sync(self, key: str) -> None:
        try:
            await asyncio.gather(self._orphans(), self._unreachable_terminating(),
                                 self._terminated())
        finally:
            self.queue.add_after(KEY, self.period)

    async def _orphans(self) -> None:
        missing: dict[str, list[Obj]] = {}
        for pod in self.pods.list():
            node = (pod.get("spec") or {}).get("nodeName")
            if node and self.nodes.get(node) is None:
                missing.setdefault(node, []).append(pod)
        now = self.clock()
        self._missing_since = {n: self._missing_since.get(n, now) for n in missing}
        for node, pods in missing.items():
            left = self._missing_since[node] + self.quarantine - now
            if left > 0:
                self.queue.add_after(KEY, left + 0.05)
                continue
            try:
                await self.client.get(NODES, node)
                continue
            except NotFound:
                pass
            log.info("deleting %d pods of node %s, which no longer exists", len(pods), node)
            await asyncio.gather(*(self._delete(p, orphan=True) for p in pods))

    async def _unreachable_terminating(self) -> None:
        doomed = []
        for pod in self.pods.list():
            if not pod["metadata"].get("deletionTimestamp") or _terminated(pod):
                continue
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                doomed.append(pod)
                continue
            node = self.nodes.get(node_name)
            if node is None or podutil.is_ready(node):
                continue
            if any(t.get("key") == OUT_OF_SERVICE for t in node["spec"].get("taints") or []):
                doomed.append(pod)
        await asyncio.gather(*(self._delete(p) for p in doomed))

    async def _terminated(self) -> None:
        done = [p for p in self.pods.list() if _terminated(p)
                and not p["metadata"].get("deletionTimestamp")]
        excess = len(done) - self.threshold
        if excess <= 0:
            return
        done.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        log.info("deleting %d terminated pods over the threshold of %d", excess, self.threshold)
        await asyncio.gather(*(self._delete(p) for p in done[:excess]))

    async def _delete(self, pod: Obj, *, orphan: bool = False) -> None:
        meta = pod["metadata"]
        try:
            if orphan and not _terminated(pod):
                now = podutil.rfc3339(podutil.now_utc())
                await self.client.patch(PODS, meta["name"], {"status": {
                    "phase": "Failed", "conditions": [{
                        "type": "DisruptionTarget", "status": "True",
                        "reason": "DeletionByPodGC",
                        "message": "PodGC: node no longer exists", "lastTransitionTime": now}]}},
                    patch_type="strategic", namespace=meta["namespace"], subresource="status")
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     grace_period_seconds=0, preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
