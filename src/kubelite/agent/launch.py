"""Starting and stopping one container of a pod, with kubelet's events:
image, env and config, create, start, postStart; preStop, SIGTERM, SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from kubelite.agent import containers
from kubelite.agent.context import PodContext
from kubelite.agent.envs import ContainerConfigError, container_env
from kubelite.agent.logs import parse_line
from kubelite.agent.probes import Target, run_handler
from kubelite.agent.pull import PullFailed, registry_auth
from kubelite.agent.volumes import HostVolume
from kubelite.runtime import errors
from kubelite.runtime.base import ContainerID, ContainerStatus, Sandbox

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# kubelet never gives a container less than this to stop (minimumGracePeriodInSeconds).
MIN_GRACE = 2.0


class StartFailed(Exception):
    """The container did not start; `reason` and `message` become its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def field_path(pod: Obj, name: str) -> str:
    spec = pod.get("spec") or {}
    for group in ("initContainers", "containers", "ephemeralContainers"):
        if any(c.get("name") == name for c in spec.get(group) or []):
            return f"spec.{group}{{{name}}}"
    return ""


def target(sandbox: Sandbox, container: Obj, container_id: ContainerID, pod_ip: str) -> Target:
    ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports") or []
             if p.get("name") and p.get("containerPort")}
    return Target(container_id=container_id, netns_path=sandbox.netns_path, pod_ip=pod_ip,
                  ports=ports)


def termination_file(ctx: PodContext, pod: Obj, name: str, attempt: int) -> Path:
    return ctx.config.pods_dir / pod["metadata"]["uid"] / "containers" / name / str(attempt)


def _prepare_files(log_path: Path, term: Path) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    term.parent.mkdir(parents=True, exist_ok=True)
    term.touch(mode=0o666)
    term.chmod(0o666)


async def start(ctx: PodContext, pod: Obj, sandbox: Sandbox, container: Obj, *,
                volumes: dict[str, HostVolume], attempt: int, pod_ip: str) -> ContainerID:
    """Create and start the container's instance number `attempt` (its restart count)."""
    name = container["name"]
    fp = field_path(pod, name)

    async def event(kind: str, reason: str, message: str) -> None:
        await ctx.recorder.record(pod, kind, reason, message, field_path=fp)

    auth = await registry_auth(pod, container.get("image") or "", ctx.source)
    try:
        image = await ctx.puller.ensure(pod, container, field_path=fp, auth=auth)
    except PullFailed as e:
        raise StartFailed(e.reason, e.message) from e
    log_path = ctx.log_dir(pod) / name / f"{attempt}.log"
    term = termination_file(ctx, pod, name, attempt)
    try:
        env = await container_env(pod, container, source=ctx.source, host_ip=ctx.host_ip(),
                                  pod_ip=pod_ip, allocatable=ctx.allocatable())
        await asyncio.to_thread(_prepare_files, log_path, term)
        config = await asyncio.to_thread(
            containers.build, pod, container, image=image, env=env, volumes=volumes,
            restart_count=attempt, log_path=log_path, termination_file=term,
            allow_privileged=ctx.config.allow_privileged)
    except ContainerConfigError as e:
        await event("Warning", "Failed", f"Error: {e}")
        raise StartFailed(e.reason, str(e)) from e
    except (containers.ContainerSpecError, OSError) as e:
        await event("Warning", "Failed", f"Error: {e}")
        raise StartFailed("CreateContainerError", str(e)) from e
    try:
        cid = await ctx.runtime.create_container(sandbox, config)
    except errors.RuntimeError_ as e:
        await event("Warning", "Failed", f"Error: {e.message}")
        raise StartFailed("CreateContainerError", e.message) from e
    await event("Normal", "Created", f"Created container: {name}")
    try:
        await ctx.runtime.start_container(cid)
    except errors.RuntimeError_ as e:
        await event("Warning", "Failed", f"Error: {e.message}")
        raise StartFailed("RunContainerError", e.message) from e
    await event("Normal", "Started", f"Started container {name}")
    hook = ((container.get("lifecycle") or {}).get("postStart"))
    if hook:
        grace = grace_period(pod)
        ok, message = await run_handler(hook, runtime=ctx.runtime,
                                        target=target(sandbox, container, cid, pod_ip),
                                        timeout=grace)
        if not ok:
            await event("Warning", "FailedPostStartHook", message or "PostStartHook failed")
            await stop(ctx, pod, sandbox, container, cid, grace=grace, reason="FailedPostStartHook",
                       message=f"Container {name} failed post-start hook, will be restarted",
                       pod_ip=pod_ip, run_pre_stop=False)
            raise StartFailed("PostStartHookError", message)
    return cid


