"""Pod facts the workload controllers share: readiness, availability, the ranking
that decides which pods go first, pods built from a template, and adoption."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, Conflict, NotFound

Obj = dict[str, Any]
PODS = lookup("", "v1", "pods")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def condition(obj: Obj, kind: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def ready_since(pod: Obj) -> dt.datetime | None:
    cond = condition(pod, "Ready")
    if not cond or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def available_in(pod: Obj, min_ready_seconds: int, now: dt.datetime) -> float | None:
    """0 when the pod counts as available, the seconds until it will, or None when
    it is not ready at all (Kubernetes' IsPodAvailable)."""
    if not is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = ready_since(pod)
    if since is None:
        return 0.0
    remaining = min_ready_seconds - (now - since).total_seconds()
    return max(remaining, 0.0)


def is_active(pod: Obj) -> bool:
    """Counted towards replicas: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _restarts(pod: Obj) -> int:
    return sum(int(s.get("restartCount", 0))
               for s in (pod.get("status") or {}).get("containerStatuses") or [])


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj) -> tuple:
    """Sort key: pods to delete first come first, as Kubernetes' ActivePods ranking:
    unassigned < assigned, Pending < Unknown < Running, not ready < ready, ready
    more recently < longer, more restarts < fewer, newer < older."""
    ready = is_ready(pod)
    since = ready_since(pod)
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return (
        bool(pod.get("spec", {}).get("nodeName")),
        _PHASE_RANK.get((pod.get("status") or {}).get("phase", "Pending"), 0),
        ready,
        -(since.timestamp() if since else 0.0),
        -_restarts(pod),
        -(created.timestamp() if created else 0.0),
    )


def owner_reference(owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
    }


def pod_from_template(owner: Obj, template: Obj, *, generate_name: str) -> Obj:
    """A new pod for `owner` from its pod template (Kubernetes' GetPodFromTemplate)."""
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": generate_name,
            "namespace": owner["metadata"]["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
            "finalizers": list(meta.get("finalizers") or []),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def set_pod_owners(client: Client, pod: Obj, refs: list[Obj]) -> bool:
    """Adopt or release `pod` by writing its ownerReferences, guarded by its uid and
    resourceVersion (the controller ref manager's patch); False when the pod changed
    or went away meanwhile, so the caller leaves it for the next sync."""
    meta = pod["metadata"]
    patch = {"metadata": {"ownerReferences": refs or None, "uid": meta["uid"],
                          "resourceVersion": meta["resourceVersion"]}}
    try:
        await client.patch(PODS, meta["name"], patch, namespace=meta["namespace"])
    except (NotFound, Conflict):
        return False
    return True
