"""The namespace controller: a namespace being deleted is emptied, then finalized.

Deleting a namespace only marks it (its `kubernetes` finalizer in spec keeps it);
this controller deletes every namespaced object in it, and once nothing is left
removes the finalizer through the `finalize` subresource, which lets the API
server remove the namespace.
"""

from __future__ import annotations

from typing import Any

from kubelite.api.registry import RESOURCES, lookup
from kubelite.client import Client, Controller, InformerFactory, NotFound

NAMESPACES = lookup("", "v1", "namespaces")
# How soon to look again while objects with finalizers or pods on nodes drain.
RECHECK_SECONDS = 0.5


def namespaced_resources():
    return [r for r in RESOURCES if r.stored and not r.stored_as and r.namespaced
            and "list" in r.verbs]


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        self.client = client
        assert NAMESPACES is not None
        self.namespaces = self.watch(factory.informer(NAMESPACES))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if "kubernetes" not in (ns.get("spec") or {}).get("finalizers", []):
            return
        remaining = 0
        for res in namespaced_resources():
            items = (await self.client.list(res, key)).get("items") or []
            remaining += len(items)
            for obj in items:
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.client.delete(res, obj["metadata"]["name"], key,
                                             propagation_policy="Background")
                except NotFound:
                    remaining -= 1
        if remaining:
            self.queue.add_after(key, RECHECK_SECONDS)
            return
        await self._finalize(ns)

    async def _finalize(self, ns: dict[str, Any]) -> None:
        assert NAMESPACES is not None
        body = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns["metadata"]["name"],
                         "resourceVersion": ns["metadata"]["resourceVersion"]},
            "spec": {"finalizers": [f for f in ns["spec"]["finalizers"] if f != "kubernetes"]},
        }
        try:
            await self.client.update(NAMESPACES, body, subresource="finalize")
        except NotFound:
            pass
