"""Informers: a list + watch mirror of one resource in an indexed in-memory cache.

An Informer lists the resource, then watches from the list's resourceVersion
with bookmarks. A dropped or timed-out watch resumes from the last
resourceVersion seen; 410 Gone (history compacted) relists, and objects that
vanished meanwhile are reported as deletions carrying their last known state.
Errors back off exponentially with jitter (0.8 s doubling to 30 s, as
client-go's reflector).

Objects handed out by the cache and to handlers are shared by every reader:
never mutate them; `copy.deepcopy` before changing one for a write.

Handlers are plain (non-async) callables run on the event loop in event order;
they should only enqueue work (see controller.py). An exception in a handler
is logged and does not stop the informer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from kubelite.api.registry import Resource
from kubelite.client.errors import ClientError, Gone
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]
AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj], None]

NAMESPACE_INDEX = "namespace"


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, key)


def index_by_namespace(obj: Obj) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def index_by_node_name(obj: Obj) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def index_by_controller_uid(obj: Obj) -> list[str]:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return [ref["uid"]]
    return []


class Cache:
    """Objects by key plus secondary indexes: index name -> value -> keys."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: index_by_namespace}
        self._indexers.update(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def by_index(self, name: str, value: str) -> list[Obj]:
        if name not in self._indexers:
            raise KeyError(f"no index named {name!r}")
        return [self._items[k] for k in self._indices[name].get(value, ())]

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        for name, fn in indexers.items():
            if name in self._indexers and self._indexers[name] is not fn:
                raise ValueError(f"index {name!r} already exists with another function")
            self._indexers[name] = fn
            self._indices[name] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    self._indices[name].setdefault(value, set()).add(key)

    def put(self, key: str, obj: Obj) -> Obj | None:
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indices[name].setdefault(value, set()).add(key)
        return old

    def pop(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


class _Handlers:
    def __init__(
        self,
        on_add: AddHandler | None,
        on_update: UpdateHandler | None,
        on_delete: DeleteHandler | None,
    ) -> None:
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete


class Informer:
    def __init__(
        self,
        client: Any,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync: float | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        watch_timeout: float = 300.0,
        backoff_initial: float = 0.8,
        backoff_max: float = 30.0,
        chunk_size: int = 500,
        transform: Callable[[Obj], Obj] | None = None,
    ) -> None:
        self.client = client
        # Applied to every object before it is cached or handed to handlers (as
        # client-go's SetTransform), e.g. to keep only metadata of objects whose
        # contents a controller never reads.
        self.transform = transform
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.chunk_size = chunk_size
        self.cache = Cache(indexers)
        # Set once the first list is in the cache and its handlers have run.
        self.has_synced = asyncio.Event()
        self._handlers: list[_Handlers] = []
        self._rv: str | None = None
        self._watch_events = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def last_resource_version(self) -> str | None:
        return self._rv

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def list(self) -> list[Obj]:
        return self.cache.list()

    def by_index(self, name: str, value: str) -> list[Obj]:
        return self.cache.by_index(name, value)

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.cache.add_indexers(indexers)

    def add_handlers(
        self,
        *,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None:
        """Register handlers; added to a running informer, they first get an add per cached object."""
        handlers = _Handlers(on_add, on_update, on_delete)
        self._handlers.append(handlers)
        if on_add is not None:
            for obj in self.cache.list():
                self._call(on_add, obj)

    def start(self) -> None:
        """Start listing and watching; idempotent, so informers can be shared."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._run(), name=f"informer {self._name}"))
        if self.resync:
            self._tasks.append(asyncio.create_task(self._resync_loop(self.resync)))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancelled(*tasks)

    @property
    def _name(self) -> str:
        return f"{self.res.group_resource}" + (f" in {self.namespace}" if self.namespace else "")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._watch_events = 0
            started = loop.time()
            clean = False
            try:
                if self._rv is None:
                    await self._relist()
                await self._watch()
                clean = True
            except Gone as e:
                log.info("informer %s: %s; relisting", self._name, e)
                self._rv = None
            except ClientError as e:
                log.warning("informer %s: %s", self._name, e)
            except Exception:
                # A malformed answer must not end the informer: log it and retry.
                log.exception("informer %s: unexpected error", self._name)
            # As client-go: a watch that ends at once without events counts as a
            # failure, so that a server closing every watch cannot make us spin.
            if self._watch_events or (clean and loop.time() - started >= 1.0):
                failures = 0
                continue
            failures += 1
            delay = min(self.backoff_initial * 2 ** (failures - 1), self.backoff_max)
            await asyncio.sleep(delay * (1 + random.random()))

    async def _relist(self) -> None:
        listed = await self.client.list_all(
            self.res,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            chunk_size=self.chunk_size,
        )
        fresh: dict[str, Obj] = {}
        for obj in listed.get("items") or []:
            # List items come without apiVersion/kind on the wire; handlers want them.
            obj.setdefault("apiVersion", self.res.api_version)
            obj.setdefault("kind", self.res.kind)
            if self.transform is not None:
                obj = self.transform(obj)
            fresh[object_key(obj)] = obj
        for key, obj in fresh.items():
            self._upsert(key, obj)
        for key in [k for k in self.cache.keys() if k not in fresh]:
            old = self.cache.pop(key)
            if old is not None:
                self._dispatch_delete(old)
        self._rv = (listed.get("metadata") or {}).get("resourceVersion") or None
        self.has_synced.set()

    async def _watch(self) -> None:
        """Watch from the last resourceVersion until the server ends the stream."""
        stream = self.client.watch(
            self.res,
            self.namespace,
            resource_version=self._rv,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            allow_bookmarks=True,
            timeout_seconds=int(self.watch_timeout * (1 + random.random())),
        )
        async with contextlib.aclosing(stream):
            async for type_, obj in stream:
                self._watch_events += 1
                self._apply(type_, obj)

    def _apply(self, type_: str, obj: Obj) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if self.transform is not None and type_ in ("ADDED", "MODIFIED", "DELETED"):
            obj.setdefault("apiVersion", self.res.api_version)
            obj.setdefault("kind", self.res.kind)
            obj = self.transform(obj)
        if type_ in ("ADDED", "MODIFIED"):
            obj.setdefault("apiVersion", self.res.api_version)
            obj.setdefault("kind", self.res.kind)
            self._upsert(object_key(obj), obj)
        elif type_ == "DELETED":
            obj.setdefault("apiVersion", self.res.api_version)
            obj.setdefault("kind", self.res.kind)
            self.cache.pop(object_key(obj))
            self._dispatch_delete(obj)
        elif type_ != "BOOKMARK":
            log.warning("informer %s: ignoring watch event of type %r", self._name, type_)
            return
        if rv:
            self._rv = rv

    def _upsert(self, key: str, obj: Obj) -> None:
        old = self.cache.put(key, obj)
        for h in self._handlers:
            if old is None:
                if h.on_add is not None:
                    self._call(h.on_add, obj)
            elif h.on_update is not None:
                self._call(h.on_update, old, obj)

    def _dispatch_delete(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("informer %s: event handler failed", self._name)

    async def _resync_loop(self, period: float) -> None:
        await self.has_synced.wait()
        while True:
            await asyncio.sleep(period)
            for obj in self.cache.list():
                for h in self._handlers:
                    if h.on_update is not None:
                        self._call(h.on_update, obj, obj)


def strip_managed_fields(obj: Obj) -> Obj:
    """An informer transform, as kube-scheduler and kube-controller-manager use: no
    component reads managedFields from its caches, and they are a third of a pod's
    memory there. An update sent without them keeps the stored ones."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class InformerFactory:
    """Shares one informer per (resource, namespace, selectors) among components;
    `transform` is applied to every object each of them caches."""

    def __init__(self, client: Any, *, resync: float | None = None,
                 transform: Callable[[Obj], Obj] | None = None) -> None:
        self.client = client
        self.resync = resync
        self.transform = transform
        self._informers: dict[tuple[Any, ...], Informer] = {}

    def informer(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
    ) -> Informer:
        key = (res, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(
                self.client,
                res,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                resync=self.resync,
                transform=self.transform,
            )
            self._informers[key] = inf
        if indexers:
            inf.add_indexers(indexers)
        return inf

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self) -> None:
        await asyncio.gather(*(inf.has_synced.wait() for inf in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
