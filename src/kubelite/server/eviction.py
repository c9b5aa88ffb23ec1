"""The PodDisruptionBudget check of the eviction subresource, as kube-apiserver's
pkg/registry/core/pod/storage/eviction.go.

A pod that is already being deleted, or is Pending, Succeeded or Failed, may be
evicted whatever its budget says. Otherwise the one budget whose selector
matches it must allow a disruption: its status is then decremented and the pod
recorded in status.disruptedPods in the same write (retried on conflict), so
that concurrent evictions (kubectl drain evicts all pods of a node at once) can
never take more than the budget allows before the disruption controller
recounts. A refusal is 429 TooManyRequests with a DisruptionBudget cause, which
kubectl drain retries.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubelite.api import errors
from kubelite.api.patch import deep_copy
from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.server.objects import Objects

Obj = dict[str, Any]
_PDBS = lookup("policy", "v1", "poddisruptionbudgets")
# Kubernetes refuses once this many evictions wait for the controller's recount.
MAX_DISRUPTED_PODS = 2000
_RETRIES = 8


def _too_many(message: str, causes: list[Obj] | None = None) -> errors.APIError:
    details: Obj = {"retryAfterSeconds": 10}
    if causes:
        details["causes"] = causes
    return errors.APIError(429, "TooManyRequests", message, details)


def can_ignore_budget(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return bool(pod["metadata"].get("deletionTimestamp")) or phase in (
        "Pending", "Succeeded", "Failed")


async def check_budgets(objects: Objects, pod: Obj, *, dry: bool) -> None:
    """Raise when no disruption may be taken for `pod`; otherwise take one."""
    if can_ignore_budget(pod):
        return
    assert _PDBS is not None
    namespace = pod["metadata"].get("namespace")
    labels = pod["metadata"].get("labels") or {}
    for _ in range(_RETRIES):
        budgets, _rev, _ = await objects.list(_PDBS, namespace)
        matching = [b for b in budgets
                    if (b.get("spec") or {}).get("selector") is not None
                    and LabelSelector.from_object(b["spec"]["selector"]).matches(labels)]
        if not matching:
            return
        if len(matching) > 1:
            raise errors.internal("This pod has more than one PodDisruptionBudget, which the "
                                  "eviction subresource does not support.")
        pdb = matching[0]
        updated = _take_one(pdb, pod["metadata"]["name"])
        if dry:
            return
        try:
            await objects.update(_PDBS, updated, old=pdb,
                                 expected_rv=int(pdb["metadata"]["resourceVersion"]))
            return
        except errors.APIError as exc:
            if exc.reason != "Conflict":
                raise
    raise _too_many("Cannot evict pod as it would violate the pod's disruption budget: "
                    "too many concurrent evictions")


def _take_one(pdb: Obj, pod_name: str) -> Obj:
    name = pdb["metadata"]["name"]
    status = pdb.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 1):
        raise _too_many("Cannot evict pod as it would violate the pod's disruption budget. "
                        f"The disruption budget {name} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise errors.forbidden(f'poddisruptionbudgets.policy "{name}" is forbidden: '
                               "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise errors.forbidden(f'poddisruptionbudgets.policy "{name}" is forbidden: DisruptedPods '
                               "map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise _too_many("Cannot evict pod as it would violate the pod's disruption budget.", [{
            "reason": "DisruptionBudget",
            "message": f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} "
                       f"healthy pods and has {status.get('currentHealthy', 0)} currently"}])
    updated = deep_copy(pdb)
    new_status = updated.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new_status.setdefault("disruptedPods", {})[pod_name] = now
    if allowed == 1:
        for cond in new_status.get("conditions") or []:
            if cond.get("type") == "DisruptionAllowed" and cond.get("status") != "False":
                cond.update(status="False", reason="InsufficientPods", message="",
                            lastTransitionTime=now)
    return updated
