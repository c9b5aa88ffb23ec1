"""Containers on real runc with the busybox image: logs, config, limits, stop, exec, attach."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from kubelite.runtime import cgroups
from kubelite.runtime.base import Image, Mount, Resources, SecurityOptions
from kubelite.runtime.errors import ContainerCreateError, ContainerNotFound
from kubelite.runtime.runc import RuncRuntime

from .conftest import container, pod
from .helpers import log_lines, run_exec, wait_exited, wait_for


async def test_runs_and_logs_in_cri_format(runtime: RuncRuntime, busybox: Image,
                                           root: Path) -> None:
    sb = await runtime.create_sandbox(pod())
    log = root / "logs" / "c" / "0.log"
    cid = await runtime.create_container(sb, container(
        busybox, "sh", "-c", "echo hello; echo oops >&2; printf tail", log_path=str(log)))
    assert (await runtime.container_status(cid)).state == "created"
    await runtime.start_container(cid)
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert status.created_at <= status.started_at <= status.finished_at
    assert sorted(log_lines(log)) == sorted([("stdout", "F", "hello"), ("stderr", "F", "oops"),
                                             ("stdout", "F", "tail")])


async def test_command_env_workdir_and_image_defaults(runtime: RuncRuntime, busybox: Image,
                                                      root: Path) -> None:
    sb = await runtime.create_sandbox(pod("envpod"))
    log = root / "logs" / "env.log"
    cid = await runtime.create_container(sb, container(
        busybox, "sh", "-c", 'echo "$GREETING|$HOSTNAME|$PATH|$(pwd)|$(id -u):$(id -g)"',
        env=(("GREETING", "hi there"),), working_dir="/work/dir", log_path=str(log),
        security=SecurityOptions(run_as_user=65534)))
    await runtime.start_container(cid)
    assert (await wait_exited(runtime, cid)).exit_code == 0
    [(_, _, line)] = log_lines(log)
    greeting, hostname, path, cwd, ids = line.split("|")
    assert (greeting, hostname, cwd, ids) == ("hi there", "envpod", "/work/dir", "65534:65534")
    assert path.startswith("/usr/local/sbin")
    # No command: the image's Cmd (["sh"]) runs, and with no stdin exits at once.
    default = await runtime.create_container(sb, container(busybox, name="default"))
    await runtime.start_container(default)
    assert (await wait_exited(runtime, default)).exit_code == 0


async def test_missing_command_is_reported(runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod())
    with pytest.raises(ContainerCreateError, match="no-such-binary"):
        cid = await runtime.create_container(sb, container(busybox, "no-such-binary"))
        await runtime.start_container(cid)


async def test_exit_code_and_mounts(runtime: RuncRuntime, busybox: Image, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("from the host")
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(
        busybox, "sh", "-c", "grep -q 'from the host' /data/data.txt && ! touch /data/x && exit 7",
        mounts=(Mount("/data", str(tmp_path), options=("rbind", "ro")),)))
    await runtime.start_container(cid)
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (7, "Error")


async def test_memory_limit_is_oom_killed(runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(
        busybox, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 1",
        resources=Resources(memory_limit_bytes=16 << 20)))
    await runtime.start_container(cid)
    status = await wait_exited(runtime, cid)
    assert status.reason == "OOMKilled"


async def test_cpu_quota_and_shares_are_in_the_cgroup(runtime: RuncRuntime,
                                                      busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(
        busybox, "sleep", "30", resources=Resources(cpu_quota_us=25_000, cpu_shares=512,
                                                    pids_limit=64)))
    await runtime.start_container(cid)
    h = runtime.cgroups
    assert h.cpu is not None
    [cg] = [d for d in (h.cpu / runtime.cgroup_root.strip("/")).rglob(cid) if d.is_dir()]
    if h.layout == "v2":
        assert (cg / "cpu.max").read_text().split() == ["25000", "100000"]
    else:
        assert (cg / "cpu.cfs_quota_us").read_text().strip() == "25000"
        assert (cg / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (cg / "cpu.shares").read_text().strip() == "512"
    assert str((await runtime.container_status(cid)).pid) in (cg / "cgroup.procs").read_text()


@pytest.mark.parametrize(("script", "timeout", "code", "least", "most"), [
    ("trap 'exit 0' TERM; while true; do sleep 0.1; done", 5.0, 0, 0.0, 2.0),
    ("trap '' TERM; while true; do sleep 0.1; done", 1.0, 137, 1.0, 4.0),
    ("trap 'exit 0' TERM; while true; do sleep 0.1; done", 0.0, 137, 0.0, 2.0),
], ids=["exits-on-sigterm", "ignores-sigterm-killed-after-grace", "grace-zero-kills"])
async def test_stop_sigterm_then_sigkill(runtime: RuncRuntime, busybox: Image, script: str,
                                         timeout: float, code: int, least: float,
                                         most: float) -> None:
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(busybox, "sh", "-c", script))
    await runtime.start_container(cid)
    await asyncio.sleep(0.3)  # lets the shell install its trap
    t = time.monotonic()
    await runtime.stop_container(cid, timeout=timeout)
    took = time.monotonic() - t
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code) == ("exited", code)
    assert least <= took <= most


async def test_exec_without_and_with_tty(runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(busybox, "sleep", "60",
                                                       env=(("X", "from-env"),)))
    await runtime.start_container(cid)

    p = await runtime.exec(cid, ["sh", "-c", 'echo "$X"; echo err >&2; exit 3'], tty=False,
                           stdin=False)
    assert await run_exec(p) == (3, b"from-env\n", b"err\n")
    p = await runtime.exec(cid, ["cat"], tty=False, stdin=True)
    assert await run_exec(p, b"piped\n") == (0, b"piped\n", b"")
    p = await runtime.exec(cid, ["sh", "-c", "tty; stty size"], tty=True, stdin=False)
    await p.resize(100, 30)
    code, out, err = await run_exec(p)
    assert code == 0 and err == b""
    assert out.split(b"\r\n")[0].startswith(b"/dev/pts/")
    p = await runtime.exec(cid, ["sh"], tty=True, stdin=True)
    code, out, _ = await run_exec(p, b"echo $((6*7))\nexit 5\n")
    assert code == 5 and b"42" in out
    p = await runtime.exec(cid, ["sleep", "60"], tty=False, stdin=False)
    await p.kill()
    assert await asyncio.wait_for(p.wait(), 5) != 0


async def test_attach_sees_output_and_feeds_stdin(runtime: RuncRuntime, busybox: Image,
                                                  root: Path) -> None:
    sb = await runtime.create_sandbox(pod())
    log = root / "attach.log"
    cid = await runtime.create_container(sb, container(
        busybox, "sh", "-c", "read line; echo got $line; exit 4", stdin=True, stdin_once=True,
        log_path=str(log)))
    await runtime.start_container(cid)
    p = await runtime.attach(cid, stdin=True)
    code, out, _ = await run_exec(p, b"ping\n")
    assert (code, out) == (4, b"got ping\n")
    assert log_lines(log) == [("stdout", "F", "got ping")]
    with pytest.raises(ContainerNotFound):
        await runtime.attach(cid, stdin=False)


async def test_log_rotation_keeps_a_bounded_set(root: Path, store: object, busybox: Image) -> None:
    from .conftest import need_host
    need_host()
    rt = await RuncRuntime.open(root, images=store, cgroup_root="/kubelite-test-rotate",
                                log_max_size=4096, log_max_files=3)  # type: ignore[arg-type]
    try:
        sb = await rt.create_sandbox(pod())
        log = root / "rot.log"
        cid = await rt.create_container(sb, container(
            busybox, "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done",
            log_path=str(log)))
        await rt.start_container(cid)
        await wait_exited(rt, cid)
        files = sorted(p.name for p in root.glob("rot.log*"))
        assert files == ["rot.log", "rot.log.1", "rot.log.2"]
        assert all(p.stat().st_size < 4096 + 100 for p in root.glob("rot.log*"))
        assert log_lines(log)[-1][2] == "line-399"
    finally:
        for sb_ in await rt.list_sandboxes():
            await rt.remove_sandbox(sb_.id)
        cgroups.remove(rt.cgroups, "/kubelite-test-rotate")


async def test_pod_namespaces_are_shared_and_containers_are_separate(
        runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod("shared"))
    a = await runtime.create_container(sb, container(busybox, "sleep", "60", name="a"))
    b = await runtime.create_container(sb, container(busybox, "sleep", "60", name="b"))
    for cid in (a, b):
        await runtime.start_container(cid)
    pa, pb = [(await runtime.container_status(c)).pid for c in (a, b)]

    def ns(pid: int, kind: str) -> str:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    for kind in ("net", "ipc", "uts"):
        assert ns(pa, kind) == ns(pb, kind) != ns(os.getpid(), kind)
    assert os.stat(sb.netns_path).st_ino == os.stat(f"/proc/{pa}/ns/net").st_ino
    for kind in ("mnt", "pid"):
        assert ns(pa, kind) != ns(pb, kind)
    p = await runtime.exec(a, ["sh", "-c", "hostname; ip -o link 2>/dev/null || cat /proc/net/dev"
                               "; echo shm > /dev/shm/x"], tty=False, stdin=False)
    code, out, _ = await run_exec(p)
    assert code == 0 and out.startswith(b"shared\n") and b"lo" in out
    p = await runtime.exec(b, ["cat", "/dev/shm/x"], tty=False, stdin=False)
    assert await run_exec(p) == (0, b"shm\n", b"")


async def test_share_process_namespace(runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod(share_process_namespace=True))
    a = await runtime.create_container(sb, container(busybox, "sleep", "61", name="a"))
    b = await runtime.create_container(sb, container(busybox, "sleep", "62", name="b"))
    for cid in (a, b):
        await runtime.start_container(cid)
    p = await runtime.exec(a, ["ps", "-o", "args"], tty=False, stdin=False)
    code, out, _ = await run_exec(p)
    assert code == 0 and b"sleep 61" in out and b"sleep 62" in out
    await runtime.stop_container(b, timeout=0)
    assert (await runtime.container_status(b)).exit_code == 137
    assert (await runtime.container_status(a)).state == "running"


async def test_read_only_root_and_capabilities(runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(
        busybox, "sleep", "60", security=SecurityOptions(
            read_only_rootfs=True, capabilities_drop=("ALL",), capabilities_add=("NET_ADMIN",))))
    await runtime.start_container(cid)
    p = await runtime.exec(cid, ["sh", "-c", "touch /x; grep CapEff /proc/self/status"],
                           tty=False, stdin=False)
    code, out, err = await run_exec(p)
    assert b"Read-only file system" in err
    assert int(out.split()[1], 16) == 1 << 12  # CAP_NET_ADMIN alone


async def test_wait_for_created_container_status(runtime: RuncRuntime, busybox: Image) -> None:
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb, container(busybox, "true"))

    async def created() -> bool:
        return (await runtime.container_status(cid)).state == "created"
    await wait_for(created)
    await runtime.remove_container(cid)
    with pytest.raises(ContainerNotFound):
        await runtime.container_status(cid)


@pytest.mark.parametrize(("preferred", "layout", "expected"), [
    (None, "hybrid", "runc"), ("runc", "v2", "runc"), (None, "v1", "runc"),
], ids=["default-on-hybrid", "asked-on-v2", "default-on-v1"])
def test_pick_runtime(preferred: str | None, layout: cgroups.Layout, expected: str) -> None:
    from kubelite.runtime.runc import pick_runtime
    assert pick_runtime(preferred, layout) == expected


def test_crun_is_refused_on_hybrid_cgroups() -> None:
    from kubelite.runtime.errors import RuntimeError_
    from kubelite.runtime.runc import pick_runtime
    with pytest.raises(RuntimeError_, match="hybrid"):
        pick_runtime("crun", "hybrid")
