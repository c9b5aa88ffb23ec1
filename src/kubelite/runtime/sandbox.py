"""Pod sandboxes: the namespaces and files a pod's containers share.

Network, IPC and UTS namespaces are kept by bind mounts of their nsfs files
(as `ip netns add` does), under ROOT/sandboxes/<id>/ns/, so that they outlive
any process, the agent included; CNI configures ns/net later. A shared PID
namespace (shareProcessNamespace) needs a living pid 1, so it is held by the
tiny pidhold.py process. /dev/shm is one tmpfs per pod, bind-mounted into
every container, which with the shared IPC namespace gives the pod one IPC
domain as in Kubernetes. hostname, hosts and resolv.conf are per-pod files
bind-mounted into each container.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubelite.runtime import cgroups, mounts, proc
from kubelite.runtime.base import Sandbox, SandboxConfig, SandboxID
from kubelite.runtime.errors import SandboxError

MS_BIND = 0x1000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
          "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\n"
          "fe00::2\tip6-allrouters\n")
SHM_SIZE = 64 << 20
_libc = ctypes.CDLL(None, use_errno=True)  # Docker's and containerd's default /dev/shm size


@dataclasses.dataclass(slots=True)
class SandboxRecord:
    """What sandbox.json holds; the runtime's view of one pod on disk."""

    id: SandboxID
    config: SandboxConfig
    dir: Path
    netns_path: str
    ipc_path: str
    uts_path: str
    pid_path: str  # /proc/<holder>/ns/pid when the pod shares one PID namespace
    holder_pid: int
    holder_start: int | None
    cgroup_parent: str
    created_at: float

    def sandbox(self) -> Sandbox:
        ready = (not self.netns_path or _is_nsfs(self.netns_path)) and \
            (not self.holder_pid or proc.alive(self.holder_pid, self.holder_start))
        return Sandbox(id=self.id, config=self.config, netns_path=self.netns_path,
                       state="ready" if ready else "notready", created_at=self.created_at)

    def file(self, name: str) -> str:
        return str(self.dir / name)

    def save(self) -> None:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["config"] = dataclasses.asdict(self.config)
        doc["dir"] = str(self.dir)
        tmp = self.dir / ".sandbox.json"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.dir / "sandbox.json")

    @classmethod
    def load(cls, directory: Path) -> SandboxRecord | None:
        try:
            doc: dict[str, Any] = json.loads((directory / "sandbox.json").read_bytes())
        except (OSError, ValueError):
            return None
        config = doc["config"]
        for key in ("dns_servers", "dns_searches", "dns_options"):
            config[key] = tuple(config[key])
        doc["config"] = SandboxConfig(**config)
        doc["dir"] = directory
        return cls(**doc)


def _is_nsfs(path: str) -> bool:
    """Whether a namespace is still bind-mounted at `path` (a mount point has its own device)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


async def create(directory: Path, sandbox_id: SandboxID, config: SandboxConfig,
                 *, cgroup_parent: str) -> SandboxRecord:
    """Create the sandbox's namespaces and files; on failure the caller destroys `directory`."""
    await asyncio.to_thread((directory / "ns").mkdir, parents=True)
    ns = directory / "ns"
    record = SandboxRecord(
        id=sandbox_id, config=config, dir=directory,
        netns_path="" if config.host_network else str(ns / "net"),
        ipc_path="" if config.host_ipc else str(ns / "ipc"),
        uts_path="" if config.host_network else str(ns / "uts"),
        pid_path="", holder_pid=0, holder_start=None, cgroup_parent=cgroup_parent,
        created_at=time.time())
    # Recorded before anything exists on the host, so that a crash midway leaves a
    # record that list_sandboxes shows (notready) and remove_sandbox clears.
    await asyncio.to_thread(record.save)
    await asyncio.to_thread(_write_files, record)
    kinds = [(kind, path) for kind, path in
             (("net", record.netns_path), ("ipc", record.ipc_path), ("uts", record.uts_path))
             if path]
    if kinds:
        await _in_fresh_thread(_make_namespaces, kinds, config.hostname)
    if not config.host_ipc:
        shm = directory / "shm"
        await asyncio.to_thread(shm.mkdir)
        await asyncio.to_thread(mounts.mount, "shm", str(shm), "tmpfs",
                                mounts.MS_NOSUID | mounts.MS_NODEV | 0x8,  # MS_NOEXEC
                                f"mode=1777,size={SHM_SIZE}")
    if config.share_process_namespace and not config.host_pid:
        out = await _run(sys.executable, "-I", "-S", str(Path(__file__).with_name("pidhold.py")))
        record.holder_pid = int(out.split()[0])
        record.holder_start = proc.start_time(record.holder_pid)
        record.pid_path = f"/proc/{record.holder_pid}/ns/pid"
    await asyncio.to_thread(record.save)
    return record


