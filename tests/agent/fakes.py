"""Fakes for agent unit tests: a scripted container runtime and image store, an
API client holding pods in memory (list, watch, patch status, delete), an
event recorder and an object source.

FakeRuntime runs no processes; a container's command says what it does:

    ("sleep", ...)          runs until stopped
    ("exit", "N")           exits with code N as soon as it starts
    ("ignore-term", ...)    runs, and only dies when the stop timeout runs out (SIGKILL)
    ("notfound", ...)       cannot be started (like a missing executable)
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubelite.agent.backoff import Backoff
from kubelite.agent.config import AgentConfig
from kubelite.agent.context import PodContext
from kubelite.agent.pull import ImagePuller
from kubelite.agent.volumes import VolumeManager
from kubelite.client import ClientConfig, Conflict, NotFound
from kubelite.runtime import errors, reference
from kubelite.runtime.base import (
    ContainerConfig,
    ContainerID,
    ContainerStatus,
    Image,
    RegistryAuth,
    Sandbox,
    SandboxConfig,
    SandboxID,
    Usage,
)

Obj = dict[str, Any]
_ids = itertools.count(1)


def make_image(ref: str = "busybox", **kw: Any) -> Image:
    return Image(ref=reference.normalise(ref), digest="sha256:" + "a" * 64,
                 config_digest="sha256:" + "b" * 64, size=1234, cmd=("sh",), **kw)


class FakeImages:
    def __init__(self, *present: str) -> None:
        self.images = {reference.normalise(r): make_image(r) for r in present}
        self.pullable: set[str] = set()
        self.pulls: list[str] = []
        self.offline = False  # the registry does not answer at all

    async def ensure(self, ref: str, *, pull_policy: str, auth: list[RegistryAuth] = ()  # type: ignore[assignment]
                     ) -> Image:
        name = reference.normalise(ref)
        if pull_policy != "Always" and name in self.images:
            return self.images[name]
        if pull_policy == "Never":
            raise errors.ImageNotPresent(f"image {ref} is not present")
        self.pulls.append(name)
        if self.offline:
            raise errors.RegistryUnreachable(f"registry unreachable: {name}")
        if name not in self.pullable:
            raise errors.ImagePullError(f"{name}: not found")
        self.images[name] = make_image(ref)
        return self.images[name]

    async def get(self, ref: str) -> Image | None:
        return self.images.get(reference.normalise(ref))

    async def list(self) -> list[Image]:
        return list(self.images.values())

    async def remove(self, ref: str) -> None:
        self.images.pop(reference.normalise(ref), None)

    async def import_archive(self, path: str, *, tag: str | None = None) -> list[Image]:
        raise NotImplementedError

    async def garbage_collect(self, in_use: set[str]) -> int:
        return 0


@dataclass
class _Container:
    status: ContainerStatus
    config: ContainerConfig


@dataclass
class FakeExec:
    code: int
    output: bytes = b""

    async def write_stdin(self, data: bytes) -> None:
        return None

    async def close_stdin(self) -> None:
        return None

    async def stdout(self) -> AsyncIterator[bytes]:
        if self.output:
            yield self.output

    async def stderr(self) -> AsyncIterator[bytes]:
        return
        yield b""

    async def resize(self, width: int, height: int) -> None:
        return None

    async def wait(self) -> int:
        return self.code

    async def kill(self) -> None:
        return None


@dataclass
class FakeRuntime:
    name: str = "fake"
    version: str = "1.0"
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    containers: dict[str, _Container] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    # (container id, command) -> (exit code, output) for exec
    exec_handler: Callable[[ContainerID, list[str]], tuple[int, bytes]] = \
        lambda _cid, _cmd: (0, b"")
    # what stats() reports: "" for the whole runtime, else sandbox or container ids
    usage: dict[str, Usage] = field(default_factory=dict)

    async def stats(self) -> dict[str, Usage]:
        return dict(self.usage)

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        sid = SandboxID(f"sb{next(_ids)}")
        sb = Sandbox(id=sid, config=config, netns_path="", created_at=time.time())
        self.sandboxes[sid] = sb
        self.calls.append(("create_sandbox", config.name))
        return sb

    async def remove_sandbox(self, sandbox_id: SandboxID) -> None:
        self.calls.append(("remove_sandbox", sandbox_id))
        for cid in [c for c, v in self.containers.items() if v.status.sandbox_id == sandbox_id]:
            del self.containers[cid]
        self.sandboxes.pop(sandbox_id, None)

    async def list_sandboxes(self) -> list[Sandbox]:
        return list(self.sandboxes.values())

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> ContainerID:
        cid = ContainerID(f"c{next(_ids)}")
        self.containers[cid] = _Container(ContainerStatus(
            id=cid, sandbox_id=sandbox.id, name=config.name, image_ref=config.image.ref,
            image_digest=config.image.digest, state="created", created_at=time.time(),
            labels=dict(config.labels)), config)
        self.calls.append(("create", config.name, config.command))
        return cid

    async def start_container(self, container_id: ContainerID) -> None:
        c = self.containers[container_id]
        command = c.config.command
        self.calls.append(("start", c.config.name))
        if command and command[0] == "notfound":
            self._set(container_id, state="exited", exit_code=128, reason="StartError",
                      finished_at=time.time())
            raise errors.ContainerCreateError(
                f'exec: "{command[0]}": executable file not found in $PATH')
        self._set(container_id, state="running", pid=1000 + next(_ids), started_at=time.time())
        if command and command[0] == "exit":
            self.exit(container_id, int(command[1]))

    def _set(self, cid: str, **changes: Any) -> None:
        c = self.containers[cid]
        c.status = replace(c.status, **changes)

    def exit(self, cid: str, code: int, reason: str = "") -> None:
        """The container's process ends by itself."""
        self._set(cid, state="exited", exit_code=code, finished_at=time.time(),
                  reason=reason or ("Completed" if code == 0 else "Error"))

    async def stop_container(self, container_id: ContainerID, *, timeout: float) -> None:
        c = self.containers.get(container_id)
        if c is None:
            raise errors.ContainerNotFound(container_id)
        self.calls.append(("stop", c.config.name, round(timeout, 1)))
        if c.status.state != "running":
            return
        if c.config.command[:1] == ("ignore-term",):
            await asyncio.sleep(timeout)
            self.exit(container_id, 137)
        else:
            self.exit(container_id, 143)

    async def remove_container(self, container_id: ContainerID) -> None:
        if self.containers.pop(container_id, None) is None:
            raise errors.ContainerNotFound(container_id)
        self.calls.append(("remove", container_id))

    async def container_status(self, container_id: ContainerID) -> ContainerStatus:
        c = self.containers.get(container_id)
        if c is None:
            raise errors.ContainerNotFound(container_id)
        return c.status

    async def list_containers(self, sandbox_id: SandboxID | None = None) -> list[ContainerStatus]:
        return [c.status for c in self.containers.values()
                if sandbox_id is None or c.status.sandbox_id == sandbox_id]

    async def exec(self, container_id: ContainerID, command: list[str], *, tty: bool,
                   stdin: bool) -> FakeExec:
        c = self.containers.get(container_id)
        self.calls.append(("exec", c.config.name if c else container_id, tuple(command)))
        code, out = self.exec_handler(container_id, command)
        return FakeExec(code, out)

    async def attach(self, container_id: ContainerID, *, stdin: bool) -> FakeExec:
        return FakeExec(0)

    def running(self, name: str) -> list[ContainerStatus]:
        return [c.status for c in self.containers.values()
                if c.config.name == name and c.status.state == "running"]


