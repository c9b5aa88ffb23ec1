"""The Endpoints controller: the legacy core/v1 Endpoints of every selector Service.

As Kubernetes' endpoints controller: one Endpoints object named as the Service;
ready pods under `addresses`, unready ones under `notReadyAddresses` (all under
`addresses` with publishNotReadyAddresses); terminating pods are left out
unless publishNotReadyAddresses; pods that resolve named target ports alike
share a subset. Selector-less Services keep the Endpoints their users write.
"""

from __future__ import annotations

from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import (
    AlreadyExists,
    Client,
    Controller,
    InformerFactory,
    NotFound,
    object_key,
)
from kubelite.client.errors import Conflict
from kubelite.controllers import podutil
from kubelite.controllers.endpointslice import (
    PODS,
    SERVICES,
    endpoint_ports,
    hostname_of,
    selects,
    service_keys_for_pod,
    should_be_endpoint,
)

Obj = dict[str, Any]
ENDPOINTS = lookup("", "v1", "endpoints")
HEADLESS_LABEL = "service.kubernetes.io/headless"


def _address(svc: Obj, pod: Obj) -> Obj:
    meta = pod["metadata"]
    addr: Obj = {"ip": pod["status"]["podIP"],
                 "targetRef": {"kind": "Pod", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]}}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    hostname = hostname_of(svc, pod)
    if hostname:
        addr["hostname"] = hostname
    return addr


def desired_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    pna = bool(svc["spec"].get("publishNotReadyAddresses"))
    groups: dict[tuple, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not selects(svc, pod) or not should_be_endpoint(pod, include_terminating=pna):
            continue
        ports = endpoint_ports(svc, pod)
        if ports is None:
            continue
        ready, unready = groups.setdefault(ports, ([], []))
        (ready if pna or podutil.is_ready(pod) else unready).append(_address(svc, pod))
    subsets = []
    for ports, (ready, unready) in sorted(groups.items(), key=lambda kv: kv[0]):
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: a["ip"])
        if unready:
            subset["notReadyAddresses"] = sorted(unready, key=lambda a: a["ip"])
        if ports:
            subset["ports"] = [{"name": n, "port": p, "protocol": proto,
                                **({"appProtocol": app} if app else {})}
                               for n, p, proto, app in ports]
        subsets.append(subset)
    return subsets


class EndpointsController(Controller):
    name = "endpoints-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        assert ENDPOINTS is not None and PODS is not None and SERVICES is not None
        self.client = client
        self.services = self.watch(factory.informer(SERVICES))
        self.pods = factory.informer(PODS)
        self.pods.add_handlers(on_add=self._pod_changed, on_update=self._pod_changed,
                               on_delete=self._pod_changed)
        self._track(self.pods)
        self.endpoints = self.watch(factory.informer(ENDPOINTS))

    def _pod_changed(self, *pods: Obj) -> None:
        for pod in pods:
            ns = pod["metadata"].get("namespace", "")
            for key in service_keys_for_pod(self.services.by_index("namespace", ns), pod):
                self.queue.add(key)

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        ns, _, name = key.partition("/")
        if svc is None:
            if current is not None:
                try:
                    await self.client.delete(ENDPOINTS, name, ns)
                except NotFound:
                    pass
            return
        if not svc["spec"].get("selector") or svc["spec"].get("type") == "ExternalName":
            return
        subsets = desired_subsets(svc, self.pods.by_index("namespace", ns))
        labels = dict(svc["metadata"].get("labels") or {})
        if svc["spec"].get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        body: Obj = {"apiVersion": "v1", "kind": "Endpoints", "subsets": subsets}
        if current is None:
            body["metadata"] = {"name": name, "namespace": ns, "labels": labels}
            try:
                await self.client.create(ENDPOINTS, body, ns)
            except AlreadyExists:
                self.queue.add_after(key, 0.1)
            return
        if (current.get("subsets") or []) == subsets and (
                current["metadata"].get("labels") or {}) == labels:
            return
        body["metadata"] = {**current["metadata"], "labels": labels}
        try:
            await self.client.update(ENDPOINTS, body)
        except (NotFound, Conflict):
            self.queue.add_after(object_key(svc), 0.1)
