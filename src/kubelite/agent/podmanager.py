"""The pods bound to this node: one informer (fieldSelector spec.nodeName=NODE),
one PodWorker per pod, and the runtime relist that tells workers their
containers changed state (kubelet's PLEG: one list of all containers per
period, diffed, waking only the pods whose containers changed).

On start, sandboxes still on the node are matched to the pods the API knows:
those are adopted (their containers keep running), the rest swept (gc.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc as gc_
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent import gc
from kubelite.agent.containers import POD_UID, RESTART_COUNT
from kubelite.agent.context import PodContext
from kubelite.agent.podworker import PodWorker
from kubelite.agent.refs import pod_references
from kubelite.agent.status import TERMINAL
from kubelite.client import ClientError, Informer, object_key
from kubelite.client.api import CORE_POD
from kubelite.runtime import errors
from kubelite.runtime.base import ContainerID, Sandbox
from kubelite.tasks import ended

log = logging.getLogger(__name__)

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018 (musl has no malloc_trim)
except (OSError, AttributeError):
    _libc = None

Obj = dict[str, Any]
# How often freed heap memory is handed back to the system (see release_memory).
TRIM_PERIOD = 10.0
# Pods finished here are remembered so that late events do not revive them.
_FINISHED_MEMORY = 1024


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """A container the agent's HTTP endpoints act on."""

    pod: Obj
    name: str
    container_id: ContainerID | None  # None once the runtime no longer has it
    log_path: Path