class FakeClient:
    """Pods in memory with the Client calls the agent makes."""

    def __init__(self) -> None:
        self.pods: dict[str, Obj] = {}
        self.deleted: list[tuple[str, int | None, dict | None]] = []
        self.status_writes: list[Obj] = []
        self._rv = itertools.count(1)
        self._watchers: list[asyncio.Queue[tuple[str, Obj]]] = []

    def _publish(self, type_: str, pod: Obj) -> None:
        for q in self._watchers:
            q.put_nowait((type_, copy.deepcopy(pod)))

    def add_pod(self, pod: Obj) -> Obj:
        pod = copy.deepcopy(pod)
        pod["metadata"]["resourceVersion"] = str(next(self._rv))
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        type_ = "MODIFIED" if key in self.pods else "ADDED"
        self.pods[key] = pod
        self._publish(type_, pod)
        return pod

    def remove_pod(self, namespace: str, name: str) -> None:
        pod = self.pods.pop(f"{namespace}/{name}")
        self._publish("DELETED", pod)

    def pod(self, namespace: str, name: str) -> Obj:
        return self.pods[f"{namespace}/{name}"]

    async def list_all(self, res: Any, namespace: str | None = None, **_: Any) -> Obj:
        return {"items": copy.deepcopy(list(self.pods.values())),
                "metadata": {"resourceVersion": str(next(self._rv))}}

    async def watch(self, res: Any, namespace: str | None = None,
                    **_: Any) -> AsyncIterator[tuple[str, Obj]]:
        q: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue()
        self._watchers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._watchers.remove(q)

    async def patch(self, res: Any, name: str, patch: Obj, *, namespace: str | None = None,
                    subresource: str | None = None, **_: Any) -> Obj:
        key = f"{namespace}/{name}"
        if key not in self.pods:
            raise NotFound({"code": 404, "reason": "NotFound", "message": f"{name} not found"})
        pod = copy.deepcopy(self.pods[key])
        if patch.get("metadata", {}).get("uid", pod["metadata"]["uid"]) != pod["metadata"]["uid"]:
            raise Conflict({"code": 409, "reason": "Conflict", "message": "uid mismatch"})
        pod["status"] = {**(pod.get("status") or {}), **patch["status"]}
        self.status_writes.append(copy.deepcopy(patch["status"]))
        return self.add_pod(pod)

    async def delete(self, res: Any, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None,
                     preconditions: dict | None = None, **_: Any) -> Obj:
        self.deleted.append((f"{namespace}/{name}", grace_period_seconds, preconditions))
        key = f"{namespace}/{name}"
        if key not in self.pods:
            raise NotFound({"code": 404, "reason": "NotFound", "message": f"{name} not found"})
        self.remove_pod(namespace or "", name)
        return {}


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str | None]] = []

    async def record(self, involved: Obj, type: str, reason: str, message: str, *,
                     field_path: str | None = None) -> None:
        self.events.append((type, reason, message, field_path))

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events]

    def messages(self, reason: str) -> list[str]:
        return [e[2] for e in self.events if e[1] == reason]


