"""The process behind `kubelite up`: it builds the node machines, runs the API
server (with controllers, scheduler, DNS and ingress) in the host's network
namespace and one agent per node inside the node's, restarts whichever dies, and
takes orders from `kubelite node` and `kubelite down` on a unix socket.

Its children die with it (PR_SET_PDEATHSIG), but the containers do not, as on a
real machine whose kubelet crashed: `kubelite up` again adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from kubelite.cli.supervise import Supervised
from kubelite.cluster import machines, teardown
from kubelite.cluster.layout import Layout, NodeLayout

log = logging.getLogger(__name__)
BUSYBOX_TAGS = ("docker.io/library/busybox:latest", "docker.io/library/busybox:stable")
CLUSTER_DNS = "10.96.0.10"


def _kubelite(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubelite.cli.main", *args]


class Supervisor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.server: Supervised | None = None
        self.agents: dict[str, Supervised] = {}
        self.cut: set[str] = set()
        self._stop = asyncio.Event()

    # -- start -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        layout = self.layout
        await asyncio.to_thread((layout.data_dir / "images").mkdir, parents=True, exist_ok=True)
        await teardown.kill_processes(await teardown.stray_processes(layout.data_dir),
                                      layout.data_dir)
        layout.save(ready=False, supervisor_pid=os.getpid())
        await machines.ensure_bridge(layout)
        await asyncio.gather(*(machines.ensure_node(layout, n) for n in layout.nodes),
                             self._preload_busybox())
        async with contextlib.AsyncExitStack() as stack:
            self.server = await stack.enter_async_context(Supervised("server", self._server_argv()))
            await self._wait_for_server()
            stack.push_async_callback(self._stop_agents)
            for node in layout.nodes:
                await self._start_agent(node)
            await stack.enter_async_context(self._host_routes())
            runner = await self._control_socket()
            stack.push_async_callback(runner.cleanup)
            waits = [asyncio.create_task(self._mark_ready()),
                     asyncio.create_task(stop.wait()), asyncio.create_task(self._stop.wait())]
            await asyncio.wait(waits[1:], return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        layout.save(ready=False, stopped=True)
        return 0

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

    async def _preload_busybox(self) -> None:
        """busybox, busybox:latest and busybox:stable on every node, as `kind` clusters
        have their images, so that manifests written for Kubernetes run unchanged."""
        from kubelite.runtime.build import build_busybox_archive
        from kubelite.runtime.images import OCIImageStore

        archive = self.layout.data_dir / "images" / "busybox.tar"
        if not archive.exists():
            await asyncio.to_thread(build_busybox_archive, archive)

        async def load(node: NodeLayout) -> None:
            store = OCIImageStore(Path(node.root))
            for tag in BUSYBOX_TAGS:
                if await store.get(tag) is None:
                    await store.import_archive(str(archive), tag=tag)
        await asyncio.gather(*(load(n) for n in self.layout.nodes))

    async def _wait_for_server(self) -> None:
        layout = self.layout
        generated = layout.server_dir / "kubeconfig"
        while True:
            with contextlib.suppress(OSError):
                if generated.exists():
                    _, writer = await asyncio.open_connection("127.0.0.1", layout.port)
                    writer.close()
                    break
            await asyncio.sleep(0.05)
        # One stable path for users; agents are pointed at the gateway with --server.
        await asyncio.to_thread(shutil.copyfile, generated, layout.kubeconfig)
        os.chmod(layout.kubeconfig, 0o600)

    async def _start_agent(self, node: NodeLayout) -> None:
        await asyncio.to_thread(Path(node.root).mkdir, parents=True, exist_ok=True)
        agent = Supervised(node.name, self._agent_argv(node))
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

    async def _mark_ready(self) -> None:
        from kubelite.client import Client, load_kubeconfig
        from kubelite.client.api import find_resource

        config = await asyncio.to_thread(load_kubeconfig, self.layout.kubeconfig)
        want = {n.name for n in self.layout.nodes}
        async with Client(config, user_agent="kubelite-up") as client:
            while True:
                with contextlib.suppress(Exception):
                    nodes = (await client.list(find_resource("nodes"))).get("items") or []
                    ready = {n["metadata"]["name"] for n in nodes if any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (n.get("status") or {}).get("conditions") or [])}
                    if want <= ready:
                        break
                await asyncio.sleep(0.1)
        self.layout.save(ready=True, supervisor_pid=os.getpid())
        log.info("cluster %s ready", self.layout.name)

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
