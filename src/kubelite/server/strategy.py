"""Per-kind rules the generic object store applies on create and update, as the
`Strategy` types of kube-apiserver's registries do: what a create resets, what a
write through the main resource or through /status may change, when
`metadata.generation` moves.
"""

from __future__ import annotations

from typing import Any

from kubelite.api.patch import deep_copy
from kubelite.api.registry import Resource

# Kinds whose spec changes bump metadata.generation (their strategies do so).
_GENERATION_KINDS = frozenset({
    "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
    "ingresses", "networkpolicies", "poddisruptionbudgets", "priorityclasses",
    "horizontalpodautoscalers",
})

# Server-owned metadata a client may not set or change.
_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "generation", "selfLink")


def has_status(res: Resource) -> bool:
    return res.subresource("status") is not None


def tracks_generation(res: Resource) -> bool:
    return res.plural in _GENERATION_KINDS


def prepare_for_create(res: Resource, obj: dict[str, Any]) -> None:
    meta = obj.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    meta.pop("resourceVersion", None)
    if tracks_generation(res):
        meta["generation"] = 1
    if res.plural == "pods":
        # A new pod starts Pending; what a client wrote into status is dropped,
        # as the pod strategy does, except the QoS class it computes later.
        obj["status"] = {"phase": "Pending"}
    elif res.plural == "namespaces":
        obj["status"] = {"phase": "Active"}
    elif has_status(res) and res.plural not in ("nodes", "services", "persistentvolumes",
                                                 "persistentvolumeclaims"):
        obj.pop("status", None)


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def prepare_for_update(
    res: Resource, new: dict[str, Any], old: dict[str, Any], *, subresource: str = ""
) -> dict[str, Any]:
    """The object to store: `new` as the client sent it, with what this kind of write
    may not change taken from `old`. Returns a new dict; inputs stay unchanged."""
    if subresource == "status":
        # A status write changes status only (and finalizers/labels do not ride along).
        out = deep_copy(old)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out
    out = dict(new)
    meta = dict(new.get("metadata") or {})
    old_meta = old["metadata"]
    for key in _SERVER_METADATA:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    out["metadata"] = meta
    if has_status(res) and res.plural != "namespaces":
        if "status" in old:
            out["status"] = old["status"]
        else:
            out.pop("status", None)
    if res.plural == "namespaces":
        out["status"] = old.get("status", {})
        if subresource != "finalize":
            out["spec"] = old.get("spec", {})
    if tracks_generation(res) and _spec_of(out) != _spec_of(old):
        meta["generation"] = int(old_meta.get("generation", 1)) + 1
    return out
