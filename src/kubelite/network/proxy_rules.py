"""nftables rules of the service proxy, generated from Services and their endpoints.

The layout follows kube-proxy's nftables mode, in one table `ip kubelite`:

- map `service-ips`: ClusterIP (and external / LoadBalancer IP) . protocol . port
  -> `goto` the port's service chain (or its external chain), so a packet's cost
  is one map lookup whatever the number of Services;
- map `service-nodeports`: protocol . port -> external chain, for packets to any
  local address (`fib daddr type local`) but loopback;
- `service-*` chains: masquerade mark for traffic from outside the cluster CIDR,
  ClientIP affinity look-ups, then `numgen random mod N` over per-endpoint chains;
- `endpoint-*` chains: hairpin mark (a pod reaching itself), affinity update, DNAT;
- maps `no-endpoint-services` / `no-endpoint-nodeports`: new connections to a
  port without endpoints are rejected in the filter hooks, as kube-proxy does;
- `masquerading` in postrouting masquerades what carries the mark.

`Ruleset` is a plain description (chains with their rules, map elements, sets);
`full_script` writes a whole table, `diff_script` only what changed between two
rulesets, each one `nft -f -` transaction.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

TABLE = "kubelite"
MASQ_MARK = "0x4000"
MAPS = {
    "service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-nodeports": "inet_proto . inet_service : verdict",
    "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
    "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}
_BASE_CHAINS = {
    "nat-prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    "filter-input": "type filter hook input priority -110; policy accept;",
    "filter-forward": "type filter hook forward priority -110; policy accept;",
    "filter-output": "type filter hook output priority -110; policy accept;",
}


def static_chains() -> dict[str, tuple[str, ...]]:
    """Chains whose rules never change."""
    no_endpoints = ("ct state new ip daddr . meta l4proto . th dport "
                    "vmap @no-endpoint-services",)
    return {
        "nat-prerouting": ("jump services",),
        "nat-output": ("jump services",),
        "nat-postrouting": ("jump masquerading",),
        "filter-input": ("ct state new fib daddr type local ip daddr != 127.0.0.0/8 "
                         "meta l4proto . th dport vmap @no-endpoint-nodeports",),
        "filter-forward": no_endpoints,
        "filter-output": no_endpoints,
        "services": (
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
            "vmap @service-nodeports",
        ),
        "mark-for-masquerade": (f"meta mark set meta mark | {MASQ_MARK}",),
        "masquerading": (
            f"meta mark & {MASQ_MARK} == 0 return",
            f"meta mark set meta mark ^ {MASQ_MARK}",
            "masquerade fully-random",
        ),
        "reject-chain": ("reject",),
    }


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    node_name: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service, with what the proxy needs to know about it."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    affinity_timeout: int | None = None
    external_local: bool = False
    internal_local: bool = False
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}/{self.protocol.lower()}/{self.port_name}"


@dataclass
class Ruleset:
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {m: {} for m in MAPS})
    # affinity set name -> timeout in seconds
    sets: dict[str, int] = field(default_factory=dict)


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:8].decode()


def _chain(prefix: str, ident: str) -> str:
    # Kernel names are at most 255 bytes; the hash keeps cut names unique.
    return f"{prefix}-{_hash(ident)}-{ident}"[:200]


def usable_endpoints(eps: tuple[Endpoint, ...], *, node_name: str | None = None,
                     local: bool = False) -> list[Endpoint]:
    """Ready endpoints; when there are none, the serving terminating ones (so that
    connections during a rolling update still land), as kube-proxy."""
    if local:
        eps = tuple(e for e in eps if e.node_name == node_name)
    ready = [e for e in eps if e.ready]
    if ready:
        return ready
    return [e for e in eps if e.serving and e.terminating]


@dataclass(frozen=True, slots=True)
class Fragment:
    """What one ServicePort adds to the ruleset."""

    chains: tuple[tuple[str, tuple[str, ...]], ...]
    elements: tuple[tuple[str, str, str], ...]  # map, key, verdict
    sets: tuple[tuple[str, int], ...]


def fragment(sp: ServicePort, *, node_name: str | None, cluster_cidr: str) -> Fragment:
    rs = Ruleset()
    _add_port(rs, sp, node_name=node_name, cluster_cidr=cluster_cidr)
    return Fragment(chains=tuple(rs.chains.items()),
                    elements=tuple((m, k, v) for m, items in rs.maps.items()
                                   for k, v in items.items()),
                    sets=tuple(rs.sets.items()))


def build(ports: list[ServicePort], *, node_name: str | None, cluster_cidr: str,
          cache: dict[ServicePort, Fragment] | None = None) -> Ruleset:
    """The whole ruleset. With `cache` (for one node_name and cluster_cidr), ports seen
    before reuse their fragment, so that a change to one Service among thousands
    costs dictionary merges rather than writing every rule again; the cache is left
    holding exactly the ports of this build."""
    rs = Ruleset(chains=static_chains())
    used: dict[ServicePort, Fragment] = {}
    for sp in ports:
        frag = cache.get(sp) if cache is not None else None
        if frag is None:
            frag = fragment(sp, node_name=node_name, cluster_cidr=cluster_cidr)
        used[sp] = frag
        rs.chains.update(frag.chains)
        rs.sets.update(frag.sets)
        for mname, key, verdict in frag.elements:
            rs.maps[mname][key] = verdict
    if cache is not None:
        cache.clear()
        cache.update(used)
    return rs


def _add_port(rs: Ruleset, sp: ServicePort, *, node_name: str | None,
              cluster_cidr: str) -> None:
    proto = sp.protocol.lower()
    internal = usable_endpoints(sp.endpoints, node_name=node_name, local=sp.internal_local)
    external = usable_endpoints(sp.endpoints, node_name=node_name, local=sp.external_local)
    svc_chain = _chain("service", sp.id)
    ext_chain = _chain("external", sp.id)
    reject = "goto reject-chain"
    if internal:
        rs.maps["service-ips"][f"{sp.cluster_ip} . {proto} . {sp.port}"] = f"goto {svc_chain}"
    else:
        rs.maps["no-endpoint-services"][f"{sp.cluster_ip} . {proto} . {sp.port}"] = reject
    has_external = bool(sp.external_ips or sp.node_port)
    for ip in sp.external_ips:
        key = f"{ip} . {proto} . {sp.port}"
        if external:
            rs.maps["service-ips"][key] = f"goto {ext_chain}"
        else:
            rs.maps["no-endpoint-services"][key] = reject
    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        if external:
            rs.maps["service-nodeports"][key] = f"goto {ext_chain}"
        else:
            rs.maps["no-endpoint-nodeports"][key] = reject
    needed = {e for e in internal} | ({e for e in external} if has_external else set())
    ep_chains = {e: _chain("endpoint", f"{sp.id}__{e.ip}/{e.port}") for e in needed}
    affinity = {e: _chain("affinity", f"{sp.id}__{e.ip}/{e.port}") for e in needed} if (
        sp.affinity_timeout) else {}
    for e, name in ep_chains.items():
        rules = [f"ip saddr {e.ip} jump mark-for-masquerade"]
        if affinity:
            rs.sets[affinity[e]] = int(sp.affinity_timeout or 0)
            rules.append(f"update @{affinity[e]} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {e.ip}:{e.port}")
        rs.chains[name] = tuple(rules)
    if internal:
        rules = [f"ip daddr {sp.cluster_ip} {proto} dport {sp.port} ip saddr != {cluster_cidr} "
                 "jump mark-for-masquerade"]
        rules += _spread(internal, ep_chains, affinity)
        rs.chains[svc_chain] = tuple(rules)
    if has_external and external:
        rules = [] if sp.external_local else ["jump mark-for-masquerade"]
        if sp.external_local or not internal or set(external) != set(internal):
            rules += _spread(external, ep_chains, affinity)
        else:
            rules.append(f"goto {svc_chain}")
        rs.chains[ext_chain] = tuple(rules)


def _spread(eps: list[Endpoint], chains: dict[Endpoint, str],
            affinity: dict[Endpoint, str]) -> list[str]:
    ordered = sorted(eps, key=lambda e: (e.ip, e.port))
    rules = [f"ip saddr @{affinity[e]} goto {chains[e]}" for e in ordered if e in affinity]
    if len(ordered) == 1:
        rules.append(f"goto {chains[ordered[0]]}")
    else:
        targets = ", ".join(f"{i} : goto {chains[e]}" for i, e in enumerate(ordered))
        rules.append(f"numgen random mod {len(ordered)} vmap {{ {targets} }}")
    return rules


# ---- scripts ----------------------------------------------------------------------


def _set_decl(name: str, timeout: int) -> str:
    return (f"add set ip {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; "
            f"timeout {timeout}s; }}")


def _chain_body(name: str, rules: tuple[str, ...]) -> list[str]:
    return [f"add rule ip {TABLE} {name} {rule}" for rule in rules]


def full_script(rs: Ruleset) -> str:
    """The whole table, replacing whatever is there, in one transaction."""
    out = [f"add table ip {TABLE}", f"delete table ip {TABLE}", f"add table ip {TABLE}"]
    for name, spec in MAPS.items():
        out.append(f"add map ip {TABLE} {name} {{ type {spec}; }}")
    for name, timeout in sorted(rs.sets.items()):
        out.append(_set_decl(name, timeout))
    for name in rs.chains:
        base = _BASE_CHAINS.get(name)
        out.append(f"add chain ip {TABLE} {name}" + (f" {{ {base} }}" if base else ""))
    for name, rules in rs.chains.items():
        out += _chain_body(name, rules)
    for mname, elements in rs.maps.items():
        if elements:
            items = ", ".join(f"{k} : {v}" for k, v in sorted(elements.items()))
            out.append(f"add element ip {TABLE} {mname} {{ {items} }}")
    return "\n".join(out) + "\n"


def diff_script(old: Ruleset, new: Ruleset) -> str:
    """Only what changed from `old` (what the kernel holds) to `new`; empty if nothing.
    Order matters within the transaction: chains exist before anything jumps to
    them, and nothing refers to a chain or set when it is deleted."""
    out: list[str] = []
    for name, timeout in new.sets.items():
        if old.sets.get(name) != timeout:
            if name in old.sets:
                out.append(f"delete set ip {TABLE} {name}")
            out.append(_set_decl(name, timeout))
    for name in new.chains:
        if name not in old.chains:
            out.append(f"add chain ip {TABLE} {name}")
    for mname in MAPS:
        before, after = old.maps.get(mname, {}), new.maps.get(mname, {})
        gone = [k for k, v in before.items() if after.get(k) != v]
        if gone:
            out.append(f"delete element ip {TABLE} {mname} {{ {', '.join(sorted(gone))} }}")
    for name, rules in new.chains.items():
        if old.chains.get(name) != rules:
            if name in old.chains:
                out.append(f"flush chain ip {TABLE} {name}")
            out += _chain_body(name, rules)
    for mname in MAPS:
        before, after = old.maps.get(mname, {}), new.maps.get(mname, {})
        added = [f"{k} : {v}" for k, v in sorted(after.items()) if before.get(k) != v]
        if added:
            out.append(f"add element ip {TABLE} {mname} {{ {', '.join(added)} }}")
    removed = [name for name in old.chains if name not in new.chains]
    out += [f"flush chain ip {TABLE} {name}" for name in removed]
    out += [f"delete chain ip {TABLE} {name}" for name in removed]
    out += [f"delete set ip {TABLE} {name}" for name in old.sets if name not in new.sets]
    return "\n".join(out) + "\n" if out else ""


DELETE_SCRIPT = f"add table ip {TABLE}\ndelete table ip {TABLE}\n"
