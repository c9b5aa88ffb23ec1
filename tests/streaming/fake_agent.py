"""A test double of the node agent: the real `StreamingEndpoints` on a fake
`ContainerRuntime` whose containers are local processes, served over HTTPS with
a certificate from the cluster CA and the admin token required, as the real
agent will. Port-forward reaches loopback (an empty netns_path is the host's)."""

from __future__ import annotations

import asyncio
import os
import pty
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from kubelite.agent.logs import LogOptions, stream_log
from kubelite.agent.streaming import StreamingEndpoints
from kubelite.runtime.base import (
    ContainerID,
    ContainerStatus,
    ExecProcess,
    Sandbox,
    SandboxConfig,
    SandboxID,
)
from kubelite.runtime.exec import PipeExec, TtyExec
from kubelite.server.certs import issue_certificate


@dataclass
class FakePod:
    namespace: str
    name: str
    containers: tuple[str, ...] = ("c",)
    uid: str = "uid-1"
    netns_path: str = ""
    # What `attach` runs: a stand-in for the container's main process.
    attach_command: tuple[str, ...] = ("sh", "-c", "echo attached; cat")
    log_lines: list[str] = field(default_factory=list)
    # While set, `logs -f` keeps following the log file (the container "runs").
    following: threading.Event = field(default_factory=threading.Event)


class FakeRuntime:
    name = "fake"
    version = "0"

    def __init__(self, pods: list[FakePod], workdir: Path) -> None:
        self.pods = pods
        self.workdir = workdir
        self.execs: list[list[str]] = []
        self.pids: list[int] = []

    def _sandbox(self, pod: FakePod) -> Sandbox:
        config = SandboxConfig(pod_uid=pod.uid, name=pod.name, namespace=pod.namespace,
                               hostname=pod.name)
        return Sandbox(id=SandboxID(pod.uid), config=config, netns_path=pod.netns_path)

    async def list_sandboxes(self) -> list[Sandbox]:
        return [self._sandbox(p) for p in self.pods]

    async def list_containers(self, sandbox_id: SandboxID | None = None) -> list[ContainerStatus]:
        return [ContainerStatus(id=ContainerID(f"{p.uid}/{c}"), sandbox_id=SandboxID(p.uid),
                                name=c, image_ref="img", image_digest="sha256:0",
                                state="running", pid=os.getpid())
                for p in self.pods if sandbox_id in (None, p.uid) for c in p.containers]

    async def _spawn(self, command: list[str], *, tty: bool, stdin: bool) -> ExecProcess:
        pid_file = Path(tempfile.mkstemp(dir=self.workdir, suffix=".pid")[1])
        if tty:
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
            finally:
                os.close(slave)
            pid_file.write_text(str(proc.pid))
            self.pids.append(proc.pid)
            return TtyExec(proc, master, pid_file)
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        pid_file.write_text(str(proc.pid))
        self.pids.append(proc.pid)
        return PipeExec(proc, pid_file)

    async def exec(self, container_id: ContainerID, command: list[str], *, tty: bool,
                   stdin: bool) -> ExecProcess:
        self.execs.append(command)
        return await self._spawn(command, tty=tty, stdin=stdin)

    async def attach(self, container_id: ContainerID, *, stdin: bool) -> ExecProcess:
        pod = next(p for p in self.pods if container_id.startswith(p.uid + "/"))
        return await self._spawn(list(pod.attach_command), tty=False, stdin=stdin)


def log_path(pod: FakePod, workdir: Path) -> Path:
    return workdir / f"{pod.namespace}_{pod.name}.log"


def log_line(i: int, line: str) -> str:
    return f"2024-01-01T00:00:0{i % 10}.000000000Z stdout F {line}\n"


def _log_file(pod: FakePod, workdir: Path) -> Path:
    path = log_path(pod, workdir)
    path.write_text("".join(log_line(i, line) for i, line in enumerate(pod.log_lines)))
    return path


def build_app(runtime: FakeRuntime, *, token: str) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.headers.get("Authorization") != f"Bearer {token}":
            raise web.HTTPUnauthorized(text="Unauthorized")
        return await handler(request)

    async def container_logs(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        pod = next((p for p in runtime.pods if (p.namespace, p.name) ==
                    (info["namespace"], info["pod"])), None)
        if pod is None:
            raise web.HTTPNotFound(text="pod not found")
        tail = request.query.get("tailLines")
        opts = LogOptions(follow=request.query.get("follow") == "true",
                          tail_lines=int(tail) if tail else None,
                          timestamps=request.query.get("timestamps") == "true")
        out = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await out.prepare(request)

        async def running() -> bool:
            return pod.following.is_set()

        await stream_log(_log_file(pod, runtime.workdir), opts, write=out.write, running=running)
        await out.write_eof()
        return out

    app = web.Application(middlewares=[authenticate])
    app.router.add_routes(StreamingEndpoints(runtime).routes())
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    return app


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


class FakeAgent:
    """Runs the fake agent and a loopback echo server on their own event loop thread."""

    def __init__(self, *, pods: list[FakePod], data_dir: Path, workdir: Path) -> None:
        self.runtime = FakeRuntime(pods, workdir)
        self._pki = data_dir / "pki"
        self._token = (data_dir / "admin.token").read_text().strip()
        self._workdir = workdir
        self.port = 0
        self.echo_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        import ssl

        cert, key = issue_certificate(self._pki / "ca.crt", self._pki / "ca.key",
                                      common_name="fake-node", ip_addresses=["127.0.0.1"])
        (self._workdir / "agent.crt").write_bytes(cert)
        (self._workdir / "agent.key").write_bytes(key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._workdir / "agent.crt", self._workdir / "agent.key")
        runner = web.AppRunner(build_app(self.runtime, token=self._token),
                               handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        echo = await echo_server()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.echo_port = echo.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            echo.close()
            await runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake agent did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def node_status(port: int) -> dict:
    return {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": "fake-node"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}


def pod_manifest(pod: FakePod, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "spec": {"nodeName": node,
                     "containers": [{"name": c, "image": "busybox",
                                     "ports": [{"containerPort": 80}]} for c in pod.containers]}}
