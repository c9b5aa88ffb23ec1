"""VolumeBinding: a pod's PersistentVolumeClaims decide where it may run. A bound
claim's volume must allow the node (PV nodeAffinity, e.g. local volumes); an unbound
WaitForFirstConsumer claim needs an available matching volume reachable from the
node, or a class that provisions dynamically. Reserve holds the chosen volumes so
that two pods never pick the same one; PreBind binds them (the PV controller's
pre-binding) or, for dynamic provisioning, marks the claim with the selected node
and waits until a provisioner binds it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client
from kubelite.client.errors import ClientError
from kubelite.scheduler.framework import SKIP, SUCCESS, CycleState, Handle, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.plugins.nodeaffinity import selector_matches
from kubelite.scheduler.resources import to_units

NAME = "VolumeBinding"
CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUME = "node(s) didn't find available persistent volumes to bind"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
_STATE = "volumebinding/state"
PVS = lookup("", "v1", "persistentvolumes")
PVCS = lookup("", "v1", "persistentvolumeclaims")
Obj = dict[str, Any]


def claim_names(pod: PodInfo) -> list[str]:
    names = []
    for volume in pod.spec.get("volumes") or []:
        if volume.get("persistentVolumeClaim"):
            names.append(volume["persistentVolumeClaim"].get("claimName", ""))
        elif volume.get("ephemeral"):
            names.append(f"{pod.name}-{volume.get('name')}")
    return names


def _storage(claim: Obj) -> int:
    wanted = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    return to_units("storage", wanted.get("storage", 0))


def pv_matches(pv: Obj, claim: Obj) -> bool:
    spec, want = pv.get("spec") or {}, claim.get("spec") or {}
    if (spec.get("storageClassName") or "") != (want.get("storageClassName") or ""):
        return False
    if not set(want.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    if want.get("volumeMode", "Filesystem") != spec.get("volumeMode", "Filesystem"):
        return False
    return to_units("storage", (spec.get("capacity") or {}).get("storage", 0)) >= _storage(claim)


def pv_allows(pv: Obj, node: NodeInfo) -> bool:
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    return selector_matches(required, node)


@dataclass
class _State:
    bound: list[Obj] = field(default_factory=list)
    # unbound WaitForFirstConsumer claims with their class
    delayed: list[tuple[Obj, Obj]] = field(default_factory=list)
    # per node: claim key -> the PV chosen for it (None: provision dynamically)
    choices: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def clone(self) -> _State:
        return self


class VolumeBinding:
    name = NAME

    def __init__(self, *, handle: Handle, client: Client | None = None,
                 bind_timeout: float = 600.0) -> None:
        self.handle = handle
        self.client = client
        self.bind_timeout = bind_timeout
        # PV name -> claim key, for volumes chosen but not yet bound
        self.assumed: dict[str, str] = {}

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        names = claim_names(pod)
        if not names:
            return SKIP
        claims = self.handle.lister("persistentvolumeclaims")
        classes = self.handle.lister("storageclasses")
        vs = _State()
        for name in names:
            claim = claims.get(f"{pod.namespace}/{name}")
            if claim is None:
                return Status.unschedulable(
                    NAME, f'persistentvolumeclaim "{name}" not found', resolvable=False)
            if claim["metadata"].get("deletionTimestamp"):
                return Status.unschedulable(
                    NAME, f'persistentvolumeclaim "{name}" is being deleted', resolvable=False)
            if (claim.get("spec") or {}).get("volumeName"):
                vs.bound.append(claim)
                continue
            sc = classes.get((claim.get("spec") or {}).get("storageClassName") or "")
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return Status.unschedulable(NAME, UNBOUND_IMMEDIATE, resolvable=False)
            vs.delayed.append((claim, sc))
        state.data[_STATE] = vs
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        vs: _State = state.data[_STATE]
        volumes = self.handle.lister("persistentvolumes")
        for claim in vs.bound:
            pv = volumes.get(claim["spec"]["volumeName"])
            if pv is not None and not pv_allows(pv, node):
                return Status.unschedulable(NAME, CONFLICT, resolvable=False)
        if not vs.delayed:
            return SUCCESS
        taken: set[str] = set()
        choices: dict[str, str | None] = {}
        candidates = sorted(volumes.list(), key=lambda pv: to_units(
            "storage", ((pv.get("spec") or {}).get("capacity") or {}).get("storage", 0)))
        for claim, sc in vs.delayed:
            key = f"{pod.namespace}/{claim['metadata']['name']}"
            pv = next((pv for pv in candidates
                       if pv["metadata"]["name"] not in taken
                       and not (pv.get("spec") or {}).get("claimRef")
                       and self.assumed.get(pv["metadata"]["name"], key) == key
                       and pv_matches(pv, claim) and pv_allows(pv, node)), None)
            if pv is not None:
                taken.add(pv["metadata"]["name"])
                choices[key] = pv["metadata"]["name"]
            elif sc.get("provisioner") != NO_PROVISIONER and self._topology_allows(sc, node):
                choices[key] = None
            else:
                return Status.unschedulable(NAME, NO_VOLUME)
        vs.choices[node.name] = choices
        return SUCCESS

    @staticmethod
    def _topology_allows(sc: Obj, node: NodeInfo) -> bool:
        terms = sc.get("allowedTopologies") or []
        return not terms or any(
            all(node.labels.get(e.get("key")) in (e.get("values") or [])
                for e in t.get("matchLabelExpressions") or []) for t in terms)

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        vs: _State | None = state.data.get(_STATE)
        if vs is None:
            return SUCCESS
        for key, pv in vs.choices.get(node_name, {}).items():
            if pv is not None:
                self.assumed[pv] = key
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        vs: _State | None = state.data.get(_STATE)
        if vs is None:
            return
        for pv in vs.choices.get(node_name, {}).values():
            if pv is not None:
                self.assumed.pop(pv, None)

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        vs: _State | None = state.data.get(_STATE)
        if vs is None or not vs.choices.get(node_name) or self.client is None:
            return SUCCESS
        assert PVS is not None and PVCS is not None
        claims = self.handle.lister("persistentvolumeclaims")
        try:
            for key, pv_name in vs.choices[node_name].items():
                ns, name = key.split("/", 1)
                claim = claims.get(key) or {"metadata": {"name": name, "namespace": ns}}
                if pv_name is None:
                    await self.client.patch(PVCS, name, {"metadata": {"annotations": {
                        SELECTED_NODE: node_name}}}, namespace=ns)
                    continue
                ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                       "name": name, "uid": claim["metadata"].get("uid")}
                await self.client.patch(PVS, pv_name, {"spec": {"claimRef": ref}})
                await self.client.patch(PVS, pv_name, {"status": {"phase": "Bound"}},
                                        subresource="status")
                await self.client.patch(PVCS, name, {
                    "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                    "spec": {"volumeName": pv_name}}, namespace=ns)
                await self.client.patch(PVCS, name, {"status": {"phase": "Bound"}},
                                        namespace=ns, subresource="status")
        except ClientError as exc:
            return Status.error(NAME, f"binding volumes: {exc}")
        finally:
            for pv_name in vs.choices[node_name].values():
                if pv_name is not None:
                    self.assumed.pop(pv_name, None)
        return await self._wait_bound(pod, list(vs.choices[node_name]))

    async def _wait_bound(self, pod: PodInfo, keys: list[str]) -> Status:
        claims = self.handle.lister("persistentvolumeclaims")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.bind_timeout):
                while not all((claims.get(k) or {}).get("spec", {}).get("volumeName")
                              for k in keys):
                    await asyncio.sleep(0.1)
                return SUCCESS
        return Status.error(NAME, "binding volumes: timed out waiting for the condition")
