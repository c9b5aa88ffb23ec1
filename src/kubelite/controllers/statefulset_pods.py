"""StatefulSet pod identity: names, ordinals, labels, claims and readiness, as
Kubernetes' stateful_set_utils.go."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from kubelite.controllers import podutil
from kubelite.controllers.controllerrevision import POD_REVISION_LABEL, template_of

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def ordinal_of(pod: Obj, set_name: str) -> int | None:
    """The pod's ordinal, or None when its name is not `<set>-<n>`."""
    m = _ORDINAL.match(pod["metadata"]["name"])
    if m is None or m.group(1) != set_name:
        return None
    return int(m.group(2))


def start_ordinal(sts: Obj) -> int:
    return int((sts["spec"].get("ordinals") or {}).get("start") or 0)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(template_name: str, pod: str) -> str:
    return f"{template_name}-{pod}"


def revision_of(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(POD_REVISION_LABEL, "")


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and podutil.is_ready(pod)


def available_in(pod: Obj, sts: Obj) -> float | None:
    """0 when available, seconds until it will be, None when not running and ready."""
    if not running_and_ready(pod) or is_terminating(pod):
        return None
    return podutil.available_in(pod, int(sts["spec"].get("minReadySeconds") or 0),
                                podutil.now_utc())


def max_unavailable(sts: Obj) -> int:
    """RollingUpdate's maxUnavailable (an int or a percentage of replicas, rounded
    down), at least 1 so that an update can always progress."""
    rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
    value = rolling.get("maxUnavailable", 1)
    replicas = int(sts["spec"].get("replicas", 1))
    if isinstance(value, str) and value.endswith("%"):
        value = math.floor(int(value[:-1]) * replicas / 100)
    return max(1, int(value))


def identity_labels(sts: Obj, ordinal: int) -> dict[str, str]:
    return {POD_NAME_LABEL: pod_name(sts, ordinal), POD_INDEX_LABEL: str(ordinal)}


def claim_labels(sts: Obj, template: Obj) -> dict[str, str]:
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update((sts["spec"].get("selector") or {}).get("matchLabels") or {})
    return labels


def new_claim(sts: Obj, template: Obj, ordinal: int) -> Obj:
    """The PVC of one claim template for one ordinal. whenDeleted=Delete makes the
    StatefulSet an owner, so the garbage collector removes the claim with it."""
    meta = template.get("metadata") or {}
    claim: Obj = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name(meta["name"], pod_name(sts, ordinal)),
                     "namespace": sts["metadata"]["namespace"],
                     "labels": claim_labels(sts, template)},
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    if meta.get("annotations"):
        claim["metadata"]["annotations"] = dict(meta["annotations"])
    if retention(sts)[0] == "Delete":
        claim["metadata"]["ownerReferences"] = [set_reference(sts)]
    return claim


def set_reference(sts: Obj) -> Obj:
    return {**podutil.owner_reference(sts), "controller": False}


def retention(sts: Obj) -> tuple[str, str]:
    """(whenDeleted, whenScaled)."""
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or "Retain", policy.get("whenScaled") or "Retain"


def new_pod(sts: Obj, revision: Obj, ordinal: int) -> Obj:
    """The pod for `ordinal` at `revision`: stable name, hostname and subdomain,
    identity labels, and one volume per claim template naming that ordinal's PVC."""
    template = template_of(revision)
    name = pod_name(sts, ordinal)
    pod = podutil.pod_from_template(sts, template, generate_name="")
    del pod["metadata"]["generateName"]
    pod["metadata"]["name"] = name
    pod["metadata"]["labels"].update(identity_labels(sts, ordinal))
    pod["metadata"]["labels"][POD_REVISION_LABEL] = revision["metadata"]["name"]
    spec = pod["spec"]
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    claims = {(t.get("metadata") or {}).get("name"): claim_name(t["metadata"]["name"], name)
              for t in sts["spec"].get("volumeClaimTemplates") or []}
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
    volumes += [{"name": t, "persistentVolumeClaim": {"claimName": c}} for t, c in claims.items()]
    if volumes:
        spec["volumes"] = volumes
    return pod


def status_counts(sts: Obj, pods: list[Obj], current: str, update: str) -> tuple[Obj, float | None]:
    """The counting part of the status, and the seconds until a ready pod becomes
    available (to sync again then), as Kubernetes' computeReplicaStatus."""
    counts = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
              "currentReplicas": 0, "updatedReplicas": 0}
    wake: float | None = None
    for pod in pods:
        counts["replicas"] += 1
        if running_and_ready(pod):
            counts["readyReplicas"] += 1
            remaining = available_in(pod, sts)
            if remaining == 0:
                counts["availableReplicas"] += 1
            elif remaining is not None:
                wake = remaining if wake is None else min(wake, remaining)
        if not is_terminating(pod):
            rev = revision_of(pod)
            counts["currentReplicas"] += rev == current
            counts["updatedReplicas"] += rev == update
    return counts, wake
