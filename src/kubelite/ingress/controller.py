"""The ingress controller: API objects in, a routing table for the proxy out.

It watches Ingresses, IngressClasses, Services, EndpointSlices and TLS Secrets.
Any change enqueues one table key, so a burst of changes (a rollout moving
every endpoint) coalesces into one rebuild in the work queue; a rebuild is a
pure function of the caches (build.py) and ends with one atomic swap in the
proxy. Each Ingress it serves also gets its own key, whose sync writes
`status.loadBalancer.ingress` with the proxy's listen addresses.

Which Ingresses are served: those whose class (spec.ingressClassName, or the
legacy kubernetes.io/ingress.class annotation) is an IngressClass of this
controller, and those without a class unless a default IngressClass of another
controller exists (Kubernetes' admission would have given them that class).
The IngressClass `kubelite` is created at start, marked as the default, when
it does not exist; an existing one is left as the user made it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import AlreadyExists, Client, Conflict, Controller, InformerFactory, NotFound
from kubelite.client.informer import object_key
from kubelite.ingress.build import build_table, slice_service_key
from kubelite.ingress.proxy import IngressProxy

log = logging.getLogger(__name__)

Obj = dict[str, Any]
INGRESSES = lookup("networking.k8s.io", "v1", "ingresses")
INGRESS_CLASSES = lookup("networking.k8s.io", "v1", "ingressclasses")
SERVICES = lookup("", "v1", "services")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
SECRETS = lookup("", "v1", "secrets")

CLASS_NAME = "kubelite"
CONTROLLER_NAME = "kubelite.io/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SERVICE_INDEX = "service"
# Work-queue keys that are not `namespace/name` of an Ingress (those always hold a "/").
TABLE_KEY = ":table"
CLASS_KEY = ":class"


def default_ingress_class() -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": CLASS_NAME,
                         "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": CONTROLLER_NAME}}


def status_addresses(listen: Sequence[tuple[str, int]]) -> list[str]:
    """The listen IPs for status.loadBalancer: others before loopback, wildcards left out."""
    ips: list[str] = []
    for host, _ in listen:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not ip.is_unspecified and str(ip) not in ips:
            ips.append(str(ip))
    return sorted(ips, key=lambda i: ipaddress.ip_address(i).is_loopback)


def _slice_index(slice_: Obj) -> list[str]:
    key = slice_service_key(slice_)
    return [key] if key else []


class IngressController(Controller):
    name = "ingress-controller"

    def __init__(
        self,
        client: Client,
        factory: InformerFactory,
        *,
        proxy: IngressProxy,
        status_addresses: Sequence[str] = (),
    ) -> None:
        super().__init__(workers=2)
        assert None not in (INGRESSES, INGRESS_CLASSES, SERVICES, SLICES, SECRETS)
        self.client = client
        # The proxy whose table this controller owns.
        self.proxy = proxy
        # What status.loadBalancer.ingress says: the addresses clients use.
        self.status_addresses = tuple(status_addresses)
        self.ingresses = factory.informer(INGRESSES)
        self.classes = factory.informer(INGRESS_CLASSES)
        self.services = factory.informer(SERVICES)
        self.slices = factory.informer(SLICES, indexers={SERVICE_INDEX: _slice_index})
        # Only TLS Secrets are ever read: the field selector keeps the rest out of memory.
        self.secrets = factory.informer(SECRETS, field_selector="type=kubernetes.io/tls")
        self.watch(self.ingresses, key_fn=self._ingress_changed)
        self.watch(self.classes, key_fn=self._class_changed)
        for informer in (self.services, self.slices, self.secrets):
            self.watch(informer, key_fn=lambda _obj: TABLE_KEY)
        self.queue.add(CLASS_KEY)

    def _ingress_changed(self, ing: Obj) -> str:
        self.queue.add(TABLE_KEY)
        return object_key(ing)

    def _class_changed(self, _cls: Obj) -> str:
        for ing in self.ingresses.list():
            self.queue.add(object_key(ing))
        return TABLE_KEY

    def handles(self, ing: Obj) -> bool:
        meta = ing.get("metadata") or {}
        name = ((ing.get("spec") or {}).get("ingressClassName")
                or (meta.get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION))
        if name:
            cls = self.classes.get(name)
            if cls is None:
                return name == CLASS_NAME
            return (cls.get("spec") or {}).get("controller") == CONTROLLER_NAME
        defaults = [c for c in self.classes.list()
                    if ((c.get("metadata") or {}).get("annotations") or {})
                    .get(DEFAULT_CLASS_ANNOTATION) == "true"]
        return not defaults or any((c.get("spec") or {}).get("controller") == CONTROLLER_NAME
                                   for c in defaults)

    async def sync(self, key: str) -> None:
        if key == TABLE_KEY:
            await self._rebuild()
        elif key == CLASS_KEY:
            await self._ensure_class()
        else:
            await self._sync_status(key)

    async def _rebuild(self) -> None:
        table = build_table(
            [i for i in self.ingresses.list() if self.handles(i)],
            service=self.services.get,
            slices=lambda key: self.slices.by_index(SERVICE_INDEX, key),
            secret=self.secrets.get,
        )
        await self.proxy.update(table)

    async def _ensure_class(self) -> None:
        if self.classes.get(CLASS_NAME) is not None:
            return
        try:
            await self.client.create(INGRESS_CLASSES, default_ingress_class())
            log.info("created the default IngressClass %r", CLASS_NAME)
        except AlreadyExists:
            pass

    async def _sync_status(self, key: str) -> None:
        ing = self.ingresses.get(key)
        if ing is None or not self.handles(ing) or not self.status_addresses:
            return
        want = [{"ip": ip} for ip in self.status_addresses]
        status = ing.get("status") or {}
        if (status.get("loadBalancer") or {}).get("ingress") == want:
            return
        try:
            await self.client.update_status(
                INGRESSES, {**ing, "status": {**status, "loadBalancer": {"ingress": want}}})
        except (Conflict, NotFound):
            # The cache is behind; the informer event that follows brings the key back.
            self.queue.add_after(key, 0.1)
