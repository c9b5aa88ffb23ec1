"""The PersistentVolume binder: claims meet volumes, as Kubernetes' pv_controller.go.

A claim binds to the smallest Available volume of its class that has the
capacity, access modes and volume mode it asks for and matches its selector;
a volume pre-bound to the claim (spec.claimRef) or named by it
(spec.volumeName) wins. Claims of a WaitForFirstConsumer class wait for the
scheduler, which picks and binds static volumes itself (scheduler/plugins/
volumebinding.py) or marks the claim for a provisioner; this controller then
only completes bindings. Binding writes the volume first (claimRef, phase
Bound), then the claim (volumeName, phase Bound), so an interrupted bind is
finished by the next sync from whichever side is seen.

When its claim is gone a volume is Released; reclaimPolicy Retain keeps it
so, Delete removes it. Volumes of a dynamic provisioner
(pv.kubernetes.io/provisioned-by) are left to that provisioner to delete.
Claims without storageClassName get the default class, as Kubernetes'
retroactive default StorageClass assignment.

Keys: `namespace/name` for claims, `name` for volumes (cluster-scoped).
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.client import Client, Conflict, Controller, EventRecorder, InformerFactory, NotFound
from kubelite.scheduler.resources import to_units

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PVS = lookup("", "v1", "persistentvolumes")
PVCS = lookup("", "v1", "persistentvolumeclaims")
CLASSES = lookup("storage.k8s.io", "v1", "storageclasses")
DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class",
                 "storageclass.beta.kubernetes.io/is-default-class")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


def default_class(classes: list[Obj]) -> Obj | None:
    """The default StorageClass; the newest when several claim it, as Kubernetes."""
    marked = [c for c in classes
              if any((c["metadata"].get("annotations") or {}).get(a) == "true"
                     for a in DEFAULT_CLASS)]
    return max(marked, key=lambda c: (c["metadata"].get("creationTimestamp") or "",
                                      c["metadata"]["name"]), default=None)


def _storage(obj: Obj, *path: str) -> int:
    node: Any = obj.get("spec") or {}
    for part in path:
        node = (node or {}).get(part) or {}
    return to_units("storage", node.get("storage", 0) if isinstance(node, dict) else 0)


def volume_fits(pv: Obj, claim: Obj) -> bool:
    """Class, access modes, volume mode, capacity and selector (not claimRef)."""
    spec, want = pv.get("spec") or {}, claim.get("spec") or {}
    if (spec.get("storageClassName") or "") != (want.get("storageClassName") or ""):
        return False
    if not set(want.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    if (want.get("volumeMode") or "Filesystem") != (spec.get("volumeMode") or "Filesystem"):
        return False
    if _storage(pv, "capacity") < _storage(claim, "resources", "requests"):
        return False
    selector = want.get("selector")
    return selector is None or LabelSelector.from_object(selector).matches(
        pv["metadata"].get("labels") or {})


def _claim_ref(pv: Obj) -> Obj | None:
    return (pv.get("spec") or {}).get("claimRef")


def refers_to(pv: Obj, claim: Obj) -> bool:
    """The volume's claimRef names this claim (by uid when it has one)."""
    ref = _claim_ref(pv)
    meta = claim["metadata"]
    if ref is None or ref.get("name") != meta["name"] or ref.get("namespace") != meta["namespace"]:
        return False
    return not ref.get("uid") or ref["uid"] == meta["uid"]


