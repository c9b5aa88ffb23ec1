"""The garbage collector: ownerReferences turned into cascading deletion.

It keeps a graph of every object's owners (uid -> dependents) from informers on
all stored resources, and acts on three situations, as Kubernetes' GC does:
- an object whose owners are all gone is deleted (Background propagation);
- an owner being deleted with the `foregroundDeletion` finalizer has its
  dependents deleted first, and loses the finalizer when no dependent with
  `blockOwnerDeletion` remains;
- an owner being deleted with the `orphan` finalizer has its ownerReference
  removed from every dependent, then loses the finalizer.
Keys in the work queue are object uids.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from kubelite.api.registry import RESOURCES, Resource, by_kind
from kubelite.client import Client, Controller, Informer, InformerFactory, NotFound
from kubelite.client.errors import Conflict

log = logging.getLogger(__name__)
Obj = dict[str, Any]

# Events are never owners and rarely owned; watching them would only cost.
_SKIPPED = frozenset({"events"})


def collected_resources() -> list[Resource]:
    return [r for r in RESOURCES if r.stored and not r.stored_as and "watch" in r.verbs
            and r.plural not in _SKIPPED]


class GarbageCollector(Controller):
    name = "garbage-collector"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        self.client = client
        # uid -> (resource, object): the graph's nodes, from the informers.
        self.nodes: dict[str, tuple[Resource, Obj]] = {}
        # owner uid -> dependent uids: the graph's edges.
        self.dependents: dict[str, set[str]] = defaultdict(set)
        for res in collected_resources():
            # Its own informers, holding metadata only: the graph never reads specs,
            # and sharing full objects would keep every pod twice.
            informer = Informer(client, res, transform=metadata_only)
            informer.add_handlers(
                on_add=lambda obj, res=res: self._observe(res, obj),
                on_update=lambda old, new, res=res: self._observe(res, new),
                on_delete=lambda obj, res=res: self._forget(obj),
            )
            self._track(informer)

    # ---- graph maintenance (handlers only record and enqueue) --------------------

    def _observe(self, res: Resource, obj: Obj) -> None:
        meta = obj["metadata"]
        uid = meta["uid"]
        previous = self.nodes.get(uid)
        old_owners = _owner_uids(previous[1]) if previous else set()
        new_owners = _owner_uids(obj)
        for owner in old_owners - new_owners:
            self.dependents[owner].discard(uid)
            self.queue.add(owner)
        for owner in new_owners:
            self.dependents[owner].add(uid)
        self.nodes[uid] = (res, obj)
        if new_owners or meta.get("deletionTimestamp"):
            self.queue.add(uid)

    def _forget(self, obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        self.nodes.pop(uid, None)
        for owner in _owner_uids(obj):
            self.dependents[owner].discard(uid)
            self.queue.add(owner)
        for dependent in self.dependents.pop(uid, set()):
            self.queue.add(dependent)

    # ---- sync ----------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        res, obj = node
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if "orphan" in finalizers:
                await self._orphan_dependents(key)
                await self._remove_finalizer(res, obj, "orphan")
            elif "foregroundDeletion" in finalizers:
                if await self._delete_dependents_first(key):
                    await self._remove_finalizer(res, obj, "foregroundDeletion")
            return
        refs = meta.get("ownerReferences") or []
        if not refs:
            return
        dangling = [ref for ref in refs if not await self._owner_exists(obj, ref)]
        if len(dangling) == len(refs):
            await self._delete(res, obj, "Background")
        elif dangling:
            gone = {ref["uid"] for ref in dangling}
            await self._set_owner_refs(res, obj, [r for r in refs if r["uid"] not in gone])

    async def _owner_exists(self, dependent: Obj, ref: dict[str, Any]) -> bool:
        if ref.get("uid") in self.nodes:
            return True
        owner_res = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if owner_res is None:
            # An owner kind this server does not serve cannot be checked: keep it.
            return True
        namespace = dependent["metadata"].get("namespace") if owner_res.namespaced else None
        try:
            owner = await self.client.get(owner_res, ref["name"], namespace)
        except NotFound:
            return False
        return owner["metadata"].get("uid") == ref.get("uid")

    async def _orphan_dependents(self, owner_uid: str) -> None:
        for uid in list(self.dependents.get(owner_uid, ())):
            node = self.nodes.get(uid)
            if node is None:
                continue
            res, obj = node
            refs = obj["metadata"].get("ownerReferences") or []
            await self._set_owner_refs(res, obj, [r for r in refs if r.get("uid") != owner_uid])

    async def _delete_dependents_first(self, owner_uid: str) -> bool:
        """Delete the dependents; True once none that blocks the owner remains."""
        blocking = False
        for uid in list(self.dependents.get(owner_uid, ())):
            node = self.nodes.get(uid)
            if node is None:
                continue
            res, obj = node
            ref = next((r for r in obj["metadata"].get("ownerReferences") or []
                        if r.get("uid") == owner_uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking = True
            if not obj["metadata"].get("deletionTimestamp"):
                await self._delete(res, obj, "Foreground")
        return not blocking

    async def _delete(self, res: Resource, obj: Obj, policy: str) -> None:
        meta = obj["metadata"]
        try:
            await self.client.delete(res, meta["name"], meta.get("namespace"),
                                     propagation_policy=policy,  # type: ignore[arg-type]
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            pass

    async def _set_owner_refs(self, res: Resource, obj: Obj, refs: list[dict]) -> None:
        meta = obj["metadata"]
        patch = {"metadata": {"ownerReferences": refs or None,
                              "resourceVersion": meta["resourceVersion"], "uid": meta["uid"]}}
        try:
            await self.client.patch(res, meta["name"], patch, patch_type="merge",
                                    namespace=meta.get("namespace"))
        except NotFound:
            pass

    async def _remove_finalizer(self, res: Resource, obj: Obj, finalizer: str) -> None:
        meta = obj["metadata"]
        remaining = [f for f in meta.get("finalizers") or [] if f != finalizer]
        patch = {"metadata": {"finalizers": remaining or None,
                              "resourceVersion": meta["resourceVersion"]}}
        try:
            await self.client.patch(res, meta["name"], patch, patch_type="merge",
                                    namespace=meta.get("namespace"))
        except NotFound:
            pass


def metadata_only(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}


def _owner_uids(obj: Obj) -> set[str]:
    return {ref["uid"] for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid")}
