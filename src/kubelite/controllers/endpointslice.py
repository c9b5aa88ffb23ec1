"""The EndpointSlice controller: a Service's selected pods as discovery.k8s.io/v1 slices.

As Kubernetes' endpointslice controller: every pod matching the selector that
has an IP and is not finished is an endpoint; `ready` is the pod's Ready
condition (always true with publishNotReadyAddresses, never for a terminating
pod otherwise), `serving` is Ready regardless of termination, `terminating`
is the deletion mark. Named target ports are resolved per pod, so pods that
resolve them differently land in different slices. Slices carry the
`kubernetes.io/service-name` label and are owned by the Service; a Service
without a selector is left alone (its slices are the user's). At most
MAX_ENDPOINTS per slice; endpoints stay in the slice that holds them, so that
one pod's change rewrites one slice.

The pod-to-endpoint rules are shared with the legacy Endpoints controller.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, Controller, InformerFactory, NotFound, object_key
from kubelite.client.errors import Conflict
from kubelite.controllers import podutil

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
SERVICES = lookup("", "v1", "services")
ENDPOINTSLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS = 100
UNSEEN_TIMEOUT = 5.0


# ---- rules shared with the Endpoints controller ---------------------------------------


def selects(svc: Obj, pod: Obj) -> bool:
    selector = (svc.get("spec") or {}).get("selector")
    if not selector:
        return False
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def should_be_endpoint(pod: Obj, *, include_terminating: bool) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def resolve_port(pod: Obj, port: Obj) -> int | None:
    """The pod's port for a Service port: a number as is, a name looked up in the pod's
    containers (None when the pod has no such port: it is no endpoint for it)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for cport in container.get("ports") or []:
            if cport.get("name") == target and cport.get("protocol", "TCP") == protocol:
                return cport.get("containerPort")
    return None


def endpoint_ports(svc: Obj, pod: Obj) -> tuple[tuple[str, int, str, str | None], ...] | None:
    """(name, port, protocol, appProtocol) per Service port for this pod, or None if a
    named port does not resolve on it."""
    out = []
    for port in (svc.get("spec") or {}).get("ports") or []:
        number = resolve_port(pod, port)
        if number is None:
            return None
        out.append((port.get("name") or "", number, port.get("protocol", "TCP"),
                    port.get("appProtocol")))
    return tuple(out)


def hostname_of(svc: Obj, pod: Obj) -> str | None:
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        return spec["hostname"]
    return None


def service_keys_for_pod(services: list[Obj], *pods: Obj) -> set[str]:
    return {object_key(s) for s in services for p in pods if selects(s, p)}


# ---- the controller -------------------------------------------------------------------


def _endpoint(svc: Obj, pod: Obj, zone: str | None) -> Obj:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    pna = bool(svc["spec"].get("publishNotReadyAddresses"))
    serving = podutil.is_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    ready = pna or (serving and not terminating)
    status = pod.get("status") or {}
    ips = [p["ip"] for p in status.get("podIPs") or [] if ":" not in p.get("ip", "")]
    ep: Obj = {
        "addresses": ips[:1] or [status["podIP"]],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                      "uid": meta["uid"]},
    }
    hostname = hostname_of(svc, pod)
    if hostname:
        ep["hostname"] = hostname
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    if zone:
        ep["zone"] = zone
    return ep


def _ports_json(ports: tuple[tuple[str, int, str, str | None], ...]) -> list[Obj]:
    out = []
    for name, number, protocol, app in ports:
        port: Obj = {"name": name, "port": number, "protocol": protocol}
        if app:
            port["appProtocol"] = app
        out.append(port)
    return out


def _ports_key(ports: list[Obj] | None) -> tuple:
    return tuple((p.get("name") or "", p.get("port"), p.get("protocol", "TCP"),
                  p.get("appProtocol")) for p in ports or [])


def _uid_of(ep: Obj) -> str:
    return (ep.get("targetRef") or {}).get("uid", "")


