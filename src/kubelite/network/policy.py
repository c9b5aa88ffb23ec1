"""NetworkPolicy enforcement on one node: Pods, Namespaces, NetworkPolicies -> nftables.

Runs inside the node agent, in the node's network namespace (or, with `netns`,
programs a named one through nsenter), beside the service proxy. Informer
events mark the state dirty; after `debounce` seconds the whole table is
rebuilt (policy_rules.build) and, when it differs from what was applied last,
replaced in one `nft -f -` transaction, so the kernel never holds half a
policy. Peers can be anywhere in the cluster, so every Pod is watched, slimmed
to what policies read; the pods policed are those with spec.nodeName equal to
this node.

Stopping leaves the table in place, so policies hold while the agent restarts;
`delete_table` is for `kubelite down` and tests.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, Informer, index_by_node_name
from kubelite.network import policy_rules as rules
from kubelite.network.nftsync import NftSyncer, run_nft

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
NAMESPACES = lookup("", "v1", "namespaces")
NETWORK_POLICIES = lookup("networking.k8s.io", "v1", "networkpolicies")
NODE_INDEX = "node"


def _slim_pod(pod: Obj) -> Obj:
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
    return {
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                     "labels": meta.get("labels") or {},
                     "resourceVersion": meta.get("resourceVersion")},
        "spec": {"nodeName": spec.get("nodeName"), "hostNetwork": spec.get("hostNetwork"),
                 "containers": [{"ports": [p for p in c.get("ports") or [] if p.get("name")]}
                                for c in spec.get("containers") or []]},
        "status": {"phase": status.get("phase"), "podIP": status.get("podIP"),
                   "podIPs": status.get("podIPs") or []}}


def _slim_namespace(ns: Obj) -> Obj:
    meta = ns["metadata"]
    return {"metadata": {"name": meta["name"], "labels": meta.get("labels") or {},
                         "resourceVersion": meta.get("resourceVersion")}}


async def delete_table(*, netns: str | None = None) -> None:
    """Remove the policy table (missing is fine)."""
    await run_nft(rules.DELETE_SCRIPT, netns=netns)


class PolicyEnforcer(NftSyncer):
    """`async with PolicyEnforcer(client, node_name=...)`: keeps the table in sync."""

    what = "network policy sync"

    def __init__(self, client: Client, *, node_name: str, netns: str | None = None,
                 debounce: float = 0.05, retry: float = 1.0) -> None:
        assert PODS is not None and NAMESPACES is not None and NETWORK_POLICIES is not None
        super().__init__(netns=netns, debounce=debounce, retry=retry)
        self.node_name = node_name
        self.pods = Informer(client, PODS, transform=_slim_pod,
                             indexers={NODE_INDEX: index_by_node_name})
        self.namespaces = Informer(client, NAMESPACES, transform=_slim_namespace)
        self.policies = Informer(client, NETWORK_POLICIES)
        self.watch(self.pods, self.namespaces, self.policies)
        # The script the kernel holds; None forces the next sync to apply.
        self.applied: str | None = None

    def script(self) -> str:
        everyone = [p for obj in self.pods.list() if (p := rules.pod_from_object(obj))]
        local = [p for obj in self.pods.by_index(NODE_INDEX, self.node_name)
                 if (p := rules.pod_from_object(obj))]
        namespaces = {ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
                      for ns in self.namespaces.list()}
        return rules.build(local, self.policies.list(), rules.Cluster(everyone, namespaces))

    async def sync(self) -> None:
        script = self.script()
        if script != self.applied:
            self.applied = None
            await run_nft(script, netns=self.netns)
            self.applied = script
        self.syncs += 1
        self.synced.set()
