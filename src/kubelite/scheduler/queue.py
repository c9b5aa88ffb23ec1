"""The scheduling queue: active, back-off and unschedulable sub-queues.

- active: pods ready for a cycle, taken by priority, then by the time they were queued
  (PrioritySort);
- back-off: pods whose last attempt failed wait 1 s doubling up to 10 s (the
  kube-scheduler defaults) before they return to active;
- unschedulable: pods no node fits wait for a cluster event that could change that,
  instead of being polled. Each rejection remembers which plugins rejected the pod,
  and only an event one of those plugins cares about (EVENTS) moves it, to back-off
  if its back-off has not run out yet, else to active. A pod also leaves after five
  minutes in any case (podMaxInUnschedulablePodsDuration), for events nobody reports.
An event that arrives while a pod is being scheduled sends that pod to back-off
rather than unschedulable when its cycle fails, so the event is not lost.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
MAX_IN_UNSCHEDULABLE = 300.0

# Cluster events that can make a pod rejected by a plugin fit (Kubernetes'
# EventsToRegister). A rejection by an unlisted plugin is retried on any event.
EVENTS: dict[str, frozenset[str]] = {
    "NodeUnschedulable": frozenset({"NodeAdd", "NodeUpdate"}),
    "NodeName": frozenset({"NodeAdd"}),
    "TaintToleration": frozenset({"NodeAdd", "NodeUpdate"}),
    "NodeAffinity": frozenset({"NodeAdd", "NodeUpdate"}),
    "NodePorts": frozenset({"NodeAdd", "PodDelete"}),
    "NodeResourcesFit": frozenset({"NodeAdd", "NodeUpdate", "PodDelete"}),
    "VolumeRestrictions": frozenset({"PodDelete", "PVCAdd", "PVCUpdate"}),
    "VolumeBinding": frozenset({"NodeAdd", "NodeUpdate", "PVAdd", "PVUpdate", "PVCAdd",
                                "PVCUpdate", "StorageClassAdd", "StorageClassUpdate"}),
    "PodTopologySpread": frozenset({"NodeAdd", "NodeUpdate", "NodeDelete", "PodAdd",
                                    "PodUpdate", "PodDelete"}),
    "InterPodAffinity": frozenset({"NodeAdd", "NodeUpdate", "PodAdd", "PodUpdate",
                                   "PodDelete", "NamespaceUpdate"}),
    "DefaultPreemption": frozenset({"PodDelete"}),
}


def pod_key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def _scheduling_relevant(pod: Obj) -> tuple[Any, ...]:
    """What of a pending pod may change where it fits: not its status, which the
    scheduler itself writes after every failed attempt."""
    meta = pod["metadata"]
    return (pod.get("spec"), meta.get("labels"), meta.get("annotations"))


@dataclass
class QueuedPod:
    pod: Obj
    priority: int
    queued_at: float
    attempts: int = 0
    last_attempt: float = 0.0
    # plugins that rejected it in its last cycle
    rejectors: frozenset[str] = frozenset()
    unschedulable_since: float = 0.0
    move_seq: int = field(default=0, repr=False)

    @property
    def key(self) -> str:
        return pod_key(self.pod)


class SchedulingQueue:
    def __init__(self, *, initial_backoff: float = 1.0, max_backoff: float = 10.0) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._heap: list[tuple[int, float, int, str]] = []
        self._seq = itertools.count()
        self._pods: dict[str, QueuedPod] = {}
        self._active: set[str] = set()
        self._in_flight: set[str] = set()
        self._unschedulable: dict[str, QueuedPod] = {}
        self._backoff: dict[str, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._move_seq = 0

    def __len__(self) -> int:
        return len(self._pods)

    def counts(self) -> dict[str, int]:
        return {"active": len(self._active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable)}

    def _push(self, key: str) -> None:
        queued = self._pods.get(key)
        if queued is None or key in self._active or key in self._in_flight:
            return
        self._unschedulable.pop(key, None)
        timer = self._backoff.pop(key, None)
        if timer is not None:
            timer.cancel()
        heapq.heappush(self._heap, (-queued.priority, queued.queued_at, next(self._seq), key))
        self._active.add(key)
        self._wakeup.set()

    def add(self, pod: Obj, *, priority: int) -> None:
        """A pending pod appeared or changed."""
        key = pod_key(pod)
        queued = self._pods.get(key)
        if queued is None:
            self._pods[key] = QueuedPod(pod, priority, time.monotonic())
            self._push(key)
            return
        changed = _scheduling_relevant(queued.pod) != _scheduling_relevant(pod)
        queued.pod, queued.priority = pod, priority
        if changed and key in self._unschedulable:
            # The pod itself changed (tolerations, selectors...): maybe it fits now.
            self._to_backoff_or_active(queued)

    def delete(self, key: str) -> None:
        self._pods.pop(key, None)
        self._active.discard(key)
        self._unschedulable.pop(key, None)
        timer = self._backoff.pop(key, None)
        if timer is not None:
            timer.cancel()

    def __contains__(self, key: str) -> bool:
        return key in self._pods

    async def pop(self) -> QueuedPod:
        while True:
            while self._heap:
                _, _, _, key = heapq.heappop(self._heap)
                if key in self._active:
                    self._active.discard(key)
                    queued = self._pods.get(key)
                    if queued is not None:
                        queued.attempts += 1
                        queued.last_attempt = time.monotonic()
                        queued.move_seq = self._move_seq
                        self._in_flight.add(key)
                        return queued
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: str) -> None:
        """The pod was assumed on a node, or is no longer pending: forget it."""
        self._in_flight.discard(key)
        self.delete(key)

    def _backoff_delay(self, queued: QueuedPod) -> float:
        return min(self.initial_backoff * 2 ** max(queued.attempts - 1, 0), self.max_backoff)

    def unschedulable(self, queued: QueuedPod, rejectors: frozenset[str]) -> None:
        """No node fits: wait for an event (or back off, if one came meanwhile)."""
        key = queued.key
        self._in_flight.discard(key)
        if key not in self._pods:
            return
        queued.rejectors = rejectors
        if queued.move_seq != self._move_seq:
            self._to_backoff_or_active(queued)
            return
        queued.unschedulable_since = time.monotonic()
        self._unschedulable[key] = queued

    def backoff(self, queued: QueuedPod) -> None:
        """The attempt failed for a reason other than fit (an error, a lost binding)."""
        key = queued.key
        self._in_flight.discard(key)
        if key not in self._pods:
            return
        self._start_backoff(queued, self._backoff_delay(queued))

    def _start_backoff(self, queued: QueuedPod, delay: float) -> None:
        key = queued.key
        self._unschedulable.pop(key, None)
        old = self._backoff.pop(key, None)
        if old is not None:
            old.cancel()
        self._backoff[key] = asyncio.get_running_loop().call_later(delay, self._expire, key)

    def _expire(self, key: str) -> None:
        self._backoff.pop(key, None)
        self._push(key)

    def _to_backoff_or_active(self, queued: QueuedPod) -> None:
        remaining = queued.last_attempt + self._backoff_delay(queued) - time.monotonic()
        if remaining > 0:
            self._start_backoff(queued, remaining)
        else:
            self._push(queued.key)

    def move(self, event: str) -> int:
        """A cluster event: move the unschedulable pods it may help; returns how many."""
        self._move_seq += 1
        moved = 0
        for queued in list(self._unschedulable.values()):
            if not queued.rejectors or any(event in EVENTS.get(p, (event,))
                                           for p in queued.rejectors):
                self._to_backoff_or_active(queued)
                moved += 1
        return moved

    def flush_unschedulable(self) -> None:
        """Give pods stuck longer than MAX_IN_UNSCHEDULABLE another try."""
        now = time.monotonic()
        for queued in list(self._unschedulable.values()):
            if now - queued.unschedulable_since > MAX_IN_UNSCHEDULABLE:
                self._to_backoff_or_active(queued)
