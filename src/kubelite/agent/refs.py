"""The ConfigMaps, Secrets and Services the node's pods use.

ConfigMaps and Secrets follow kubelet's default "Watch" change-detection
strategy: one watch per referenced object (in its namespace, with the field
selector `metadata.name=NAME`, the only list and watch the Node authorizer
grants a node), started when the first pod referencing the object registers and
stopped when the last one goes. A change wakes the pods that reference the
object, which then refresh their configMap/secret volumes and env.

Over HTTP/1.1 every running watch holds a connection (and its TLS buffers), so
the object watches get a pool of their own, never starving the lease and status
writes of the agent's main pool, and at most `max_watches` of them run. An
object referenced beyond that budget is read with a GET that is cached for
`poll_ttl` seconds, as kubelet's "Cache" strategy does; pods see its changes on
their periodic resync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from kubelite.agent.apiclient import MAX_IN_FLIGHT, AgentClient
from kubelite.agent.envs import ContainerConfigError
from kubelite.api import registry
from kubelite.api.registry import Resource
from kubelite.client import Client, ClientError, Informer, NotFound

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Kind = Literal["configmaps", "secrets"]
# (kind, namespace, name) of one referenced object.
Ref = tuple[Kind, str, str]

CONFIGMAPS = registry.lookup("", "v1", "configmaps")
SECRETS = registry.lookup("", "v1", "secrets")
SERVICES = registry.lookup("", "v1", "services")
MAX_WATCHES = 64
POLL_TTL = 60.0
# How long a read waits for an object's first list before the pod is told to retry.
SYNC_TIMEOUT = 10.0


class ObjectSource(Protocol):
    """Where the agent reads the ConfigMaps and Secrets of its pods."""

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist; only objects of registered
        pods can be read (LookupError otherwise)."""

    async def services(self, namespace: str) -> list[Obj]:
        """The Services of `namespace` plus the `kubernetes` Service, for env links."""

    def acquire(self, pod: Obj) -> None:
        """Register the pod's references; again after a change of the pod adds the
        new ones (ephemeral containers)."""

    async def release(self, pod_uid: str) -> None:
        """The pod is gone: stop reading what no other pod references."""


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
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
                  *(spec.get("ephemeralContainers") or [])]
    for c in containers:
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


def _resource(kind: Kind) -> Resource:
    res = CONFIGMAPS if kind == "configmaps" else SECRETS
    assert res is not None
    return res


def _sync_failed(kind: Kind) -> ContainerConfigError:
    # kubelet's words for the same wait.
    return ContainerConfigError(f"failed to sync {kind[:-1]} cache: timed out waiting for "
                                "the condition")


class _Watched:
    """One object mirrored by an informer on its name."""

    def __init__(self, client: Client, ref: Ref, on_change: Callable[[Kind, str, str], None]
                 ) -> None:
        kind, namespace, name = ref
        self.ref = ref
        self.informer = Informer(client, _resource(kind), namespace=namespace,
                                 field_selector=f"metadata.name={name}")

        def updated(old: Obj, new: Obj) -> None:
            # A relist after a broken watch "updates" the object unchanged.
            if _rv(old) != _rv(new):
                on_change(*ref)

        self.informer.add_handlers(on_add=lambda _o: on_change(*ref), on_update=updated,
                                   on_delete=lambda _o: on_change(*ref))

    def start(self) -> None:
        self.informer.start()

    async def get(self, timeout: float) -> Obj | None:
        kind, namespace, name = self.ref
        try:
            await asyncio.wait_for(self.informer.has_synced.wait(), timeout)
        except TimeoutError:
            raise _sync_failed(kind) from None
        return self.informer.get(f"{namespace}/{name}")

    async def stop(self) -> None:
        await self.informer.stop()