class FakeSource:
    """ConfigMaps, Secrets and Services by (kind, namespace, name)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.service_list: list[Obj] = []
        # (namespace, uid) of the registered pods
        self.acquired: set[tuple[str, str]] = set()

    def put(self, kind: str, namespace: str, name: str, **body: Any) -> None:
        self.objects[(kind, namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace}, **body}

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((kind, namespace, name))

    async def services(self, namespace: str) -> list[Obj]:
        return self.service_list

    def acquire(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.acquired.add((meta.get("namespace") or "default", meta["uid"]))

    async def release(self, pod_uid: str) -> None:
        self.acquired = {(ns, uid) for ns, uid in self.acquired if uid != pod_uid}


@dataclass
class Harness:
    ctx: PodContext
    client: FakeClient
    runtime: FakeRuntime
    images: FakeImages
    recorder: FakeRecorder
    source: FakeSource


def harness(root: Path, *, images: FakeImages | None = None,
            crash_backoff: tuple[float, float] = (0.2, 0.8)) -> Harness:
    config = AgentConfig(node_name="node-1", client=ClientConfig(server="https://127.0.0.1:1"),
                         root=root, crash_backoff=crash_backoff, relist_interval=0.05)
    client, runtime, recorder, source = FakeClient(), FakeRuntime(), FakeRecorder(), FakeSource()
    images = images or FakeImages("busybox")
    volumes = VolumeManager(pods_dir=config.pods_dir, client=client, source=source,
                            host_ip=lambda: "10.0.0.5", allocatable=lambda: {"cpu": "2",
                                                                            "memory": "4Gi"})
    puller = ImagePuller(images, recorder)  # type: ignore[arg-type]
    puller.backoff = Backoff(initial=0.2, cap=0.8)
    ctx = PodContext(config=config, client=client, runtime=runtime, images=images,
                     recorder=recorder, source=source, volumes=volumes,  # type: ignore[arg-type]
                     puller=puller, host_ip=lambda: "10.0.0.5",
                     allocatable=lambda: {"cpu": "2", "memory": "4Gi"})
    return Harness(ctx, client, runtime, images, recorder, source)


def make_pod(name: str = "web", *, containers: list[Obj] | None = None,
             init: list[Obj] | None = None, namespace: str = "default", **spec: Any) -> Obj:
    pod_spec: Obj = {"nodeName": "node-1", "restartPolicy": "Always",
                     "terminationGracePeriodSeconds": 1,
                     "containers": containers or [{"name": "app", "image": "busybox",
                                                   "command": ["sleep", "1000"],
                                                   "imagePullPolicy": "IfNotPresent"}],
                     **spec}
    if init:
        pod_spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": pod_spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}}


def container(name: str, *command: str, image: str = "busybox", **extra: Any) -> Obj:
    return {"name": name, "image": image, "command": list(command),
            "imagePullPolicy": "IfNotPresent", **extra}


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
