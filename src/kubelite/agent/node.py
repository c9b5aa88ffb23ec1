"""The Node object: registration with the machine's capacity, allocatable,
addresses and nodeInfo, and status reports with the Ready / MemoryPressure /
DiskPressure / PIDPressure conditions.

Allocatable follows kubelet's defaults with no reservations: capacity minus
the hard eviction thresholds (memory.available 100Mi, nodefs.available 10%).
Status is recomputed every `node_status_interval` and written when something
changed or `node_status_report` seconds passed (kubelet: 10 s and 5 min; the
Lease is the frequent heartbeat).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import platform
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent.config import KUBELET_VERSION, AgentConfig
from kubelite.agent.events import Recorder
from kubelite.agent.status import now_rfc3339
from kubelite.api import registry
from kubelite.client import AlreadyExists, ClientError
from kubelite.runtime.base import ContainerRuntime, ImageStore
from kubelite.runtime.oci import host_arch

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODES = registry.lookup("", "v1", "nodes")
EVICTION_MEMORY = 100 * 1024 * 1024
EVICTION_DISK_PERCENT = 10
EVICTION_PID_PERCENT = 10
# kubelet reports at most this many images in node status (nodeStatusMaxImages).
MAX_IMAGES = 50


@dataclass(frozen=True, slots=True)
class Facts:
    cpus: int
    memory: int
    memory_available: int
    storage: int
    storage_available: int
    pid_max: int
    pids: int
    hostname: str
    kernel: str
    os_image: str
    machine_id: str
    boot_id: str
    system_uuid: str


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key] = int(fields[0]) * 1024
    return out


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def gather(root: Path) -> Facts:
    """The machine's facts; blocking (reads /proc and /sys), run in a thread."""
    mem = _meminfo()
    root.mkdir(parents=True, exist_ok=True)
    disk = shutil.disk_usage(root)
    loadavg = _read("/proc/loadavg").split()
    pids = int(loadavg[3].split("/")[1]) if len(loadavg) > 3 and "/" in loadavg[3] else 0
    return Facts(
        cpus=os.cpu_count() or 1, memory=mem.get("MemTotal", 0),
        memory_available=mem.get("MemAvailable", 0), storage=disk.total,
        storage_available=disk.free, pid_max=int(_read("/proc/sys/kernel/pid_max", "32768")),
        pids=pids, hostname=socket.gethostname(), kernel=platform.release(),
        os_image=_os_image(), machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        system_uuid=_read("/sys/class/dmi/id/product_uuid"))


