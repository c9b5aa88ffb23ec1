"""VolumeRestrictions: a ReadWriteOncePod claim serves one pod in the whole cluster,
and the same GCE PD / AWS EBS disk cannot be mounted twice on one node."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler.framework import SKIP, SUCCESS, CycleState, Handle, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.plugins.volumebinding import claim_names

NAME = "VolumeRestrictions"
DISK_CONFLICT = "node(s) had no available disk"
RWOP_CONFLICT = ("node has pod using PersistentVolumeClaim with the same name and "
                 "ReadWriteOncePod access mode")
_DISKS = "volumerestrictions/disks"


def _disks(pod: PodInfo) -> set[tuple[str, Any]]:
    found = set()
    for v in pod.spec.get("volumes") or []:
        if v.get("gcePersistentDisk") and not v["gcePersistentDisk"].get("readOnly"):
            found.add(("gce", v["gcePersistentDisk"].get("pdName")))
        if v.get("awsElasticBlockStore"):
            found.add(("aws", v["awsElasticBlockStore"].get("volumeID")))
    return found


class VolumeRestrictions:
    name = NAME

    def __init__(self, *, handle: Handle) -> None:
        self.handle = handle

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        disks = _disks(pod)
        claims = self.handle.lister("persistentvolumeclaims")
        rwop = set()
        for name in claim_names(pod):
            claim = claims.get(f"{pod.namespace}/{name}") or {}
            if "ReadWriteOncePod" in ((claim.get("spec") or {}).get("accessModes") or []):
                rwop.add(name)
        if rwop:
            for node in self.handle.nodes():
                for other in node.pods.values():
                    if (other.key != pod.key and other.namespace == pod.namespace
                            and rwop & set(claim_names(other))):
                        return Status.unschedulable(NAME, RWOP_CONFLICT, resolvable=False)
        if not disks:
            return SKIP
        state.data[_DISKS] = disks
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        disks = state.data[_DISKS]
        for other in node.pods.values():
            if disks & _disks(other):
                return Status.unschedulable(NAME, DISK_CONFLICT)
        return SUCCESS
