"""The controller manager: every controller, as API clients sharing one informer factory.

`kubelite server` runs it in-process against its own API server; `kubelite
controller-manager` (a later issue) runs it alone. Either way it talks HTTPS.
"""

from __future__ import annotations

import asyncio
import logging

from kubelite.client import Client, InformerFactory, strip_managed_fields
from kubelite.controllers.cronjob import CronJobController
from kubelite.controllers.daemonset import DaemonSetController
from kubelite.controllers.deployment import DeploymentController
from kubelite.controllers.disruption import DisruptionController
from kubelite.controllers.endpoints import EndpointsController
from kubelite.controllers.endpointslice import EndpointSliceController
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.controllers.horizontalpodautoscaler import HorizontalPodAutoscalerController
from kubelite.controllers.job import JobController
from kubelite.controllers.localpath import LocalPathProvisioner
from kubelite.controllers.namespace import NamespaceController
from kubelite.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, NodeIPAMController
from kubelite.controllers.nodelifecycle import NodeLifecycleController
from kubelite.controllers.persistentvolume import PersistentVolumeController
from kubelite.controllers.podgc import PodGCController
from kubelite.controllers.replicaset import ReplicaSetController
from kubelite.controllers.serviceaccount import ServiceAccountController
from kubelite.controllers.servicelb import ServiceLBController
from kubelite.controllers.statefulset import StatefulSetController
from kubelite.scheduler.scheduler import Scheduler
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

CONTROLLERS = (GarbageCollector, NamespaceController, ServiceAccountController,
               ReplicaSetController, DeploymentController, HorizontalPodAutoscalerController,
               StatefulSetController, DaemonSetController, PersistentVolumeController,
               LocalPathProvisioner, EndpointSliceController, EndpointsController,
               ServiceLBController, NodeIPAMController, NodeLifecycleController,
               JobController, DisruptionController, PodGCController, CronJobController)


class ControllerManager:
    """`async with ControllerManager(client):` runs every controller until exit, and
    the default scheduler with them unless told not to (it shares their informers,
    which saves a second copy of every pod and node)."""

    def __init__(self, client: Client, *, scheduler: bool = True,
                 cluster_cidr: str = DEFAULT_CLUSTER_CIDR) -> None:
        self.client = client
        self.factory = InformerFactory(client, transform=strip_managed_fields)
        # The node IPAM controller alone takes an option (kube-controller-manager's --cluster-cidr).
        self.controllers = [cls(client, self.factory, cluster_cidr=cluster_cidr)
                            if cls is NodeIPAMController else cls(client, self.factory)
                            for cls in CONTROLLERS]
        self.scheduler = Scheduler(client, self.factory) if scheduler else None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.factory.start()
        self._tasks = [asyncio.create_task(c.run(), name=c.name) for c in self.controllers]
        if self.scheduler is not None:
            self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))

    async def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()
        await cancelled(*self._tasks)
        # Some controllers keep informers of their own beside the shared ones.
        await asyncio.gather(*(inf.stop() for c in self.controllers for inf in c.informers))
        await self.factory.stop()

    async def __aenter__(self) -> ControllerManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
