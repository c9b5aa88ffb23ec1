"""What survives the agent and what removal leaves: adoption after SIGKILL, no traces after."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from kubelite.runtime import mounts, proc
from kubelite.runtime.base import Image
from kubelite.runtime.runc import RuncRuntime

from .conftest import container, pod
from .helpers import log_lines, run_exec, wait_for

# The first "agent": a process that starts a pod and is then SIGKILLed.
_FIRST_AGENT = textwrap.dedent("""
    import asyncio, json, sys
    from kubelite.runtime.base import ContainerConfig, SandboxConfig
    from kubelite.runtime.images import OCIImageStore
    from kubelite.runtime.runc import RuncRuntime

    async def main(root, cgroup_root, log):
        store = OCIImageStore(root)
        rt = await RuncRuntime.open(root, images=store, cgroup_root=cgroup_root)
        image = await store.get("busybox")
        sb = await rt.create_sandbox(SandboxConfig(pod_uid="u1", name="web", namespace="default",
                                                   hostname="web"))
        cid = await rt.create_container(sb, ContainerConfig(
            name="ticker", image=image, log_path=log, command=(
                "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done")))
        await rt.start_container(cid)
        st = await rt.container_status(cid)
        print(json.dumps({"sandbox": sb.id, "cid": cid, "pid": st.pid}), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
""")


def traces(rt: RuncRuntime, root: Path) -> dict[str, object]:
    """What the runtime has on the host under its root and cgroup parent."""
    cgroup_dirs = [str(p) for d in rt.cgroups.dirs(rt.cgroup_root) if d.is_dir()
                   for p in d.rglob("*") if p.is_dir()]
    runc = subprocess.run(["runc", "--root", str(root / "runc"), "list", "-q"],
                          capture_output=True, text=True).stdout.split()
    return {"mounts": mounts.mounted_under(str(root)), "cgroups": cgroup_dirs, "runc": runc,
            "sandboxes": os.listdir(root / "sandboxes"),
            "containers": os.listdir(root / "containers"), "sockets": os.listdir(root / "sockets")}


NOTHING = {"mounts": [], "cgroups": [], "runc": [], "sandboxes": [], "containers": [],
           "sockets": []}


async def test_a_new_runtime_adopts_containers_of_a_killed_agent(
        runtime: RuncRuntime, root: Path, busybox: Image) -> None:
    log = root / "logs" / "ticker.log"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FIRST_AGENT, str(root), runtime.cgroup_root, str(log),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert agent.stdout is not None
        started = json.loads(await asyncio.wait_for(agent.stdout.readline(), 20))
    finally:
        agent.send_signal(signal.SIGKILL)
        await agent.wait()

    # `runtime` was opened on the same root before; it keeps no memory, like a new agent.
    [sb] = await runtime.list_sandboxes()
    assert (sb.id, sb.state, sb.config.hostname) == (started["sandbox"], "ready", "web")
    [st] = await runtime.list_containers(sb.id)
    assert (st.id, st.state, st.pid, st.name) == (started["cid"], "running", started["pid"],
                                                  "ticker")
    before = len(log_lines(log))

    async def log_grows() -> bool:
        return len(log_lines(log)) > before + 5
    await wait_for(log_grows)
    p = await runtime.exec(st.id, ["hostname"], tty=False, stdin=False)
    assert await run_exec(p) == (0, b"web\n", b"")

    shim_pid = json.loads((root / "containers" / st.id / "container.json").read_text())["shim_pid"]
    await runtime.stop_container(st.id, timeout=1)
    assert (await runtime.container_status(st.id)).exit_code == 137
    await runtime.remove_sandbox(sb.id)
    assert traces(runtime, root) == NOTHING
    assert proc.start_time(st.pid) is None and proc.start_time(shim_pid) is None
    assert not os.path.exists(sb.netns_path)


async def test_remove_sandbox_leaves_nothing(runtime: RuncRuntime, root: Path,
                                             busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod(share_process_namespace=True))
    running = await runtime.create_container(sb, container(busybox, "sleep", "60", name="a"))
    await runtime.start_container(running)
    created = await runtime.create_container(sb, container(busybox, "sleep", "60", name="b"))
    exited = await runtime.create_container(sb, container(busybox, "true", name="c"))
    await runtime.start_container(exited)
    pids = [(await runtime.container_status(c)).pid for c in (running, created, exited)]
    holder = json.loads((root / "sandboxes" / sb.id / "sandbox.json").read_text())["holder_pid"]
    assert traces(runtime, root)["mounts"] != []
    await runtime.remove_sandbox(sb.id)
    assert traces(runtime, root) == NOTHING
    assert all(proc.start_time(pid) is None for pid in [*pids, holder])
    assert await runtime.list_sandboxes() == [] and await runtime.list_containers() == []
    # Removing twice is not an error: the agent's sweep may race a pod deletion.
    await runtime.remove_sandbox(sb.id)


async def test_a_sandbox_half_made_by_a_crash_is_listed_and_removed(
        runtime: RuncRuntime, root: Path) -> None:
    sb = await runtime.create_sandbox(pod())
    # A crash between recording and making the namespaces: the record is there, the netns not.
    mounts.unmount(sb.netns_path)
    [listed] = await runtime.list_sandboxes()
    assert listed.state == "notready"
    await runtime.remove_sandbox(sb.id)
    assert traces(runtime, root) == NOTHING
