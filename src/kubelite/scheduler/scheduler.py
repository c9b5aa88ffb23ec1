"""The scheduler loop: pending pod -> profile's framework -> assume -> bind.

An API client like every other component: informers feed the cache and the queue;
a cycle runs synchronously on the cache (no await between choosing a node and
assuming the pod there), and the binding cycle (Permit wait, PreBind, Bind) runs
as its own task so that the next pod is scheduled while bindings are in flight.
Every decision is reported as Kubernetes reports it: a `Scheduled` Event, or a
`FailedScheduling` Event plus the PodScheduled=False condition with the
aggregated reasons; a preemption records status.nominatedNodeName.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, EventRecorder, Informer, InformerFactory
from kubelite.client.errors import ClientError, Conflict, NotFound
from kubelite.scheduler.cache import SchedulerCache
from kubelite.scheduler.config import (
    DEFAULT_SCHEDULER,
    SchedulerConfiguration,
    build_framework,
)
from kubelite.scheduler.framework import Code, CycleState, Lister, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo, pod_key
from kubelite.scheduler.plugins import PluginContext
from kubelite.scheduler.queue import QueuedPod, SchedulingQueue
from kubelite.scheduler.runtime import Framework, Placement, fit_error
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
# plural -> (group, version) of what plugins read through the handle
WATCHED = {"persistentvolumeclaims": ("", "v1"), "persistentvolumes": ("", "v1"),
           "storageclasses": ("storage.k8s.io", "v1"),
           "poddisruptionbudgets": ("policy", "v1"),
           "priorityclasses": ("scheduling.k8s.io", "v1"), "namespaces": ("", "v1"),
           "services": ("", "v1"), "replicasets": ("apps", "v1"),
           "statefulsets": ("apps", "v1")}
# which cluster event a change of these resources is, for the queue
_EVENT_NAMES = {"persistentvolumeclaims": "PVC", "persistentvolumes": "PV",
                "storageclasses": "StorageClass", "namespaces": "Namespace"}
FLUSH_INTERVAL = 30.0
# Connections for the scheduler's client. Every placed pod is a binding and an
# Event in flight; with the client's default 100, bindings queued for a connection while
# creates took the server, and pods waited seconds longer to be bound (client-go
# gets as many streams from HTTP/2).
CLIENT_CONNECTIONS = 256


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _node_fields(node: Obj) -> tuple[Any, ...]:
    """What of a node the plugins read: a node update changing none of it is no event."""
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    return (meta.get("labels"), spec.get("taints"), spec.get("unschedulable"),
            status.get("allocatable"), status.get("images"))


class SchedulerHandle:
    """The `Handle` plugins read: the cache's nodes and the informers' caches."""

    def __init__(self, cache: SchedulerCache, listers: dict[str, Lister]) -> None:
        self.cache = cache
        self.listers = listers

    def nodes(self) -> list[NodeInfo]:
        return self.cache.node_list()

    def changes(self) -> SchedulerCache:
        return self.cache

    def node(self, name: str) -> NodeInfo | None:
        return self.cache.node(name)

    def lister(self, plural: str) -> Lister:
        return self.listers[plural]


def priority_of(pod: Obj, classes: Lister) -> int:
    """spec.priority, else the value of its PriorityClass (or of the global default)."""
    spec = pod.get("spec") or {}
    if spec.get("priority") is not None:
        return int(spec["priority"])
    name = spec.get("priorityClassName")
    if name:
        pc = classes.get(name)
        return int(pc.get("value") or 0) if pc else 0
    default = next((pc for pc in classes.list() if pc.get("globalDefault")), None)
    return int(default.get("value") or 0) if default else 0


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, *,
                 config: SchedulerConfiguration | None = None) -> None:
        assert NODES is not None and PODS is not None
        self.client = client
        self.config = config or SchedulerConfiguration()
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(initial_backoff=self.config.pod_initial_backoff_seconds,
                                     max_backoff=self.config.pod_max_backoff_seconds)
        self.recorder = EventRecorder(client, component=DEFAULT_SCHEDULER)
        self.nodes = factory.informer(NODES)
        self.pods = factory.informer(PODS)
        self.informers: dict[str, Informer] = {}
        for plural, (group, version) in WATCHED.items():
            res = lookup(group, version, plural)
            assert res is not None
            self.informers[plural] = factory.informer(res)
        self.handle = SchedulerHandle(self.cache, dict(self.informers))
        self.profiles: dict[str, Framework] = {}
        for profile in self.config.profiles:
            recorder = EventRecorder(client, component=profile.scheduler_name)
            ctx = PluginContext(self.handle, self.cache, client, recorder)
            self.profiles[profile.scheduler_name] = build_framework(profile, self.config, ctx)
        # pod key -> (node, pod) for pods nominated to a node by preemption
        self.nominated: dict[str, tuple[str, PodInfo]] = {}
        self._next_start = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.nodes.add_handlers(on_add=self._node_added, on_update=self._node_updated,
                                on_delete=self._node_deleted)
        self.pods.add_handlers(on_add=self._pod_added, on_update=self._pod_updated,
                               on_delete=self._pod_deleted)
        for plural, event in _EVENT_NAMES.items():
            self.informers[plural].add_handlers(
                on_add=lambda o, e=event: self.queue.move(e + "Add"),
                on_update=lambda o, n, e=event: self.queue.move(e + "Update"))

    # ---- informer events: handlers only update the cache and the queue ---------------

    def _node_added(self, node: Obj) -> None:
        self.cache.set_node(node)
        self.queue.move("NodeAdd")

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.cache.set_node(new)
        if _node_fields(old) != _node_fields(new):
            self.queue.move("NodeUpdate")

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node["metadata"]["name"])
        self.queue.move("NodeDelete")

    def _responsible(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") or DEFAULT_SCHEDULER) in self.profiles and not (
            pod["metadata"].get("deletionTimestamp") or spec.get("schedulingGates")
            or _terminal(pod))

    def _priority(self, pod: Obj) -> int:
        return priority_of(pod, self.informers["priorityclasses"])

    def _pod_added(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self._assigned(pod, "PodAdd")
        elif self._responsible(pod):
            self.queue.add(pod, priority=self._priority(pod))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        node = (new.get("spec") or {}).get("nodeName")
        if not node:
            if self._responsible(new):
                self.queue.add(new, priority=self._priority(new))
            else:
                self.queue.delete(pod_key(new))
            return
        if ((old.get("spec") or {}).get("nodeName") == node and old.get("spec") == new.get("spec")
                and old["metadata"].get("labels") == new["metadata"].get("labels")
                and old["metadata"].get("deletionTimestamp")
                == new["metadata"].get("deletionTimestamp") and not _terminal(new)):
            return  # a status change only: nothing the scheduler counts
        self._assigned(new, "PodUpdate")

    def _assigned(self, pod: Obj, event: str) -> None:
        key = pod_key(pod)
        self.queue.done(key)
        self.nominated.pop(key, None)
        if _terminal(pod):
            if self.cache.remove_pod(key) is not None:
                self.queue.move("PodDelete")
            return
        self.cache.add_pod(self._pod_info(pod, key), pod["spec"]["nodeName"])
        self.queue.move(event)

    def _pod_info(self, pod: Obj, key: str) -> PodInfo:
        """The PodInfo of a pod seen placed. When it is one this scheduler assumed and
        the binding is all that changed, the assumed PodInfo is reused: parsing
        requests and affinity terms again was most of the cost of that update."""
        if self.cache.is_assumed(key):
            node = self.cache.node(pod["spec"]["nodeName"])
            assumed = node.pods.get(key) if node is not None else None
            if assumed is not None and assumed.spec == pod.get("spec") \
                    and assumed.labels == (pod["metadata"].get("labels") or {}):
                return dataclasses.replace(assumed, pod=pod)
        return PodInfo.of(pod, priority=self._priority(pod))

    def _pod_deleted(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        self.nominated.pop(key, None)
        if self.cache.node_of(key) is not None:
            self.cache.remove_pod(key)
            self.queue.move("PodDelete")

    # ---- the scheduling cycle ----------------------------------------------------------

    def _nominated_by_node(self) -> dict[str, list[PodInfo]] | None:
        if not self.nominated:
            return None
        by_node: dict[str, list[PodInfo]] = {}
        for node, info in self.nominated.values():
            by_node.setdefault(node, []).append(info)
        return by_node

    def framework_for(self, pod: Obj) -> Framework | None:
        return self.profiles.get((pod.get("spec") or {}).get("schedulerName")
                                 or DEFAULT_SCHEDULER)

    def place(self, fw: Framework, state: CycleState, info: PodInfo) -> Placement:
        nodes = self.cache.node_list()
        nominated = self._nominated_by_node()
        preferred = (info.pod.get("status") or {}).get("nominatedNodeName")
        target = self.cache.node(preferred) if preferred else None
        if target is not None:
            # A pod that preempted tries its nominated node first.
            placement = fw.schedule(state, info, [target], nominated=nominated)
            if placement.chosen is not None:
                return placement
            state = CycleState()
        start = self._next_start % len(nodes) if nodes else 0
        placement = fw.schedule(state, info, nodes, start=start, nominated=nominated,
                                cache=self.cache)
        self._next_start = start + placement.examined
        return placement

    async def schedule_one(self, queued: QueuedPod) -> None:
        pod = queued.pod
        fw = self.framework_for(pod)
        if fw is None:
            self.queue.done(queued.key)
            return
        info = PodInfo.of(pod, priority=queued.priority)
        state = CycleState()
        placement = self.place(fw, state, info)
        node = placement.chosen
        if node is None:
            await self._unschedulable(fw, state, info, queued, placement)
            return
        self.cache.assume(info, node)
        status = fw.run_reserve(state, info, node)
        if status.ok:
            status, timeout = fw.run_permit(state, info, node)
            if status.ok or status.code is Code.WAIT:
                self._spawn(self._bind(fw, state, info, queued, node, timeout))
                return
            fw.run_unreserve(state, info, node)
        self.cache.forget(info.key)
        self.queue.unschedulable(queued, frozenset({status.plugin}))
        self._spawn(self._report_failure(pod, status.message or "pod rejected"))

    async def _unschedulable(self, fw: Framework, state: CycleState, info: PodInfo,
                             queued: QueuedPod, placement: Placement) -> None:
        failure = placement.pre_filter
        if failure is not None and failure.code is Code.ERROR:
            self.queue.backoff(queued)
            self._spawn(self._report_failure(info.pod, f"running PreFilter plugin "
                                             f"{failure.plugin!r}: {failure.message}"))
            return
        if fw.post_filters and placement.total_nodes:
            await fw.run_post_filter(state, info, placement)
        rejectors = frozenset(s.plugin for s in placement.filtered.values() if s.rejected)
        if placement.nominated is not None:
            self.nominated[info.key] = (placement.nominated, info)
            rejectors |= {"DefaultPreemption"}
        self.queue.unschedulable(queued, rejectors)
        self._spawn(self._report_failure(info.pod, fit_error(placement),
                                         nominated=placement.nominated))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the binding cycle -----------------------------------------------------------

    async def _bind(self, fw: Framework, state: CycleState, info: PodInfo, queued: QueuedPod,
                    node: str, permit_timeout: float) -> None:
        status = Status()
        if permit_timeout:
            status = await fw.wait_on_permit(info, permit_timeout)
        if status.ok:
            status = await fw.run_pre_bind(state, info, node)
        if status.ok:
            status = await fw.run_bind(state, info, node)
        if not status.ok:
            fw.run_unreserve(state, info, node)
            self.cache.forget(info.key)
            log.info("binding %s to %s failed: %s", info.key, node, status.message)
            self.queue.backoff(queued)
            await self._report_failure(info.pod, f"Binding rejected: {status.message}")
            return
        self.queue.done(info.key)
        await self.recorder.record(info.pod, "Normal", "Scheduled",
                                   f"Successfully assigned {info.key} to {node}")

    async def _report_failure(self, pod: Obj, message: str, *,
                              nominated: str | None = None) -> None:
        fw_name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        recorder = self.recorder if fw_name == DEFAULT_SCHEDULER else EventRecorder(
            self.client, component=fw_name)
        await recorder.record(pod, "Warning", "FailedScheduling", message)
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message}
        status = pod.get("status") or {}
        current = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
        same = current and all(current[0].get(k) == v for k, v in condition.items())
        patch: Obj = {}
        if not same:
            patch["conditions"] = [condition]
        if nominated is not None and status.get("nominatedNodeName") != nominated:
            patch["nominatedNodeName"] = nominated
        if not patch:
            return
        meta = pod["metadata"]
        with contextlib.suppress(NotFound, Conflict):
            try:
                await self.client.patch(PODS, meta["name"], {"status": patch},
                                        patch_type="strategic", namespace=meta["namespace"],
                                        subresource="status")
            except ClientError as exc:
                log.warning("could not update the status of %s: %s", pod_key(pod), exc)

    # ---- lifecycle -------------------------------------------------------------------

    async def wait_for_sync(self) -> None:
        await asyncio.gather(self.nodes.has_synced.wait(), self.pods.has_synced.wait(),
                             *(i.has_synced.wait() for i in self.informers.values()))

    async def run(self) -> None:
        """Schedule until cancelled; the informers must be started by their owner."""
        await self.wait_for_sync()
        log.info("scheduler: caches synced with %d nodes, %d pending pods", len(self.cache),
                 len(self.queue))
        flusher = asyncio.create_task(self._flush_loop())
        try:
            while True:
                queued = await self.queue.pop()
                try:
                    await self.schedule_one(queued)
                except Exception:
                    log.exception("scheduling %s failed", queued.key)
                    self.cache.forget(queued.key)
                    self.queue.backoff(queued)
                # A cycle that places its pod never waits, and neither does popping a
                # full queue: yield, so that informers keep reading their watches (a
                # watch left unread for long is cut by the server) and the bindings
                # spawned so far get under way while the queue drains.
                await asyncio.sleep(0)
        finally:
            await cancelled(flusher, *self._tasks)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.queue.flush_unschedulable()
