"""A node agent's part of the pod network, in the agent's network namespace:

    masquerade   forwarding on, pods' traffic leaving the cluster CIDR NATed (kubelite-net)
    routes       a route per peer node's podCIDR (routes.py), which also learns our own
    CNI          the runtime wrapped so that sandboxes are attached (sandboxes.py),
                 configured once the control plane has given this node its podCIDR
    sweep        IPAM reservations of sandboxes that are gone, at start and periodically

Stopping leaves all of it in place for the pods that keep running; `kubelite
down` removes the node's namespace and everything in it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kubelite.network import masquerade
from kubelite.network.cni import CNIError
from kubelite.network.podnet import BRIDGE, PodNetwork
from kubelite.network.routes import RouteSyncer
from kubelite.network.sandboxes import NetworkedRuntime
from kubelite.runtime.base import ContainerRuntime
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

SWEEP_PERIOD = 60.0


class NodeNetwork:
    def __init__(self, client: Any, *, node_name: str, cluster_cidr: str, root: Path,
                 runtime: ContainerRuntime, bridge: str = BRIDGE,
                 sweep_period: float = SWEEP_PERIOD) -> None:
        self.cluster_cidr = cluster_cidr
        self.pods = PodNetwork(root / "network", bridge=bridge)
        self.routes = RouteSyncer(client, cluster_cidr=cluster_cidr, node_name=node_name)
        # What the agent uses as its runtime.
        self.runtime = NetworkedRuntime(runtime, self.pods)
        self.sweep_period = sweep_period
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await masquerade.install(self.cluster_cidr)
        await self.routes.start()
        self._tasks = [asyncio.create_task(self._configure(), name="pod network config"),
                       asyncio.create_task(self._sweep_loop(), name="pod network sweep")]

    async def stop(self) -> None:
        await cancelled(*self._tasks)
        self._tasks = []
        await self.routes.stop()

    async def _configure(self) -> None:
        await self.routes.pod_cidr_assigned.wait()
        self.pods.configure(self.routes.pod_cidr)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                released = await self.runtime.sweep_network()
                if released:
                    log.info("released the pod network of %d sandboxes that are gone", released)
            except (CNIError, OSError) as e:
                log.warning("pod network sweep failed: %s", e)
            await asyncio.sleep(self.sweep_period)
