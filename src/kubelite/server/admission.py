"""Admission: checks that need other objects, run after validation and before the
store, as kube-apiserver's admission plugins (NamespaceLifecycle first)."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.api.registry import Resource, lookup
from kubelite.server.admission_ingressclass import admit_ingress_class
from kubelite.server.admission_priority import admit_pod_priority
from kubelite.server.objects import Objects

_NAMESPACES = lookup("", "v1", "namespaces")
# Namespaces that are never deleted (NamespaceLifecycle's immortal namespaces).
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


async def admit(
    objects: Objects, res: Resource, obj: dict[str, Any], *, operation: str
) -> None:
    """Raises an APIError when the write must be refused."""
    if res.namespaced and operation == "CREATE":
        ns_name = obj["metadata"].get("namespace", "")
        assert _NAMESPACES is not None
        ns = await objects.peek(_NAMESPACES, None, ns_name)
        if ns is None:
            raise errors.not_found("", "namespaces", ns_name)
        if ns["metadata"].get("deletionTimestamp") and res.plural != "events":
            raise errors.forbidden(
                f'{res.group_resource} "{obj["metadata"].get("name", "")}" is forbidden: '
                f"unable to create new content in namespace {ns_name} because it is being "
                f"terminated"
            )
    if res.plural == "pods" and not res.group and operation == "CREATE":
        await admit_pod_priority(objects, obj)
    if res.plural == "ingresses" and operation == "CREATE":
        await admit_ingress_class(objects, obj)


def admit_delete(res: Resource, name: str) -> None:
    if res.plural == "namespaces" and name in IMMORTAL_NAMESPACES:
        raise errors.forbidden(
            f'namespaces "{name}" is forbidden: this namespace may not be deleted'
        )
