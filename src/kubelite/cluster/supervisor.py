"""The process behind `kubelite up`: it builds the node machines, runs the API
server (with controllers, scheduler, DNS and ingress) in the host's network
namespace and one agent per node inside the node's, restarts whichever dies, and
takes orders from `kubelite node` and `kubelite down` on a unix socket.

Start-up is what a new user waits for, so the steps overlap: the credentials are
made here first, then the server and the agents start together (an agent waits
for the server to answer), while the node machines are built and busybox is
preloaded (from an archive built once per host, under /var/cache/kubelite).

Its children die with it (PR_SET_PDEATHSIG), but the containers do not, as on a
real machine whose kubelet crashed: `kubelite up` again adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from kubelite.cli.supervise import Supervised
from kubelite.cluster import machines, teardown
from kubelite.cluster.layout import Layout, NodeLayout
from kubelite.cluster.registry import RegistryRelay

log = logging.getLogger(__name__)
BUSYBOX_TAGS = ("docker.io/library/busybox:latest", "docker.io/library/busybox:stable")
CLUSTER_DNS = "10.96.0.10"
ARCHIVE_CACHE = Path("/var/cache/kubelite")


def _kubelite(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubelite.cli.main", *args]


class _Child(Supervised):
    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0


class Supervisor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.server: Supervised | None = None
        self.agents: dict[str, _Child] = {}
        self.cut: set[str] = set()
        self._stop = asyncio.Event()
        self._since = dt.datetime.now(dt.UTC)
        self.registry = RegistryRelay(layout.registry) if layout.registry else None

    # -- start -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        layout = self.layout
        started = time.monotonic()
        self._since = dt.datetime.now(dt.UTC).replace(microsecond=0)
        layout.save(ready=False, supervisor_pid=os.getpid())
        # The credentials first, made here as the server would make them: the agents
        # then start beside the server (each waits for it to answer) instead of
        # after it, which halves the time to Ready.
        await asyncio.gather(machines.ensure_bridge(layout), self._credentials())
        async with contextlib.AsyncExitStack() as stack:
            runner = await self._control_socket()
            stack.push_async_callback(runner.cleanup)
            self.server = await stack.enter_async_context(Supervised("server", self._server_argv()))
            stack.push_async_callback(self._stop_agents)
            if self.registry is not None:
                stack.push_async_callback(self.registry.close)
            archive = await self._busybox_archive()
            await asyncio.gather(*(self._start_node(n, archive) for n in layout.nodes))
            log.info("node machines and agents started in %.1fs", time.monotonic() - started)
            await stack.enter_async_context(self._host_routes())
            waits = [asyncio.create_task(self._mark_ready(started)),
                     asyncio.create_task(stop.wait()), asyncio.create_task(self._stop.wait())]
            await asyncio.wait(waits[1:], return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        layout.save(ready=False, stopped=True)
        return 0

    async def _credentials(self) -> None:
        from kubelite.server.certs import ensure_credentials

        layout = self.layout
        await asyncio.to_thread(ensure_credentials, layout.server_dir, host="0.0.0.0",
                                port=layout.port, extra_sans=[layout.gateway])
        # One stable path for users; agents are pointed at the gateway with --server.
        await asyncio.to_thread(shutil.copyfile, layout.server_dir / "kubeconfig",
                                layout.kubeconfig)
        await asyncio.to_thread(os.chmod, layout.kubeconfig, 0o600)

    async def _start_node(self, node: NodeLayout, archive: Path) -> None:
        await machines.ensure_node(self.layout, node)
        if self.registry is not None:
            await self.registry.add(node)
        await self._preload(node, archive)
        await self._start_agent(node)

    def _server_argv(self) -> list[str]:
        layout = self.layout
        gw = layout.gateway
        return _kubelite(
            "server", "--data-dir", str(layout.server_dir), "--listen", f"0.0.0.0:{layout.port}",
            "--tls-san", gw, "--service-cidr", layout.service_cidr,
            "--cluster-cidr", layout.cluster_cidr, "--cluster-dns", gw,
            "--ingress-http", f"127.0.0.1:{layout.http_port}",
            "--ingress-http", f"{gw}:{layout.http_port}",
            "--ingress-https", f"127.0.0.1:{layout.https_port}",
            "--ingress-https", f"{gw}:{layout.https_port}")

    def _agent_argv(self, node: NodeLayout) -> list[str]:
        layout = self.layout
        pki = layout.server_dir / "pki"
        return ["nsenter", f"--net={machines.NETNS_DIR / node.netns}", *_kubelite(
            "agent", "--kubeconfig", str(layout.kubeconfig), "--server", layout.server_url,
            "--node-name", node.name, "--root", node.root, "--node-ip", node.ip,
            "--address", node.ip, "--cgroup-root", node.cgroup_root,
            "--cluster-cidr", layout.cluster_cidr, "--cluster-dns", CLUSTER_DNS,
            "--service-proxy", "--cluster-ca-cert", str(pki / "ca.crt"),
            "--cluster-ca-key", str(pki / "ca.key"))]

    async def _busybox_archive(self) -> Path:
        """The busybox archive, built once per host and busybox binary: the archive is
        deterministic, and compressing it is the largest part of a first `up`."""
        from kubelite.runtime.build import build_busybox_archive, find_busybox

        def build() -> Path:
            busybox = find_busybox()
            st = busybox.stat()
            key = hashlib.sha256(f"{busybox}:{st.st_size}:{st.st_mtime_ns}".encode())
            archive = ARCHIVE_CACHE / f"busybox-{key.hexdigest()[:16]}.tar"
            if not archive.exists():
                ARCHIVE_CACHE.mkdir(parents=True, exist_ok=True)
                # Clusters starting side by side may build it at once: each into a
                # file of its own, renamed into place.
                tmp = ARCHIVE_CACHE / f".{archive.name}.{os.getpid()}"
                build_busybox_archive(tmp, busybox=busybox)
                tmp.replace(archive)
            return archive
        return await asyncio.to_thread(build)

    async def _preload(self, node: NodeLayout, archive: Path) -> None:
        """busybox, busybox:latest and busybox:stable on every node, as `kind` clusters
        have their images, so that manifests written for Kubernetes run unchanged."""
        from kubelite.runtime.images import OCIImageStore

        store = OCIImageStore(Path(node.root))
        for tag in BUSYBOX_TAGS:
            if await store.get(tag) is None:
                await store.import_archive(str(archive), tag=tag)

    async def _start_agent(self, node: NodeLayout) -> None:
        await asyncio.to_thread(Path(node.root).mkdir, parents=True, exist_ok=True)
        agent = _Child(node.name, self._agent_argv(node))
        await agent.__aenter__()
        self.agents[node.name] = agent

    async def _stop_agent(self, name: str) -> None:
        agent = self.agents.pop(name, None)
        if agent is not None:
            await agent.__aexit__(None, None, None)

    async def _stop_agents(self) -> None:
        await asyncio.gather(*(self._stop_agent(n) for n in list(self.agents)))

    @contextlib.asynccontextmanager
    async def _host_routes(self) -> Any:
        """Routes from the host to every node's pods, for DNS and ingress, which run
        in the host's namespace."""
        from kubelite.client import Client, load_kubeconfig
        from kubelite.network.routes import RouteSyncer

        config = await asyncio.to_thread(load_kubeconfig, self.layout.kubeconfig)
        async with Client(config, user_agent="kubelite-up") as client:
            syncer = RouteSyncer(client, cluster_cidr=self.layout.cluster_cidr)
            await syncer.start()
            try:
                yield syncer
            finally:
                await syncer.stop(remove_routes=True)

    async def _mark_ready(self, started: float) -> None:
        from kubelite.client import Client, load_kubeconfig
        from kubelite.client.api import find_resource

        config = await asyncio.to_thread(load_kubeconfig, self.layout.kubeconfig)
        want = {n.name for n in self.layout.nodes}
        async with Client(config, user_agent="kubelite-up") as client:
            while True:
                with contextlib.suppress(Exception):
                    nodes = (await client.list(find_resource("nodes"))).get("items") or []
                    if want <= {n["metadata"]["name"] for n in nodes if self._fresh_ready(n)}:
                        break
                await asyncio.sleep(0.1)
        self.layout.save(ready=True, supervisor_pid=os.getpid(), node_pids={
            name: agent.pid for name, agent in self.agents.items()})
        log.info("cluster %s ready in %.1fs", self.layout.name, time.monotonic() - started)

    def _fresh_ready(self, node: dict[str, Any]) -> bool:
        """Ready as reported by an agent of this run: after a crash the stored Node
        is still Ready from the agent before it until the lifecycle controller sees
        its heartbeats stop. With its pod CIDR too, so that pods can start at once."""
        if not (node.get("spec") or {}).get("podCIDR"):
            return False
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                beat = cond.get("lastHeartbeatTime") or ""
                with contextlib.suppress(ValueError):
                    return dt.datetime.fromisoformat(beat.replace("Z", "+00:00")) >= self._since
        return False

    # -- orders ------------------------------------------------------------------

    async def node_op(self, name: str, op: str) -> str:
        node = self.layout.node(name)
        if op == "stop":
            await self._stop_agent(name)
            await teardown.remove_containers(node)
            return f"{name} stopped (agent and containers)"
        if op == "start":
            if name not in self.agents:
                await machines.ensure_node(self.layout, node)
                if self.registry is not None:
                    await self.registry.add(node)
                await self._start_agent(node)
            return f"{name} started"
        if op in ("cut", "heal"):
            await machines.set_cut(node, op == "cut")
            (self.cut.add if op == "cut" else self.cut.discard)(name)
            return f"{name} {'cut off the network' if op == 'cut' else 'back on the network'}"
        raise ValueError(f"unknown operation {op}")

    async def _control_socket(self) -> web.AppRunner:
        async def node(request: web.Request) -> web.Response:
            try:
                message = await self.node_op(request.match_info["name"],
                                             request.match_info["op"])
            except (KeyError, ValueError) as e:
                return web.json_response({"error": f"no such node or operation: {e}"},
                                         status=404)
            except machines.HostCommandError as e:
                return web.json_response({"error": str(e)}, status=500)
            return web.json_response({"message": message})

        async def status(_: web.Request) -> web.Response:
            return web.json_response({
                "supervisor_pid": os.getpid(),
                "nodes": {n.name: {"running": n.name in self.agents, "cut": n.name in self.cut}
                          for n in self.layout.nodes}})

        async def shutdown(_: web.Request) -> web.Response:
            self._stop.set()
            return web.json_response({"message": "stopping"})

        app = web.Application()
        app.router.add_post("/nodes/{name}/{op}", node)
        app.router.add_get("/status", status)
        app.router.add_post("/shutdown", shutdown)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        path = self.layout.control_socket
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        await web.SockSite(runner, sock).start()
        return runner
