"""The `ContainerRuntime` of base.py on the runc (or crun) command line.

Everything lives under ROOT:

    sandboxes/<id>/      one pod: sandbox.json, ns/{net,ipc,uts}, shm/, hosts, hostname, resolv.conf
    containers/<id>/     one container, also its OCI bundle: config.json, rootfs/ (overlay
                         of the image layers with upper/ and work/), container.json, exit.json
    sockets/             the shims' attach sockets (short paths: unix sockets allow 108 bytes)
    runc/                the OCI runtime's own state (`runc --root`)

Containers run under a per-container shim (shim.py) that is the parent of
their init, owns their stdio and log, and records their exit, so that the agent
can die and come back: state is read from these files, never kept in memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubelite.runtime import bundle, cgroups, mounts, proc, sandbox, usage
from kubelite.runtime.base import (
    ContainerConfig,
    ContainerID,
    ContainerStatus,
    ExecProcess,
    Sandbox,
    SandboxConfig,
    SandboxID,
    Usage,
)
from kubelite.runtime.errors import (
    ContainerCreateError,
    ContainerNotFound,
    RuntimeError_,
    SandboxError,
)
from kubelite.runtime.exec import PipeExec, ShimAttach, TtyExec
from kubelite.runtime.images import OCIImageStore
from kubelite.runtime.zygote import ShimZygote

DEFAULT_CGROUP_ROOT = "/kubelite"
MAX_ROOT_LEN = 80  # sockets/<16 hex>.console must fit in a unix socket path


def pick_runtime(preferred: str | None, layout: cgroups.Layout) -> str:
    """runc unless crun is asked for; crun refuses hybrid cgroups, so hybrid hosts get runc."""
    if preferred == "crun" and layout == "hybrid":
        raise RuntimeError_("crun does not support hybrid cgroups (v1 controllers and v2); "
                            "use runc on this host")
    name = preferred or "runc"
    if shutil.which(name) is None:
        raise RuntimeError_(f"OCI runtime {name!r} not found on PATH")
    return name


class RuncRuntime:
    """Containers through the runc CLI; `crun` is the same CLI on cgroup v2 hosts."""

    def __init__(self, root: str | os.PathLike[str], *, images: OCIImageStore,
                 runtime: str | None = None, version: str = "",
                 cgroup_root: str = DEFAULT_CGROUP_ROOT, log_max_size: int = 10 << 20,
                 log_max_files: int = 5) -> None:
        self.root = Path(root).absolute()
        if len(str(self.root)) > MAX_ROOT_LEN:
            raise RuntimeError_(f"runtime root {self.root} is longer than {MAX_ROOT_LEN} bytes")
        self.images = images
        self.cgroups = cgroups.detect()
        self.name = pick_runtime(runtime, self.cgroups.layout)
        self.version = version
        self.cgroup_root = "/" + cgroup_root.strip("/")
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self._spawner = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kubelite-runc")
        self._shims = ShimZygote()
        self._sandboxes: dict[str, str] = {}  # container id -> sandbox id, which never changes
        for sub in ("sandboxes", "containers", "sockets", "runc"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    async def open(cls, root: str | os.PathLike[str], *, images: OCIImageStore,
                   runtime: str | None = None, **options: Any) -> RuncRuntime:
        """A runtime with its binary picked for this host and its version read."""
        rt = cls(root, images=images, runtime=runtime, **options)
        out = await rt._runc("--version", check=True)
        rt.version = out.split()[2] if len(out.split()) > 2 else out.strip()
        return rt

    # -- sandboxes ---------------------------------------------------------------------------

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        sandbox_id = SandboxID(secrets.token_hex(32))
        directory = self.root / "sandboxes" / sandbox_id
        parent = config.cgroup_parent or f"{self.cgroup_root}/pod{config.pod_uid}"
        try:
            record = await sandbox.create(directory, sandbox_id, config, cgroup_parent=parent)
        except (OSError, RuntimeError_) as exc:
            if (rec := await asyncio.to_thread(sandbox.SandboxRecord.load, directory)):
                await sandbox.destroy(rec, self.cgroups)
            else:
                await asyncio.to_thread(mounts.unmount_all, str(directory))
                await asyncio.to_thread(shutil.rmtree, directory, True)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"creating the pod sandbox: {exc}") from exc
        return record.sandbox()

    async def remove_sandbox(self, sandbox_id: SandboxID) -> None:
        for status in await self.list_containers(sandbox_id):
            await self.remove_container(status.id)
        record = await self._sandbox(sandbox_id)
        if record is not None:
            await sandbox.destroy(record, self.cgroups)

    async def list_sandboxes(self) -> list[Sandbox]:
        def load_all() -> list[Sandbox]:
            out = []
            for d in sorted((self.root / "sandboxes").iterdir()):
                rec = sandbox.SandboxRecord.load(d)
                if rec is not None:
                    out.append(rec.sandbox())
            return out
        return await asyncio.to_thread(load_all)

    async def _sandbox(self, sandbox_id: str) -> sandbox.SandboxRecord | None:
        return await asyncio.to_thread(sandbox.SandboxRecord.load,
                                       self.root / "sandboxes" / sandbox_id)

    # -- containers --------------------------------------------------------------------------

    async def create_container(self, sandbox_: Sandbox, config: ContainerConfig) -> ContainerID:
        record = await self._sandbox(sandbox_.id)
        if record is None:
            raise SandboxError(f"sandbox {sandbox_.id} does not exist")
        cid = ContainerID(secrets.token_hex(32))
        directory = self.root / "containers" / cid
        await asyncio.to_thread(directory.mkdir)
        meta: dict[str, Any] = {
            "id": cid, "sandbox_id": sandbox_.id, "name": config.name,
            "image_ref": config.image.ref, "image_digest": config.image.digest,
            "labels": config.labels, "created_at": time.time(), "log_path": config.log_path,
            "tty": config.tty, "cgroup": f"{record.cgroup_parent}/{cid}",
            "shared_pid": bool(record.pid_path)}
        await self._save(cid, meta)
        try:
            await self._prepare(cid, directory, record, config, meta)
        except BaseException as exc:
            await self._destroy(cid)
            if isinstance(exc, RuntimeError_):
                raise
            if isinstance(exc, OSError):
                raise ContainerCreateError(f"creating container {config.name}: {exc}") from exc
            raise
        return cid

    async def _prepare(self, cid: ContainerID, directory: Path, record: sandbox.SandboxRecord,
                       config: ContainerConfig, meta: dict[str, Any]) -> None:
        args = list(config.command) or [*config.image.entrypoint, *config.image.cmd]
        if not args:
            raise ContainerCreateError(f"no command specified for container {config.name}")
        layers = await self.images.lease(cid, config.image)
        rootfs = directory / "rootfs"
        await asyncio.to_thread(_mount_rootfs, directory, layers)
        spec = await asyncio.to_thread(
            bundle.build_spec, config=config, image=config.image, sandbox=record, rootfs=rootfs,
            args=args, cgroups_path=meta["cgroup"], layout=self.cgroups.layout)
        await asyncio.to_thread((directory / "config.json").write_text, json.dumps(spec))
        if config.log_path:
            await asyncio.to_thread(Path(config.log_path).parent.mkdir, parents=True,
                                    exist_ok=True)
        sock = self._socket(cid)
        shim_args = {
            "id": cid, "runc": self._runc_argv(directory / "runc.log"),
            "runc_log": str(directory / "runc.log"), "bundle": str(directory),
            "dir": str(directory), "pid_file": str(directory / "pid"),
            "log_path": config.log_path, "log_max_size": self.log_max_size,
            "log_max_files": self.log_max_files, "tty": config.tty, "stdin": config.stdin,
            "stdin_once": config.stdin_once, "socket": f"{sock}.sock",
            "console_socket": f"{sock}.console"}
        result = await self._shims.start(shim_args)
        if not result.get("ok"):
            raise ContainerCreateError(result.get("error") or "runc create failed")
        meta |= {"pid": result["pid"], "pid_start": proc.start_time(result["pid"]),
                 "shim_pid": result["shim_pid"], "shim_start": proc.start_time(result["shim_pid"])}
        await self._save(cid, meta)

    async def start_container(self, container_id: ContainerID) -> None:
        meta = await self._meta(container_id)
        # Taken before: a short-lived process may have finished by the time runc returns.
        started_at = time.time()
        try:
            await self._runc("start", container_id, check=True)
        except RuntimeError_ as exc:
            raise ContainerCreateError(f"starting container {meta['name']}: {exc.message}") \
                from exc
        await asyncio.to_thread(_write, self.root / "containers" / container_id / "started",
                                repr(started_at))

    async def stop_container(self, container_id: ContainerID, *, timeout: float) -> None:
        meta = await self._meta(container_id)
        exit_file = self.root / "containers" / container_id / "exit.json"
        if exit_file.exists() or not proc.alive(meta.get("pid", 0), meta.get("pid_start")):
            await self._wait_exit(meta, exit_file, 5.0)
            return
        if timeout > 0:
            await self._runc("kill", container_id, "TERM")
            if await self._wait_exit(meta, exit_file, timeout):
                return
        await self._runc("kill", *(["--all"] if meta["shared_pid"] else []), container_id, "KILL")
        proc.kill(meta["pid"], meta.get("pid_start"))
        await self._wait_exit(meta, exit_file, 10.0)

    async def _wait_exit(self, meta: dict[str, Any], exit_file: Path, timeout: float) -> bool:
        """Whether the shim recorded the exit within `timeout` (or is gone without doing so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if exit_file.exists() or not proc.alive(meta.get("shim_pid", 0),
                                                    meta.get("shim_start")):
                return True
            await asyncio.sleep(0.02)
        return False

    async def remove_container(self, container_id: ContainerID) -> None:
        if not (self.root / "containers" / container_id).is_dir():
            raise ContainerNotFound(f"container {container_id} not found")
        await self._destroy(container_id)

    async def _destroy(self, cid: ContainerID) -> None:
        """Remove every trace of a container, whatever state a crash may have left it in."""
        directory = self.root / "containers" / cid
        meta = await asyncio.to_thread(_read_json, directory / "container.json") or {}
        await self._runc("delete", "--force", cid)
        proc.kill(meta.get("pid", 0), meta.get("pid_start"))
        shim_pid, shim_start = meta.get("shim_pid", 0), meta.get("shim_start")
        deadline = time.monotonic() + 5.0
        while proc.alive(shim_pid, shim_start) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        proc.kill(shim_pid, shim_start)
        await asyncio.to_thread(mounts.unmount_all, str(directory))
        if meta.get("cgroup"):
            await asyncio.to_thread(cgroups.remove, self.cgroups, meta["cgroup"])
        await self.images.release(cid)
        sock = self._socket(cid)
        for suffix in (".sock", ".console"):
            Path(f"{sock}{suffix}").unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        self._sandboxes.pop(cid, None)

    async def container_status(self, container_id: ContainerID) -> ContainerStatus:
        status = await asyncio.to_thread(self._status, container_id)
        if status is None:
            raise ContainerNotFound(f"container {container_id} not found")
        return status

    async def list_containers(self, sandbox_id: SandboxID | None = None) -> list[ContainerStatus]:
        def all_statuses() -> list[ContainerStatus]:
            out = []
            for d in sorted((self.root / "containers").iterdir()):
                if sandbox_id is not None and self._sandbox_of(d) != sandbox_id:
                    continue
                st = self._status(ContainerID(d.name))
                if st is not None:
                    out.append(st)
            return out
        return await asyncio.to_thread(all_statuses)

    def _sandbox_of(self, directory: Path) -> str | None:
        """The container's sandbox, remembered: every pod worker lists its own pod's
        containers each sync, and reading every container's state for it made a burst
        of N pods cost N² file reads."""
        sid = self._sandboxes.get(directory.name)
        if sid is None:
            meta = _read_json(directory / "container.json")
            if meta is None:
                return None
            sid = self._sandboxes[directory.name] = meta["sandbox_id"]
        return sid

    def _status(self, cid: ContainerID) -> ContainerStatus | None:
        directory = self.root / "containers" / cid
        meta = _read_json(directory / "container.json")
        if meta is None:
            return None
        started = _read_float(directory / "started")
        ended = _read_json(directory / "exit.json")
        common: dict[str, Any] = {
            "id": cid, "sandbox_id": meta["sandbox_id"], "name": meta["name"],
            "image_ref": meta["image_ref"], "image_digest": meta["image_digest"],
            "pid": meta.get("pid", 0), "created_at": meta["created_at"],
            "started_at": started, "labels": meta["labels"]}
        if ended is not None:
            code = int(ended["exit_code"])
            oom = cgroups.oom_kills(self.cgroups, meta["cgroup"]) > 0
            reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
            return ContainerStatus(**common, state="exited", exit_code=code, reason=reason,
                                   finished_at=ended["finished_at"])
        if "pid" not in meta:
            return ContainerStatus(**common, state="unknown")
        if proc.alive(meta["shim_pid"], meta.get("shim_start")):
            return ContainerStatus(**common, state="running" if started else "created")
        return ContainerStatus(**common, state="exited", exit_code=255, reason="Error",
                               message="the container's shim is gone; its exit status is unknown")

    async def stats(self) -> dict[str, Usage]:
        """Usage of the runtime's cgroup root (key ""), each sandbox and each running
        container, by id: CRI's ListPodSandboxStats and ListContainerStats in one."""
        def read_all() -> dict[str, Usage]:
            cgroups_ = {"": self.cgroup_root}
            for d in (self.root / "sandboxes").iterdir():
                rec = sandbox.SandboxRecord.load(d)
                if rec is not None and rec.cgroup_parent:
                    cgroups_[d.name] = rec.cgroup_parent
            for d in (self.root / "containers").iterdir():
                meta = _read_json(d / "container.json")
                if meta is not None and "cgroup" in meta and not (d / "exit.json").exists():
                    cgroups_[d.name] = meta["cgroup"]
            out = {}
            for key, cgroup in cgroups_.items():
                if (u := usage.read(self.cgroups, cgroup)) is not None:
                    out[key] = u
            return out
        return await asyncio.to_thread(read_all)

    # -- exec and attach ---------------------------------------------------------------------

    async def exec(self, container_id: ContainerID, command: list[str], *, tty: bool,
                   stdin: bool) -> ExecProcess:
        status = await self.container_status(container_id)
        if status.state != "running":
            raise ContainerNotFound(f"container {status.name} is not running")
        pid_file = self.root / "containers" / container_id / f"exec-{secrets.token_hex(8)}.pid"
        argv = [*self._runc_argv(None), "exec", "--pid-file", str(pid_file)]
        if not tty:
            p = await asyncio.create_subprocess_exec(
                *argv, container_id, *command,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            return PipeExec(p, pid_file)
        # runc exec -t in the foreground proxies the container's pty to its own terminal:
        # give it one whose master side this process keeps.
        master, slave = os.openpty()
        try:
            p = await asyncio.create_subprocess_exec(
                *argv, "--tty", container_id, *command, stdin=slave, stdout=slave,
                stderr=slave, start_new_session=True)
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return TtyExec(p, master, pid_file)

    async def attach(self, container_id: ContainerID, *, stdin: bool) -> ExecProcess:
        meta = await self._meta(container_id)
        try:
            reader, writer = await asyncio.open_unix_connection(f"{self._socket(container_id)}.sock")
        except OSError as exc:
            raise ContainerNotFound(f"container {meta['name']} is not running") from exc
        return ShimAttach(reader, writer, tty=meta["tty"],
                          exit_file=self.root / "containers" / container_id / "exit.json")

    # -- helpers -----------------------------------------------------------------------------

    def _socket(self, cid: str) -> str:
        return str(self.root / "sockets" / cid[:16])

    def _runc_argv(self, log: Path | None) -> list[str]:
        argv = [self.name, "--root", str(self.root / "runc")]
        if log is not None:
            argv += ["--log", str(log), "--log-format", "json"]
        return argv

    async def _runc(self, *args: str, check: bool = False) -> str:
        code, out, err = await self._spawn(*self._runc_argv(None), *args)
        if check and code != 0:
            raise RuntimeError_(err.decode(errors="replace").strip()
                                or f"{self.name} {args[0]} failed")
        return out.decode(errors="replace")

    async def _spawn(self, *argv: str) -> tuple[int, bytes, bytes]:
        """Run a short command to completion in a spawner thread: fork and exec from the
        event loop's thread would block it for milliseconds each, serialising pod starts."""
        def run() -> tuple[int, bytes, bytes]:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, cwd="/")
            return p.returncode, p.stdout, p.stderr
        return await asyncio.get_running_loop().run_in_executor(self._spawner, run)

    async def _meta(self, cid: str) -> dict[str, Any]:
        meta = await asyncio.to_thread(_read_json, self.root / "containers" / cid /
                                       "container.json")
        if meta is None:
            raise ContainerNotFound(f"container {cid} not found")
        return meta

    async def _save(self, cid: str, meta: dict[str, Any]) -> None:
        await asyncio.to_thread(_write, self.root / "containers" / cid / "container.json",
                                json.dumps(meta))


def _mount_rootfs(directory: Path, layers: list[str]) -> None:
    for sub in ("rootfs", "upper", "work"):
        (directory / sub).mkdir()
    if not layers:
        (directory / "empty").mkdir()
        layers = [str(directory / "empty")]
    # overlayfs lists lower directories top first; image layers come base first.
    options = f"lowerdir={':'.join(reversed(layers))},upperdir={directory / 'upper'}," \
              f"workdir={directory / 'work'}"
    if len(options) >= 4096:
        raise ContainerCreateError("too many image layers for one overlay mount")
    mounts.mount("overlay", str(directory / "rootfs"), "overlay", 0, options)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _read_float(path: Path) -> float:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return 0.0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


__all__ = ["RuncRuntime", "pick_runtime"]