def claim_reference(claim: Obj) -> Obj:
    meta = claim["metadata"]
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta["namespace"],
            "name": meta["name"], "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", "")}


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        assert PVS is not None and PVCS is not None and CLASSES is not None
        self.client = client
        self.recorder = EventRecorder(client, component="persistentvolume-controller")
        self.volumes = self.watch(factory.informer(PVS))
        self.claims = self.watch(factory.informer(PVCS))
        self.classes = factory.informer(CLASSES)
        # A new default class may be what claims without a class wait for.
        self.classes.add_handlers(on_add=self._class_changed,
                                  on_update=lambda old, new: self._class_changed(new))
        self._track(self.classes)

    def _class_changed(self, sc: Obj) -> None:
        for claim in self.claims.list():
            if not (claim.get("spec") or {}).get("volumeName"):
                self.queue.add(f"{claim['metadata']['namespace']}/{claim['metadata']['name']}")

    async def sync(self, key: str) -> None:
        if "/" in key:
            await self._sync_claim(key)
        else:
            await self._sync_volume(key)

    # -- claims ------------------------------------------------------------------

    async def _sync_claim(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None:
            ns, name = key.split("/", 1)
            for pv in self.volumes.list():
                ref = _claim_ref(pv) or {}
                if ref.get("namespace") == ns and ref.get("name") == name:
                    self.queue.add(pv["metadata"]["name"])
            return
        if claim["metadata"].get("deletionTimestamp"):
            return
        spec = claim.get("spec") or {}
        if "storageClassName" not in spec and not spec.get("volumeName"):
            sc = default_class(self.classes.list())
            if sc is not None:
                await self._patch_claim(claim, {"spec": {"storageClassName": sc["metadata"]["name"]}})
                return
        if spec.get("volumeName"):
            await self._sync_bound_claim(claim)
            return
        pv = self._find_volume(claim)
        if pv is not None:
            await self._bind(pv, claim)
            return
        sc = self.classes.get(spec.get("storageClassName") or "")
        if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            if not (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE):
                await self.recorder.record(
                    claim, "Normal", "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding")
            await self._claim_phase(claim, "Pending")
            return
        if sc is None or sc.get("provisioner") == "kubernetes.io/no-provisioner":
            why = ("no persistent volumes available for this claim and no storage class is set"
                   if not spec.get("storageClassName") else
                   f'storageclass.storage.k8s.io "{spec["storageClassName"]}" not found'
                   if sc is None else "no persistent volumes available for this claim")
            await self.recorder.record(claim, "Normal", "FailedBinding", why)
        await self._claim_phase(claim, "Pending")

    def _find_volume(self, claim: Obj) -> Obj | None:
        """A volume pre-bound to the claim, else (not for delayed binding) the smallest
        Available volume that fits."""
        spec = claim.get("spec") or {}
        candidates = [pv for pv in self.volumes.list() if volume_fits(pv, claim)]
        for pv in candidates:
            if refers_to(pv, claim):
                return pv
        sc = self.classes.get(spec.get("storageClassName") or "")
        if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            return None
        free = [pv for pv in candidates if _claim_ref(pv) is None
                and (pv.get("status") or {}).get("phase", "Available") == "Available"]
        return min(free, key=lambda pv: (_storage(pv, "capacity"), pv["metadata"]["name"]),
                   default=None)

    async def _sync_bound_claim(self, claim: Obj) -> None:
        name = claim["spec"]["volumeName"]
        pv = self.volumes.get(name)
        if pv is None:
            try:
                await self.client.get(PVS, name)
            except NotFound:
                if (claim.get("status") or {}).get("phase") == "Bound":
                    await self.recorder.record(
                        claim, "Warning", "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
                    await self._claim_phase(claim, "Lost")
                return
            return  # the cache will catch up and sync again
        ref = _claim_ref(pv)
        if ref is None or refers_to(pv, claim):
            await self._bind(pv, claim)
            return
        await self.recorder.record(claim, "Warning", "FailedBinding",
                                   "volume already bound to a different claim.")
        await self._claim_phase(claim, "Pending")

    async def _bind(self, pv: Obj, claim: Obj) -> None:
        """Volume side first, then the claim; each step skipped when already done."""
        meta = claim["metadata"]
        if not refers_to(pv, claim) or not (_claim_ref(pv) or {}).get("uid"):
            body = {**pv, "spec": {**pv["spec"], "claimRef": claim_reference(claim)}}
            annotations = dict(pv["metadata"].get("annotations") or {})
            if _claim_ref(pv) is None:
                annotations[BOUND_BY_CONTROLLER] = "yes"
            body["metadata"] = {**pv["metadata"], "annotations": annotations}
            pv = await self.client.update(PVS, body)
        if (pv.get("status") or {}).get("phase") != "Bound":
            pv = await self.client.update_status(PVS, {**pv, "status": {
                **(pv.get("status") or {}), "phase": "Bound"}})
        annotations = meta.get("annotations") or {}
        if claim["spec"].get("volumeName") != pv["metadata"]["name"] or not annotations.get(
                BIND_COMPLETED):
            extra = {BIND_COMPLETED: "yes"}
            if not claim["spec"].get("volumeName"):
                extra[BOUND_BY_CONTROLLER] = "yes"
            claim = await self.client.update(PVCS, {
                **claim, "metadata": {**meta, "annotations": {**annotations, **extra}},
                "spec": {**claim["spec"], "volumeName": pv["metadata"]["name"]}})
        status = {**(claim.get("status") or {}), "phase": "Bound",
                  "accessModes": list(pv["spec"].get("accessModes") or []),
                  "capacity": dict(pv["spec"].get("capacity") or {})}
        if status != claim.get("status"):
            await self.client.update_status(PVCS, {**claim, "status": status})

    async def _claim_phase(self, claim: Obj, phase: str) -> None:
        if (claim.get("status") or {}).get("phase") == phase:
            return
        try:
            await self.client.update_status(PVCS, {**claim, "status": {
                **(claim.get("status") or {}), "phase": phase}})
        except (NotFound, Conflict):
            pass

    async def _patch_claim(self, claim: Obj, patch: Obj) -> None:
        meta = claim["metadata"]
        try:
            await self.client.patch(PVCS, meta["name"], patch, namespace=meta["namespace"])
        except NotFound:
            pass

    # -- volumes -----------------------------------------------------------------

    async def _sync_volume(self, name: str) -> None:
        pv = self.volumes.get(name)
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return
        ref = _claim_ref(pv)
        if ref is None:
            await self._volume_phase(pv, "Available")
            return
        key = f"{ref.get('namespace')}/{ref.get('name')}"
        claim = self.claims.get(key)
        if claim is None:
            try:
                claim = await self.client.get(PVCS, ref.get("name", ""), ref.get("namespace"))
            except NotFound:
                claim = None
        if claim is not None and (not ref.get("uid") or ref["uid"] == claim["metadata"]["uid"]):
            if claim["spec"].get("volumeName") != name:
                self.queue.add(key)
                if not ref.get("uid"):
                    await self._volume_phase(pv, "Available")
                return
            await self._volume_phase(pv, "Bound")
            return
        if not ref.get("uid"):
            await self._volume_phase(pv, "Available")
            return
        await self._release(pv)

    async def _release(self, pv: Obj) -> None:
        """The claim is gone: Released, then the reclaim policy."""
        if (pv.get("status") or {}).get("phase") != "Released":
            await self._volume_phase(pv, "Released")
        policy = pv["spec"].get("persistentVolumeReclaimPolicy", "Retain")
        if policy != "Delete" or (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY):
            return
        try:
            await self.client.delete(PVS, pv["metadata"]["name"],
                                     preconditions={"uid": pv["metadata"]["uid"]})
        except (NotFound, Conflict):
            pass

    async def _volume_phase(self, pv: Obj, phase: str) -> None:
        if (pv.get("status") or {}).get("phase") == phase:
            return
        try:
            await self.client.update_status(PVS, {**pv, "status": {
                **(pv.get("status") or {}), "phase": phase}})
        except (NotFound, Conflict):
            pass
