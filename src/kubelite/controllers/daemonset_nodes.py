"""Which nodes run a DaemonSet's pod, and how that pod is pinned there, as
Kubernetes' daemon/util and NodeShouldRunDaemonPod."""

from __future__ import annotations

import copy
from typing import Any

from kubelite.scheduler.nodeinfo import NodeInfo
from kubelite.scheduler.plugins.nodeaffinity import selector_matches
from kubelite.scheduler.plugins.tolerations import untolerated

Obj = dict[str, Any]

# The tolerations every DaemonSet pod gets (AddOrUpdateDaemonPodTolerations), so that
# daemons keep running on nodes that are unhealthy or cordoned.
DEFAULT_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")


def with_default_tolerations(pod_spec: Obj) -> list[Obj]:
    tolerations = list(pod_spec.get("tolerations") or [])
    wanted = list(DEFAULT_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(NETWORK_UNAVAILABLE)
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect
                   and t.get("operator") == "Exists" for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return tolerations


def should_run(ds: Obj, node: Obj) -> bool:
    """The node passes the template's nodeSelector, required node affinity and taints
    (with the default daemon tolerations)."""
    spec = (ds["spec"].get("template") or {}).get("spec") or {}
    info = NodeInfo.of(node)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if info.labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if not selector_matches(required, info):
        return False
    taints = (node.get("spec") or {}).get("taints") or []
    return untolerated(taints, with_default_tolerations(spec), ("NoSchedule", "NoExecute")) is None


def pin_to_node(pod_spec: Obj, node_name: str) -> Obj:
    """The pod spec with required node affinity on metadata.name = node, which the
    scheduler honours (ReplaceDaemonSetPodNodeNameNodeAffinity): other terms keep
    their expressions, their field terms are replaced."""
    spec = copy.deepcopy(pod_spec)
    field = [{"key": "metadata.name", "operator": "In", "values": [node_name]}]
    affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or []
    required["nodeSelectorTerms"] = [{**t, "matchFields": field} for t in terms] or [
        {"matchFields": field}]
    spec["tolerations"] = with_default_tolerations(spec)
    return spec


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod runs on, or is pinned to while not yet scheduled."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for fld in term.get("matchFields") or []:
            if (fld.get("key") == "metadata.name" and fld.get("operator") == "In"
                    and len(fld.get("values") or []) == 1):
                return fld["values"][0]
    return None
