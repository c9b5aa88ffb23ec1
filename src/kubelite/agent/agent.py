"""The node agent role (kubelite's kubelet): `async def run(config, stop=...)`.

Start order, each step needing the ones before; stop is the reverse:

    HTTPS endpoint  -> its port goes into the Node's daemonEndpoints
    Node            -> registered with capacity, nodeInfo, conditions
    Lease           -> heartbeat, owned by the Node
    node status     -> periodic condition reports
    object source   -> ConfigMap / Secret / Service informers for pods
    pods            -> informer on spec.nodeName, adoption and sweep, workers, relist

Stopping the agent leaves containers running: a new agent adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from kubelite.agent import stats, streaming
from kubelite.agent.apiclient import AgentClient
from kubelite.agent.config import AgentConfig
from kubelite.agent.context import PodContext
from kubelite.agent.events import QueuedRecorder
from kubelite.agent.fencing import SelfFencing, resume_pods
from kubelite.agent.lease import LeaseHeartbeat
from kubelite.agent.localpath import LocalPathSweeper
from kubelite.agent.node import NodeStatus, detect_ip
from kubelite.agent.podmanager import PodManager
from kubelite.agent.pull import ImagePuller
from kubelite.agent.refs import InformerSource
from kubelite.agent.sandbox import read_resolv_conf
from kubelite.agent.server import AgentServer
from kubelite.agent.stats import StatsCollector
from kubelite.agent.tls import Authenticator, server_context, serving_files
from kubelite.agent.volumes import VolumeManager
from kubelite.client import Client, EventRecorder
from kubelite.network.node import NodeNetwork
from kubelite.network.policy import PolicyEnforcer
from kubelite.network.proxy import ServiceProxy
from kubelite.runtime.base import ContainerRuntime, ImageStore
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)


class Agent:
    """The agent's parts, wired; `async with Agent(...)` runs them until exit."""

    def __init__(self, config: AgentConfig, *, client: Client, runtime: ContainerRuntime,
                 images: ImageStore, serve: bool = True) -> None:
        self.network = NodeNetwork(client, node_name=config.node_name,
                                   cluster_cidr=config.cluster_cidr, root=config.root,
                                   runtime=runtime) if config.cluster_cidr else None
        if self.network is not None:
            runtime = self.network.runtime  # sandboxes get attached to the pod network
        self.config = config
        self.client = client
        self.runtime = runtime
        self.images = images
        self.recorder = QueuedRecorder(
            EventRecorder(client, component="kubelet", host=config.node_name))
        self.node = NodeStatus(client, config, runtime, images, self.recorder)
        self.lease = LeaseHeartbeat(client, config.node_name, interval=config.lease_interval)
        self.fencing = SelfFencing(runtime=runtime, timeout=config.fencing_timeout,
                                   on_fence=self._fence, on_recover=self._recover)
        self.lease.on_renewed = self.fencing.renewed
        self.source = InformerSource(client, on_change=self._object_changed)
        self.volumes = VolumeManager(pods_dir=config.pods_dir, client=client, source=self.source,
                                     host_ip=self.node.host_ip, allocatable=self.node.allocatable)
        self.ctx = PodContext(config=config, client=client, runtime=runtime, images=images,
                              recorder=self.recorder, source=self.source, volumes=self.volumes,
                              puller=ImagePuller(images, self.recorder),
                              host_ip=self.node.host_ip, allocatable=self.node.allocatable)
        self.pods = PodManager(self.ctx)
        self.stats = StatsCollector(runtime, node_name=config.node_name)
        self.local_path = LocalPathSweeper(client, node_name=config.node_name,
                                           root=config.root / "local-path")
        self.proxy = ServiceProxy(client, node_name=config.node_name) if (
            config.service_proxy) else None
        # NetworkPolicy needs the pods' traffic to cross this namespace's forward
        # hook, so it runs where the service proxy does: in a node namespace of its own.
        self.policy = PolicyEnforcer(client, node_name=config.node_name) if (
            config.service_proxy) else None
        self.server: AgentServer | None = None
        self._serve = serve
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    def _object_changed(self, kind: str, namespace: str, name: str) -> None:
        self.pods.object_changed(kind, namespace, name)

    async def start(self) -> None:
        config = self.config
        await asyncio.to_thread(config.pods_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(config.logs_dir.mkdir, parents=True, exist_ok=True)
        if not self.node.ip:
            self.node.ip = await asyncio.to_thread(detect_ip)
        self.ctx.host_dns = await asyncio.to_thread(read_resolv_conf)
        if self._serve:
            cert, key = await serving_files(config, self.node.ip)
            ssl_context = await asyncio.to_thread(server_context, cert, key, config.client.ca_data)
            self.server = AgentServer(pods=self.pods, runtime=self.runtime,
                                      host=config.listen_host, port=config.port,
                                      ssl_context=ssl_context,
                                      authenticator=Authenticator(self.client,
                                                                  node_name=config.node_name))
            streaming.install(self.server)
            stats.install(self.server, self.stats)
            await self.server.start()
            self.config = config = replace(config, port=self.server.port)
            self.node.config = self.ctx.config = config
        self.recorder.start()
        node = await self.node.register()
        self.lease.node_uid = node["metadata"].get("uid", "")
        await self.lease.renew()
        await self.local_path.start()
        if self.network is not None:
            await self.network.start()
        self._tasks = [asyncio.create_task(self.lease.run(), name="node lease"),
                       asyncio.create_task(self.node.run(), name="node status"),
                       asyncio.create_task(self.stats.run(), name="resource usage")]
        await self.source.start()
        if self.proxy is not None:
            await self.proxy.start()
        if self.policy is not None:
            await self.policy.start()
        await self.pods.start()
        self._tasks.append(asyncio.create_task(self.fencing.run(), name="self-fencing"))
        self.ready.set()
        log.info("node agent %s ready", config.node_name)

    async def _fence(self) -> None:
        await self.pods.stop()

    async def _recover(self) -> None:
        await resume_pods(self.pods)
        # The controller wrote Ready=Unknown meanwhile: report, even if unchanged here.
        await self.node._write(await self.node.status(), force=True)

    async def stop(self) -> None:
        await self.pods.stop()
        if self.network is not None:
            await self.network.stop()
        if self.policy is not None:
            await self.policy.stop()
        if self.proxy is not None:
            await self.proxy.stop()
        await self.local_path.stop()
        await self.source.stop()
        await cancelled(*self._tasks)
        if self.server is not None:
            await self.server.stop()
        await self.recorder.stop()

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def open_runtime(config: AgentConfig) -> tuple[ContainerRuntime, ImageStore]:
    """The real runtime and image store under the agent's root."""
    from kubelite.runtime.images import OCIImageStore
    from kubelite.runtime.runc import RuncRuntime

    images = OCIImageStore(config.root)
    options = {"cgroup_root": config.cgroup_root} if config.cgroup_root else {}
    runtime = await RuncRuntime.open(config.root / "runtime", images=images,
                                     runtime=config.runtime, **options)
    return runtime, images


async def run(config: AgentConfig, *, stop: asyncio.Event,
              runtime: ContainerRuntime | None = None, images: ImageStore | None = None) -> int:
    """Run the agent until `stop` is set."""
    if runtime is None or images is None:
        runtime, images = await open_runtime(config)
    async with AgentClient(config.client,
                           user_agent=f"kubelite-agent/{config.node_name}") as client:
        if not await _api_answers(client, stop):
            return 0
        async with Agent(config, client=client, runtime=runtime, images=images):
            await stop.wait()
    return 0


async def _api_answers(client: Client, stop: asyncio.Event) -> bool:
    """Wait for the API server, as kubelet does at start: `kubelite up` starts the
    agents beside the server, not after it. False when stopped first."""
    from kubelite.client.errors import ClientError

    while not stop.is_set():
        try:
            await client.request("GET", "/readyz", raw=True)
            return True
        except ClientError as e:
            log.debug("waiting for the API server: %s", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return False
