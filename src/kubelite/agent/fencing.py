"""Self-fencing: an agent cut off from the API server kills its own pods.

The node lifecycle controller (controllers/nodelifecycle.py) deletes the pods
of a node whose Lease went silent, so that their controllers recreate them
elsewhere; for a StatefulSet that means the same identity on another node. That
is only safe if the silent node no longer runs them. So the agent watches its
own renewals: when none succeeded for `timeout` seconds it stops its pod workers
(so nothing restarts) and kills every container it runs. The controller waits
for the node's grace period plus this timeout and a margin before it deletes
the pods, so by then the old copies are dead.

Defaults, next to Kubernetes' (which has no self-fencing; its pods of an
unreachable StatefulSet stay Terminating until a human acts):

    Lease renewal                  1 s      (kubelet: 10 s)
    fencing timeout                3 s      (less than the controller's 4 s grace)
    settle after reconnecting      1 s

When renewals succeed again the agent waits `settle` seconds, so that a deletion
the controller decided on just before it saw the renewal reaches the API, then
lists its pods afresh: sandboxes of pods that are gone or bound elsewhere are
removed, the others restarted; only then is the node reported Ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from kubelite.agent.podmanager import PodManager
from kubelite.client import Informer
from kubelite.runtime import errors
from kubelite.runtime.base import ContainerID, ContainerRuntime

log = logging.getLogger(__name__)

DEFAULT_FENCING_TIMEOUT = 3.0
DEFAULT_SETTLE = 1.0
# runc processes started at once when killing every container.
_KILL_CONCURRENCY = 8


async def kill_all_containers(runtime: ContainerRuntime) -> int:
    """SIGKILL every running container of the runtime; returns how many were running."""
    running = [c for c in await runtime.list_containers() if c.state == "running"]
    gate = asyncio.Semaphore(_KILL_CONCURRENCY)

    async def kill(container_id: ContainerID) -> None:
        async with gate:
            with contextlib.suppress(errors.RuntimeError_):
                await runtime.stop_container(container_id, timeout=0)

    await asyncio.gather(*(kill(c.id) for c in running))
    return len(running)


class SelfFencing:
    """`renewed()` after every successful Lease renewal; `run()` fences and recovers.

    `on_fence` stops whatever would restart containers; the containers are then
    killed here. `on_recover` brings the pods back from a fresh list and reports
    the node Ready. `fenced` is true from the fence until recovery finished."""

    def __init__(self, *, runtime: ContainerRuntime,
                 on_fence: Callable[[], Awaitable[None]],
                 on_recover: Callable[[], Awaitable[None]],
                 timeout: float = DEFAULT_FENCING_TIMEOUT, settle: float = DEFAULT_SETTLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if timeout <= 0:
            raise ValueError("the fencing timeout must be positive")
        self.runtime = runtime
        self.on_fence = on_fence
        self.on_recover = on_recover
        self.timeout = timeout
        self.settle = settle
        self.clock = clock
        self.fenced = False
        # Counts fences, so that callers and tests can tell one happened.
        self.fences = 0
        self._last = clock()
        self._renewal = asyncio.Event()

    def renewed(self) -> None:
        self._last = self.clock()
        self._renewal.set()

    @property
    def silent_for(self) -> float:
        return self.clock() - self._last

    async def run(self) -> None:
        self._last = self.clock()
        while True:
            if self.fenced:
                await self._await_recovery()
                continue
            remaining = self.timeout - self.silent_for
            if remaining <= 0:
                await self._fence()
                continue
            self._renewal.clear()
            # Wake at the deadline, or at a renewal, which moves it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renewal.wait(), remaining)

    async def _fence(self) -> None:
        self.fenced = True
        self.fences += 1
        log.warning("no lease renewal for %.1f s: fencing this node (killing its pods)",
                    self.silent_for)
        await self.on_fence()
        killed = await kill_all_containers(self.runtime)
        log.warning("fenced: killed %d containers", killed)

    async def _await_recovery(self) -> None:
        self._renewal.clear()
        if self.silent_for >= self.timeout:
            await self._renewal.wait()
        await asyncio.sleep(self.settle)
        if self.silent_for >= self.timeout:
            return  # lost again while settling
        log.info("lease renewed again: recovering pods from a fresh list")
        await self.on_recover()
        self.fenced = False


async def resume_pods(pods: PodManager) -> None:
    """Start a stopped pod manager again from a fresh list of the pods bound here:
    the old informer's cache may still hold pods deleted while the node was away,
    and their containers must not come back even for a moment."""
    old = pods.informer
    pods.informer = Informer(old.client, old.res, field_selector=old.field_selector)
    await pods.start()
