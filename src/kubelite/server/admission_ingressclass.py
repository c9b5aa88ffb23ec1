"""The DefaultIngressClass admission plugin: an Ingress created without a class gets
the one IngressClass marked as the cluster's default."""

from __future__ import annotations

from typing import Any

from kubelite.api.registry import lookup
from kubelite.server.objects import Objects

_CLASSES = lookup("networking.k8s.io", "v1", "ingressclasses")
DEFAULT_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_ANNOTATION = "kubernetes.io/ingress.class"


async def admit_ingress_class(objects: Objects, ingress: dict[str, Any]) -> None:
    spec = ingress.setdefault("spec", {})
    annotations = ingress["metadata"].get("annotations") or {}
    if spec.get("ingressClassName") or LEGACY_ANNOTATION in annotations:
        return
    assert _CLASSES is not None
    defaults, _, _ = await objects.list(
        _CLASSES, None,
        keep=lambda c: (c["metadata"].get("annotations") or {}).get(DEFAULT_ANNOTATION) == "true")
    if defaults:
        # Several defaults is a misconfiguration Kubernetes tolerates: the newest wins.
        newest = max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp", ""),
                                              c["metadata"]["name"]))
        spec["ingressClassName"] = newest["metadata"]["name"]
