"""The node's heartbeat: a coordination.k8s.io Lease named after the node in
kube-node-lease, owned by the Node, renewed every `interval` seconds.

Kubernetes renews every 10 s a lease of 40 s (renew at a quarter of the
duration); kubelite keeps that ratio at a 1 s default interval, so that the
node lifecycle controller can tell a lost node within seconds.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Any

from kubelite.api import registry
from kubelite.client import AlreadyExists, ClientError, Conflict, NotFound

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LEASES = registry.lookup("coordination.k8s.io", "v1", "leases")
NAMESPACE = "kube-node-lease"


def micro_time(when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseHeartbeat:
    def __init__(self, client: Any, node_name: str, *, interval: float = 1.0,
                 node_uid: str = "") -> None:
        self.client = client
        self.node_name = node_name
        self.interval = interval
        self.duration = max(math.ceil(interval * 4), 1)
        self.node_uid = node_uid
        # Told of every successful renewal (agent/fencing.py counts silence from it).
        self.on_renewed: Callable[[], None] | None = None
        self._lease: Obj | None = None

    def _fresh(self) -> Obj:
        lease: Obj = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": NAMESPACE},
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": self.duration,
                     "renewTime": micro_time()},
        }
        if self.node_uid:
            lease["metadata"]["ownerReferences"] = [{
                "apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self.node_uid}]
        return lease

    async def renew(self, *, retry: bool = True) -> Obj:
        """Renew once (creating the lease when missing); returns the stored lease."""
        if self._lease is None:
            try:
                self._lease = await self.client.get(LEASES, self.node_name, NAMESPACE)
            except NotFound:
                try:
                    self._lease = await self.client.create(LEASES, self._fresh(), NAMESPACE)
                    return self._lease
                except AlreadyExists:
                    self._lease = await self.client.get(LEASES, self.node_name, NAMESPACE)
        lease = copy.deepcopy(self._lease)
        spec = lease.setdefault("spec", {})
        spec.update(holderIdentity=self.node_name, leaseDurationSeconds=self.duration,
                    renewTime=micro_time())
        if self.node_uid and not lease["metadata"].get("ownerReferences"):
            lease["metadata"]["ownerReferences"] = self._fresh()["metadata"]["ownerReferences"]
        try:
            self._lease = await self.client.update(LEASES, lease, NAMESPACE)
        except (Conflict, NotFound):
            # Someone else wrote or deleted it: start over from the server's copy.
            self._lease = None
            if not retry:
                raise
            return await self.renew(retry=False)
        return self._lease

    async def run(self) -> None:
        while True:
            try:
                # Bounded, so that a request stuck on a cut network cannot hide a
                # healed one for the client's whole timeout.
                await asyncio.wait_for(self.renew(), self.duration)
            except (ClientError, TimeoutError) as e:
                log.warning("node lease renewal failed: %s", e or "timed out")
            else:
                if self.on_renewed is not None:
                    self.on_renewed()
            await asyncio.sleep(self.interval)
