"""The Deployment controller: ReplicaSets per pod template, rolled as the strategy says.

As Kubernetes' deployment controller: each distinct pod template gets a
ReplicaSet named `<deployment>-<pod-template-hash>` whose pods carry the hash as a
label; the newest is the *new* ReplicaSet, the rest are *old*. RollingUpdate
scales the new one up within `maxSurge` and the old ones down while at least
`replicas - maxUnavailable` pods stay available; Recreate empties the old ones
first. Revisions live in the `deployment.kubernetes.io/revision` annotation;
old ReplicaSets beyond `revisionHistoryLimit` are deleted. `kubectl rollout`
(status, history, undo, pause, resume, restart) works on these facts.
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

import orjson

from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.client import AlreadyExists, Client, Controller, InformerFactory, NotFound, object_key
from kubelite.client.controller import controller_ref
from kubelite.client.errors import Conflict
from kubelite.controllers import podutil

Obj = dict[str, Any]
DEPLOYMENTS = lookup("apps", "v1", "deployments")
REPLICASETS = lookup("apps", "v1", "replicasets")
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Annotations of a Deployment that are not copied to its ReplicaSets.
_SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", REVISION,
                        "deployment.kubernetes.io/revision-history", DESIRED_REPLICAS,
                        MAX_REPLICAS)
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A stable short hash of a pod template (Kubernetes hashes its Go struct; the
    value differs, the role is the same)."""
    digest = hashlib.sha256(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    digest.update(str(collision_count).encode())
    n = int.from_bytes(digest.digest()[:8], "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_ALPHANUMS))
        out.append(_ALPHANUMS[r])
    return "".join(out)


def _resolve(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def surge_and_unavailable(dep: Obj) -> tuple[int, int]:
    replicas = int(dep["spec"].get("replicas", 1))
    rolling = (dep["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = _resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # Kubernetes' rule: a rollout must be able to make progress.
    return surge, unavailable


def _template_without_hash(rs: Obj) -> Obj:
    template = copy.deepcopy(rs["spec"]["template"])
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return template


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 0))


def _status(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=4)
        assert DEPLOYMENTS is not None and REPLICASETS is not None
        self.client = client
        self.deployments = self.watch(factory.informer(DEPLOYMENTS))
        self.sets = self.watch_owned(factory.informer(REPLICASETS), owner=self.deployments,
                                     owner_kind="Deployment",
                                     on_orphan=self._deployments_for_orphan)

    def _deployments_for_orphan(self, rs: Obj) -> list[str]:
        labels = rs["metadata"].get("labels") or {}
        return [object_key(d) for d in self.deployments.by_index(
                    "namespace", rs["metadata"].get("namespace"))
                if LabelSelector.from_object(d["spec"].get("selector")).matches(labels)]

    async def sync(self, key: str) -> None:
        dep = self.deployments.get(key)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return
        sets = await self._claim(dep)
        new, olds = self._split(dep, sets)
        paused = bool(dep["spec"].get("paused"))
        if new is None and not paused:
            new = await self._create_new(dep, olds)
            if new is None:
                return
        elif new is not None:
            new = await self._sync_revision(dep, new, olds)
        if not paused and new is not None:
            if (dep["spec"].get("strategy") or {}).get("type") == "Recreate":
                await self._recreate(dep, new, olds)
            else:
                await self._rolling(dep, new, olds)
        elif paused:
            await self._scale_paused(dep, new, olds)
        await self._cleanup(dep, olds)
        await self._update_status(dep, new, olds)

    # ---- ownership and the new/old split ------------------------------------------

    async def _claim(self, dep: Obj) -> list[Obj]:
        uid = dep["metadata"]["uid"]
        selector = LabelSelector.from_object(dep["spec"].get("selector"))
        owned = []
        for rs in self.sets.by_index("namespace", dep["metadata"]["namespace"]):
            ref = controller_ref(rs)
            if ref is not None and ref.get("uid") == uid:
                owned.append(rs)
            elif ref is None and selector.matches(rs["metadata"].get("labels")):
                meta = rs["metadata"]
                refs = [*meta.get("ownerReferences", []), podutil.owner_reference(dep)]
                try:
                    owned.append(await self.client.patch(
                        REPLICASETS, meta["name"], {"metadata": {
                            "ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}},
                        namespace=meta["namespace"]))
                except (NotFound, Conflict):
                    continue
        return owned

    def _split(self, dep: Obj, sets: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        template = dep["spec"]["template"]
        new = None
        for rs in sorted(sets, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            if new is None and _template_without_hash(rs) == template:
                new = rs
        return new, [rs for rs in sets if rs is not new]

    async def _create_new(self, dep: Obj, olds: list[Obj]) -> Obj | None:
        meta = dep["metadata"]
        collisions = int((dep.get("status") or {}).get("collisionCount", 0))
        phash = template_hash(dep["spec"]["template"], collisions)
        template = copy.deepcopy(dep["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = phash
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = phash
        revision = max((_revision(rs) for rs in olds), default=0) + 1
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if k not in _SKIPPED_ANNOTATIONS}
        surge, _ = surge_and_unavailable(dep)
        replicas = int(dep["spec"].get("replicas", 1))
        annotations.update({REVISION: str(revision), DESIRED_REPLICAS: str(replicas),
                            MAX_REPLICAS: str(replicas + surge)})
        start = 0
        if (dep["spec"].get("strategy") or {}).get("type") != "Recreate":
            current = sum(_replicas(rs) for rs in olds)
            start = max(0, min(replicas, replicas + surge - current))
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{phash}", "namespace": meta["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": annotations,
                         "ownerReferences": [podutil.owner_reference(dep)]},
            "spec": {"replicas": start, "minReadySeconds": dep["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        try:
            created = await self.client.create(REPLICASETS, rs, meta["namespace"])
        except AlreadyExists:
            # A ReplicaSet of that name with another template: a hash collision.
            status = {**(dep.get("status") or {}), "collisionCount": collisions + 1}
            await self.client.update_status(DEPLOYMENTS, {**dep, "status": status})
            return None
        await self._annotate_revision(dep, revision)
        return created

    async def _sync_revision(self, dep: Obj, new: Obj, olds: list[Obj]) -> Obj:
        """A template rolled back to an old ReplicaSet makes it new again: it gets the
        next revision number, as `kubectl rollout undo` expects."""
        top = max((_revision(rs) for rs in olds), default=0)
        revision = _revision(new)
        if revision <= top:
            revision = top + 1
            new = await self._patch_annotations(new, {REVISION: str(revision)})
        await self._annotate_revision(dep, revision)
        return new

    async def _annotate_revision(self, dep: Obj, revision: int) -> None:
        if (dep["metadata"].get("annotations") or {}).get(REVISION) == str(revision):
            return
        await self.client.patch(DEPLOYMENTS, dep["metadata"]["name"],
                                {"metadata": {"annotations": {REVISION: str(revision)}}},
                                namespace=dep["metadata"]["namespace"])

    async def _patch_annotations(self, rs: Obj, annotations: dict[str, str]) -> Obj:
        return await self.client.patch(REPLICASETS, rs["metadata"]["name"],
                                       {"metadata": {"annotations": annotations}},
                                       namespace=rs["metadata"]["namespace"])

    async def _scale(self, rs: Obj, replicas: int, dep: Obj) -> Obj:
        if _replicas(rs) == replicas:
            return rs
        surge, _ = surge_and_unavailable(dep)
        want = int(dep["spec"].get("replicas", 1))
        return await self.client.patch(REPLICASETS, rs["metadata"]["name"], {
            "metadata": {"annotations": {DESIRED_REPLICAS: str(want),
                                         MAX_REPLICAS: str(want + surge)}},
            "spec": {"replicas": replicas},
        }, namespace=rs["metadata"]["namespace"])

    # ---- strategies ---------------------------------------------------------------

    async def _rolling(self, dep: Obj, new: Obj, olds: list[Obj]) -> None:
        replicas = int(dep["spec"].get("replicas", 1))
        surge, unavailable = surge_and_unavailable(dep)
        total = _replicas(new) + sum(_replicas(rs) for rs in olds)
        if _replicas(new) < replicas:
            room = replicas + surge - total
            if room > 0:
                new = await self._scale(new, min(replicas, _replicas(new) + room), dep)
        elif _replicas(new) > replicas:
            new = await self._scale(new, replicas, dep)
        active_olds = [rs for rs in olds if _replicas(rs) > 0]
        if not active_olds:
            return
        min_available = replicas - unavailable
        new_unavailable = _replicas(new) - _status(new, "availableReplicas")
        all_pods = _replicas(new) + sum(_replicas(rs) for rs in active_olds)
        budget = all_pods - min_available - max(new_unavailable, 0)
        # Old pods that are not available can go at once: they serve nobody.
        for rs in sorted(active_olds, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            unhealthy = _replicas(rs) - _status(rs, "availableReplicas")
            if unhealthy > 0:
                rs_replicas = max(_replicas(rs) - unhealthy, 0)
                await self._scale(rs, rs_replicas, dep)
                rs["spec"] = {**rs["spec"], "replicas": rs_replicas}
        available = _status(new, "availableReplicas") + sum(
            min(_status(rs, "availableReplicas"), _replicas(rs)) for rs in active_olds)
        budget = min(budget, available - min_available)
        for rs in sorted(active_olds, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            if budget <= 0:
                break
            step = min(budget, _replicas(rs))
            if step > 0:
                await self._scale(rs, _replicas(rs) - step, dep)
                budget -= step

    async def _recreate(self, dep: Obj, new: Obj, olds: list[Obj]) -> None:
        running = False
        for rs in olds:
            if _replicas(rs) > 0:
                await self._scale(rs, 0, dep)
                running = True
            if _status(rs, "replicas") > 0:
                running = True
        if not running:
            await self._scale(new, int(dep["spec"].get("replicas", 1)), dep)

    async def _scale_paused(self, dep: Obj, new: Obj | None, olds: list[Obj]) -> None:
        """A paused Deployment still follows its replica count, on its newest set."""
        target = new or max(olds, key=_revision, default=None)
        if target is not None and not [rs for rs in olds if rs is not target and _replicas(rs)]:
            await self._scale(target, int(dep["spec"].get("replicas", 1)), dep)

    async def _cleanup(self, dep: Obj, olds: list[Obj]) -> None:
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        idle = [rs for rs in olds if _replicas(rs) == 0 and _status(rs, "replicas") == 0
                and not rs["metadata"].get("deletionTimestamp")]
        idle.sort(key=_revision)
        for rs in idle[:max(len(idle) - limit, 0)]:
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["name"],
                                         rs["metadata"]["namespace"])
            except NotFound:
                pass

    # ---- status -------------------------------------------------------------------

    async def _update_status(self, dep: Obj, new: Obj | None, olds: list[Obj]) -> None:
        sets = ([new] if new else []) + olds
        replicas = int(dep["spec"].get("replicas", 1))
        _, unavailable_allowed = surge_and_unavailable(dep)
        total = sum(_status(rs, "replicas") for rs in sets)
        available = sum(_status(rs, "availableReplicas") for rs in sets)
        status: Obj = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": _status(new, "replicas") if new else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in sets),
            "availableReplicas": available,
        }
        if total - available > 0:
            status["unavailableReplicas"] = total - available
        old = dep.get("status") or {}
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        now = podutil.rfc3339(podutil.now_utc())
        conditions = {c["type"]: c for c in old.get("conditions") or []}
        if available >= replicas - unavailable_allowed:
            _set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                           "Deployment has minimum availability.", now)
        else:
            _set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.", now)
        self._progress(dep, new, status, conditions, now)
        status["conditions"] = [conditions[k] for k in ("Available", "Progressing")
                                if k in conditions]
        if _same_status(status, old):
            return
        try:
            await self.client.update_status(DEPLOYMENTS, {**dep, "status": status})
        except (NotFound, Conflict):
            # A newer version is on its way through the informer and will sync again.
            pass

    def _progress(self, dep: Obj, new: Obj | None, status: Obj, conditions: dict,
                  now: str) -> None:
        name = new["metadata"]["name"] if new else ""
        replicas = int(dep["spec"].get("replicas", 1))
        if dep["spec"].get("paused"):
            _set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused",
                           "Deployment is paused", now)
            return
        complete = (new is not None and status["updatedReplicas"] == replicas
                    and status["replicas"] == replicas and status["availableReplicas"] == replicas)
        if complete:
            _set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{name}" has successfully progressed.', now,
                           always_update=False)
            return
        current = conditions.get("Progressing")
        deadline = dep["spec"].get("progressDeadlineSeconds")
        if current and current.get("reason") == "ProgressDeadlineExceeded":
            return
        if current and deadline is not None:
            since = podutil.parse_time(current.get("lastUpdateTime"))
            if since and (podutil.now_utc() - since).total_seconds() > int(deadline):
                _set_condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                               f'ReplicaSet "{name}" has timed out progressing.', now)
                return
            if since is not None:
                left = int(deadline) - (podutil.now_utc() - since).total_seconds()
                self.queue.add_after(object_key(dep), max(left, 0) + 1)
        progressed = current is None or _progressed(dep, status)
        if progressed:
            _set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                           f'ReplicaSet "{name}" is progressing.', now)


def _progressed(dep: Obj, status: Obj) -> bool:
    old = dep.get("status") or {}
    return any(status.get(k, 0) != old.get(k, 0)
               for k in ("updatedReplicas", "availableReplicas", "readyReplicas", "replicas"))


def _set_condition(conditions: dict, kind: str, status: str, reason: str, message: str,
                   now: str, *, always_update: bool = True) -> None:
    old = conditions.get(kind)
    if old and old.get("status") == status and old.get("reason") == reason:
        if always_update:
            conditions[kind] = {**old, "lastUpdateTime": now, "message": message}
        return
    conditions[kind] = {"type": kind, "status": status, "lastUpdateTime": now,
                        "lastTransitionTime": now, "reason": reason, "message": message}


def _same_status(new: Obj, old: Obj) -> bool:
    def strip(s: Obj) -> Obj:
        conds = [{k: v for k, v in c.items() if k != "lastUpdateTime"}
                 for c in s.get("conditions") or []]
        return {**s, "conditions": conds}
    return strip(new) == strip(old)


