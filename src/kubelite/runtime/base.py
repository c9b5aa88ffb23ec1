"""The container runtime contract between the node agent and runtime/: a small
CRI (the kubelet's Container Runtime Interface) in Python.

A pod is a *sandbox* (its network, IPC and UTS namespaces, cgroup parent, and
the files the runtime keeps for it) plus *containers* that join it. The agent
decides what should run; the runtime only does what it is told and reports
what is there, and everything it creates on the host is recorded under its
root directory so that a restarted agent can adopt or sweep it.

Images live in an `ImageStore`; container root filesystems are overlay mounts of
their unpacked layers.

Errors (runtime/errors.py):

    RuntimeError_ (base)
    ├── ImageError
    │   ├── InvalidImageName     the reference does not parse        (InvalidImageName)
    │   ├── ImageNotPresent      policy Never and not in the store   (ErrImageNeverPull)
    │   └── ImagePullError       registry refused / unreachable / bad digest (ErrImagePull)
    ├── ContainerCreateError     bad spec, missing command, mount failure (CreateContainerError)
    ├── ContainerNotFound
    └── SandboxError             namespace or cgroup set-up failed
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, NewType, Protocol

SandboxID = NewType("SandboxID", str)
ContainerID = NewType("ContainerID", str)
ContainerState = Literal["created", "running", "exited", "unknown"]


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    username: str = ""
    password: str = ""
    token: str = ""


@dataclass(frozen=True, slots=True)
class Image:
    """An image in the node's store. `ref` is normalised (docker.io/library/busybox:latest)."""

    ref: str
    digest: str  # manifest digest, sha256:...
    config_digest: str  # the image ID kubectl shows, sha256:...
    size: int
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    repo_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """A cgroup's usage, as cAdvisor reads it for kubelet."""

    cpu_ns: int  # cumulative CPU time of every task in the cgroup
    memory_working_set: int  # bytes: usage minus inactive file cache


@dataclass(frozen=True, slots=True)
class Mount:
    destination: str
    source: str
    type: str = "bind"
    options: tuple[str, ...] = ("rbind", "rw")


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_shares: int | None = None  # from requests.cpu, as the kubelet converts it
    cpu_quota_us: int | None = None  # from limits.cpu over a 100 ms period
    cpu_period_us: int = 100_000
    memory_limit_bytes: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True, slots=True)
class SecurityOptions:
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    read_only_rootfs: bool = False
    privileged: bool = False
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    pod_uid: str
    name: str
    namespace: str
    hostname: str
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    share_process_namespace: bool = False
    # Files bind-mounted into every container of the pod (resolv.conf, hosts, hostname).
    dns_servers: tuple[str, ...] = ()
    dns_searches: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    cgroup_parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # hostPorts: (host port, container port, protocol, host IP), for the pod network.
    port_mappings: tuple[tuple[int, int, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Sandbox:
    id: SandboxID
    config: SandboxConfig
    netns_path: str  # the network namespace CNI configures ("" with hostNetwork)
    state: Literal["ready", "notready"] = "ready"
    created_at: float = 0.0
    # The pod's addresses from the pod network (empty with hostNetwork or none set up).
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    name: str
    image: Image
    command: tuple[str, ...]  # entrypoint + args, already resolved by the agent
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    mounts: tuple[Mount, ...] = ()
    resources: Resources = Resources()
    security: SecurityOptions = SecurityOptions()
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_path: str = ""  # where stdout/stderr lines go, in the CRI log format
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    id: ContainerID
    sandbox_id: SandboxID
    name: str
    image_ref: str
    image_digest: str
    state: ContainerState
    pid: int = 0
    exit_code: int | None = None
    reason: str = ""  # "OOMKilled", "Error", "Completed", ...
    message: str = ""
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)


class ExecProcess(Protocol):
    """A process started in a running container by exec or attach."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    def stdout(self) -> AsyncIterator[bytes]: ...
    def stderr(self) -> AsyncIterator[bytes]: ...  # empty with a tty
    async def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


class ImageStore(Protocol):
    async def ensure(self, ref: str, *, pull_policy: str, auth: list[RegistryAuth] = ()  # type: ignore[assignment]
                     ) -> Image:
        """The image for `ref`, pulled if the policy says so (Always / IfNotPresent / Never)."""

    async def get(self, ref: str) -> Image | None: ...
    async def list(self) -> list[Image]: ...
    async def remove(self, ref: str) -> None: ...
    async def import_archive(self, path: str, *, tag: str | None = None) -> list[Image]: ...
    async def garbage_collect(self, in_use: set[str]) -> int:
        """Remove unused images and layers; returns bytes freed."""


class ContainerRuntime(Protocol):
    name: str  # "runc" or "crun"
    version: str

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox: ...
    async def remove_sandbox(self, sandbox_id: SandboxID) -> None:
        """Stop what is left of the pod and remove every trace (namespaces, cgroups, files)."""

    async def list_sandboxes(self) -> list[Sandbox]: ...

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> ContainerID: ...
    async def start_container(self, container_id: ContainerID) -> None: ...
    async def stop_container(self, container_id: ContainerID, *, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns once it has exited."""

    async def remove_container(self, container_id: ContainerID) -> None: ...
    async def container_status(self, container_id: ContainerID) -> ContainerStatus: ...
    async def list_containers(self, sandbox_id: SandboxID | None = None) -> list[ContainerStatus]: ...
    async def stats(self) -> dict[str, Usage]:
        """Usage of the whole runtime (key ""), each sandbox and each running container."""
        ...

    async def exec(self, container_id: ContainerID, command: list[str], *, tty: bool,
                   stdin: bool) -> ExecProcess: ...
    async def attach(self, container_id: ContainerID, *, stdin: bool) -> ExecProcess: ...
