"""One worker per pod: a level-triggered loop that makes the node match the pod.

Each pass reads the desired spec (the informer's latest copy) and the runtime's
containers, takes the steps kubelet's SyncPod takes (volumes, sandbox, init
containers in order, sidecars, app containers with restart policy and crash
back-off, probe-driven restarts), writes status when it changed, and sleeps
until something happens: an API event, a container state change noticed by the
runtime relist, a probe result, or the earliest timer (back-off expiry, retry).

Deletion: preStop, SIGTERM, SIGKILL after the grace period for every container
(app containers first, then sidecars in reverse order), sandbox and volumes
removed, then the pod object deleted with grace 0, as kubelet's status manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubelite.agent import launch
from kubelite.agent.backoff import Backoff
from kubelite.agent.containers import RESTART_COUNT, SPEC_HASH, spec_hash
from kubelite.agent.context import PodContext
from kubelite.agent.probemanager import Probes
from kubelite.agent.sandbox import dns_config, sandbox_config
from kubelite.agent.status import (
    TERMINAL,
    ContainerView,
    PodView,
    phase,
    pod_status,
    same_status,
)
from kubelite.agent.volumes import HostVolume, VolumeError
from kubelite.client import ClientError, Conflict, NotFound
from kubelite.client.api import CORE_POD
from kubelite.runtime import errors
from kubelite.runtime.base import ContainerID, ContainerStatus, Sandbox
from kubelite.tasks import ended

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Without events a pod is still looked at this often (kubelet's resync is 1 min).
RESYNC = 60.0
# Retry for container starts blocked on configuration (a missing ConfigMap ...).
CONFIG_RETRY = 10.0
# Reasons that retrying without a change to the spec cannot fix.
_PERMANENT = ("InvalidImageName",)


def _instances(observed: list[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """Runtime containers by spec name, newest first."""
    groups: dict[str, list[ContainerStatus]] = {}
    for c in observed:
        groups.setdefault(c.name, []).append(c)
    for items in groups.values():
        items.sort(key=lambda c: (int(c.labels.get(RESTART_COUNT, 0)), c.created_at), reverse=True)
    return groups


class PodWorker:
    def __init__(self, ctx: PodContext, pod: Obj, *, on_done: Callable[[str], None],
                 sandbox: Sandbox | None = None) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.on_done = on_done
        self.sandbox = sandbox
        # The pod is gone from the API (a DELETED event): stop everything.
        self.removed = False
        self.probes = Probes(self)
        initial, cap = ctx.config.crash_backoff
        self.crash_backoff = Backoff(initial=initial, cap=cap)
        self.waiting: dict[str, tuple[str, str]] = {}
        # name -> (container id, event message): containers a probe condemned.
        self.kill_requests: dict[str, tuple[ContainerID, str, float | None]] = {}
        self.term_messages: dict[ContainerID, str] = {}
        self.terminal: Obj | None = None
        self.written: Obj | None = None
        self._timers: list[float] = []
        self._mount_retry = 1.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._acquired = False

    # -- driven by the pod manager -------------------------------------------------

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta.get('namespace')}/{meta['name']}"

    def update(self, pod: Obj) -> None:
        old, self.pod = self.pod, pod
        # Status-only changes are mostly this worker's own writes: nothing to do.
        if _differs(old, pod):
            self.wake()

    def remove(self, last: Obj) -> None:
        self.pod = last
        self.removed = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod {self.key}")

    async def stop(self) -> None:
        """Stop managing the pod (agent shutdown); its containers keep running."""
        if self._task is not None:
            self._task.cancel()
            await ended(self._task)
        await self.probes.stop_all()

    @property
    def pod_ip(self) -> str:
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            return self.ctx.host_ip()
        return self.sandbox.ips[0] if self.sandbox is not None and self.sandbox.ips else ""

    async def _run(self) -> None:
        finished = False
        try:
            while not finished:
                self._wake.clear()
                self._timers = []
                try:
                    finished = await self._sync()
                except (ClientError, errors.RuntimeError_, OSError) as e:
                    log.warning("pod %s: sync failed: %s", self.key, e)
                    self._timers.append(5.0)
                except Exception:
                    log.exception("pod %s: sync failed", self.key)
                    self._timers.append(5.0)
                if finished:
                    break
                delay = min([RESYNC, *self._timers])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(delay, 0.0))
        finally:
            if finished:
                self.on_done(self.uid)

    # -- one pass ------------------------------------------------------------------

    async def _sync(self) -> bool:
        """One pass; True once the pod is gone from the node for good."""
        pod = self.pod
        if self.removed or pod["metadata"].get("deletionTimestamp"):
            await self._terminate()
            return True
        if self.terminal is not None:
            return False
        # Every pass: ephemeral containers added since can reference more objects.
        self.ctx.source.acquire(pod)
        self._acquired = True
        if (pod.get("status") or {}).get("phase") in TERMINAL and self.written is None:
            # Finished before this agent (re)started: only clean up what is left.
            await self._release_node_resources(keep_logs=True)
            self.terminal = pod.get("status") or {}
            return False
        try:
            volumes = await self.ctx.volumes.setup(pod)
            self._mount_retry = 1.0
        except ExceptionGroup as group:
            for e in group.exceptions:
                message = str(e) if isinstance(e, VolumeError) else f"MountVolume.SetUp failed: {e}"
                await self.ctx.recorder.record(pod, "Warning", "FailedMount", message)
            self._timers.append(self._mount_retry)
            self._mount_retry = min(self._mount_retry * 2, 30.0)
            await self._write_status({})
            return False
        if not await self._ensure_sandbox():
            await self._write_status({})
            return False
        assert self.sandbox is not None
        observed = await self.ctx.runtime.list_containers(self.sandbox.id)
        groups = _instances(observed)
        if await self._act(groups, volumes):
            groups = _instances(await self.ctx.runtime.list_containers(self.sandbox.id))
            # Look again at once: the next init container or sidecar may be startable.
            self.wake()
        await self._prune(groups)
        await self._read_termination_messages(groups)
        view = self._view(groups)
        pod_phase = phase(view)
        if pod_phase in TERMINAL:
            await self._finish(view, pod_phase)
            return False
        await self._write(pod_status(view))
        self.probes.sync(groups)
        return False

    async def _ensure_sandbox(self) -> bool:
        if self.sandbox is not None and self.sandbox.state == "ready":
            return True
        pod = self.pod
        if self.sandbox is not None:
            await self.ctx.recorder.record(pod, "Normal", "SandboxChanged",
                                           "Pod sandbox changed, it will be killed and re-created.")
            with contextlib.suppress(errors.RuntimeError_):
                await self.ctx.runtime.remove_sandbox(self.sandbox.id)
            self.sandbox = None
        dns, fell_back = dns_config(pod, cluster_dns=self.ctx.config.cluster_dns,
                                    cluster_domain=self.ctx.config.cluster_domain,
                                    host=self.ctx.host_dns)
        if fell_back:
            meta = pod["metadata"]
            await self.ctx.recorder.record(
                pod, "Warning", "MissingClusterDNS",
                f'pod: "{meta["name"]}_{meta.get("namespace")}({self.uid})". kubelet does not '
                'have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
                'policy. Falling back to "Default" policy.')
        try:
            self.sandbox = await self.ctx.runtime.create_sandbox(sandbox_config(pod, dns))
        except errors.RuntimeError_ as e:
            await self.ctx.recorder.record(pod, "Warning", "FailedCreatePodSandBox",
                                           f"Failed to create pod sandbox: {e.message}")
            self._timers.append(self._mount_retry)
            self._mount_retry = min(self._mount_retry * 2, 30.0)
            return False
        return True

    async def _act(self, groups: dict[str, list[ContainerStatus]],
                   volumes: dict[str, HostVolume]) -> bool:
        """Start, restart or kill what the spec asks for; True if anything was done."""
        spec = self.pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        acted = False
        for c in spec.get("initContainers") or []:
            insts = groups.get(c["name"], [])
            cur = insts[0] if insts else None
            if c.get("restartPolicy") == "Always":
                acted |= await self._ensure(c, cur, volumes, lambda _code: True)
                if not self.probes.started(c["name"], groups):
                    return acted
                continue
            if cur is not None and cur.state == "exited" and cur.exit_code == 0:
                continue
            if cur is not None and cur.state == "exited" and policy == "Never":
                return acted  # the pod has failed; phase() says so
            acted |= await self._ensure(c, cur, volumes, lambda code: code != 0)
            return acted
        for c in spec.get("containers") or []:
            insts = groups.get(c["name"], [])
            cur = insts[0] if insts else None
            acted |= await self._ensure(c, cur, volumes, _restart_rule(policy))
        return acted

    async def _ensure(self, spec: Obj, cur: ContainerStatus | None,
                      volumes: dict[str, HostVolume], may_restart: Callable[[int], bool]) -> bool:
        name = spec["name"]
        if cur is not None and cur.state == "running":
            kill = self.kill_requests.get(name)
            message = ""
            grace = launch.grace_period(self.pod)
            if kill is not None and kill[0] == cur.id:
                message = kill[1]
                grace = kill[2] if kill[2] is not None else grace
            elif cur.labels.get(SPEC_HASH, spec_hash(spec)) != spec_hash(spec):
                message = f"Container {name} definition changed, will be restarted"
            if not message:
                self.waiting.pop(name, None)
                return False
            self.kill_requests.pop(name, None)
            await self.probes.stop_container(name)
            await launch.stop(self.ctx, self.pod, self.sandbox, spec, cur.id, grace=grace,
                              message=message, pod_ip=self.pod_ip)
            cur = await self.ctx.runtime.container_status(cur.id)
        attempt = 0
        if cur is not None and cur.state != "exited":
            # Created but never started (the agent died in between): start it over.
            with contextlib.suppress(errors.ContainerNotFound):
                await self.ctx.runtime.remove_container(cur.id)
            attempt = int(cur.labels.get(RESTART_COUNT, 0))
        elif cur is not None:
            if not may_restart(cur.exit_code if cur.exit_code is not None else 1):
                self.waiting.pop(name, None)
                return False
            finished = cur.finished_at or time.time()
            remaining = self.crash_backoff.remaining(name, finished)
            if remaining > 0:
                await self._crash_loop(name, remaining)
                return False
            self.crash_backoff.next(name, finished)
            attempt = int(cur.labels.get(RESTART_COUNT, 0)) + 1
        previous = self.waiting.get(name)
        if previous is not None and previous[0] in _PERMANENT and cur is None:
            return False
        assert self.sandbox is not None
        try:
            await launch.start(self.ctx, self.pod, self.sandbox, spec, volumes=volumes,
                               attempt=attempt, pod_ip=self.pod_ip)
        except launch.StartFailed as e:
            self.waiting[name] = (e.reason, e.message)
            self._retry_after(spec, e.reason)
            return e.reason in ("RunContainerError", "PostStartHookError")
        self.waiting.pop(name, None)
        return True

    async def _crash_loop(self, name: str, remaining: float) -> None:
        meta = self.pod["metadata"]
        who = f"{meta['name']}_{meta.get('namespace')}({self.uid})"
        delay = self.crash_backoff.delay(name)
        if (self.waiting.get(name) or ("",))[0] != "CrashLoopBackOff":
            await self.ctx.recorder.record(
                self.pod, "Warning", "BackOff",
                f"Back-off restarting failed container {name} in pod {who}",
                field_path=launch.field_path(self.pod, name))
        self.waiting[name] = ("CrashLoopBackOff",
                              f"back-off {_duration(delay)} restarting failed container={name} "
                              f"pod={who}")
        self._timers.append(remaining)

    def _retry_after(self, spec: Obj, reason: str) -> None:
        if reason in _PERMANENT:
            return
        if reason in ("ErrImagePull", "ImagePullBackOff"):
            # Look again halfway through a fresh back-off (showing ImagePullBackOff, as
            # kubelet's next sync does), and when it runs out.
            remaining = self.ctx.puller.backoff_remaining(self.pod, spec)
            self._timers.append(remaining / 2 if reason == "ErrImagePull" else remaining)
        elif reason in ("RunContainerError", "PostStartHookError"):
            return  # the instance exists and exited: the crash back-off paces it
        else:
            self._timers.append(CONFIG_RETRY)

    async def _read_termination_messages(self, groups: dict[str, list[ContainerStatus]]) -> None:
        specs = {c["name"]: c for c in [*(self.pod["spec"].get("initContainers") or []),
                                         *(self.pod["spec"].get("containers") or [])]}
        for name, insts in groups.items():
            cur = insts[0]
            if cur.state != "exited" or cur.id in self.term_messages or name not in specs:
                continue
            attempt = int(cur.labels.get(RESTART_COUNT, 0))
            self.term_messages[cur.id] = await asyncio.to_thread(
                launch.read_termination_message,
                launch.termination_file(self.ctx, self.pod, name, attempt),
                self.ctx.log_dir(self.pod) / name / f"{attempt}.log",
                policy=specs[name].get("terminationMessagePolicy") or "File",
                failed=cur.exit_code != 0)

    async def _prune(self, groups: dict[str, list[ContainerStatus]]) -> None:
        """Keep the newest two instances of each container (now and lastState)."""
        for insts in groups.values():
            for old in insts[2:]:
                with contextlib.suppress(errors.ContainerNotFound):
                    await self.ctx.runtime.remove_container(old.id)
                self.term_messages.pop(old.id, None)
            del insts[2:]

    # -- status --------------------------------------------------------------------

    def _view(self, groups: dict[str, list[ContainerStatus]]) -> PodView:
        spec = self.pod.get("spec") or {}

        def one(c: Obj, sidecar: bool) -> ContainerView:
            insts = groups.get(c["name"], [])
            cur = insts[0] if insts else None
            view = ContainerView(spec=c, current=cur, previous=insts[1] if len(insts) > 1 else None,
                                 restart_count=int(cur.labels.get(RESTART_COUNT, 0)) if cur else 0,
                                 waiting=self.waiting.get(c["name"]), sidecar=sidecar)
            if cur is not None and cur.state == "running":
                view.started = self.probes.started(c["name"], groups)
                view.ready = view.started and self.probes.ready(c["name"], cur.id)
            if cur is not None and cur.state == "exited":
                view.termination_message = self.term_messages.get(cur.id, "")
            return view

        return PodView(
            pod=self.pod,
            init=[one(c, c.get("restartPolicy") == "Always") for c in spec.get("initContainers") or []],
            app=[one(c, False) for c in spec.get("containers") or []],
            runtime_name=self.ctx.runtime.name,
            sandbox_ready=self.sandbox is not None and self.sandbox.state == "ready",
            host_ip=self.ctx.host_ip(),
            pod_ip=self.pod_ip,
        )

    async def _write_status(self, groups: dict[str, list[ContainerStatus]]) -> None:
        await self._write(pod_status(self._view(groups)))

    async def _write(self, status: Obj) -> None:
        current = self.pod.get("status") or {}
        if self.written is not None and same_status(status, self.written) \
                and same_status(status, current):
            return
        if self.written is None and same_status(status, current):
            self.written = status
            return
        meta = self.pod["metadata"]
        patch = {"metadata": {"uid": self.uid}, "status": status}
        try:
            await self.ctx.client.patch(CORE_POD, meta["name"], patch, patch_type="merge",
                                        namespace=meta.get("namespace"), subresource="status")
            self.written = status
        except (NotFound, Conflict) as e:
            log.debug("pod %s: status not written: %s", self.key, e)

    # -- the end -------------------------------------------------------------------

    async def _finish(self, view: PodView, pod_phase: str) -> None:
        """The pod ran to completion: stop what is left (sidecars), freeze its status."""
        await self.probes.stop_all()
        view.terminal_phase = pod_phase
        await self._stop_containers(launch.grace_period(self.pod))
        assert self.sandbox is not None
        groups = _instances(await self.ctx.runtime.list_containers(self.sandbox.id))
        final_view = self._view(groups)
        final_view.terminal_phase = pod_phase
        for c in [*final_view.init, *final_view.app]:
            c.waiting = None
        final = pod_status(final_view)
        await self._write(final)
        self.terminal = final
        await self._release_node_resources(keep_logs=True)

    async def _stop_containers(self, grace: float) -> None:
        if self.sandbox is not None:
            await launch.stop_all(self.ctx, self.pod, self.sandbox, grace=grace,
                                  pod_ip=self.pod_ip)

    async def _terminate(self) -> None:
        await self.probes.stop_all()
        if self.terminal is None:
            await self._stop_containers(launch.grace_period(self.pod))
        await self._release_node_resources()
        if self._acquired:
            await self.ctx.source.release(self.uid)
            self._acquired = False
        self.ctx.puller.forget(self.uid)
        if self.removed:
            return
        meta = self.pod["metadata"]
        try:
            await self.ctx.client.delete(CORE_POD, meta["name"], meta.get("namespace"),
                                         grace_period_seconds=0,
                                         preconditions={"uid": self.uid})
        except (NotFound, Conflict):
            pass

    async def _release_node_resources(self, *, keep_logs: bool = False) -> None:
        if self.sandbox is None:
            for sb in await self.ctx.runtime.list_sandboxes():
                if sb.config.pod_uid == self.uid:
                    self.sandbox = sb
        if self.sandbox is not None:
            with contextlib.suppress(errors.SandboxError, errors.ContainerNotFound):
                await self.ctx.runtime.remove_sandbox(self.sandbox.id)
            self.sandbox = None
        await self.ctx.volumes.teardown(self.uid)
        if not keep_logs:
            await asyncio.to_thread(_remove_tree, self.ctx.log_dir(self.pod))


def _differs(old: Obj, new: Obj) -> bool:
    """Whether the pod changed in what the node acts on (spec and metadata but
    resourceVersion and managedFields), as kubelet's podsDifferSemantically."""
    if old.get("spec") != new.get("spec"):
        return True
    skip = ("resourceVersion", "managedFields")
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return any(a.get(k) != b.get(k) for k in {*a, *b} if k not in skip)


def _restart_rule(policy: str) -> Callable[[int], bool]:
    if policy == "Always":
        return lambda _code: True
    if policy == "OnFailure":
        return lambda code: code != 0
    return lambda _code: False


def _duration(seconds: float) -> str:
    """Go's time.Duration formatting for whole seconds: 10s, 1m20s, 5m0s."""
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