async def destroy(record: SandboxRecord, hierarchies: cgroups.Hierarchies) -> None:
    """Remove every trace of the sandbox: holder process, mounts, cgroup parent, files."""
    proc.kill(record.holder_pid, record.holder_start)
    await asyncio.to_thread(mounts.unmount_all, str(record.dir))
    if record.cgroup_parent:
        await asyncio.to_thread(cgroups.remove, hierarchies, record.cgroup_parent)
    await asyncio.to_thread(shutil.rmtree, record.dir, True)


_CLONE = {"net": 0x40000000, "ipc": 0x08000000, "uts": 0x04000000}


def _make_namespaces(kinds: list[tuple[str, str]], hostname: str) -> None:
    """Create the namespaces and pin them with bind mounts, as `ip netns add` does.

    Runs in a thread of its own that ends afterwards: net, IPC and UTS namespaces
    belong to a thread, so this thread may enter new ones without the rest of the
    agent noticing, and nothing else ever runs in it. Spawning `unshare` instead
    would cost a fork and exec of the event loop's thread per pod.
    """
    flags = 0
    for kind, _ in kinds:
        flags |= _CLONE[kind]
    if _libc.unshare(flags) != 0:
        raise SandboxError(f"unshare: {os.strerror(ctypes.get_errno())}")
    for kind, path in kinds:
        Path(path).touch()
        mounts.mount(f"/proc/thread-self/ns/{kind}", path, "", MS_BIND)
    if any(kind == "uts" for kind, _ in kinds):
        socket.sethostname(hostname)
    if any(kind == "net" for kind, _ in kinds):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            ifreq = struct.pack("16sH22x", b"lo", 0)
            flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq)[:18])[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


async def _in_fresh_thread(fn: Callable[..., None], *args: Any) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if not done.done():
            done.set_result(None) if exc is None else done.set_exception(exc)

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(settle, exc)
        else:
            loop.call_soon_threadsafe(settle, None)
    threading.Thread(target=run, name="kubelite-sandbox-ns", daemon=True).start()
    await done


def _write_files(record: SandboxRecord) -> None:
    config = record.config
    if config.host_network:
        hosts = Path("/etc/hosts").read_text()
    else:
        hosts = _HOSTS
    Path(record.file("hosts")).write_text(hosts)
    Path(record.file("hostname")).write_text(
        (os.uname().nodename if config.host_network else config.hostname) + "\n")
    if config.dns_servers or config.dns_searches or config.dns_options:
        lines = [f"nameserver {s}" for s in config.dns_servers]
        if config.dns_searches:
            lines.append("search " + " ".join(config.dns_searches))
        if config.dns_options:
            lines.append("options " + " ".join(config.dns_options))
        resolv = "\n".join(lines) + "\n"
    else:
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
    Path(record.file("resolv.conf")).write_text(resolv)


async def _run(*argv: str) -> str:
    try:
        p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                 stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise SandboxError(f"{argv[0]}: {exc}") from exc
    out, err = await p.communicate()
    if p.returncode != 0:
        raise SandboxError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()
