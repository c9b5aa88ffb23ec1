"""The ConfigMaps, Secrets and Services the node's pods use, mirrored by informers.

ConfigMaps and Secrets are watched per namespace, and only in namespaces where
pods of this node use one (reference-counted), so that a node holds no copy of
the rest of the cluster; kubelet's watch-based managers do the same per object.
A change wakes the pods that reference the object, which then refresh their
configMap/secret volumes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from kubelite.api import registry
from kubelite.client import Client, Informer

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Kind = Literal["configmaps", "secrets"]

CONFIGMAPS = registry.lookup("", "v1", "configmaps")
SECRETS = registry.lookup("", "v1", "secrets")
SERVICES = registry.lookup("", "v1", "services")


class ObjectSource(Protocol):
    """Where the agent reads the ConfigMaps and Secrets of its pods."""

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""

    async def services(self, namespace: str) -> list[Obj]:
        """The Services of `namespace` plus the `kubernetes` Service, for env links."""

    def acquire(self, namespace: str, pod_uid: str) -> None:
        """The pod needs objects of `namespace`: start watching it if not yet."""

    async def release(self, namespace: str, pod_uid: str) -> None:
        """The pod is gone: stop watching `namespace` when no other pod needs it."""


def pod_references(pod: Obj) -> set[tuple[Kind, str]]:
    """The (kind, name) of every ConfigMap and Secret the pod's volumes, env and
    pull secrets name."""
    spec = pod.get("spec") or {}
    out: set[tuple[Kind, str]] = set()
    for ref in spec.get("imagePullSecrets") or []:
        if ref.get("name"):
            out.add(("secrets", ref["name"]))
    for vol in spec.get("volumes") or []:
        if (cm := vol.get("configMap")) and cm.get("name"):
            out.add(("configmaps", cm["name"]))
        if (sec := vol.get("secret")) and sec.get("secretName"):
            out.add(("secrets", sec["secretName"]))
        for source in (vol.get("projected") or {}).get("sources") or []:
            if (cm := source.get("configMap")) and cm.get("name"):
                out.add(("configmaps", cm["name"]))
            if (sec := source.get("secret")) and sec.get("name"):
                out.add(("secrets", sec["name"]))
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in c.get("env") or []:
            source = env.get("valueFrom") or {}
            if (ref := source.get("configMapKeyRef")) and ref.get("name"):
                out.add(("configmaps", ref["name"]))
            if (ref := source.get("secretKeyRef")) and ref.get("name"):
                out.add(("secrets", ref["name"]))
        for env_from in c.get("envFrom") or []:
            if (ref := env_from.get("configMapRef")) and ref.get("name"):
                out.add(("configmaps", ref["name"]))
            if (ref := env_from.get("secretRef")) and ref.get("name"):
                out.add(("secrets", ref["name"]))
    return out


def _service_env_view(obj: Obj) -> Obj:
    # Env links need only a service's name, namespace, cluster IP and ports.
    spec = obj.get("spec") or {}
    return {"metadata": {"name": obj["metadata"]["name"],
                         "namespace": obj["metadata"].get("namespace"),
                         "resourceVersion": obj["metadata"].get("resourceVersion")},
            "spec": {"clusterIP": spec.get("clusterIP"), "ports": spec.get("ports") or []}}


class InformerSource:
    """ObjectSource over per-namespace informers, started on first use."""

    def __init__(self, client: Client, *, on_change: Callable[[Kind, str, str], None]) -> None:
        self.client = client
        # Called with (kind, namespace, name) when a watched object changes.
        self.on_change = on_change
        self._informers: dict[tuple[Kind, str], Informer] = {}
        # namespace -> pod uids holding it open
        self._users: dict[str, set[str]] = {}
        self._services = Informer(client, SERVICES, transform=_service_env_view)

    def start(self) -> None:
        self._services.start()

    def acquire(self, namespace: str, pod_uid: str) -> None:
        users = self._users.setdefault(namespace, set())
        if users:
            users.add(pod_uid)
            return
        users.add(pod_uid)
        for kind, res in (("configmaps", CONFIGMAPS), ("secrets", SECRETS)):
            inf = Informer(self.client, res, namespace=namespace)
            inf.add_handlers(
                on_add=lambda o, k=kind: self._changed(k, o),
                on_update=lambda _old, o, k=kind: self._changed(k, o),
                on_delete=lambda o, k=kind: self._changed(k, o))
            inf.start()
            self._informers[(kind, namespace)] = inf  # type: ignore[index]

    async def release(self, namespace: str, pod_uid: str) -> None:
        users = self._users.get(namespace)
        if users is None:
            return
        users.discard(pod_uid)
        if users:
            return
        del self._users[namespace]
        await asyncio.gather(*(inf.stop() for inf in self._pop_informers(namespace)))

    def _pop_informers(self, namespace: str) -> Iterable[Informer]:
        for kind in ("configmaps", "secrets"):
            inf = self._informers.pop((kind, namespace), None)  # type: ignore[arg-type]
            if inf is not None:
                yield inf

    def _changed(self, kind: Kind, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        self.on_change(kind, meta.get("namespace", ""), meta.get("name", ""))

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        inf = self._informers.get((kind, namespace))
        if inf is None:
            raise LookupError(f"namespace {namespace!r} is not watched: acquire() it first")
        await inf.has_synced.wait()
        return inf.get(f"{namespace}/{name}")

    async def services(self, namespace: str) -> list[Obj]:
        # As kubelet, containers wait for a first read rather than start without links.
        await self._services.has_synced.wait()
        return [s for s in self._services.list()
                if s["metadata"].get("namespace") == namespace
                or (s["metadata"].get("namespace") == "default"
                    and s["metadata"]["name"] == "kubernetes")]

    async def stop(self) -> None:
        informers = [self._services, *self._informers.values()]
        self._informers.clear()
        self._users.clear()
        await asyncio.gather(*(inf.stop() for inf in informers))
