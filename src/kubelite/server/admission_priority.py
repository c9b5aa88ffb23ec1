"""The Priority admission plugin: a new pod's spec.priority and preemptionPolicy come
from its PriorityClass (or the global default class, else 0), never from the user."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.api.registry import lookup
from kubelite.server.objects import Objects

_PRIORITY_CLASSES = lookup("scheduling.k8s.io", "v1", "priorityclasses")
# The two classes every cluster has, whether or not their objects exist.
SYSTEM_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
DEFAULT_PREEMPTION = "PreemptLowerPriority"


async def admit_pod_priority(objects: Objects, pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName")
    assert _PRIORITY_CLASSES is not None
    pod_name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
    if name:
        pc = await objects.peek(_PRIORITY_CLASSES, None, name)
        if pc is None and name in SYSTEM_CLASSES:
            pc = {"value": SYSTEM_CLASSES[name]}
        if pc is None:
            raise errors.forbidden(f'pods "{pod_name}" is forbidden: no PriorityClass with '
                                   f"name {name} was found")
    else:
        stored, _, _ = await objects.list_kvs(_PRIORITY_CLASSES, None)
        views = (objects.view(_PRIORITY_CLASSES, kv) for kv in stored)
        classes = [c for c in views if c.get("globalDefault")]
        # With several defaults (a race Kubernetes allows too), the lowest value wins.
        pc = min(classes, key=lambda c: int(c.get("value", 0)), default=None)
        if pc is not None:
            spec["priorityClassName"] = pc["metadata"]["name"]
    value = int(pc.get("value", 0)) if pc is not None else 0
    given = spec.get("priority")
    if not name and given == 0:
        given = None  # defaulting's 0 (api/defaults.py), not the user's
    if given is not None and given != value:
        raise errors.forbidden(
            f'pods "{pod_name}" is forbidden: the integer value of priority ({given}) must '
            f"not be provided in pod spec; priority admission controller computed {value} "
            f"from the given PriorityClass name")
    spec["priority"] = value
    policy = (pc or {}).get("preemptionPolicy") or DEFAULT_PREEMPTION
    if spec.get("preemptionPolicy") is None:
        spec["preemptionPolicy"] = policy