class EndpointSliceController(Controller):
    name = "endpointslice-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=4)
        assert PODS and NODES and SERVICES and ENDPOINTSLICES
        self.client = client
        self.services = self.watch(factory.informer(SERVICES))
        self.pods = factory.informer(PODS)
        self.pods.add_handlers(on_add=self._pod_changed,
                               on_update=self._pod_changed, on_delete=self._pod_changed)
        self._track(self.pods)
        # Zones come from nodes; a zone label change is rare enough to wait for the next sync.
        self.nodes = factory.informer(NODES)
        self._track(self.nodes)
        self.slices = self.watch(factory.informer(ENDPOINTSLICES), key_fn=self._slice_owner)
        # Slices this controller wrote that its cache has not shown yet, per Service
        # key, as name -> (resourceVersion, give-up time): syncing on a cache without
        # them would create duplicates or write stale versions (Kubernetes'
        # endpointSliceTracker). A slice deleted before it was seen is given up on.
        self._unseen: dict[str, dict[str, tuple[int, float]]] = {}

    def _pod_changed(self, *pods: Obj) -> None:
        for pod in pods:
            ns = pod["metadata"].get("namespace", "")
            for key in service_keys_for_pod(self.services.by_index("namespace", ns), pod):
                self.queue.add(key)

    @staticmethod
    def _slice_owner(slice_: Obj) -> str | None:
        labels = slice_["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or SERVICE_NAME_LABEL not in labels:
            return None
        return f"{slice_['metadata']['namespace']}/{labels[SERVICE_NAME_LABEL]}"

    def _zone(self, node_name: str | None) -> str | None:
        node = self.nodes.get(node_name) if node_name else None
        return ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)

    def _stale(self, key: str, existing: list[Obj]) -> bool:
        unseen = self._unseen.get(key)
        if not unseen:
            return False
        have = {s["metadata"]["name"]: int(s["metadata"]["resourceVersion"]) for s in existing}
        now = time.monotonic()
        for slice_name, (rv, give_up) in list(unseen.items()):
            if have.get(slice_name, -1) >= rv or now > give_up:
                del unseen[slice_name]
        if not unseen:
            del self._unseen[key]
            return False
        return True

    def _written(self, svc: Obj, stored: Obj) -> None:
        meta = stored["metadata"]
        self._unseen.setdefault(object_key(svc), {})[meta["name"]] = (
            int(meta["resourceVersion"]), time.monotonic() + UNSEEN_TIMEOUT)

    def _owned_slices(self, ns: str, name: str) -> list[Obj]:
        return [s for s in self.slices.by_index("namespace", ns)
                if self._slice_owner(s) == f"{ns}/{name}"]

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        ns, _, name = key.partition("/")
        existing = self._owned_slices(ns, name)
        if self._stale(key, existing):
            self.queue.add_after(key, 0.05)
            return
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            return  # the garbage collector removes owned slices
        if not svc["spec"].get("selector") or svc["spec"].get("type") == "ExternalName":
            for s in existing:
                await self._delete(s)
            return
        groups: dict[tuple, list[Obj]] = {}
        for pod in self.pods.by_index("namespace", ns):
            if not selects(svc, pod) or not should_be_endpoint(pod, include_terminating=True):
                continue
            ports = endpoint_ports(svc, pod)
            if ports is None:
                continue
            zone = self._zone((pod.get("spec") or {}).get("nodeName"))
            groups.setdefault(ports, []).append(_endpoint(svc, pod, zone))
        await self._reconcile(svc, groups, existing)

    async def _reconcile(self, svc: Obj, groups: dict[tuple, list[Obj]],
                         existing: list[Obj]) -> None:
        by_ports: dict[tuple, list[Obj]] = {}
        for s in sorted(existing, key=lambda s: s["metadata"]["name"]):
            by_ports.setdefault(_ports_key(s.get("ports")), []).append(s)
        if not groups:
            # A Service without endpoints still has one placeholder slice, as in Kubernetes.
            groups = {(): []}
        wanted: list[tuple[Obj | None, list[Obj], tuple]] = []
        for ports, endpoints in groups.items():
            endpoints.sort(key=lambda e: e["targetRef"]["name"])
            slices = by_ports.pop(ports, [])
            remaining = {_uid_of(e): e for e in endpoints}
            # Endpoints stay in the slice that holds them; newcomers fill up the gaps.
            for s in slices:
                kept = [remaining.pop(_uid_of(e)) for e in s.get("endpoints") or []
                        if _uid_of(e) in remaining]
                wanted.append((s, kept, ports))
            if not slices and not endpoints:
                wanted.append((None, [], ports))
            for ep in remaining.values():
                target = next((w for w in wanted if w[2] == ports and len(w[1]) < MAX_ENDPOINTS),
                              None)
                if target is None:
                    target = (None, [], ports)
                    wanted.append(target)
                target[1].append(ep)
        for slices in by_ports.values():
            for s in slices:
                await self._delete(s)
        has_any = False
        for current, endpoints, ports in wanted:
            if current is not None and not endpoints and (has_any or len(wanted) > 1):
                await self._delete(current)
                continue
            has_any = True
            await self._write(svc, current, endpoints, ports)

    async def _write(self, svc: Obj, current: Obj | None, endpoints: list[Obj],
                     ports: tuple) -> None:
        meta = svc["metadata"]
        labels = {**{k: v for k, v in (meta.get("labels") or {}).items()
                     if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)},
                  SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: MANAGED_BY}
        if svc["spec"].get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": _ports_json(ports),
        }
        owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
        if current is None:
            body["metadata"] = {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                                "labels": labels, "ownerReferences": [owner]}
            self._written(svc, await self.client.create(ENDPOINTSLICES, body, meta["namespace"]))
            return
        if (current.get("endpoints") or []) == endpoints and (
                current.get("ports") or []) == body["ports"] and (
                current["metadata"].get("labels") or {}) == labels:
            return
        body["metadata"] = {**current["metadata"], "labels": labels}
        try:
            self._written(svc, await self.client.update(ENDPOINTSLICES, body))
        except (NotFound, Conflict):
            self.queue.add(object_key(svc))

    async def _delete(self, slice_: Obj) -> None:
        meta = slice_["metadata"]
        try:
            await self.client.delete(ENDPOINTSLICES, meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            pass
