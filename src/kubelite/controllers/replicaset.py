"""The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector.

As Kubernetes' replica_set.go: pods map to their ReplicaSet through the
controller ownerReference; matching orphans are adopted and owned pods that stop
matching are released; creations and deletions are announced in Expectations
before they are made, so a cache that has not yet seen them cannot cause a
second round; creates go out in slow-start batches; the pods deleted first are
the ones that matter least (see podutil.deletion_rank).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector
from kubelite.client import (
    AlreadyExists,
    Client,
    Controller,
    EventRecorder,
    Expectations,
    InformerFactory,
    NotFound,
    object_key,
    slow_start_batch,
)
from kubelite.client.controller import controller_ref
from kubelite.client.errors import Conflict
from kubelite.controllers import podutil

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
REPLICASETS = lookup("apps", "v1", "replicasets")
# Kubernetes' burstReplicas: at most this many creations or deletions per sync.
BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1


class ReplicaSetController(Controller):
    name = "replicaset-controller"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(workers=4)
        assert PODS is not None and REPLICASETS is not None
        self.client = client
        self.recorder = EventRecorder(client, component="replicaset-controller")
        # Announced creations/deletions per ReplicaSet key, confirmed by pod events.
        self.expectations = Expectations()
        self.sets = self.watch(factory.informer(REPLICASETS))
        self.pods = self.watch_owned(
            factory.informer(PODS), owner=self.sets, owner_kind="ReplicaSet",
            expectations=self.expectations, on_orphan=self._sets_for_orphan)

    def _sets_for_orphan(self, pod: Obj) -> list[str]:
        """ReplicaSets whose selector matches an orphan, so they can adopt it."""
        labels = pod["metadata"].get("labels") or {}
        ns = pod["metadata"].get("namespace")
        return [object_key(rs) for rs in self.sets.by_index("namespace", ns)
                if LabelSelector.from_object(rs["spec"].get("selector")).matches(labels)]

    async def sync(self, key: str) -> None:
        rs = self.sets.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        ns = rs["metadata"]["namespace"]
        selector = LabelSelector.from_object(rs["spec"].get("selector"))
        owned = await self._claim_pods(rs, selector, self.pods.by_index("namespace", ns))
        active = [p for p in owned if podutil.is_active(p)]
        error: BaseException | None = None
        if self.expectations.satisfied(key) and not rs["metadata"].get("deletionTimestamp"):
            error = await self._manage(key, rs, active)
        await self._update_status(rs, active, error)
        if error is not None:
            raise error

    async def _claim_pods(self, rs: Obj, selector: LabelSelector, pods: list[Obj]) -> list[Obj]:
        """Owned pods, after adopting matching orphans and releasing non-matching ones."""
        uid = rs["metadata"]["uid"]
        owned: list[Obj] = []
        for pod in pods:
            ref = controller_ref(pod)
            matches = selector.matches(pod["metadata"].get("labels"))
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(pod)
                elif not pod["metadata"].get("deletionTimestamp"):
                    await podutil.set_pod_owners(self.client, pod, [r for r in pod["metadata"]["ownerReferences"]
                                                if r.get("uid") != uid])
            elif ref is None and matches and podutil.is_active(pod) and not rs["metadata"].get(
                    "deletionTimestamp"):
                refs = list(pod["metadata"].get("ownerReferences") or [])
                refs.append(podutil.owner_reference(rs))
                if await podutil.set_pod_owners(self.client, pod, refs):
                    owned.append(pod)
        return owned


    async def _manage(self, key: str, rs: Obj, active: list[Obj]) -> BaseException | None:
        want = int(rs["spec"].get("replicas", 1))
        diff = len(active) - want
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, count)
            template = rs["spec"]["template"]
            name = rs["metadata"]["name"]

            async def create() -> None:
                pod = podutil.pod_from_template(rs, template, generate_name=f"{name}-")
                try:
                    await self.client.create(PODS, pod, rs["metadata"]["namespace"])
                except BaseException:
                    # The informer will never see this pod: stop waiting for it.
                    self.expectations.lower_creations(key, 1)
                    raise

            done, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, create)
            self.expectations.lower_creations(key, count - done - (1 if error else 0))
            if error is not None and not isinstance(error, AlreadyExists):
                await self.recorder.record(rs, "Warning", "FailedCreate",
                                           f"Error creating: {error}")
                return error
            if done:
                log.debug("%s: created %d pods", key, done)
        elif diff > 0:
            victims = sorted(active, key=podutil.deletion_rank)[:min(diff, BURST_REPLICAS)]
            self.expectations.expect_deletions(key, [object_key(p) for p in victims])
            results = await asyncio.gather(*(self._delete(key, p) for p in victims),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    return result
        return None

    async def _delete(self, key: str, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            self.expectations.deletion_observed(key, object_key(pod))
        except BaseException:
            self.expectations.deletion_observed(key, object_key(pod))
            raise
        else:
            await self.recorder.record(
                self.sets.get(key) or pod, "Normal", "SuccessfulDelete",
                f"Deleted pod: {meta['name']}")

    async def _update_status(self, rs: Obj, active: list[Obj],
                             error: BaseException | None) -> None:
        template_labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        min_ready = int(rs["spec"].get("minReadySeconds", 0))
        now = podutil.now_utc()
        ready = available = fully_labeled = 0
        wake: float | None = None
        for pod in active:
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                fully_labeled += 1
            remaining = podutil.available_in(pod, min_ready, now)
            if remaining is None:
                continue
            ready += 1
            if remaining == 0:
                available += 1
            else:
                wake = remaining if wake is None else min(wake, remaining)
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        conditions = [c for c in (rs.get("status") or {}).get("conditions") or []
                      if c.get("type") != "ReplicaFailure"]
        if error is not None:
            conditions.append({"type": "ReplicaFailure", "status": "True",
                               "reason": "FailedCreate", "message": str(error),
                               "lastTransitionTime": podutil.rfc3339(now)})
        if conditions:
            status["conditions"] = conditions
        if wake is not None:
            self.queue.add_after(object_key(rs), wake + 0.05)
        if status == rs.get("status"):
            return
        body = {**rs, "status": status}
        try:
            await self.client.update_status(REPLICASETS, body)
        except (NotFound, Conflict):
            # A newer version is on its way through the informer and will sync again.
            pass
