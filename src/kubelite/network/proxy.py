"""The service proxy of one node: Services and EndpointSlices -> nftables.

Runs inside the node agent, in the node's network namespace (or, with `netns`,
programs a named one through nsenter). Informer events only mark the state
dirty; a sync loop waits `debounce` seconds so that a burst of events becomes
one transaction, rebuilds the ruleset (proxy_rules.build) and applies the
difference from what the kernel holds with one `nft -f -`. The first sync, and
any sync after a failed one, replaces the whole table.

Stopping leaves the rules in place: connections keep flowing while an agent
restarts, and the new agent's first (full) sync replaces them. `delete_table`
is for `kubelite down` and tests.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Client, Informer
from kubelite.network import proxy_rules as rules
from kubelite.network.nftsync import NftSyncer, run_nft

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SERVICES = lookup("", "v1", "services")
ENDPOINTSLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
_PROTOCOLS = ("TCP", "UDP", "SCTP")


async def delete_table(*, netns: str | None = None) -> None:
    """Remove the proxy's table (missing is fine)."""
    await run_nft(rules.DELETE_SCRIPT, netns=netns)


def _slice_endpoints(slices: list[Obj], port: Obj) -> tuple[rules.Endpoint, ...]:
    name, protocol = port.get("name") or "", port.get("protocol", "TCP")
    seen: dict[tuple[str, int], rules.Endpoint] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        number = next((p.get("port") for p in s.get("ports") or []
                       if (p.get("name") or "") == name and p.get("protocol", "TCP") == protocol),
                      None)
        if not number:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            # An unset condition means unknown, which Kubernetes treats as ready.
            ready = cond.get("ready") is not False
            serving = cond.get("serving", ready) is not False
            for ip in (ep.get("addresses") or [])[:1]:
                seen.setdefault((ip, number), rules.Endpoint(
                    ip=ip, port=number, node_name=ep.get("nodeName"), ready=ready,
                    serving=serving, terminating=bool(cond.get("terminating"))))
    return tuple(seen.values())


def service_ports(svc: Obj, slices: list[Obj]) -> list[rules.ServicePort]:
    """What the proxy programs for one Service; nothing for headless and ExternalName."""
    spec = svc.get("spec") or {}
    cluster_ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return []
    if ":" in cluster_ip:
        return []
    meta = svc["metadata"]
    external = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer":
        external += [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get(
            "ingress") or [] if i.get("ip") and ":" not in i["ip"]]
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds", 10800))
    external_capable = spec.get("type") in ("NodePort", "LoadBalancer")
    out = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol", "TCP")
        if protocol not in _PROTOCOLS:
            continue
        out.append(rules.ServicePort(
            namespace=meta["namespace"], name=meta["name"], port_name=port.get("name") or "",
            protocol=protocol, cluster_ip=cluster_ip, port=int(port["port"]),
            node_port=int(port.get("nodePort") or 0) if external_capable else 0,
            external_ips=tuple(dict.fromkeys(external)), affinity_timeout=affinity,
            external_local=external_capable and spec.get("externalTrafficPolicy") == "Local",
            internal_local=spec.get("internalTrafficPolicy") == "Local",
            endpoints=_slice_endpoints(slices, port)))
    return out


def _slice_service(slice_: Obj) -> list[str]:
    name = (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{slice_['metadata'].get('namespace')}/{name}"] if name else []


class ServiceProxy(NftSyncer):
    """`async with ServiceProxy(client, node_name=...)`: keeps the table in sync."""

    what = "service proxy sync"

    def __init__(self, client: Client, *, node_name: str | None,
                 cluster_cidr: str = DEFAULT_CLUSTER_CIDR, netns: str | None = None,
                 debounce: float = 0.02, retry: float = 1.0) -> None:
        assert SERVICES is not None and ENDPOINTSLICES is not None
        super().__init__(netns=netns, debounce=debounce, retry=retry)
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES,
                               indexers={"service": _slice_service})
        self.watch(self.services, self.slices)
        # What the kernel holds, as last applied; None forces a full replacement.
        self.applied: rules.Ruleset | None = None
        # Rules of the ports of the last sync, and each Service's ports by the
        # resourceVersions they were computed from: a sync redoes only what changed.
        self._fragments: dict[rules.ServicePort, rules.Fragment] = {}
        self._ports: dict[str, tuple[tuple[str, ...], list[rules.ServicePort]]] = {}
        self.last_sync_seconds = 0.0

    def failed(self) -> None:
        self.applied = None  # the next sync replaces the whole table

    def ruleset(self) -> rules.Ruleset:
        ports: list[rules.ServicePort] = []
        seen: dict[str, tuple[tuple[str, ...], list[rules.ServicePort]]] = {}
        for svc in self.services.list():
            key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
            slices = self.slices.by_index("service", key)
            version = (svc["metadata"].get("resourceVersion") or "",
                       *sorted(s["metadata"].get("resourceVersion") or "" for s in slices))
            cached = self._ports.get(key)
            if cached is None or cached[0] != version or not version[0]:
                cached = (version, service_ports(svc, slices))
            seen[key] = cached
            ports += cached[1]
        self._ports = seen
        ports.sort(key=lambda p: p.id)
        return rules.build(ports, node_name=self.node_name, cluster_cidr=self.cluster_cidr,
                           cache=self._fragments)

    async def sync(self) -> None:
        started = time.monotonic()
        wanted = self.ruleset()
        if self.applied is None:
            script = rules.full_script(wanted)
        else:
            script = rules.diff_script(self.applied, wanted)
        if script:
            try:
                await run_nft(script, netns=self.netns)
            except BaseException:
                self.applied = None
                raise
        self.applied = wanted
        self.syncs += 1
        self.last_sync_seconds = time.monotonic() - started
        self.synced.set()
