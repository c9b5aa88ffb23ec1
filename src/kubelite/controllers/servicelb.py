"""ServiceLB: LoadBalancer Services exposed on the nodes' own addresses, as k3s does.

k3s' ServiceLB runs a pod per node that forwards the Service's ports from the
node's address; kubelite's service proxy already accepts LoadBalancer ports on
every node address (network/proxy_rules.py), so what is left is the status:
`status.loadBalancer.ingress` lists the InternalIP of every Ready node. Services
with a `loadBalancerClass` belong to another implementation and are left alone.
"""

from __future__ import annotations

from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, Controller, InformerFactory, NotFound, object_key
from kubelite.client.errors import Conflict
from kubelite.controllers import podutil

Obj = dict[str, Any]
SERVICES = lookup("", "v1", "services")
NODES = lookup("", "v1", "nodes")


def node_address(node: Obj) -> str | None:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP":
            return addr.get("address")
    return None


def ingress_for(nodes: list[Obj]) -> list[Obj]:
    ips = {node_address(n) for n in nodes
           if podutil.is_ready(n) and not (n.get("spec") or {}).get("unschedulable")}
    return [{"ip": ip, "ipMode": "VIP"} for ip in sorted(i for i in ips if i)]


class ServiceLBController(Controller):
    name = "servicelb-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=1)
        assert SERVICES is not None and NODES is not None
        self.client = client
        self.services = self.watch(factory.informer(SERVICES))
        self.nodes = factory.informer(NODES)
        self.nodes.add_handlers(on_add=self._all, on_update=lambda old, new: self._all(new),
                                on_delete=self._all)
        self._track(self.nodes)

    def _all(self, _node: Obj) -> None:
        for svc in self.services.list():
            if (svc.get("spec") or {}).get("type") == "LoadBalancer":
                self.queue.add(object_key(svc))

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            return
        spec = svc.get("spec") or {}
        if spec.get("loadBalancerClass"):
            return
        status = dict(svc.get("status") or {})
        current = (status.get("loadBalancer") or {}).get("ingress") or []
        want = ingress_for(self.nodes.list()) if spec.get("type") == "LoadBalancer" else []
        if current == want:
            return
        status["loadBalancer"] = {"ingress": want} if want else {}
        try:
            await self.client.update_status(SERVICES, {**svc, "status": status})
        except (NotFound, Conflict):
            self.queue.add_after(key, 0.1)