def grace_period(pod: Obj) -> float:
    """Seconds the pod's containers get to stop: the deletion's, else the spec's."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds")
    return float(30 if grace is None else grace)


async def stop(ctx: PodContext, pod: Obj, sandbox: Sandbox | None, container: Obj | None,
               cid: ContainerID, *, grace: float, reason: str = "Killing", message: str = "",
               pod_ip: str = "", run_pre_stop: bool = True) -> None:
    """preStop (within the grace period), then SIGTERM, then SIGKILL when it runs out."""
    name = (container or {}).get("name", "")
    fp = field_path(pod, name) if name else None
    await ctx.recorder.record(pod, "Normal", "Killing", message or f"Stopping container {name}",
                              field_path=fp)
    deadline = time.monotonic() + grace
    hook = ((container or {}).get("lifecycle") or {}).get("preStop")
    if hook and run_pre_stop and sandbox is not None and container is not None:
        ok, output = await run_handler(hook, runtime=ctx.runtime,
                                       target=target(sandbox, container, cid, pod_ip),
                                       timeout=max(grace, 0.1))
        if not ok:
            await ctx.recorder.record(pod, "Warning", "FailedPreStopHook",
                                      f"PreStopHook failed: {output}" if output
                                      else "PreStopHook failed", field_path=fp)
    remaining = max(deadline - time.monotonic(), MIN_GRACE)
    try:
        await ctx.runtime.stop_container(cid, timeout=remaining)
    except errors.ContainerNotFound:
        pass


async def stop_all(ctx: PodContext, pod: Obj, sandbox: Sandbox, *, grace: float,
                   pod_ip: str) -> None:
    """Stop the pod's containers: app containers at once, then sidecars in reverse
    order (as kubelet since 1.29), all within one grace period."""
    deadline = time.monotonic() + grace
    running = [c for c in await ctx.runtime.list_containers(sandbox.id)
               if c.state in ("running", "created")]
    spec = pod.get("spec") or {}
    specs = {c["name"]: c for c in [*(spec.get("initContainers") or []),
                                     *(spec.get("containers") or [])]}
    init_order = [c["name"] for c in spec.get("initContainers") or []]
    apps = [c for c in running if c.name not in init_order]
    sidecars = sorted((c for c in running if c.name in init_order),
                      key=lambda c: init_order.index(c.name), reverse=True)

    async def stop_one(c: ContainerStatus) -> None:
        left = max(deadline - time.monotonic(), 0.0)
        await stop(ctx, pod, sandbox, specs.get(c.name), c.id, grace=left, pod_ip=pod_ip)

    await asyncio.gather(*(stop_one(c) for c in apps))
    for c in sidecars:
        await stop_one(c)


def read_termination_message(path: Path, log_path: Path, *, policy: str, failed: bool) -> str:
    """The container's termination message (4 KiB at most), or with policy
    FallbackToLogsOnError and an empty file, the end of its log (80 lines, 2 KiB)."""
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode(errors="replace")
    except OSError:
        text = ""
    if text or policy != "FallbackToLogsOnError" or not failed:
        return text
    try:
        data = log_path.read_bytes()[-64 * 1024:]
    except OSError:
        return ""
    lines = [p.content for raw in data.splitlines() if (p := parse_line(raw)) is not None]
    tail = b"".join(lines[-80:])
    return tail[-2048:].decode(errors="replace")
