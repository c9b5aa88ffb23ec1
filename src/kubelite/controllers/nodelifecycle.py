"""The node lifecycle controller: lost nodes are found by their Lease, tainted, and
their pods evicted (the NoExecute taint manager) and, once the node's agent has
certainly fenced itself, deleted for good.

Defaults, next to Kubernetes':

    what                                         kubelite     Kubernetes
    agent Lease renewal (AgentConfig)            1 s          10 s
    grace before a silent node is Unknown        4 s          40 s (node-monitor-grace-period)
    agent self-fencing timeout (agent/fencing)   3 s          none
    default toleration of not-ready/unreachable  1 s          300 s (DefaultTolerationSeconds)
    force deletion of a lost node's pods         grace+3.5 s  never (a human deletes them)

A node is silent when neither its Lease's renewTime nor its Ready condition's
lastHeartbeatTime (the agent posting status) has changed for `grace` seconds
(the Lease's own leaseDurationSeconds when longer, so that hollow nodes that
promise 40 s keep it), measured on this controller's clock from when it saw the
last change, as Kubernetes' probeTimestamp, so that clock skew does not matter.
A silent node gets Ready=Unknown (and its other conditions), its pods
Ready=False, and the taints node.kubernetes.io/unreachable NoSchedule and
NoExecute. Pods on a node with NoExecute taints are deleted as soon as a taint
is not tolerated, or after the smallest tolerationSeconds of the tolerations
used, as the taint manager does.

Safe stateful failover, which Kubernetes lacks: an agent that cannot renew its
Lease for `fencing_timeout` seconds kills its own containers (agent/fencing.py).
Once a node has been silent for grace + fencing_timeout + `fencing_margin`, the
agent has fenced itself whatever its clock did, so every pod bound there
(DaemonSet pods aside: they belong to that node) is deleted at once with grace
period 0 and its StatefulSet can recreate the same identity elsewhere.

Deliberate differences: a Node with no Lease at all is left alone (a placeholder
object with no agent behind it, as tests and `kubelite simulate` create), and a
renewed Lease lifts the unreachable taints at once, since the renewal itself
proves the node is reachable; Ready is set back by the agent, never here.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import (
    Client,
    ClientError,
    Conflict,
    Controller,
    EventRecorder,
    InformerFactory,
    NotFound,
    index_by_node_name,
)
from kubelite.client.controller import controller_ref
from kubelite.controllers import podutil
from kubelite.scheduler.plugins.tolerations import tolerates

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
LEASES = lookup("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"
NODE_INDEX = "node"

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
DEFAULT_GRACE = 4.0
DEFAULT_FENCING_TIMEOUT = 3.0
# Slack for the agent noticing its failed renewals late and killing containers.
DEFAULT_FENCING_MARGIN = 0.5
_NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class _Probe:
    # (lease renewTime, Ready lastHeartbeatTime): a change of either is a sign of life.
    signature: tuple[str | None, str | None]
    seen_at: float


def taints_for(*, silent: bool, ready: str | None) -> list[tuple[str, str]]:
    """The (key, effect) lifecycle taints a node should carry."""
    if silent:
        return [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
    if ready == "False":
        return [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
    return []


def toleration_seconds(pod: Obj, taints: list[Obj]) -> float | None:
    """How long the pod may stay with these NoExecute taints: 0 when one is not
    tolerated, None for ever, else the smallest tolerationSeconds used
    (Kubernetes' getMinTolerationTime; a negative value counts as 0)."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    least: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            return 0.0
        for t in used:
            seconds = t.get("tolerationSeconds")
            if seconds is not None:
                value = max(float(seconds), 0.0)
                least = value if least is None else min(least, value)
    return least


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 grace: float = DEFAULT_GRACE, fencing_timeout: float = DEFAULT_FENCING_TIMEOUT,
                 fencing_margin: float = DEFAULT_FENCING_MARGIN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(workers=4)
        assert PODS is not None and NODES is not None and LEASES is not None
        self.client = client
        self.grace = grace
        # Seconds after a node turned silent beyond which its agent has fenced itself.
        self.fenced_after = fencing_timeout + fencing_margin
        self.clock = clock
        self.recorder = EventRecorder(client, component="node-controller")
        # Per node: the last renewTime seen and when this controller saw it change.
        self._probes: dict[str, _Probe] = {}
        self.nodes = self.watch(factory.informer(NODES))
        self.leases = self.watch(factory.informer(LEASES, namespace=LEASE_NAMESPACE),
                                 key_fn=lambda lease: lease["metadata"]["name"])
        self.pods = self.watch(factory.informer(PODS, indexers={NODE_INDEX: index_by_node_name}),
                               key_fn=lambda pod: (pod.get("spec") or {}).get("nodeName"))

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{key}")
        if node is None or lease is None:
            self._probes.pop(key, None)
            return
        now = self.clock()
        spec = lease.get("spec") or {}
        signature = (spec.get("renewTime"),
                     (podutil.condition(node, "Ready") or {}).get("lastHeartbeatTime"))
        probe = self._probes.get(key)
        if probe is None or probe.signature != signature:
            probe = self._probes[key] = _Probe(signature, now)
        grace = max(self.grace, float(spec.get("leaseDurationSeconds") or 0))
        quiet = now - probe.seen_at
        silent = quiet > grace
        if silent:
            node = await self._mark_unknown(node)
        ready = podutil.condition(node, "Ready")
        await self._set_taints(node, taints_for(
            silent=silent, ready=ready.get("status") if ready else None))
        if silent and quiet > grace + self.fenced_after:
            await self._delete_pods(key)
            return
        wake = await self._evict_untolerated(key)
        deadline = grace - quiet if not silent else grace + self.fenced_after - quiet
        if wake is not None:
            deadline = min(deadline, wake)
        self.queue.add_after(key, max(deadline, 0.0) + 0.05)

    # -- the node ------------------------------------------------------------------

    async def _mark_unknown(self, node: Obj) -> Obj:
        """All conditions Unknown and the node's pods not Ready (MarkPodsNotReady);
        returns the node as stored."""
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "Unknown" for c in conditions):
            return node
        now = podutil.rfc3339(podutil.now_utc())
        body = copy.deepcopy(node)
        present = {c.get("type") for c in conditions}
        # Heartbeats stay as the agent last posted them: only the agent moves them.
        created = node["metadata"].get("creationTimestamp") or now
        fresh = [{"type": kind, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                  "message": "Kubelet never posted node status.",
                  "lastHeartbeatTime": created, "lastTransitionTime": now}
                 for kind in _NODE_CONDITIONS if kind not in present]
        for cond in body.setdefault("status", {}).setdefault("conditions", []):
            if cond.get("type") in _NODE_CONDITIONS:
                cond.update(status="Unknown", reason="NodeStatusUnknown",
                            message="Kubelet stopped posting node status.",
                            lastTransitionTime=now)
        body["status"]["conditions"].extend(fresh)
        stored = await self.client.update_status(NODES, body)
        name = node["metadata"]["name"]
        log.info("node %s stopped renewing its lease: Ready=Unknown", name)
        await self.recorder.record(node, "Normal", "NodeNotReady",
                                   f"Node {name} status is now: NodeNotReady")
        patch = {"status": {"conditions": [{"type": "Ready", "status": "False",
                                            "lastTransitionTime": now}]}}
        await asyncio.gather(*(self._patch_pod_status(pod, patch)
                               for pod in self.pods.by_index(NODE_INDEX, name)
                               if podutil.is_ready(pod)))
        return stored

    async def _patch_pod_status(self, pod: Obj, patch: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.patch(PODS, meta["name"], patch, patch_type="strategic",
                                    namespace=meta["namespace"], subresource="status")
        except NotFound:
            pass

    async def _set_taints(self, node: Obj, wanted: list[tuple[str, str]]) -> None:
        taints = (node.get("spec") or {}).get("taints") or []
        ours = {(t.get("key"), t.get("effect")) for t in taints
                if t.get("key") in (UNREACHABLE, NOT_READY)}
        if ours == set(wanted):
            return
        now = podutil.rfc3339(podutil.now_utc())
        kept = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY)
                or (t.get("key"), t.get("effect")) in wanted]
        have = {(t.get("key"), t.get("effect")) for t in kept}
        added = [{"key": key, "effect": effect, **({"timeAdded": now}
                                                    if effect == "NoExecute" else {})}
                 for key, effect in wanted if (key, effect) not in have]
        body = copy.deepcopy(node)
        body.setdefault("spec", {})["taints"] = kept + added or None
        try:
            await self.client.update(NODES, body)
        except Conflict:
            # The informer brings the newer node and another sync.
            return
        log.info("node %s: lifecycle taints now %s", node["metadata"]["name"], sorted(wanted))

    # -- its pods ------------------------------------------------------------------

    async def _evict_untolerated(self, node_name: str) -> float | None:
        """Delete the pods whose NoExecute toleration ran out; seconds until the next one."""
        node = self.nodes.get(node_name)
        taints = [t for t in ((node or {}).get("spec") or {}).get("taints") or []
                  if t.get("effect") == "NoExecute"]
        if not taints:
            return None
        added = [podutil.parse_time(t.get("timeAdded")) for t in taints]
        since = max((a for a in added if a is not None), default=None)
        elapsed = (podutil.now_utc() - since).total_seconds() if since else 0.0
        wake: float | None = None
        victims: list[Obj] = []
        for pod in self.pods.by_index(NODE_INDEX, node_name):
            if pod["metadata"].get("deletionTimestamp") or not podutil.is_active(pod):
                continue
            allowed = toleration_seconds(pod, taints)
            if allowed is None:
                continue
            if allowed <= elapsed:
                victims.append(pod)
            else:
                wake = allowed - elapsed if wake is None else min(wake, allowed - elapsed)
        await asyncio.gather(*(self._evict(pod) for pod in victims))
        return wake

    async def _evict(self, pod: Obj) -> None:
        meta = pod["metadata"]
        now = podutil.rfc3339(podutil.now_utc())
        target = {"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": now}]}}
        try:
            await self._patch_pod_status(pod, target)
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
        await self.recorder.record(pod, "Normal", "TaintManagerEviction",
                                   f"Marking for deletion Pod {meta['namespace']}/{meta['name']}")

    async def _delete_pods(self, node_name: str) -> None:
        """The node's agent has fenced itself: its pods are gone, say so to the API."""
        doomed = [pod for pod in self.pods.by_index(NODE_INDEX, node_name)
                  if (controller_ref(pod) or {}).get("kind") != "DaemonSet"]
        if doomed:
            log.info("node %s lost: deleting its %d pods", node_name, len(doomed))
        results = await asyncio.gather(*(self._force_delete(p) for p in doomed),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _force_delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
        except ClientError as e:
            log.warning("could not delete pod %s/%s of a lost node: %s",
                        meta["namespace"], meta["name"], e)
            raise
