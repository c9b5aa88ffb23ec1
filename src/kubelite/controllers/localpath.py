"""The built-in dynamic provisioner `kubelite.io/local-path`: directory volumes on
the node a pod was scheduled to.

The StorageClass `local-path` (default class, WaitForFirstConsumer, reclaim
Delete) is created when missing. A claim of a class of this provisioner that
the scheduler marked with volume.kubernetes.io/selected-node gets a PV named
`pvc-<claim uid>` (Kubernetes' name for provisioned volumes): a hostPath
DirectoryOrCreate at `<local-path root of the node>/<pv name>`, node affinity
to that node, and a claimRef to the claim, which the PV binder then completes.
The node's root comes from its annotation kubelite.io/local-path-root, set by
the agent (agent/localpath.py). A Released volume of reclaim policy Delete
is deleted here; its directory is removed by that node's agent, which sweeps
directories whose volume no longer exists. The agent creates the directory
when it first mounts the volume.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import (
    AlreadyExists,
    Client,
    Conflict,
    Controller,
    EventRecorder,
    InformerFactory,
    NotFound,
)
from kubelite.controllers.persistentvolume import PROVISIONED_BY, SELECTED_NODE

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PVS = lookup("", "v1", "persistentvolumes")
PVCS = lookup("", "v1", "persistentvolumeclaims")
NODES = lookup("", "v1", "nodes")
CLASSES = lookup("storage.k8s.io", "v1", "storageclasses")
PROVISIONER = "kubelite.io/local-path"
CLASS_NAME = "local-path"
ROOT_ANNOTATION = "kubelite.io/local-path-root"
# The agent's default root (AgentConfig.root) + local-path, for nodes that do not say.
DEFAULT_ROOT = "/var/lib/kubelite/agent/local-path"
_CLASS_KEY = "@storageclass"


def default_storage_class() -> Obj:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def volume_name(claim: Obj) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def new_volume(claim: Obj, sc: Obj, *, node: str, root: str) -> Obj:
    name = volume_name(claim)
    spec = claim.get("spec") or {}
    meta = claim["metadata"]
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {})
                         .get("storage", "0")},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": f"{root.rstrip('/')}/{name}", "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion", "")},
        },
    }


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        assert PVS is not None and PVCS is not None and NODES is not None and CLASSES is not None
        self.client = client
        self.recorder = EventRecorder(client, component=PROVISIONER)
        self.claims = self.watch(factory.informer(PVCS))
        self.volumes = self.watch(factory.informer(PVS), key_fn=self._volume_key)
        self.classes = self.watch(factory.informer(CLASSES),
                                  key_fn=lambda sc: _CLASS_KEY
                                  if sc["metadata"]["name"] == CLASS_NAME else None)
        self.nodes = factory.informer(NODES)
        self._track(self.nodes)
        self.queue.add(_CLASS_KEY)

    @staticmethod
    def _volume_key(pv: Obj) -> str | None:
        if (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER:
            return None
        return pv["metadata"]["name"]

    async def sync(self, key: str) -> None:
        if key == _CLASS_KEY:
            await self._ensure_class()
        elif "/" in key:
            await self._sync_claim(key)
        else:
            await self._sync_volume(key)

    async def _ensure_class(self) -> None:
        if self.classes.get(CLASS_NAME) is not None:
            return
        try:
            await self.client.create(CLASSES, default_storage_class())
        except AlreadyExists:
            pass

    async def _sync_claim(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return
        spec = claim.get("spec") or {}
        node = (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE)
        sc = self.classes.get(spec.get("storageClassName") or "")
        if spec.get("volumeName") or not node or sc is None or sc.get("provisioner") != PROVISIONER:
            return
        name = volume_name(claim)
        if self.volumes.get(name) is not None:
            return
        if (spec.get("volumeMode") or "Filesystem") != "Filesystem":
            await self.recorder.record(claim, "Warning", "ProvisioningFailed",
                                       "local-path volumes support only volumeMode Filesystem")
            return
        node_obj = self.nodes.get(node)
        root = ((node_obj or {}).get("metadata", {}).get("annotations") or {}).get(
            ROOT_ANNOTATION) or DEFAULT_ROOT
        await self.recorder.record(claim, "Normal", "Provisioning",
                                   f'External provisioner is provisioning volume for claim "{key}"')
        try:
            await self.client.create(PVS, new_volume(claim, sc, node=node, root=root))
        except AlreadyExists:
            return
        await self.recorder.record(claim, "Normal", "ProvisioningSucceeded",
                                   f"Successfully provisioned volume {name}")

    async def _sync_volume(self, name: str) -> None:
        pv = self.volumes.get(name)
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return
        if ((pv.get("status") or {}).get("phase") != "Released"
                or pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete"):
            return
        try:
            await self.client.delete(PVS, name, preconditions={"uid": pv["metadata"]["uid"]})
        except (NotFound, Conflict):
            pass
