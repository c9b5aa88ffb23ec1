"""The scheduling queue: active (by priority, then age), back-off, unschedulable.

Unschedulable pods wait for a cluster event that could make them fit (a node
added or changed, a pod deleted) instead of being polled; pods that failed for
other reasons wait out an exponential back-off (1 s doubling to 10 s, the
kube-scheduler defaults).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Any

Obj = dict[str, Any]
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0


def _key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


class SchedulingQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, str]] = []
        self._seq = itertools.count()
        self._pods: dict[str, Obj] = {}  # latest version of every queued pod
        self._active: set[str] = set()
        self._unschedulable: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pods)

    def _push(self, key: str) -> None:
        if key in self._active or key not in self._pods:
            return
        pod = self._pods[key]
        priority = int((pod.get("spec") or {}).get("priority") or 0)
        heapq.heappush(self._heap, (-priority, time.monotonic(), next(self._seq), key))
        self._active.add(key)
        self._unschedulable.discard(key)
        self._wakeup.set()

    def add(self, pod: Obj) -> None:
        key = _key(pod)
        known = key in self._pods
        self._pods[key] = pod
        if not known:
            self._push(key)
        elif key in self._unschedulable:
            # The pod itself changed: maybe it fits now.
            self._push(key)

    def delete(self, pod: Obj) -> None:
        key = _key(pod)
        self._pods.pop(key, None)
        self._active.discard(key)
        self._unschedulable.discard(key)
        self._attempts.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def pop(self) -> Obj:
        while True:
            while self._heap:
                _, _, _, key = heapq.heappop(self._heap)
                if key in self._active:
                    self._active.discard(key)
                    if key in self._pods:
                        self._attempts[key] = self._attempts.get(key, 0) + 1
                        return self._pods[key]
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, pod: Obj) -> None:
        """The pod was bound: forget it."""
        self.delete(pod)

    def unschedulable(self, pod: Obj) -> None:
        key = _key(pod)
        if key in self._pods:
            self._unschedulable.add(key)

    def backoff(self, pod: Obj) -> None:
        key = _key(pod)
        if key not in self._pods:
            return
        delay = min(INITIAL_BACKOFF * 2 ** (self._attempts.get(key, 1) - 1), MAX_BACKOFF)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._expire, key)

    def _expire(self, key: str) -> None:
        self._timers.pop(key, None)
        self._push(key)

    def move_all_to_active(self) -> None:
        """A cluster event that may make unschedulable pods fit."""
        for key in list(self._unschedulable):
            self._push(key)