class _Polled:
    """One object read with a GET, cached for `ttl` seconds."""

    def __init__(self, client: Client, ref: Ref, ttl: float) -> None:
        self.client = client
        self.ref = ref
        self.ttl = ttl
        # (monotonic time read, object or None when absent)
        self._cached: tuple[float, Obj | None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        return None

    async def get(self, timeout: float) -> Obj | None:
        kind, namespace, name = self.ref
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
            try:
                obj: Obj | None = await asyncio.wait_for(
                    self.client.get(_resource(kind), name, namespace), timeout)
            except NotFound:
                obj = None
            except (ClientError, TimeoutError) as e:
                if self._cached is not None:
                    log.info("reading %s %s/%s failed (%s); using the last copy", kind,
                             namespace, name, e)
                    return self._cached[1]
                raise _sync_failed(kind) from e
            self._cached = (now, obj)
            return obj

    async def stop(self) -> None:
        return None


def _rv(obj: Obj) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class InformerSource:
    """ObjectSource with one watch per referenced object, up to `max_watches`."""

    def __init__(self, client: Client, *, on_change: Callable[[Kind, str, str], None],
                 max_watches: int = MAX_WATCHES, poll_ttl: float = POLL_TTL,
                 sync_timeout: float = SYNC_TIMEOUT) -> None:
        self.client = client
        # Called with (kind, namespace, name) when a watched object changes.
        self.on_change = on_change
        self.max_watches = max_watches
        self.poll_ttl = poll_ttl
        self.sync_timeout = sync_timeout
        # The object watches' own pool: the watches plus a few lists and GETs.
        self.objects_client = AgentClient(client.config, user_agent=f"{client.user_agent} objects",
                                          connection_limit=max_watches + MAX_IN_FLIGHT)
        self._entries: dict[Ref, _Watched | _Polled] = {}
        # ref -> uids of the pods that reference it
        self._users: dict[Ref, set[str]] = {}
        # pod uid -> its refs
        self._pods: dict[str, set[Ref]] = {}
        self._services = Informer(client, SERVICES, transform=_service_env_view)

    @property
    def watching(self) -> int:
        """How many objects have a watch of their own."""
        return sum(isinstance(e, _Watched) for e in self._entries.values())

    async def start(self) -> None:
        await self.objects_client.open()
        self._services.start()

    def acquire(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid, namespace = meta["uid"], meta.get("namespace") or "default"
        refs = {(kind, namespace, name) for kind, name in pod_references(pod)}
        held = self._pods.setdefault(uid, set())
        for ref in refs - held:
            users = self._users.setdefault(ref, set())
            users.add(uid)
            if ref not in self._entries:
                entry = self._new_entry(ref)
                entry.start()
                self._entries[ref] = entry
        held |= refs

    def _new_entry(self, ref: Ref) -> _Watched | _Polled:
        if self.watching < self.max_watches:
            return _Watched(self.objects_client, ref, self.on_change)
        log.info("%s %s/%s: %d objects watched already; reading it every %.0f s instead",
                 ref[0], ref[1], ref[2], self.max_watches, self.poll_ttl)
        return _Polled(self.objects_client, ref, self.poll_ttl)

    async def release(self, pod_uid: str) -> None:
        gone: list[_Watched | _Polled] = []
        for ref in self._pods.pop(pod_uid, set()):
            users = self._users.get(ref)
            if users is None:
                continue
            users.discard(pod_uid)
            if not users:
                del self._users[ref]
                if (entry := self._entries.pop(ref, None)) is not None:
                    gone.append(entry)
        await asyncio.gather(*(entry.stop() for entry in gone))

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        entry = self._entries.get((kind, namespace, name))
        if entry is None:
            raise LookupError(f"{kind[:-1]} {namespace}/{name} is not referenced by a pod "
                              "registered with acquire()")
        return await entry.get(self.sync_timeout)

    async def services(self, namespace: str) -> list[Obj]:
        # As kubelet, containers wait for a first read rather than start without links.
        await self._services.has_synced.wait()
        return [s for s in self._services.list()
                if s["metadata"].get("namespace") == namespace
                or (s["metadata"].get("namespace") == "default"
                    and s["metadata"]["name"] == "kubernetes")]

    async def stop(self) -> None:
        entries = [*self._entries.values()]
        self._entries.clear()
        self._users.clear()
        self._pods.clear()
        await asyncio.gather(self._services.stop(), *(entry.stop() for entry in entries))
        await self.objects_client.close()