class LookupError_(Exception):
    """The pod or container is not here; `code` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PodManager:
    def __init__(self, ctx: PodContext) -> None:
        self.ctx = ctx
        self.informer = Informer(ctx.client, CORE_POD,
                                 field_selector=f"spec.nodeName={ctx.config.node_name}")
        self.workers: dict[str, PodWorker] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._adopt: dict[str, Sandbox] = {}
        self._snapshot: dict[ContainerID, tuple[str, str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        present = await self.ctx.runtime.list_sandboxes()
        candidates = gc.sandboxes_by_pod(present)
        # Workers created by the first list take their sandbox from here.
        self._adopt = dict(candidates)
        self.informer.add_handlers(on_add=self._on_pod, on_update=lambda _o, n: self._on_pod(n),
                                   on_delete=self._on_delete)
        self.informer.start()
        await self.informer.has_synced.wait()
        known = {p["metadata"]["uid"] for p in self.informer.list()}
        adopted = {uid: sb for uid, sb in candidates.items() if uid in known}
        # Only what was here before: workers may already be creating new sandboxes.
        swept = await gc.sweep(self.ctx, known=known, adopted=adopted,
                               among={sb.id for sb in present})
        if adopted or swept:
            log.info("adopted %d pod sandboxes, swept %d", len(adopted), swept)
        self._adopt.clear()
        self._tasks = [asyncio.create_task(self._relist_loop(), name="runtime relist"),
                       asyncio.create_task(gc.image_gc_loop(self.ctx), name="image gc")]

    async def stop(self) -> None:
        """Stop watching and working; containers keep running for the next agent."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await ended(task)
        await self.informer.stop()
        await asyncio.gather(*(w.stop() for w in self.workers.values()))
        self.workers.clear()

    # -- API events ----------------------------------------------------------------

    def _on_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if uid in self._finished:
            return
        phase = (pod.get("status") or {}).get("phase")
        active = sum(1 for w in self.workers.values() if w.terminal is None)
        if phase not in TERMINAL and active >= self.ctx.config.max_pods:
            self._track(self._reject(pod, "OutOfpods",
                                     f"Node didn't have enough resource: pods, requested: 1, "
                                     f"used: {active}, capacity: {self.ctx.config.max_pods}"))
            return
        worker = PodWorker(self.ctx, pod, on_done=self._done, sandbox=self._adopt.pop(uid, None))
        self.workers[uid] = worker
        worker.start()

    async def _reject(self, pod: Obj, reason: str, message: str) -> None:
        """Admission refused the pod (as kubelet's): it fails without running."""
        meta = pod["metadata"]
        await self.ctx.recorder.record(pod, "Warning", reason, message)
        patch = {"metadata": {"uid": meta["uid"]},
                 "status": {"phase": "Failed", "reason": reason, "message": message}}
        try:
            await self.ctx.client.patch(CORE_POD, meta["name"], patch, patch_type="merge",
                                        namespace=meta.get("namespace"), subresource="status")
        except ClientError as e:
            log.warning("pod %s/%s: could not reject it: %s", meta.get("namespace"),
                        meta["name"], e)

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_delete(self, pod: Obj) -> None:
        worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.remove(pod)

    def _done(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self._finished[uid] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)

    def object_changed(self, kind: str, namespace: str, name: str) -> None:
        """A ConfigMap or Secret changed: wake the pods that use it."""
        for worker in self.workers.values():
            if worker.pod["metadata"].get("namespace") == namespace \
                    and (kind, name) in pod_references(worker.pod):
                worker.wake()

    # -- runtime events ------------------------------------------------------------

    async def relist(self) -> None:
        """One PLEG pass: wake the workers of pods whose containers changed."""
        current = {c.id: (c.state, c.labels.get(POD_UID, ""))
                   for c in await self.ctx.runtime.list_containers()}
        changed = {uid for cid, (state, uid) in current.items()
                   if self._snapshot.get(cid, ("", ""))[0] != state}
        changed |= {uid for cid, (_s, uid) in self._snapshot.items() if cid not in current}
        self._snapshot = current
        for uid in changed:
            worker = self.workers.get(uid)
            if worker is not None:
                worker.wake()

    async def _relist_loop(self) -> None:
        trimmed = 0.0
        while True:
            try:
                await self.relist()
            except errors.RuntimeError_ as e:
                log.warning("runtime relist failed: %s", e)
            now = asyncio.get_running_loop().time()
            if now - trimmed >= TRIM_PERIOD:
                trimmed = now
                release_memory()
            await asyncio.sleep(self.ctx.config.relist_interval)

    # -- lookups for the HTTP endpoints --------------------------------------------

    def find_pod(self, namespace: str, name: str) -> Obj:
        pod = self.informer.get(object_key({"metadata": {"namespace": namespace, "name": name}}))
        if pod is None:
            raise LookupError_(404, f'pod "{name}" not found in namespace "{namespace}"')
        return pod

    async def container(self, namespace: str, pod_name: str, container: str, *,
                        previous: bool = False) -> ContainerRef:
        pod = self.find_pod(namespace, pod_name)
        spec = pod.get("spec") or {}
        names = [c["name"] for group in ("initContainers", "containers", "ephemeralContainers")
                 for c in spec.get(group) or []]
        if container not in names:
            raise LookupError_(400, f'container {container} is not valid for pod {pod_name}')
        instances = sorted(
            (c for c in await self.ctx.runtime.list_containers()
             if c.labels.get(POD_UID) == pod["metadata"]["uid"] and c.name == container),
            key=lambda c: (int(c.labels.get(RESTART_COUNT, 0)), c.created_at), reverse=True)
        log_dir = self.ctx.log_dir(pod) / container
        if previous:
            if len(instances) < 2:
                raise LookupError_(400, f'previous terminated container "{container}" in pod '
                                        f'"{pod_name}" not found')
            inst = instances[1]
        elif instances:
            inst = instances[0]
        else:
            count = _reported_restarts(pod, container)
            path = log_dir / f"{count}.log"
            if count is None or not await asyncio.to_thread(path.exists):
                raise LookupError_(400, f'container "{container}" in pod "{pod_name}" is '
                                        'waiting to start: ContainerCreating')
            return ContainerRef(pod, container, None, path)
        attempt = int(inst.labels.get(RESTART_COUNT, 0))
        return ContainerRef(pod, container, inst.id, log_dir / f"{attempt}.log")


def release_memory() -> None:
    """Give freed heap pages back to the system: bursts of pod starts leave glibc's
    arenas large, and the agent's memory is budgeted (60 MB with 50 pods)."""
    gc_.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def _reported_restarts(pod: Obj, container: str) -> int | None:
    status = pod.get("status") or {}
    for cs in [*(status.get("containerStatuses") or []),
               *(status.get("initContainerStatuses") or [])]:
        if cs.get("name") == container and cs.get("containerID"):
            return int(cs.get("restartCount") or 0)
    return None
