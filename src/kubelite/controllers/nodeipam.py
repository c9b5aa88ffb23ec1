"""Node IPAM: every node gets a podCIDR, a /24 of the cluster CIDR, as
kube-controller-manager's range allocator (--allocate-node-cidrs) assigns them.

The CIDRs in use are those the nodes in the cache hold plus those this
controller assigned and has not yet seen come back, so a lagging cache cannot
hand one CIDR to two nodes; one worker keeps allocation sequential. Candidates
are taken round-robin after the last one assigned, so that a CIDR released by a
deleted node is not reused at once (stale routes to it may still exist). A
node's podCIDR is never changed once set (the API forbids it).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, Controller, EventRecorder, InformerFactory, NotFound
from kubelite.client.errors import Conflict

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODES = lookup("", "v1", "nodes")
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
# kube-controller-manager's --node-cidr-mask-size default for IPv4.
DEFAULT_NODE_MASK = 24


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


class CIDRSet:
    """The node-sized subnets of a cluster CIDR, handed out round-robin."""

    def __init__(self, cluster_cidr: str, *, mask: int = DEFAULT_NODE_MASK) -> None:
        self.cluster = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask < self.cluster.prefixlen:
            raise ValueError(f"node CIDR mask /{mask} is larger than the cluster CIDR "
                             f"{self.cluster}")
        self.mask = mask
        self.size = 1 << (mask - self.cluster.prefixlen)
        self._next = 0

    def index(self, cidr: str) -> int | None:
        """Where `cidr` sits in the set, if it is one of its subnets."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.cluster.version or net.prefixlen != self.mask or \
                not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        step = 1 << (net.max_prefixlen - self.mask)
        return (int(net.network_address) - int(self.cluster.network_address)) // step

    def subnet(self, index: int) -> str:
        step = 1 << (self.cluster.max_prefixlen - self.mask)
        base = int(self.cluster.network_address) + index * step
        return f"{ipaddress.ip_address(base)}/{self.mask}"

    def allocate(self, used: set[int]) -> str | None:
        for offset in range(self.size):
            i = (self._next + offset) % self.size
            if i not in used:
                self._next = (i + 1) % self.size
                return self.subnet(i)
        return None


class NodeIPAMController(Controller):
    name = "node-ipam-controller"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
                 node_mask: int = DEFAULT_NODE_MASK) -> None:
        # One worker: allocations must see each other.
        super().__init__(workers=1)
        assert NODES is not None
        self.client = client
        self.cidrs = CIDRSet(cluster_cidr, mask=node_mask)
        self.nodes = self.watch(factory.informer(NODES), key_fn=lambda n: n["metadata"]["name"])
        self.recorder = EventRecorder(client, component="cidrAllocator")
        # node name -> index of the CIDR assigned but not yet seen in the cache.
        self._pending: dict[str, int] = {}
        # node name -> index of the CIDR it has, once first built (see _used).
        self._assigned: dict[str, int] | None = None
        # Nodes that found the range exhausted: they wait for a node's deletion to
        # free a CIDR, rather than each retrying (and reporting) on a timer.
        self._waiting: set[str] = set()

    def _used(self) -> set[int]:
        if self._assigned is None:
            # Once, from the whole cache (the range allocator marks every existing
            # node's CIDR at start); after that, kept up to date node by node, so
            # that a cluster of thousands of nodes does not rescan them per sync.
            self._assigned = {}
            for node in self.nodes.list():
                self._record(node)
        used = set(self._assigned.values())
        used.update(self._pending.values())
        return used

    def _record(self, node: Obj) -> None:
        assert self._assigned is not None
        for cidr in node_cidrs(node):
            i = self.cidrs.index(cidr)
            if i is not None:
                self._assigned[node["metadata"]["name"]] = i

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            freed = self._pending.pop(key, None) is not None
            self._waiting.discard(key)
            if self._assigned is not None and self._assigned.pop(key, None) is not None:
                freed = True
            if freed and self._waiting:
                for name in self._waiting:
                    self.queue.add(name)
            return
        if node_cidrs(node):
            self._pending.pop(key, None)
            if self._assigned is not None:
                self._record(node)
            return
        if key in self._pending:
            return  # assigned; the cache has not caught up yet
        cidr = self.cidrs.allocate(self._used())
        if cidr is None:
            if key not in self._waiting:
                if not self._waiting:
                    log.warning("no podCIDR left in %s: nodes wait for one to be freed",
                                self.cidrs.cluster)
                self._waiting.add(key)
                await self.recorder.record(node, "Normal", "CIDRNotAvailable",
                                           f"Node {key} status is now: CIDRNotAvailable")
            return
        self._waiting.discard(key)
        patch = {"metadata": {"uid": node["metadata"]["uid"]},
                 "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        try:
            await self.client.patch(NODES, key, patch, patch_type="merge")
        except NotFound:
            return
        except Conflict:
            self.queue.add_after(key, 0.1)
            return
        index = self.cidrs.index(cidr)
        if index is not None:
            self._pending[key] = index