def detect_ip() -> str:
    """The source address of the default route (a UDP connect sends nothing), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _ki(n: int) -> str:
    return f"{n // 1024}Ki"


def capacity(facts: Facts, max_pods: int) -> dict[str, str]:
    return {"cpu": str(facts.cpus), "memory": _ki(facts.memory),
            "ephemeral-storage": _ki(facts.storage), "pods": str(max_pods),
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def allocatable(facts: Facts, max_pods: int) -> dict[str, str]:
    out = capacity(facts, max_pods)
    out["memory"] = _ki(max(facts.memory - EVICTION_MEMORY, 0))
    out["ephemeral-storage"] = str(facts.storage * (100 - EVICTION_DISK_PERCENT) // 100)
    return out


# type -> (pressure test, (reason, message) when fine, (reason, message) under pressure)
_CONDITIONS = (
    ("MemoryPressure", lambda f: f.memory_available < EVICTION_MEMORY,
     ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
     ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
    ("DiskPressure",
     lambda f: f.storage and f.storage_available * 100 < f.storage * EVICTION_DISK_PERCENT,
     ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    ("PIDPressure",
     lambda f: (f.pid_max - f.pids) * 100 < f.pid_max * EVICTION_PID_PERCENT,
     ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
     ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
)


def conditions(facts: Facts, previous: list[Obj], *, ready: bool = True) -> list[Obj]:
    before = {c.get("type"): c for c in previous}
    now = now_rfc3339()
    out: list[Obj] = []

    def add(kind: str, status: str, reason: str, message: str) -> None:
        prev = before.get(kind) or {}
        out.append({"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": prev.get("lastTransitionTime")
                    if prev.get("status") == status else now})

    for kind, test, fine, bad in _CONDITIONS:
        pressure = bool(test(facts))
        reason, message = bad if pressure else fine
        add(kind, "True" if pressure else "False", reason, message)
    if ready:
        add("Ready", "True", "KubeletReady", "kubelet is posting ready status")
    else:
        add("Ready", "False", "KubeletNotReady", "container runtime is not ready")
    return out


class NodeStatus:
    """Registers the Node and keeps its status current."""

    def __init__(self, client: Any, config: AgentConfig, runtime: ContainerRuntime,
                 images: ImageStore, recorder: Recorder) -> None:
        self.client = client
        self.config = config
        self.runtime = runtime
        self.images = images
        self.recorder = recorder
        self.ip = config.node_ip
        self.facts: Facts | None = None
        self.node: Obj | None = None
        self._reported: Obj | None = None
        self._reported_at = 0.0

    @property
    def ref(self) -> Obj:
        # Events about a node name it by name, with the name as UID (as kubelet).
        name = self.config.node_name
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}}

    def host_ip(self) -> str:
        return self.ip

    def allocatable(self) -> dict[str, str]:
        return allocatable(self.facts, self.config.max_pods) if self.facts else {}

    def labels(self) -> dict[str, str]:
        arch = host_arch()
        return {"kubernetes.io/hostname": self.config.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch, **dict(self.config.node_labels)}

    async def status(self) -> Obj:
        self.facts = facts = await asyncio.to_thread(gather, self.config.root)
        previous = ((self.node or {}).get("status") or {}).get("conditions") or []
        images = sorted(await self.images.list(), key=lambda i: i.size, reverse=True)
        return {
            "capacity": capacity(facts, self.config.max_pods),
            "allocatable": allocatable(facts, self.config.max_pods),
            "conditions": conditions(facts, previous),
            "addresses": [{"type": "InternalIP", "address": self.ip},
                          {"type": "Hostname", "address": self.config.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.port}},
            "nodeInfo": {
                "machineID": facts.machine_id, "systemUUID": facts.system_uuid,
                "bootID": facts.boot_id, "kernelVersion": facts.kernel,
                "osImage": facts.os_image,
                "containerRuntimeVersion": f"{self.runtime.name}://{self.runtime.version}",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": host_arch(),
            },
            "images": [{"names": [n for n in (f"{i.ref.rsplit(':', 1)[0]}@{i.digest}", i.ref)
                                  if n], "sizeBytes": i.size} for i in images[:MAX_IMAGES]],
        }

    async def register(self) -> Obj:
        if not self.ip:
            self.ip = await asyncio.to_thread(detect_ip)
        status = await self.status()
        body: Obj = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.config.node_name, "labels": self.labels(),
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach":
                                             "true"}},
            "spec": {}, "status": status,
        }
        try:
            self.node = await self.client.create(NODES, body)
            log.info("registered node %s", self.config.node_name)
        except AlreadyExists:
            self.node = await self.client.patch(
                NODES, self.config.node_name, {"metadata": {"labels": self.labels()}})
            log.info("node %s was registered before; updating it", self.config.node_name)
        await self._write(status, force=True)
        await self.recorder.record(self.ref, "Normal", "Starting", "Starting kubelet.")
        return self.node

    async def _write(self, status: Obj, *, force: bool = False) -> None:
        comparable = _without_heartbeats(status)
        due = time.monotonic() - self._reported_at >= self.config.node_status_report
        # Compared with the Node as it is, not as last written: the node lifecycle
        # controller may have set the conditions Unknown meanwhile (a lease it saw
        # late), and kubelet, too, corrects the stored status rather than trusting
        # its memory.
        stored = _statuses(self.node)
        if not force and not due and comparable == self._reported \
                and stored == _statuses({"status": status}):
            return
        before = {c["type"]: c["status"] for c in
                  ((self.node or {}).get("status") or {}).get("conditions") or []}
        self.node = await self.client.patch(NODES, self.config.node_name, {"status": status},
                                            patch_type="strategic", subresource="status")
        self._reported, self._reported_at = comparable, time.monotonic()
        for cond in status["conditions"]:
            if before.get(cond["type"]) != cond["status"]:
                reason = "NodeReady" if cond["type"] == "Ready" and cond["status"] == "True" \
                    else "NodeNotReady" if cond["type"] == "Ready" else cond["reason"].replace(
                        "Kubelet", "Node")
                await self.recorder.record(self.ref, "Normal", reason,
                                           f"Node {self.config.node_name} status is now: {reason}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.node_status_interval)
            try:
                self.node = await self.client.get(NODES, self.config.node_name)
                await self._write(await self.status())
            except ClientError as e:
                log.warning("node status update failed: %s", e)


def _statuses(node: Obj | None) -> dict[str, str]:
    return {c["type"]: c["status"]
            for c in ((node or {}).get("status") or {}).get("conditions") or []}


def _without_heartbeats(status: Obj) -> Obj:
    out = copy.deepcopy(status)
    for cond in out.get("conditions") or []:
        cond.pop("lastHeartbeatTime", None)
    return out
