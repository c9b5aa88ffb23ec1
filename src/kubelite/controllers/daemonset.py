"""The DaemonSet controller: one pod on every eligible node, as Kubernetes'
daemon_controller.go and update.go.

Pods are not bound here: each is pinned to its node by required node affinity
on metadata.name and the scheduler binds it, as Kubernetes does since 1.12.
Nodes are eligible by the template's nodeSelector, node affinity and taints
(daemonset_nodes.py). Template versions are ControllerRevisions; pods carry
the revision's hash in `controller-revision-hash`. RollingUpdate with maxSurge
0 deletes old pods while at most maxUnavailable nodes lack an available pod;
with maxSurge it first starts the new pod beside the old one and removes the
old one once the new one is available.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.client import (
    Client,
    Conflict,
    Controller,
    EventRecorder,
    Expectations,
    InformerFactory,
    NotFound,
    object_key,
)
from kubelite.client.controller import controller_ref
from kubelite.controllers import controllerrevision as history
from kubelite.controllers import daemonset_nodes as dn
from kubelite.controllers import podutil

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
SETS = lookup("apps", "v1", "daemonsets")
GENERATION_LABEL = "pod-template-generation"


def _resolve(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def surge_and_unavailable(ds: Obj, desired: int) -> tuple[int, int]:
    rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
    surge = _resolve(rolling.get("maxSurge", 0), desired, round_up=True)
    unavailable = _resolve(rolling.get("maxUnavailable", 1), desired, round_up=True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=2)
        assert PODS is not None and NODES is not None and SETS is not None
        assert history.REVISIONS is not None
        self.client = client
        self.recorder = EventRecorder(client, component="daemonset-controller")
        self.expectations = Expectations()
        self.sets = self.watch(factory.informer(SETS))
        self.pods = self.watch_owned(factory.informer(PODS), owner=self.sets,
                                     owner_kind="DaemonSet", expectations=self.expectations)
        self.revisions = self.watch_owned(factory.informer(history.REVISIONS), owner=self.sets,
                                          owner_kind="DaemonSet")
        self.nodes = factory.informer(NODES)
        self.nodes.add_handlers(on_add=self._node_changed,
                                on_update=lambda old, new: self._node_changed(new),
                                on_delete=self._node_changed)
        self._track(self.nodes)

    def _node_changed(self, node: Obj) -> None:
        for ds in self.sets.list():
            self.queue.add(object_key(ds))

    async def sync(self, key: str) -> None:
        ds = self.sets.get(key)
        if ds is None:
            self.expectations.delete(key)
            return
        if ds["metadata"].get("deletionTimestamp"):
            return
        revisions = history.owned(self.revisions.by_index("namespace", ds["metadata"]["namespace"]), ds)
        collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
        try:
            revision = await history.ensure(self.client, ds, revisions, collision_count=collisions)
        except history.HashCollision:
            await self._write_status(ds, {"collisionCount": collisions + 1})
            raise
        digest = (revision["metadata"].get("labels") or {}).get(history.HASH_LABEL, "")
        by_node = self._pods_by_node(ds)
        error: BaseException | None = None
        if self.expectations.satisfied(key):
            try:
                await self._manage(key, ds, by_node, digest)
            except Exception as exc:  # status is still written before the retry
                error = exc
        await self._update_status(ds, by_node, digest, collisions)
        live = {(p["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL)
                for pods in by_node.values() for p in pods}
        names = {revision["metadata"]["name"]} | {
            r["metadata"]["name"] for r in revisions
            if (r["metadata"].get("labels") or {}).get(history.HASH_LABEL) in live}
        await history.truncate(self.client, revisions, live=names,
                               limit=int(ds["spec"].get("revisionHistoryLimit", 10)))
        if error is not None:
            raise error

    def _pods_by_node(self, ds: Obj) -> dict[str, list[Obj]]:
        uid = ds["metadata"]["uid"]
        selector = LabelSelector.from_object(ds["spec"].get("selector"))
        by_node: dict[str, list[Obj]] = {}
        for pod in self.pods.by_index("namespace", ds["metadata"]["namespace"]):
            if (controller_ref(pod) or {}).get("uid") != uid:
                continue
            if not selector.matches(pod["metadata"].get("labels")):
                continue
            node = dn.target_node(pod)
            if node is not None:
                by_node.setdefault(node, []).append(pod)
        return by_node

    async def _manage(self, key: str, ds: Obj, by_node: dict[str, list[Obj]], digest: str) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        eligible = {name for name, node in nodes.items() if dn.should_run(ds, node)}
        create: list[str] = []
        delete: list[Obj] = []
        for name in eligible:
            pods = [p for p in by_node.get(name, []) if not p["metadata"].get("deletionTimestamp")]
            failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
            delete += failed
            pods = [p for p in pods if p not in failed]
            if not pods and not failed and not by_node.get(name):
                create.append(name)
            elif len(pods) > 1:
                delete += self._extras(pods, digest)
        for name, pods in by_node.items():
            if name not in eligible:
                delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if not create and not delete and (ds["spec"].get("updateStrategy") or {}).get(
                "type", "RollingUpdate") == "RollingUpdate":
            create, delete = self._rolling(ds, by_node, eligible, digest)
        self.expectations.expect_creations(key, len(create))
        self.expectations.expect_deletions(key, [object_key(p) for p in delete])
        results = await asyncio.gather(
            *(self._create(key, ds, node, digest) for node in create),
            *(self._delete(key, ds, pod) for pod in delete), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @staticmethod
    def _extras(pods: list[Obj], digest: str) -> list[Obj]:
        """Of several pods on one node keep one: the updated one, then the oldest."""
        ranked = sorted(pods, key=lambda p: (
            (p["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL) != digest,
            p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
        return ranked[1:]

    def _rolling(self, ds: Obj, by_node: dict[str, list[Obj]], eligible: set[str],
                 digest: str) -> tuple[list[str], list[Obj]]:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = podutil.now_utc()
        surge, max_unavailable = surge_and_unavailable(ds, len(eligible))

        def available(pod: Obj) -> bool:
            return podutil.available_in(pod, min_ready, now) == 0

        def updated(pod: Obj) -> bool:
            return (pod["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL) == digest

        create: list[str] = []
        delete: list[Obj] = []
        unavailable = sum(1 for n in eligible
                          if not any(available(p) for p in by_node.get(n, [])))
        surging = sum(1 for n in eligible if len(by_node.get(n, [])) > 1)
        for name in sorted(eligible):
            pods = by_node.get(name, [])
            old = [p for p in pods if not updated(p) and not p["metadata"].get("deletionTimestamp")]
            new = [p for p in pods if updated(p)]
            if not old:
                continue
            if surge > 0:
                if new and any(available(p) for p in new):
                    delete += old
                elif not new and surging < surge:
                    create.append(name)
                    surging += 1
                continue
            if not any(available(p) for p in old):
                delete += old
            elif unavailable < max_unavailable:
                delete += old
                unavailable += 1
        return create, delete

    async def _create(self, key: str, ds: Obj, node: str, digest: str) -> None:
        template = ds["spec"]["template"]
        pod = podutil.pod_from_template(ds, template, generate_name=f"{ds['metadata']['name']}-")
        pod["metadata"]["labels"][history.POD_REVISION_LABEL] = digest
        pod["metadata"]["labels"][GENERATION_LABEL] = str(ds["metadata"].get("generation", 1))
        pod["spec"] = dn.pin_to_node(pod["spec"], node)
        try:
            await self.client.create(PODS, pod, ds["metadata"]["namespace"])
        except BaseException as exc:
            self.expectations.lower_creations(key, 1)
            await self.recorder.record(ds, "Warning", "FailedCreate", f"Error creating: {exc}")
            raise
        await self.recorder.record(ds, "Normal", "SuccessfulCreate",
                                   f"Created pod: {ds['metadata']['name']} on {node}")

    async def _delete(self, key: str, ds: Obj, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            self.expectations.deletion_observed(key, object_key(pod))
            return
        except BaseException:
            self.expectations.deletion_observed(key, object_key(pod))
            raise
        await self.recorder.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    async def _update_status(self, ds: Obj, by_node: dict[str, list[Obj]], digest: str,
                             collisions: int) -> None:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = podutil.now_utc()
        nodes = self.nodes.list()
        eligible = {n["metadata"]["name"] for n in nodes if dn.should_run(ds, n)}
        desired = scheduled = misscheduled = ready = available = updated = 0
        wake: float | None = None
        for node in nodes:
            name = node["metadata"]["name"]
            pods = [p for p in by_node.get(name, []) if (p.get("spec") or {}).get("nodeName")]
            if name in eligible:
                desired += 1
                if not pods:
                    continue
                scheduled += 1
                pod = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")[0]
                remaining = podutil.available_in(pod, min_ready, now)
                if remaining is not None:
                    ready += 1
                    if remaining == 0:
                        available += 1
                    else:
                        wake = remaining if wake is None else min(wake, remaining)
                if any((p["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL) == digest
                       for p in pods):
                    updated += 1
            elif pods:
                misscheduled += 1
        status = {"currentNumberScheduled": scheduled, "numberMisscheduled": misscheduled,
                  "desiredNumberScheduled": desired, "numberReady": ready,
                  "updatedNumberScheduled": updated, "numberAvailable": available,
                  "numberUnavailable": desired - available,
                  "observedGeneration": ds["metadata"].get("generation", 1),
                  "collisionCount": collisions}
        if wake is not None:
            self.queue.add_after(object_key(ds), wake + 0.05)
        await self._write_status(ds, status)

    async def _write_status(self, ds: Obj, status: Obj) -> None:
        old = ds.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return
        try:
            await self.client.update_status(SETS, {**ds, "status": {**old, **status}})
        except (NotFound, Conflict):
            pass
