"""The StatefulSet controller: pods with stable names `<set>-<ordinal>`, each with
its own PersistentVolumeClaims that outlive it.

As Kubernetes' stateful_set_control.go: one pass per sync over the ordinals in
order. OrderedReady creates the next pod only when the ones before it are
Running and Ready, and removes pods of a scale-down highest first, one at a
time; Parallel does both at once. Pods are created by name, so a cache that
lags behind our own writes meets AlreadyExists or NotFound instead of doubling
a pod: no expectations are needed. Updates: RollingUpdate replaces pods from
the highest ordinal down to `partition`, at most maxUnavailable unavailable at a
time; OnDelete leaves replacing to the user. Template versions are
ControllerRevisions (controllerrevision.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.client import (
    AlreadyExists,
    Client,
    Conflict,
    Controller,
    EventRecorder,
    InformerFactory,
    NotFound,
    object_key,
)
from kubelite.client.controller import controller_ref
from kubelite.controllers import controllerrevision as history
from kubelite.controllers import podutil
from kubelite.controllers import statefulset_pods as sp

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
PVCS = lookup("", "v1", "persistentvolumeclaims")
SETS = lookup("apps", "v1", "statefulsets")


class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=4)
        assert PODS is not None and PVCS is not None and SETS is not None
        assert history.REVISIONS is not None
        self.client = client
        self.recorder = EventRecorder(client, component="statefulset-controller")
        self.sets = self.watch(factory.informer(SETS))
        self.pods = self.watch_owned(factory.informer(PODS), owner=self.sets,
                                     owner_kind="StatefulSet", on_orphan=self._sets_for_orphan)
        self.revisions = self.watch_owned(factory.informer(history.REVISIONS), owner=self.sets,
                                          owner_kind="StatefulSet")
        # Claims are read, not watched: a pod waits on its claims through the pod's events.
        self.claims = factory.informer(PVCS)
        self._track(self.claims)

    def _sets_for_orphan(self, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        return [object_key(s) for s in self.sets.by_index("namespace", pod["metadata"]["namespace"])
                if sp.ordinal_of(pod, s["metadata"]["name"]) is not None
                and LabelSelector.from_object(s["spec"].get("selector")).matches(labels)]

    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        pods = await self._claim_pods(sts)
        revisions = history.owned(self.revisions.by_index("namespace", sts["metadata"]["namespace"]), sts)
        status = dict(sts.get("status") or {})
        collisions = int(status.get("collisionCount") or 0)
        try:
            update = await history.ensure(self.client, sts, revisions, collision_count=collisions)
        except history.HashCollision:
            await self._write_status(sts, {**status, "collisionCount": collisions + 1})
            raise
        if all(r["metadata"]["name"] != update["metadata"]["name"] for r in revisions):
            revisions.append(update)
        revisions = [update if r["metadata"]["name"] == update["metadata"]["name"] else r
                     for r in revisions]
        current = next((r for r in revisions
                        if r["metadata"]["name"] == status.get("currentRevision")), update)
        error: BaseException | None = None
        try:
            await self._step(sts, pods, current, update)
        except Exception as exc:  # status is written before the retry
            error = exc
        await self._update_status(sts, pods, current, update, collisions)
        live = {sp.revision_of(p) for p in pods} | {current["metadata"]["name"],
                                                    update["metadata"]["name"]}
        await history.truncate(self.client, revisions, live=live,
                               limit=int(sts["spec"].get("revisionHistoryLimit", 10)))
        if error is not None:
            raise error

    async def _claim_pods(self, sts: Obj) -> list[Obj]:
        """Owned pods, after adopting matching orphans and releasing non-matching ones."""
        uid = sts["metadata"]["uid"]
        selector = LabelSelector.from_object(sts["spec"].get("selector"))
        owned: list[Obj] = []
        for pod in self.pods.by_index("namespace", sts["metadata"]["namespace"]):
            ref = controller_ref(pod)
            matches = selector.matches(pod["metadata"].get("labels"))
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(pod)
                elif not sp.is_terminating(pod):
                    refs = [r for r in pod["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    await podutil.set_pod_owners(self.client, pod, refs)
            elif (ref is None and matches and not sp.is_terminating(pod)
                  and sp.ordinal_of(pod, sts["metadata"]["name"]) is not None):
                refs = [*(pod["metadata"].get("ownerReferences") or []),
                        podutil.owner_reference(sts)]
                if await podutil.set_pod_owners(self.client, pod, refs):
                    owned.append(pod)
        return owned


    async def _step(self, sts: Obj, pods: list[Obj], current: Obj, update: Obj) -> None:
        """One pass of Kubernetes' updateStatefulSet; returns where OrderedReady must wait."""
        name = sts["metadata"]["name"]
        start = sp.start_ordinal(sts)
        want = int(sts["spec"].get("replicas", 1))
        replicas: dict[int, Obj] = {}
        condemned: list[Obj] = []
        for pod in pods:
            ordinal = sp.ordinal_of(pod, name)
            if ordinal is None:
                continue
            if start <= ordinal < start + want:
                replicas[ordinal] = pod
            else:
                condemned.append(pod)
        condemned.sort(key=lambda p: sp.ordinal_of(p, name) or 0, reverse=True)
        ordered = sts["spec"].get("podManagementPolicy", "OrderedReady") != "Parallel"
        strategy = sts["spec"].get("updateStrategy") or {}
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        wake: float | None = None
        for ordinal in range(start, start + want):
            pod = replicas.get(ordinal)
            if pod is not None and sp.is_finished(pod):
                await self._delete_pod(sts, pod)
                if ordered:
                    return
                continue
            if pod is None:
                revision = current if rolling and ordinal - start < partition else update
                await self._create_pod(sts, revision, ordinal)
                if ordered:
                    return
                continue
            if sp.is_terminating(pod) and ordered:
                return
            remaining = sp.available_in(pod, sts)
            if ordered and remaining is None:
                return
            if ordered and remaining:
                wake = remaining
                break
            await self._fix_identity(sts, pod, ordinal)
        if wake is not None:
            self.queue.add_after(object_key(sts), wake + 0.05)
            return
        for pod in condemned:
            if sp.is_terminating(pod):
                if ordered:
                    return
                continue
            await self._delete_pod(sts, pod)
            if ordered:
                return
        await self._delete_scaled_claims(sts, pods)
        if rolling:
            await self._roll(sts, replicas, update, start + partition)

    async def _roll(self, sts: Obj, replicas: dict[int, Obj], update: Obj, lowest: int) -> None:
        """Replace old-revision pods from the highest ordinal down to `lowest`, keeping
        at most maxUnavailable pods unavailable."""
        budget = sp.max_unavailable(sts)
        start = sp.start_ordinal(sts)
        want = int(sts["spec"].get("replicas", 1))
        unavailable = sum(1 for o in range(start, start + want)
                          if o not in replicas or sp.available_in(replicas[o], sts) != 0)
        for ordinal in sorted(replicas, reverse=True):
            pod = replicas[ordinal]
            if ordinal < lowest or sp.is_terminating(pod):
                continue
            if sp.revision_of(pod) == update["metadata"]["name"]:
                continue
            healthy = sp.available_in(pod, sts) == 0
            if healthy and unavailable >= budget:
                return
            await self._delete_pod(sts, pod)
            unavailable += healthy

    async def _create_pod(self, sts: Obj, revision: Obj, ordinal: int) -> None:
        pod = sp.new_pod(sts, revision, ordinal)
        for template in sts["spec"].get("volumeClaimTemplates") or []:
            await self._ensure_claim(sts, template, ordinal, pod["metadata"]["name"])
        try:
            await self.client.create(PODS, pod, sts["metadata"]["namespace"])
        except AlreadyExists:
            return
        except Exception as exc:
            await self.recorder.record(sts, "Warning", "FailedCreate",
                                       f"create Pod {pod['metadata']['name']} in StatefulSet "
                                       f"{sts['metadata']['name']} failed error: {exc}")
            raise
        await self.recorder.record(sts, "Normal", "SuccessfulCreate",
                                   f"create Pod {pod['metadata']['name']} in StatefulSet "
                                   f"{sts['metadata']['name']} successful")

    async def _ensure_claim(self, sts: Obj, template: Obj, ordinal: int, pod: str) -> None:
        claim = sp.new_claim(sts, template, ordinal)
        ns, name = sts["metadata"]["namespace"], claim["metadata"]["name"]
        found = self.claims.get(f"{ns}/{name}")
        if found is not None:
            if found["metadata"].get("deletionTimestamp"):
                raise RuntimeError(f"pvc {name} is being deleted")
            return
        try:
            await self.client.create(PVCS, claim, ns)
        except AlreadyExists:
            return
        await self.recorder.record(sts, "Normal", "SuccessfulCreate",
                                   f"create Claim {name} Pod {pod} in StatefulSet "
                                   f"{sts['metadata']['name']} success")

    async def _fix_identity(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        labels = pod["metadata"].get("labels") or {}
        want = sp.identity_labels(sts, ordinal)
        if all(labels.get(k) == v for k, v in want.items()):
            return
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], {"metadata": {"labels": want}},
                                    namespace=pod["metadata"]["namespace"])
        except NotFound:
            pass

    async def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
        await self.recorder.record(sts, "Normal", "SuccessfulDelete",
                                   f"delete Pod {meta['name']} in StatefulSet "
                                   f"{sts['metadata']['name']} successful")

    async def _delete_scaled_claims(self, sts: Obj, pods: list[Obj]) -> None:
        """whenScaled=Delete: claims of ordinals above the replicas go once their pod has."""
        if sp.retention(sts)[1] != "Delete":
            return
        name = sts["metadata"]["name"]
        start = sp.start_ordinal(sts)
        end = start + int(sts["spec"].get("replicas", 1))
        alive = {p["metadata"]["name"] for p in pods}
        for template in sts["spec"].get("volumeClaimTemplates") or []:
            pattern = re.compile(re.escape(f"{template['metadata']['name']}-{name}-") + r"([0-9]+)$")
            labels = sp.claim_labels(sts, template)
            for claim in self.claims.by_index("namespace", sts["metadata"]["namespace"]):
                m = pattern.match(claim["metadata"]["name"])
                if (m is None or start <= int(m.group(1)) < end
                        or sp.pod_name(sts, int(m.group(1))) in alive
                        or claim["metadata"].get("deletionTimestamp")):
                    continue
                have = claim["metadata"].get("labels") or {}
                if any(have.get(k) != v for k, v in labels.items()):
                    continue
                try:
                    await self.client.delete(PVCS, claim["metadata"]["name"],
                                             claim["metadata"]["namespace"],
                                             preconditions={"uid": claim["metadata"]["uid"]})
                except (NotFound, Conflict):
                    pass

    async def _update_status(self, sts: Obj, pods: list[Obj], current: Obj, update: Obj,
                             collisions: int) -> None:
        current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
        counts, wake = sp.status_counts(sts, pods, current_name, update_name)
        status: Obj = {"observedGeneration": sts["metadata"].get("generation", 1), **counts,
                       "currentRevision": current_name, "updateRevision": update_name,
                       "collisionCount": collisions}
        rolling = (sts["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
        want = int(sts["spec"].get("replicas", 1))
        # A finished rolling update makes the update revision the current one.
        if (rolling == "RollingUpdate" and counts["updatedReplicas"] == counts["replicas"] == want
                and counts["readyReplicas"] == want):
            status["currentRevision"] = update_name
            status["currentReplicas"] = counts["updatedReplicas"]
        if wake is not None:
            self.queue.add_after(object_key(sts), wake + 0.05)
        await self._write_status(sts, status)

    async def _write_status(self, sts: Obj, status: Obj) -> None:
        old = sts.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return
        try:
            await self.client.update_status(SETS, {**sts, "status": {**old, **status}})
        except (NotFound, Conflict):
            pass
