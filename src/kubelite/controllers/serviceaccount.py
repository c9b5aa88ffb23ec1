"""The service account controller: every active namespace has a `default` ServiceAccount."""

from __future__ import annotations

from kubelite.api.registry import lookup
from kubelite.client import AlreadyExists, Client, Controller, InformerFactory

NAMESPACES = lookup("", "v1", "namespaces")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=1)
        self.client = client
        assert NAMESPACES is not None and SERVICEACCOUNTS is not None
        self.namespaces = self.watch(factory.informer(NAMESPACES))
        # A deleted default account is re-created: map it back to its namespace.
        self.accounts = self.watch(
            factory.informer(SERVICEACCOUNTS),
            key_fn=lambda sa: sa["metadata"]["namespace"]
            if sa["metadata"]["name"] == "default" else None,
        )

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        if self.accounts.get(f"{key}/default") is not None:
            return
        assert SERVICEACCOUNTS is not None
        try:
            await self.client.create(SERVICEACCOUNTS, {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": key},
            }, key)
        except AlreadyExists:
            pass
