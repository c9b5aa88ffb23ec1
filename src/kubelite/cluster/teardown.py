"""Removing what a `kubelite up` cluster put on the host: the containers of a node
(as when a machine loses power), and everything at `kubelite down`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from kubelite.cluster import machines
from kubelite.cluster.layout import Layout, NodeLayout


async def remove_containers(node: NodeLayout) -> None:
    """Stop and remove every pod and container of the node, with their mounts and
    cgroups: what an agent leaves running by design when it exits."""
    from kubelite.runtime import cgroups, mounts
    from kubelite.runtime.images import OCIImageStore
    from kubelite.runtime.runc import RuncRuntime

    root = Path(node.root)
    if not (root / "runtime").exists():
        return
    runtime = await RuncRuntime.open(root / "runtime", images=OCIImageStore(root),
                                     cgroup_root=node.cgroup_root)
    for sandbox in await runtime.list_sandboxes():
        await runtime.remove_sandbox(sandbox.id)
    for container in await runtime.list_containers():
        await runtime.remove_container(container.id)
    await asyncio.to_thread(cgroups.remove, runtime.cgroups, node.cgroup_root)
    await asyncio.to_thread(mounts.unmount_all, str(root))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# The roles a cluster runs; `kubelite up` and `down` themselves are not among them.
ROLES = (b"server", b"agent", b"controller-manager", b"scheduler", b"ingress")


def _is_kubelite(pid: int, data_dir: Path) -> bool:
    """A role process of this cluster: a kubelite role naming the data directory."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"kubelite.cli.main" not in argv:
        return False
    role = argv[argv.index(b"kubelite.cli.main") + 1:][:1]
    return role != [] and role[0] in ROLES and any(str(data_dir).encode() in a for a in argv)


async def kill_processes(pids: list[int], data_dir: Path, *, grace: float = 10.0) -> None:
    mine = [p for p in pids if p and alive(p) and _is_kubelite(p, data_dir)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in mine) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def stray_processes(data_dir: Path) -> list[int]:
    """Every process started for this cluster (by its data directory in the command
    line), for a `down` after the supervisor itself was killed."""
    def scan() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid() \
                    and _is_kubelite(int(entry.name), data_dir):
                found.append(int(entry.name))
        return found
    return await asyncio.to_thread(scan)


async def remove_cluster(layout: Layout) -> None:
    await kill_processes(await stray_processes(layout.data_dir), layout.data_dir)
    await asyncio.gather(*(remove_containers(n) for n in layout.nodes))
    await machines.remove_network(layout)
    from kubelite.runtime import cgroups

    hierarchies = cgroups.detect()
    await asyncio.to_thread(cgroups.remove, hierarchies, f"/kubelite-{layout.name}")
    layout.control_socket.unlink(missing_ok=True)
